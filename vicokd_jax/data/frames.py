"""Frame sampling and square crop-and-resize of uint8 clips: numpy only (no JAX, no grain), so that code which
runs without JAX (`vicokd_jax.predict --onnx`) samples frames exactly as the input pipeline does."""
from __future__ import annotations

import numpy as np


def frame_indices(total: int, num_frames: int, mode: str, rng: np.random.Generator | None) -> np.ndarray:
    """Which source frames to keep: [num_frames] int in [0, total)."""
    if total < 1:
        raise ValueError("cannot sample frames from a 0-frame example")
    if mode == "random_crop" and rng is not None and total >= num_frames:
        start = int(rng.integers(0, total - num_frames + 1))
        return np.arange(start, start + num_frames)
    return np.minimum(((np.arange(num_frames) + 0.5) * total / num_frames).astype(int), total - 1)


def resize_weights(out_size: int, in_size: int) -> np.ndarray:
    """[out, in] linear-interpolation weights (triangle filter widened when shrinking: antialiased), the weights
    of `jax.image.resize(..., method="linear")` along one axis."""
    scale = in_size / out_size
    support = max(scale, 1.0)
    centres = (np.arange(out_size) + 0.5) * scale - 0.5
    taps = np.arange(in_size)
    w = np.maximum(0.0, 1.0 - np.abs(taps[None] - centres[:, None]) / support)
    return (w / np.maximum(w.sum(1, keepdims=True), 1e-12)).astype(np.float32)


def crop_and_resize(rgb: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    """`rgb [..., H, W, C]` uint8, square `box = (top, left, side)` -> `[..., size, size, C]` uint8: the crop
    resized with `resize_weights` along both axes (what `jax.image.resize(..., "linear")` gives), rounded."""
    top, left, side = box
    patch = rgb[..., top:top + side, left:left + side, :]
    if side == size:
        return np.ascontiguousarray(patch)
    m = resize_weights(size, side)
    lead, channels = patch.shape[:-3], patch.shape[-1]
    # Both passes are batched products of one frame's pixels on the channel-last layout, with no transposes; the
    # columns' matrix kron(m.T, I_C) resizes the width and keeps channels apart (a product per row of pixels, or a
    # transpose to put the width first, made this the cost of a training example). Per frame, the products stay
    # below the size at which OpenBLAS spreads one over threads that then spin in grain's worker processes.
    out = m @ patch.astype(np.float32).reshape(-1, side, side * channels)  # rows: [N, size, side * C]
    out = out @ np.kron(m.T, np.eye(channels, dtype=np.float32))  # columns: [N, size, size * C]
    np.clip(np.rint(out, out=out), 0, 255, out=out)
    return out.astype(np.uint8).reshape(*lead, size, size, channels)


def centre_box(height: int, width: int) -> tuple[int, int, int]:
    """The largest centred square of a `height` x `width` frame: `(top, left, side)` (evaluation's crop)."""
    short = min(height, width)
    return (height - short) // 2, (width - short) // 2, short
