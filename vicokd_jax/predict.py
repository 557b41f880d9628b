"""Videos in, action out: run an exported student on one clip, one video file per view.

    python -m vicokd_jax.predict --export runs/demo/export view1.mp4 view2.mp4 view3.mp4 view4.mp4
    python -m vicokd_jax.predict --export runs/demo/export --onnx [--int8] --json --per-view v1.mp4 - v3.mp4

Files are the export's views in order; `-` marks a view that has no camera (its `view_mask` is False), and
fewer files than views leave the last views absent. Frames are sampled as the evaluation pipeline does: every
decoded frame (or `--fps` per second, as the MultiSensor-Home builder samples), all views cut to the shortest,
`T` frames evenly spaced (`frames.frame_indices`), the centred square resized to the export's `H x W`
(`frames.crop_and_resize`). Prints the top-k classes with scores (softmax; sigmoid per class for a multi-label
export) as a table, or one JSON object with `--json`; `--per-view` adds each view's own top class.

`--onnx` runs `model.onnx` (`--int8`: `model_int8.onnx`) with ONNX Runtime and never imports JAX: what an edge
device needs is numpy, av and onnxruntime. A missing, unreadable or mismatched video is an error naming the file.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import numpy as np

from vicokd_jax.data.frames import centre_box, crop_and_resize, frame_indices
from vicokd_jax.data.video import DEFAULT_MAX_VIEW_SKEW_S, decode_video
from vicokd_jax.export.files import read_config

ABSENT = "-"


def _video_rate(path: pathlib.Path) -> float | None:
    import av

    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate if container.streams.video else None
    return float(rate) if rate else None


def load_clip(videos, input_spec: dict, *, fps: float | None = None,
              max_view_skew_s: float = DEFAULT_MAX_VIEW_SKEW_S) -> dict[str, np.ndarray]:
    """`{"rgb": uint8 [1, V, T, H, W, 3], "view_mask": bool [1, V]}` from one video path (or `ABSENT`) per view.

    Raises naming the file: missing, undecodable, or a length that differs from the other views' by more than
    `max_view_skew_s` seconds; naming the export's view count when there are more files than views.
    """
    num_views, num_frames, height, width, _ = input_spec["rgb"]["shape"]
    if height != width:
        raise ValueError(f"the export's frames are {height}x{width}; only square inputs are supported")
    if len(videos) > num_views:
        raise ValueError(f"{len(videos)} videos given but the export has {num_views} views: {list(videos)}")
    if all(str(v) == ABSENT for v in videos):
        raise ValueError(f"no video given (every view is {ABSENT!r})")
    clips, seconds = {}, {}
    for view, video in enumerate(videos):
        if str(video) == ABSENT:
            continue
        path = pathlib.Path(video)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such video file (view {view + 1})")
        try:
            clip = decode_video(path, fps=fps)
            rate = fps or _video_rate(path)
        except Exception as e:  # noqa: BLE001 -- av raises many types for foreign files; all name the file
            raise ValueError(f"{path}: cannot be read as a video (view {view + 1}): {e}") from None
        clips[view] = clip
        seconds[view] = len(clip) / rate if rate else None
    known = {v: s for v, s in seconds.items() if s is not None}
    if known and max(known.values()) - min(known.values()) > max_view_skew_s:
        detail = ", ".join(f"{videos[v]}: {s:.2f} s" for v, s in known.items())
        raise ValueError(f"the views' videos differ in length by more than {max_view_skew_s} s: {detail}")
    length = min(len(c) for c in clips.values())
    rgb = np.zeros((1, num_views, num_frames, height, width, 3), np.uint8)
    view_mask = np.zeros((1, num_views), bool)
    idx = frame_indices(length, num_frames, "uniform", None)
    for view, clip in clips.items():
        frames = clip[:length][idx]
        rgb[0, view] = crop_and_resize(frames, centre_box(*frames.shape[1:3]), height)
        view_mask[0, view] = True
    return {"rgb": rgb, "view_mask": view_mask}


def _scores(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def predict(export_dir, videos, *, backend: str = "jax", top_k: int = 5, fps: float | None = None) -> dict:
    """The clip's top-k classes and every present view's own top class, as printed by `--json`."""
    _, _, config = read_config(export_dir)
    if "rgb" not in config.get("input_spec", {}):
        raise ValueError(f"export {export_dir} takes {list(config.get('input_spec', {}))}, not rgb videos")
    batch = load_clip(videos, config["input_spec"], fps=fps)
    if backend == "jax":
        from vicokd_jax.export.format import load
    else:
        from vicokd_jax.export.onnx_predictor import load_onnx

    model = load(export_dir) if backend == "jax" else load_onnx(export_dir, int8=backend == "onnx-int8")
    out = {k: np.asarray(v) for k, v in model(batch).items()}
    names = config.get("class_names") or [str(i) for i in range(out["logits"].shape[-1])]
    multi_label = bool(config.get("experiment", {}).get("data", {}).get("multi_label", False))
    scores = _scores(out["logits"][0], multi_label)
    view_scores = _scores(out["view_logits"][0], multi_label)
    order = np.argsort(-scores)[:max(1, top_k)]
    return {
        "export": str(export_dir), "backend": backend, "videos": [str(v) for v in videos],
        "score": "sigmoid" if multi_label else "softmax",
        "top_k": [{"rank": r + 1, "class": names[i], "index": int(i), "score": float(scores[i])}
                  for r, i in enumerate(order)],
        "views": [{"view": v + 1, "video": str(videos[v]), "class": names[int(view_scores[v].argmax())],
                   "score": float(view_scores[v].max())}
                  for v in range(len(videos)) if batch["view_mask"][0, v]],
    }


def format_table(result: dict, per_view: bool = False) -> str:
    width = max(len(e["class"]) for e in result["top_k"] + result["views"]) if result["views"] else 10
    lines = [f"{'rank':>4}  {'class':<{width}}  {result['score']:>7}"]
    lines += [f"{e['rank']:>4}  {e['class']:<{width}}  {e['score']:7.4f}" for e in result["top_k"]]
    if per_view:
        lines += ["", f"{'view':>4}  {'class':<{width}}  {'score':>7}  video"]
        lines += [f"{e['view']:>4}  {e['class']:<{width}}  {e['score']:7.4f}  {e['video']}" for e in result["views"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, help="an export directory (vk.export.export)")
    parser.add_argument("videos", nargs="+", help=f"one video file per view, in view order ({ABSENT!r}: absent)")
    parser.add_argument("--onnx", action="store_true", help="run model.onnx with ONNX Runtime (no JAX)")
    parser.add_argument("--int8", action="store_true", help="with --onnx: the int8 model, model_int8.onnx")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--fps", type=float, default=None,
                        help="sample the videos at this rate before taking T frames (default: every frame)")
    parser.add_argument("--per-view", action="store_true", help="also each view's own top class")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.int8 and not args.onnx:
        parser.error("--int8 needs --onnx (the int8 model is an ONNX file)")
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        parser.error(f"--fps must be a positive number, got {args.fps}")
    backend = ("onnx-int8" if args.int8 else "onnx") if args.onnx else "jax"
    try:
        result = predict(args.export, args.videos, backend=backend, top_k=args.top_k, fps=args.fps)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"predict: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result if args.per_view else {k: v for k, v in result.items() if k != "views"}))
    else:
        print(format_table(result, args.per_view))
    return 0


if __name__ == "__main__":
    sys.exit(main())
