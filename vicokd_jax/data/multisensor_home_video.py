"""MultiSensor-Home videos: sampling each view's MP4 at a fixed rate, resized while decoding, views cut to one length.

Re-exported by `vicokd_jax.data.multisensor_home`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vicokd_jax.data.multisensor_home_annotations import NUM_VIEWS, Record
from vicokd_jax.data.video import DEFAULT_MAX_VIEW_SKEW_S, decode_video


def load_views(root: str | os.PathLike, record: Record, *, fps: float, height: int, width: int,
               max_view_skew_s: float = DEFAULT_MAX_VIEW_SKEW_S) -> tuple[np.ndarray, np.ndarray]:
    """rgb [V, T, H, W, 3] uint8 and view_mask [V] bool of one record; absent or missing files give zero frames.

    All present views are cut to the shortest one; a spread above `max_view_skew_s` seconds is an error.
    """
    root = Path(root)
    clips: dict[int, np.ndarray] = {}
    for v, url in enumerate(record.videos):
        if url is not None and (root / url).is_file():
            clips[v] = decode_video(root / url, fps=fps, height=height, width=width)
    if not clips:
        files = [str(root / u) for u in record.videos if u is not None]
        raise FileNotFoundError(f"{record.where} ({record.id}): no view file exists: {', '.join(files)}")
    lengths = {v: len(c) for v, c in clips.items()}
    if max(lengths.values()) - min(lengths.values()) > max_view_skew_s * fps:
        detail = ", ".join(f"{record.videos[v]}: {n} frames ({n / fps:.1f} s)" for v, n in lengths.items())
        raise ValueError(f"{record.where} ({record.id}): views have different lengths beyond "
                         f"max_view_skew_s={max_view_skew_s} s at {fps} fps: {detail} (raise max_view_skew_s "
                         f"to cut them all to the shortest)")
    num_frames = min(lengths.values())
    rgb = np.zeros([NUM_VIEWS, num_frames, height, width, 3], np.uint8)
    mask = np.zeros([NUM_VIEWS], bool)
    for v, clip in clips.items():
        rgb[v], mask[v] = clip[:num_frames], True
    return rgb, mask
