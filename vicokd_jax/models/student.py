"""The one-modality student (METHOD.md, "Student"): RGB by default, or audio.

    r = Proj(Enc_v(x_v))                        [B·V, L, D]   x = rgb (a video transformer) or audio (an audio
                                                              encoder per frame window); one encoder shared by all
                                                              views (ViCoKD), or one per view (MSKD: stacked
                                                              params, vmap over V)
    a = CMA(r <- memory bank [K, D])            cross-modal adapter: the student's tokens query K learned "memory"
                                                tokens; zero-initialised, so a == r at init
    frame_tokens = a  -> ActionHeads (the teacher's heads and view fusion)
    {m}_tokens = W_m · a   for each missing m   the adapter's stand-in for each teacher stream the student lacks
                                                (L_feat); W_skeleton is `adapter_align`, the others `adapter_align_{m}`
    {modality}_tokens = W_hint · r              FitNets hint towards the teacher's stream of the student's modality

At test time the student needs its one modality.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vicokd_jax.models.attention import CrossModalAttention
from vicokd_jax.models.heads import (IMAGENET_MEAN, IMAGENET_STD, ActionHeads, StreamProjection, check_views,
                                     frame_difference, normalize_rgb)

INPUT_MODES = ("rgb", "rgb_diff", "audio")
# Rank of the student's input: rgb [B,V,T,H,W,3] uint8, audio [B,V,T,F,M] float32.
INPUT_RANKS = {"rgb": 6, "audio": 5}


def input_modality(input_mode: str) -> str:
    """The modality a student with `input_mode` reads: "rgb" for rgb and rgb_diff, "audio" for audio."""
    if input_mode not in INPUT_MODES:
        raise ValueError(f"Student.input_mode={input_mode!r}; expected one of {INPUT_MODES}")
    return "audio" if input_mode == "audio" else "rgb"


def align_name(modality: str) -> str:
    """The adapter's projection towards a teacher stream (`adapter_align` for the skeleton, its first name)."""
    return "adapter_align" if modality == "skeleton" else f"adapter_align_{modality}"


class Student(nn.Module):
    """`apply(variables, x, view_mask [B, V] bool, train=False) -> dict`, x = rgb [B, V, T, H, W, 3] uint8, or
    audio [B, V, T, F, M] float32 with `input_mode="audio"`.

    Output dict (the teacher's keys): logits [B, C], view_logits [B, V, C], frame_logits [B, V, L, C],
    frame_tokens [B, V, L, D], view_tokens [B, V, D] (per-view clip embeddings), `{m}_tokens`
    [B, V, L, teacher_width] for each missing modality m (with the adapter), and `{modality}_tokens` (with `hint`).

    Attributes:
        rgb_encoder: a headless `VideoTransformer` (RGB students); audio_encoder: a headless `AudioTransformer`
            or `SegmentAudioEncoder` (audio students).
        per_view_weights: one encoder per view (needs `num_views`); otherwise one encoder shared by all views.
        adapter: the cross-modal adapter; `memory_tokens` K learned tokens; `missing`: the teacher's streams it
            stands in for (the teacher's modalities the student lacks).
        teacher_width: width of the teacher's stream tokens that the `{m}_tokens` match.
        hint: add the FitNets hint regressor (`{modality}_tokens`).
        views_in_loop: with per_view_weights, run each view's encoder in turn (a loop over V, each taking its
            slice of the stacked parameters) instead of vmapping them: the same parameters, and the same function
            at inference (training draws other dropout masks), in a form that converters without batching rules
            for flax layers can trace (jax2onnx; the export uses it).
        input_mode: "rgb" (normalised pixels), "rgb_diff" (differences of consecutive normalised frames,
            computed inside the model, so the export still takes raw uint8 RGB) or "audio" (log-mel windows).
    """

    num_classes: int
    rgb_encoder: nn.Module | None = None
    width: int = 256
    token_frames: int = 8
    per_view_weights: bool = False
    num_views: int | None = None
    adapter: bool = True
    missing: tuple[str, ...] = ("skeleton",)
    memory_tokens: int = 16
    teacher_width: int = 256
    hint: bool = False
    views_in_loop: bool = False
    input_mode: str = "rgb"
    num_heads: int = 4
    fusion_layers: int = 1
    dropout: float = 0.0
    rgb_mean: tuple[float, ...] = IMAGENET_MEAN
    rgb_std: tuple[float, ...] = IMAGENET_STD
    audio_encoder: nn.Module | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _encode_views(self, encode_one, x):
        """`x [B, V, ...]` -> `encode_one(x [N, ...])`'s outputs with leading `[B, V]`."""
        b, v = x.shape[:2]
        if self.per_view_weights:
            if self.num_views != v:
                raise ValueError(f"Student(per_view_weights=True, num_views={self.num_views}) got {v} views "
                                 f"(input shape {tuple(x.shape)})")
            # One parameter set per view, stacked on a leading axis of size V; views run in parallel.
            if self.views_in_loop and not self.is_initializing():
                return self._encode_views_in_loop(encode_one, x)
            encode = nn.vmap(lambda encoder, x: encode_one(encoder, x), in_axes=1, out_axes=1,
                             variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True})
            return encode(self._encoder(), x)
        flat = encode_one(self._encoder(), x.reshape(b * v, *x.shape[2:]))
        return {k: y.reshape(b, v, *y.shape[1:]) for k, y in flat.items() if y is not None}

    def _encode_views_in_loop(self, encode_one, x):
        """`_encode_views` for per-view weights, one view after another: view i's encoder sees params[i]."""
        outputs = []
        for i in range(x.shape[1]):
            encode = nn.map_variables(lambda encoder, x: encode_one(encoder, x), "params",
                                      trans_in_fn=lambda tree, i=i: jax.tree.map(lambda p: p[i], tree))
            outputs.append(encode(self._encoder(), x[:, i]))
        return {k: jnp.stack([o[k] for o in outputs], axis=1) for k in outputs[0] if outputs[0][k] is not None}

    def _encoder(self) -> nn.Module:
        modality = input_modality(self.input_mode)
        encoder = self.audio_encoder if modality == "audio" else self.rgb_encoder
        if encoder is None:
            raise ValueError(f"Student(input_mode={self.input_mode!r}) needs {modality}_encoder, got None")
        return encoder

    def _frame_tokens(self, x, train: bool):
        """The per-view frame tokens of the student's modality: `[B, V, T', D_enc]`."""
        if input_modality(self.input_mode) == "audio":
            def encode_one(encoder, windows):  # [N, T, F, M] -> one clip embedding per frame's window
                n, t = windows.shape[:2]
                return {"frame_tokens": encoder(windows.reshape(n * t, *windows.shape[2:]),
                                                train=train)["clip"].reshape(n, t, -1)}
            return self._encode_views(encode_one, x.astype(self.dtype))["frame_tokens"]
        pixels = normalize_rgb(x, self.rgb_mean, self.rgb_std, self.dtype)
        if self.input_mode == "rgb_diff":
            pixels = frame_difference(pixels)
        return self._encode_views(lambda encoder, p: encoder(p, train=train), pixels)["frame_tokens"]

    @nn.compact
    def __call__(self, x, view_mask, train: bool = False) -> dict:
        modality = input_modality(self.input_mode)
        check_views(modality, x, INPUT_RANKS[modality], view_mask, trailing=(3,) if modality == "rgb" else ())
        b, v = x.shape[:2]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        tokens = self._frame_tokens(x, train)
        r = StreamProjection(self.width, self.token_frames, name=f"{modality}_proj", **kw)(
            tokens.reshape(b * v, *tokens.shape[2:]))
        out = {}
        a = r
        if self.adapter:
            memory = self.param("adapter_memory", nn.initializers.normal(0.02), (self.memory_tokens, self.width),
                                self.param_dtype)
            bank = jnp.broadcast_to(memory.astype(r.dtype), (r.shape[0], *memory.shape))
            a = CrossModalAttention(self.num_heads, dropout=self.dropout, name="adapter", **kw)(r, bank, train=train)
            for m in self.missing:
                w_a = nn.Dense(self.teacher_width, name=align_name(m), **kw)(a)
                out[f"{m}_tokens"] = w_a.reshape(b, v, *w_a.shape[1:]).astype(jnp.float32)
        if self.hint:
            w_r = nn.Dense(self.teacher_width, name="hint_regressor", **kw)(r)
            out[f"{modality}_tokens"] = w_r.reshape(b, v, *w_r.shape[1:]).astype(jnp.float32)
        frame_tokens = a.reshape(b, v, *a.shape[1:])
        out.update(ActionHeads(self.num_classes, self.fusion_layers, self.num_heads, self.dropout, name="heads",
                               **kw)(frame_tokens, view_mask, train))
        out["frame_tokens"] = frame_tokens.astype(jnp.float32)
        return out
