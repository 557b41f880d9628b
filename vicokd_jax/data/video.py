"""Decoding a video file into uint8 frames with PyAV: numpy and av only (no JAX), so that the JAX-free
prediction path (`vicokd_jax.predict --onnx`) decodes as the datasets do. Re-exported by
`vicokd_jax.data.multisensor_home`."""
from __future__ import annotations

import os

import numpy as np

# How far apart (seconds) the views of one clip may end before they are refused rather than cut to the shortest.
DEFAULT_MAX_VIEW_SKEW_S = 1.0


def decode_video(path: str | os.PathLike, *, fps: float | None, height: int | None = None,
                 width: int | None = None) -> np.ndarray:
    """[T, H, W, 3] uint8: the first video stream of `path`, sampled at `fps` and resized while decoding.

    Output frame t is the first frame whose timestamp (from the first frame) is >= t/fps minus half a source frame;
    T counts the t with t/fps <= last timestamp + half a source frame. `fps=None` keeps every decoded frame;
    `height`/`width` None keep the stored size. Audio and other streams are skipped.
    """
    import av  # PyAV bundles FFmpeg; imported lazily so parsing works without it

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such video file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            half = 0.5 / float(rate) if rate else 1e-6
            frames = _sample_frames(container.decode(stream), rate, half, fps, height, width)
    except av.error.FFmpegError as e:
        raise ValueError(f"{path}: cannot decode video ({e})") from None
    if not frames:
        raise ValueError(f"{path}: no decodable video frames")
    return np.stack(frames)


def _sample_frames(decoded, rate, half: float, fps: float | None, height: int | None,
                   width: int | None) -> list[np.ndarray]:
    """Sample-and-resize loop of `decode_video`; a source frame is converted once even when repeated."""
    out: list[np.ndarray] = []
    first_time = None
    for i, frame in enumerate(decoded):
        convert = lambda: frame.reformat(width=width, height=height, format="rgb24",  # noqa: E731
                                         interpolation="AREA").to_ndarray()
        if fps is None:
            out.append(convert())
            continue
        time = frame.time if frame.time is not None else i / float(rate or fps)
        first_time = time if first_time is None else first_time
        time -= first_time
        image = None
        while len(out) / fps <= time + half:
            if image is None:
                image = convert()
            out.append(image)
    return out
