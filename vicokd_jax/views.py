"""The view operations that the losses, the train steps and the host metrics share, each defined once.

    fused = views.fuse_frame_logits(frame_logits, view_mask)          # [B,V,L,C], [B,V] -> [B,L,C]
    labels = views.resample_nearest(frame_labels, fused.shape[1])     # [B,T,...] -> [B,L,...]
    weights = views.visible_fraction(human_score, view_mask, 0.5)     # [B,V,T], [B,V] -> [B,V]
    pairs = views.covisible_pairs(human_score, view_mask, 0.5, 1)     # -> [B,V,V] bool, pairs i < j

Every function computes with the array module of its inputs: numpy arrays in -> numpy out (the host metrics;
means of booleans are float64 there), any jax array or tracer in -> jax out (inside the jitted step; float32).
Sizes (T, L, V) are static shapes, so index arithmetic runs in Python/numpy in both cases.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ABSENT_VIEW_FILL", "array_module", "nearest_indices", "resample_nearest", "fuse_frame_logits",
           "visible_fraction", "view_pairs", "covisible_pairs", "resample_scores"]

# NOTE: a finite fill, not -inf or the dtype's lowest value: a sample with no present view then fuses to equal
# finite logits (uniform after softmax) with zero gradient, and -1e9 fits float16 / bfloat16 ranges too.
ABSENT_VIEW_FILL = -1e9


def array_module(*arrays):
    """`jax.numpy` when any argument is a jax array (or a tracer under jit), else `numpy`."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def nearest_indices(length_in: int, length_out: int) -> np.ndarray:
    """[length_out] int: input frame `floor((l + 0.5) · T / L)` for output frame l (T = length_in, L = length_out).

    The input frame nearest the centre of the span that output frame l covers; exact half-way ties go to the
    later frame. Computed exactly in integers, `((2l + 1)·T) // (2L)`, which is always ≤ T − 1.
    """
    if length_in < 1 or length_out < 1:
        raise ValueError(f"nearest_indices: lengths must be ≥ 1, got T={length_in}, L={length_out}")
    return (2 * np.arange(length_out) + 1) * length_in // (2 * length_out)


def resample_nearest(x, length: int):
    """Nearest-frame resampling along axis 1: `[B, T, ...] -> [B, length, ...]` (frame labels, multi-hot frame
    targets, per-frame scores); see `nearest_indices`. Returns `x` itself when T == length.

    NOTE: the float32 form `int((l + 0.5) * T / L)` that the train step used gives the same frames for every
    configured shape (L = 8 token frames), but under jit XLA divides by a constant L through its reciprocal and
    sends some exact ties to the earlier frame (e.g. T=2, L=41); the integer form has no such case.
    """
    t = x.shape[1]
    if t == length:
        return x
    return array_module(x).take(x, nearest_indices(t, length), axis=1)


def fuse_frame_logits(frame_logits, view_mask):
    """View-fused frame logits: max over the present views. `[B, V, L, C], [B, V] bool -> [B, L, C]`.

    Absent views are filled with `ABSENT_VIEW_FILL` (-1e9) before the max, so a sample with no present view gets
    -1e9 everywhere (and a present view's logits below -1e9 would read as -1e9). The host metrics used the
    dtype's lowest value before; frame mAP ranks scores, so its value is the same with either fill.
    """
    chex.assert_rank(frame_logits, 4)
    chex.assert_equal(frame_logits.shape[:2], view_mask.shape)
    xp = array_module(frame_logits, view_mask)
    return xp.where(view_mask[:, :, None, None], frame_logits, ABSENT_VIEW_FILL).max(axis=1)


def visible_fraction(human_score, view_mask, score_threshold=0.5):
    """Per view, the share of frames where the detector sees the person (`human_score ≥ score_threshold`):
    `[B, V, T], [B, V] -> [B, V]` in [0, 1], 0 for absent views."""
    chex.assert_rank(human_score, 3)
    chex.assert_equal(human_score.shape[:2], view_mask.shape)
    xp = array_module(human_score, view_mask)
    return xp.mean(human_score >= score_threshold, axis=-1) * view_mask


def _pairs(view_mask, xp):
    v = view_mask.shape[1]
    return view_mask[:, :, None] & view_mask[:, None, :] & xp.triu(xp.ones((v, v), bool), k=1)


def view_pairs(view_mask):
    """View pairs i < j where both views exist: `[B, V] bool -> [B, V, V] bool`."""
    chex.assert_rank(view_mask, 2)
    return _pairs(view_mask, array_module(view_mask))


def covisible_pairs(human_score, view_mask, score_threshold=0.5, min_frames=1):
    """The pair mask c_ij of ViCoKD's L_vc: pairs i < j that both exist and where the person is detected
    (`human_score ≥ score_threshold`) in both views on ≥ `min_frames` common frames.
    `[B, V, T], [B, V] bool -> [B, V, V] bool`."""
    chex.assert_rank(human_score, 3)
    chex.assert_equal(human_score.shape[:2], view_mask.shape)
    xp = array_module(human_score, view_mask)
    # Counts of 0/1 products: exact in float32 up to 2^24 frames.
    detected = (human_score >= score_threshold).astype(xp.float32)
    common = xp.einsum("bit,bjt->bij", detected, detected)
    return _pairs(view_mask, xp) & (common >= min_frames)


def resample_scores(human_score, length: int):
    """Detector scores `[B, V, T]` -> `[B, V, length]` on the token frames: mean over equal chunks of frames,
    or, when T is not a multiple of `length`, `jax.image.resize(..., "linear")` (a jax array, also for numpy
    input). Returns `human_score` itself when T == length."""
    chex.assert_rank(human_score, 3)
    b, v, t = human_score.shape
    if t == length:
        return human_score
    if t % length == 0:
        return human_score.reshape(b, v, length, t // length).mean(-1)
    return jax.image.resize(human_score, (b, v, length), method="linear")
