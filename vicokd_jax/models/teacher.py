"""The multi-modal, fully supervised teacher (METHOD.md, "Teacher"), over any non-empty subset of
(skeleton, rgb, audio).

Per view, each stream's frame tokens are projected to a common width D and length L; with several streams each
stream queries the others (their tokens side by side) through cross-modal attention, and the streams are fused:

    s = Proj_s(STGCN(skeleton))                   [B·V, L, D]
    r = Proj_r(ViT(rgb))                          [B·V, L, D]
    a = Proj_a(AST(audio window of each frame))   [B·V, L, D]   (one AST clip embedding per sampled frame)
    m' = CMA_m(m <- [others])   for every stream m   (identity at init: zero-initialised output projections)
                                                  a view without a soundtrack (audio_mask False) has a = a' = 0
                                                  and its audio tokens are masked out of the others' context
    fused = Dense_D([s', r', a'])                 [B, V, L, D]  -> ActionHeads (frame / view / sequence logits)

A single stream is used as it is (fused = s for MSKD's skeleton teacher). Module names follow the streams
(`skeleton_proj`, `rgb_from_skeleton`, `skeleton_from_rgb_audio`, ...), so `("skeleton", "rgb")` keeps the
parameter names and numbers of the two-stream teacher. The output's `{modality}_tokens` (s', r', a') are what a
student's adapter is aligned to.
"""
from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax.numpy as jnp

from vicokd_jax.models.attention import CrossModalAttention
from vicokd_jax.models.heads import (IMAGENET_MEAN, IMAGENET_STD, ActionHeads, StreamProjection, check_views,
                                     frame_difference, normalize_rgb)

MODALITIES = ("skeleton", "rgb", "audio")
# Rank of each input: skeleton [B,V,M,T,J,3], rgb [B,V,T,H,W,3], audio [B,V,T,F,M] (one log-mel window per frame).
INPUT_RANKS = {"skeleton": 6, "rgb": 6, "audio": 5}
RGB_INPUTS = ("rgb", "rgb_diff")


class Teacher(nn.Module):
    """`apply(variables, skeleton, rgb, view_mask, audio=None, audio_mask=None, train=False) -> dict`.

    Inputs (None for a modality the teacher does not use):
        skeleton   [B, V, M, T, J, 3] float32
        rgb        [B, V, T, H, W, 3] uint8
        view_mask  [B, V] bool
        audio      [B, V, T, F, M] float32: an AST log-mel window per sampled frame (`vicokd_jax.data.audio`)
        audio_mask [B, V] bool: the view has a soundtrack (None: every view has one)
    Output dict:
        logits [B, C], view_logits [B, V, C], frame_logits [B, V, L, C], frame_tokens [B, V, L, D],
        view_tokens [B, V, D], and `{modality}_tokens` [B, V, L, D] for each of its modalities.

    Attributes:
        skeleton_encoder: a headless `STGCN`; rgb_encoder: a headless `VideoTransformer`; audio_encoder: a
            headless `AudioTransformer` or a `SegmentAudioEncoder` (each needed only for its modality).
        modalities: a non-empty subset of ("skeleton", "rgb", "audio"), in that order.
        width, token_frames: D and L of the fused streams.
        rgb_input: "rgb" (normalised pixels) or "rgb_diff" (differences of consecutive normalised frames, as the
            student's `input_mode`), what the RGB stream's encoder sees.
    """

    num_classes: int
    skeleton_encoder: nn.Module | None = None
    rgb_encoder: nn.Module | None = None
    modalities: tuple[str, ...] = ("skeleton", "rgb")
    width: int = 256
    token_frames: int = 8
    num_heads: int = 4
    fusion_layers: int = 1
    dropout: float = 0.0
    rgb_mean: tuple[float, ...] = IMAGENET_MEAN
    rgb_std: tuple[float, ...] = IMAGENET_STD
    rgb_input: str = "rgb"
    audio_encoder: nn.Module | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _check_config(self):
        ordered = tuple(m for m in MODALITIES if m in self.modalities)
        if not self.modalities or tuple(self.modalities) != ordered or len(ordered) != len(self.modalities):
            raise ValueError(f"Teacher.modalities must be a non-empty subset of {MODALITIES}, in that order, got "
                             f"{self.modalities!r}")
        for m in self.modalities:
            if getattr(self, f"{m}_encoder") is None:
                raise ValueError(f"Teacher: modalities include {m!r} but {m}_encoder is None")
        if self.rgb_input not in RGB_INPUTS:
            raise ValueError(f"Teacher.rgb_input={self.rgb_input!r}; expected one of {RGB_INPUTS}")

    def _stream(self, modality: str, x, train: bool, kw: dict):
        """One modality's per-view frame tokens projected to `[B·V, L, D]`; `x` is `[B·V, ...]`."""
        if modality == "skeleton":
            tokens = self.skeleton_encoder.encode(x, train=train)["frame_tokens"]
        elif modality == "rgb":
            pixels = normalize_rgb(x, self.rgb_mean, self.rgb_std, self.dtype)
            if self.rgb_input == "rgb_diff":
                pixels = frame_difference(pixels)
            tokens = self.rgb_encoder(pixels, train=train)["frame_tokens"]
        else:  # one AST clip embedding per frame's window
            n, t = x.shape[:2]
            tokens = self.audio_encoder(x.reshape(n * t, *x.shape[2:]), train=train)["clip"].reshape(n, t, -1)
        return StreamProjection(self.width, self.token_frames, name=f"{modality}_proj", **kw)(tokens)

    @nn.compact
    def __call__(self, skeleton, rgb, view_mask, audio=None, audio_mask=None, train: bool = False) -> dict:
        self._check_config()
        inputs = {"skeleton": skeleton, "rgb": rgb, "audio": audio}
        for m in self.modalities:
            if inputs[m] is None:
                raise ValueError(f"Teacher(modalities={self.modalities}) needs {m} (rank {INPUT_RANKS[m]}), got None")
            check_views(m, inputs[m], INPUT_RANKS[m], view_mask, trailing=(3,) if m != "audio" else ())
        b, v = inputs[self.modalities[0]].shape[:2]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        per_view = lambda x: x.reshape(b * v, *x.shape[2:])  # noqa: E731
        by_view = lambda x: x.reshape(b, v, *x.shape[1:])  # noqa: E731

        streams = {m: self._stream(m, per_view(inputs[m]), train, kw) for m in self.modalities}
        # Streams that may lack data in some views ({"audio": [B·V, 1]} with an audio mask): zero there, and
        # masked out of the other streams' context.
        present = {}
        if "audio" in self.modalities and audio_mask is not None:
            chex.assert_shape(audio_mask, (b, v))
            present["audio"] = jnp.asarray(audio_mask, bool).reshape(b * v, 1)
            streams["audio"] = jnp.where(present["audio"][..., None], streams["audio"], 0)
        if len(streams) > 1:
            # Every stream reads the others as they were before this exchange.
            before = dict(streams)
            for m in self.modalities:
                others = [o for o in self.modalities if o != m]
                context = jnp.concatenate([before[o] for o in others], axis=1)
                context_mask = None if len(present) == 0 else jnp.concatenate(
                    [jnp.broadcast_to(present.get(o, True), before[o].shape[:2]) for o in others], axis=1)
                updated = CrossModalAttention(self.num_heads, dropout=self.dropout,
                                              name=f"{m}_from_{'_'.join(others)}", **kw)(before[m], context,
                                                                                        context_mask, train=train)
                streams[m] = jnp.where(present[m][..., None], updated, 0) if m in present else updated
            fused = nn.Dense(self.width, name="fuse", **kw)(jnp.concatenate([streams[m] for m in self.modalities], -1))
        else:
            fused = streams[self.modalities[0]]
        out = {f"{m}_tokens": by_view(streams[m]).astype(jnp.float32) for m in self.modalities}
        fused = by_view(fused)
        out.update(ActionHeads(self.num_classes, self.fusion_layers, self.num_heads, self.dropout, name="heads",
                               **kw)(fused, view_mask, train))
        out["frame_tokens"] = fused.astype(jnp.float32)
        return out
