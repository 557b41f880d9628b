"""NTU RGB+D `_rgb.avi` videos: frame-by-frame decoding, resized while decoding, aligned to the skeleton frames.

Re-exported by `vicokd_jax.data.ntu`.
"""
from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_RGB_SIZE = (128, 128)  # (H, W)


def read_rgb(path: str | os.PathLike, size: tuple[int, int] | None = DEFAULT_RGB_SIZE,
             num_frames: int | None = None) -> np.ndarray:
    """Decode an NTU `_rgb.avi` (1920x1080 H.264) frame by frame -> uint8 [T, H, W, 3].

    size (H, W): every frame is resized to it while decoding (area filter, in FFmpeg's swscale), so the full
      1080p clip never sits in memory; the whole frame is kept, so the aspect ratio changes unless H/W = 9/16
      (e.g. (72, 128)). None keeps the native resolution.
    num_frames: align to the skeleton's frame count: extra frames are cut, missing ones repeat the last frame.
    Raises FileNotFoundError, or ValueError naming the file when it cannot be decoded or yields fewer frames
    than its container declares (truncated or corrupt).
    """
    import av  # optional dependency: only RGB needs it

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: RGB video not found")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            declared = stream.frames
            frames = [_frame_to_rgb(frame, size) for frame in container.decode(stream)]
    except av.error.FFmpegError as e:
        raise ValueError(f"{path}: cannot decode the video: {e}") from e
    if not frames:
        raise ValueError(f"{path}: no frame could be decoded")
    if declared and len(frames) < declared:
        raise ValueError(f"{path}: decoded {len(frames)} frames but the container declares {declared}: "
                         "the file is truncated or corrupt")
    video = np.stack(frames)
    return video if num_frames is None else match_length(video, num_frames, where=path)


def _frame_to_rgb(frame, size: tuple[int, int] | None) -> np.ndarray:
    if size is None:
        return frame.to_ndarray(format="rgb24")
    height, width = size
    return frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()


def match_length(video: np.ndarray, num_frames: int, where: str = "video") -> np.ndarray:
    """Cut or extend (repeating the last frame) `video` [T, ...] to `num_frames` frames."""
    if len(video) != num_frames:
        log.info("%s: %d video frames for %d skeleton frames; aligning", where, len(video), num_frames)
    if len(video) >= num_frames:
        return video[:num_frames]
    pad = np.repeat(video[-1:], num_frames - len(video), axis=0)
    return np.concatenate([video, pad])
