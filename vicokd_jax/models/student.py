"""The RGB-only student (METHOD.md, "Student").

    r = Proj(ViT_v(rgb_v))                      [B·V, L, D]   one encoder shared by all views (ViCoKD), or
                                                              one per view (MSKD: stacked params, vmap over V)
    a = CMA(r <- memory bank [K, D])            cross-modal adapter: RGB tokens query K learned "skeleton
                                                memory" tokens; zero-initialised, so a == r at init
    frame_tokens = a  -> ActionHeads (the teacher's heads and view fusion)
    skeleton_tokens = W · a                     the adapter's stand-in for the teacher's skeleton stream (L_feat)
    rgb_tokens = W_hint · r                     FitNets hint towards the teacher's RGB stream (baseline)

At test time the student needs RGB only.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vicokd_jax.models.attention import CrossModalAttention
from vicokd_jax.models.heads import (IMAGENET_MEAN, IMAGENET_STD, ActionHeads, StreamProjection, check_views,
                                     frame_difference, normalize_rgb)

INPUT_MODES = ("rgb", "rgb_diff")


class Student(nn.Module):
    """`apply(variables, rgb [B, V, T, H, W, 3] uint8, view_mask [B, V] bool, train=False) -> dict`.

    Output dict (the teacher's keys): logits [B, C], view_logits [B, V, C], frame_logits [B, V, L, C],
    frame_tokens [B, V, L, D], view_tokens [B, V, D] (per-view clip embeddings), skeleton_tokens
    [B, V, L, teacher_width] (with the adapter), rgb_tokens [B, V, L, teacher_width] (with `hint`).

    Attributes:
        rgb_encoder: a headless `VideoTransformer`.
        per_view_weights: one encoder per view (needs `num_views`); otherwise one encoder shared by all views.
        adapter: the cross-modal adapter; `memory_tokens` K learned tokens.
        teacher_width: width of the teacher's skeleton/RGB tokens that `skeleton_tokens` / `rgb_tokens` match.
        hint: add the FitNets hint regressor (`rgb_tokens`).
        input_mode: "rgb" (normalised pixels) or "rgb_diff" (differences of consecutive normalised frames,
            computed inside the model, so the export still takes raw uint8 RGB).
    """

    num_classes: int
    rgb_encoder: nn.Module
    width: int = 256
    token_frames: int = 8
    per_view_weights: bool = False
    num_views: int | None = None
    adapter: bool = True
    memory_tokens: int = 16
    teacher_width: int = 256
    hint: bool = False
    input_mode: str = "rgb"
    num_heads: int = 4
    fusion_layers: int = 1
    dropout: float = 0.0
    rgb_mean: tuple[float, ...] = IMAGENET_MEAN
    rgb_std: tuple[float, ...] = IMAGENET_STD
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _encode_views(self, pixels, train: bool):
        """`pixels [B, V, T, H, W, 3]` -> encoder outputs with leading `[B, V]`."""
        b, v = pixels.shape[:2]
        if self.per_view_weights:
            if self.num_views != v:
                raise ValueError(f"Student(per_view_weights=True, num_views={self.num_views}) got {v} views "
                                 f"(rgb shape {tuple(pixels.shape)})")
            # One parameter set per view, stacked on a leading axis of size V; views run in parallel.
            encode = nn.vmap(lambda encoder, x: encoder(x, train=train), in_axes=1, out_axes=1,
                             variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True})
            return encode(self.rgb_encoder, pixels)
        flat = self.rgb_encoder(pixels.reshape(b * v, *pixels.shape[2:]), train=train)
        return {k: x.reshape(b, v, *x.shape[1:]) for k, x in flat.items() if x is not None}

    @nn.compact
    def __call__(self, rgb, view_mask, train: bool = False) -> dict:
        check_views("rgb", rgb, 6, view_mask, trailing=(3,))
        if self.input_mode not in INPUT_MODES:
            raise ValueError(f"Student.input_mode={self.input_mode!r}; expected one of {INPUT_MODES}")
        b, v = rgb.shape[:2]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        pixels = normalize_rgb(rgb, self.rgb_mean, self.rgb_std, self.dtype)
        if self.input_mode == "rgb_diff":
            pixels = frame_difference(pixels)
        enc = self._encode_views(pixels, train)
        tokens = enc["frame_tokens"]
        r = StreamProjection(self.width, self.token_frames, name="rgb_proj", **kw)(
            tokens.reshape(b * v, *tokens.shape[2:]))
        out = {}
        a = r
        if self.adapter:
            memory = self.param("adapter_memory", nn.initializers.normal(0.02), (self.memory_tokens, self.width),
                                self.param_dtype)
            bank = jnp.broadcast_to(memory.astype(r.dtype), (r.shape[0], *memory.shape))
            a = CrossModalAttention(self.num_heads, dropout=self.dropout, name="adapter", **kw)(r, bank, train=train)
            w_a = nn.Dense(self.teacher_width, name="adapter_align", **kw)(a)
            out["skeleton_tokens"] = w_a.reshape(b, v, *w_a.shape[1:]).astype(jnp.float32)
        if self.hint:
            w_r = nn.Dense(self.teacher_width, name="hint_regressor", **kw)(r)
            out["rgb_tokens"] = w_r.reshape(b, v, *w_r.shape[1:]).astype(jnp.float32)
        frame_tokens = a.reshape(b, v, *a.shape[1:])
        out.update(ActionHeads(self.num_classes, self.fusion_layers, self.num_heads, self.dropout, name="heads",
                               **kw)(frame_tokens, view_mask, train))
        out["frame_tokens"] = frame_tokens.astype(jnp.float32)
        return out
