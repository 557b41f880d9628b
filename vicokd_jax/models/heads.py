"""Pieces the teacher and the student share: stream projection, heads, and the view-fusion transformer.

Both models turn per-view token streams into the same outputs (METHOD.md, "Teacher" and "Student"):

    frame_tokens [B, V, L, D] --frame head--> frame_logits [B, V, L, C]
         | mean over L
    view_tokens  [B, V, D]    --view head---> view_logits  [B, V, C]
         | ViewFusion (transformer over views, CLS token, key mask from view_mask)
    fused        [B, D]       --head--------> logits       [B, C]
"""
from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from vicokd_jax.data import frames

# Kinetics/ImageNet statistics used by VideoMAE and TimeSformer checkpoints (ViViT uses 0.5 / 0.5).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_rgb(rgb, mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype=jnp.float32):
    """uint8 (or [0,255] float) pixels `[..., 3]` -> `((x / 255) - mean) / std` in `dtype`."""
    x = rgb.astype(jnp.float32) / 255.0
    return ((x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)).astype(dtype)


# Scale of frame differences: normalised pixels change little between frames, so their differences are ~4x
# smaller than the pixels themselves; this brings them back to the range the patch embedding is initialised for.
FRAME_DIFFERENCE_SCALE = 4.0


def frame_difference(x, scale: float = FRAME_DIFFERENCE_SCALE):
    """RGB difference input (TSN's "RGB diff"): `[..., T, H, W, C]` -> `scale · (x_t − x_{t−1})`, zeros at t=0.

    Static appearance (background, clothing colour, lighting) cancels and motion remains; on SynthMV a raw-RGB
    encoder stays at chance while the same encoder on differences learns."""
    diff = x[..., 1:, :, :, :] - x[..., :-1, :, :, :]
    return scale * jnp.concatenate([jnp.zeros_like(x[..., :1, :, :, :]), diff], axis=-4)


def resample_frames(tokens, length: int):
    """`[N, T, D] -> [N, length, D]` by linear interpolation over time (area-averaging when shrinking)."""
    n, t, d = tokens.shape
    if t == length:
        return tokens
    # jax.image.resize's weights as a constant [length, T] matrix applied as one product: the same map, and one
    # that converts to ONNX with a symbolic batch (jax2onnx's resize needs static shapes).
    weights = frames.resize_weights(length, t)
    return jnp.einsum("lt,ntd->nld", weights.astype(tokens.dtype), tokens)


class StreamProjection(nn.Module):
    """Encoder tokens `[N, T, D_in]` -> `[N, L, width]`: linear projection, resampling to L frames, and a learned
    temporal position embedding (cross-modal attention is otherwise blind to frame order)."""

    width: int
    length: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens):
        chex.assert_rank(tokens, 3)
        x = nn.Dense(self.width, dtype=self.dtype, param_dtype=self.param_dtype, name="proj")(tokens)
        x = resample_frames(x, self.length)
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (self.length, self.width),
                         self.param_dtype)
        return x + pos.astype(x.dtype)


class ViewFusion(nn.Module):
    """Transformer over the V view tokens with a CLS token: `([B, V, D], view_mask [B, V]) -> [B, D]`.

    Absent views are masked out as keys, so their content cannot reach the CLS output. No view embedding:
    the result is invariant to the order of the views.
    """

    num_layers: int = 1
    num_heads: int = 4
    mlp_ratio: int = 2
    dropout: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, view_tokens, view_mask, train: bool = False):
        batch, views, width = view_tokens.shape
        chex.assert_shape(view_mask, (batch, views))
        cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, width), self.param_dtype)
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(view_tokens.dtype), (batch, 1, width)), view_tokens], 1)
        keys = jnp.concatenate([jnp.ones((batch, 1), bool), view_mask.astype(bool)], axis=1)  # CLS always valid
        mask = nn.make_attention_mask(jnp.ones_like(keys), keys)  # [B, 1, 1+V, 1+V]
        for i in range(self.num_layers):
            y = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name=f"norm_attn_{i}")(x)
            y = nn.MultiHeadDotProductAttention(
                num_heads=self.num_heads, dtype=self.dtype, param_dtype=self.param_dtype,
                dropout_rate=self.dropout, deterministic=not train, name=f"attn_{i}")(y, y, mask=mask)
            x = x + y
            y = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name=f"norm_mlp_{i}")(x)
            y = nn.Dense(self.mlp_ratio * width, dtype=self.dtype, param_dtype=self.param_dtype,
                         name=f"mlp_in_{i}")(y)
            y = nn.Dense(width, dtype=self.dtype, param_dtype=self.param_dtype, name=f"mlp_out_{i}")(nn.gelu(y))
            x = x + nn.Dropout(self.dropout, deterministic=not train)(y)
        return nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm_out")(x[:, 0])


class ActionHeads(nn.Module):
    """Frame, view and sequence heads over fused per-view frame tokens (see the module docstring).

    `(frame_tokens [B, V, L, D], view_mask [B, V]) -> dict(frame_logits, view_logits, logits, view_tokens)`.
    """

    num_classes: int
    fusion_layers: int = 1
    num_heads: int = 4
    dropout: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, frame_tokens, view_mask, train: bool = False):
        chex.assert_rank(frame_tokens, 4)
        dense = lambda name: nn.Dense(self.num_classes, dtype=self.dtype,  # noqa: E731
                                      param_dtype=self.param_dtype, name=name)
        tokens = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm_tokens")(frame_tokens)
        view_tokens = tokens.mean(axis=2)
        fused = ViewFusion(self.fusion_layers, self.num_heads, dropout=self.dropout, dtype=self.dtype,
                           param_dtype=self.param_dtype, name="view_fusion")(view_tokens, view_mask, train)
        as_f32 = lambda x: x.astype(jnp.float32)  # noqa: E731  (losses are computed in float32)
        return {
            "frame_logits": as_f32(dense("frame_head")(tokens)),
            "view_logits": as_f32(dense("view_head")(view_tokens)),
            "logits": as_f32(dense("head")(fused)),
            "view_tokens": as_f32(view_tokens),
        }


def check_views(name: str, array, rank: int, view_mask, trailing: tuple = ()) -> None:
    """Shape check at a model boundary: `array` is `[B, V, ...]` of rank `rank` matching `view_mask [B, V]`."""
    shape = tuple(array.shape)
    if len(shape) != rank or (trailing and shape[-len(trailing):] != trailing):
        want = "[B, V, " + ", ".join(["..."] * (rank - 2 - len(trailing)) + [str(t) for t in trailing]) + "]"
        raise ValueError(f"{name}: expected shape {want} (rank {rank}), got {shape}")
    if view_mask is not None and tuple(np.shape(view_mask)) != shape[:2]:
        raise ValueError(f"view_mask: expected shape {shape[:2]} (= {name}'s [B, V]), got {tuple(np.shape(view_mask))}")
