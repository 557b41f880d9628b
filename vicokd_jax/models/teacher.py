"""The multi-modal, fully supervised teacher (METHOD.md, "Teacher").

Per view, the skeleton stream (ST-GCN frame tokens) and the RGB stream (video-transformer frame tokens) are
projected to a common width D and a common length L, then exchange information through cross-modal attention
in both directions (each stream queries the other), and are fused:

    s = Proj_s(STGCN(skeleton))        [B·V, L, D]
    r = Proj_r(ViT(rgb))               [B·V, L, D]
    s' = CMA_s(s <- r),  r' = CMA_r(r <- s)        (identity at init: zero-initialised output projections)
    fused = Dense_D([s', r'])          [B, V, L, D]  -> ActionHeads (frame / view / sequence logits)

`modalities=("skeleton",)` is MSKD's skeleton teacher (fused = s); `("skeleton", "rgb")` is ViCoKD's teacher.
The output's `skeleton_tokens` (s') are what the student's adapter is aligned to.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vicokd_jax.models.attention import CrossModalAttention
from vicokd_jax.models.heads import (IMAGENET_MEAN, IMAGENET_STD, ActionHeads, StreamProjection, check_views,
                                     normalize_rgb)

MODALITIES = ("skeleton", "rgb")


class Teacher(nn.Module):
    """`apply(variables, skeleton, rgb, view_mask, train=False) -> dict`.

    Inputs:
        skeleton   [B, V, M, T, J, 3] float32 (None when "skeleton" is not a modality)
        rgb        [B, V, T, H, W, 3] uint8   (None when "rgb" is not a modality)
        view_mask  [B, V] bool
    Output dict:
        logits [B, C], view_logits [B, V, C], frame_logits [B, V, L, C], frame_tokens [B, V, L, D],
        view_tokens [B, V, D], skeleton_tokens [B, V, L, D], and rgb_tokens [B, V, L, D] with the RGB modality.

    Attributes:
        skeleton_encoder: a headless `STGCN` (num_classes=0); rgb_encoder: a headless `VideoTransformer`.
        modalities: subset of ("skeleton", "rgb"), in that order; the skeleton is required.
        width, token_frames: D and L of the fused streams.
    """

    num_classes: int
    skeleton_encoder: nn.Module
    rgb_encoder: nn.Module | None = None
    modalities: tuple[str, ...] = ("skeleton", "rgb")
    width: int = 256
    token_frames: int = 8
    num_heads: int = 4
    fusion_layers: int = 1
    dropout: float = 0.0
    rgb_mean: tuple[float, ...] = IMAGENET_MEAN
    rgb_std: tuple[float, ...] = IMAGENET_STD
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _check_config(self):
        if not self.modalities or any(m not in MODALITIES for m in self.modalities) or \
                self.modalities[0] != "skeleton" or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"Teacher.modalities must be ('skeleton',) or ('skeleton', 'rgb'), "
                             f"got {self.modalities!r}")
        if "rgb" in self.modalities and self.rgb_encoder is None:
            raise ValueError("Teacher: modalities include 'rgb' but rgb_encoder is None")

    @nn.compact
    def __call__(self, skeleton, rgb, view_mask, train: bool = False) -> dict:
        self._check_config()
        use_rgb = "rgb" in self.modalities
        check_views("skeleton", skeleton, 6, view_mask, trailing=(3,))
        b, v = skeleton.shape[:2]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        per_view = lambda x: x.reshape(b * v, *x.shape[2:])  # noqa: E731
        by_view = lambda x: x.reshape(b, v, *x.shape[1:])  # noqa: E731

        enc = self.skeleton_encoder.encode(per_view(skeleton), train=train)
        s = StreamProjection(self.width, self.token_frames, name="skeleton_proj", **kw)(enc["frame_tokens"])
        out = {}
        if use_rgb:
            if rgb is None:
                raise ValueError("Teacher(modalities=('skeleton', 'rgb')) needs rgb [B, V, T, H, W, 3], got None")
            check_views("rgb", rgb, 6, view_mask, trailing=(3,))
            if rgb.shape[:2] != (b, v):
                raise ValueError(f"rgb [B, V] = {rgb.shape[:2]} differs from skeleton [B, V] = {(b, v)}")
            pixels = normalize_rgb(per_view(rgb), self.rgb_mean, self.rgb_std, self.dtype)
            r = StreamProjection(self.width, self.token_frames, name="rgb_proj", **kw)(
                self.rgb_encoder(pixels, train=train)["frame_tokens"])
            # Both directions read the other stream as it was before this exchange.
            s, r = (CrossModalAttention(self.num_heads, dropout=self.dropout, name="skeleton_from_rgb", **kw)(
                        s, r, train=train),
                    CrossModalAttention(self.num_heads, dropout=self.dropout, name="rgb_from_skeleton", **kw)(
                        r, s, train=train))
            fused = nn.Dense(self.width, name="fuse", **kw)(jnp.concatenate([s, r], axis=-1))
            out["rgb_tokens"] = by_view(r).astype(jnp.float32)
        else:
            fused = s
        out["skeleton_tokens"] = by_view(s).astype(jnp.float32)
        fused = by_view(fused)
        out.update(ActionHeads(self.num_classes, self.fusion_layers, self.num_heads, self.dropout, name="heads",
                               **kw)(fused, view_mask, train))
        out["frame_tokens"] = fused.astype(jnp.float32)
        return out
