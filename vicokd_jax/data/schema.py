"""The example layout every source and builder produces (one multi-view sample, before batching).

    id            str                          sample identifier (e.g. "S001P001R001A001" for NTU: the camera is the view)
    skeleton      [V, M, T, J, 3] float32      3-D joints per view, person and frame; 0 where absent
    rgb           [V, T, H, W, 3] uint8        one clip per view, time-synchronised with the skeleton
    audio         [V, T, F, M] float32         per view and frame, the AST log-mel window (F 10-ms frames x M mel
                                               bins, `vicokd_jax.data.audio`) of that frame's stretch of the soundtrack
    audio_mask    [V] bool                     the view has a soundtrack (without one: audio is 0 and this is False)
    human_score   [V, T] float32 in [0, 1]     person-detector confidence per view and frame
    view_mask     [V] bool                     the view exists for this sample
    label         int32                        sequence label (single-label datasets), or
    labels        [C] float32 multi-hot        sequence labels (multi-label datasets)
    frame_labels  [T] int32 (-1 = background)  dense labels (single-label), or [T, C] float32 (multi-label)

T may differ between examples (the pipeline samples a fixed number of frames); V, M, J, H, W are fixed per
dataset configuration; F and M too (config fields `data.audio_frames`, `data.audio_mel_bins`). Optional keys
(`skeleton`, `rgb`, `audio` with `audio_mask`, `frame_labels`) are absent when a dataset or
configuration has no such data. The pipeline's batch adds a leading B and `labeled [B] bool` (METHOD.md).
"""
from __future__ import annotations

import numpy as np

# Axis that indexes frames in each time-indexed key (the pipeline samples frames along it).
TIME_AXIS = {"skeleton": 2, "rgb": 1, "audio": 1, "human_score": 1, "frame_labels": 0}

REQUIRED = ("id", "human_score", "view_mask")


def tfds_features(*, num_views: int, num_classes: int, multi_label: bool = False, skeleton: tuple | None = None,
                  rgb: tuple | None = None, audio: tuple | None = None, frame_labels: bool = True):
    """TFDS FeaturesDict for this layout. `skeleton=(M, J)`, `rgb=(H, W)` and `audio=(F, M)` (with `audio_mask`)
    switch those keys on."""
    import tensorflow_datasets as tfds

    f = tfds.features
    spec = {
        "id": f.Text(),
        "human_score": f.Tensor(shape=(num_views, None), dtype=np.float32),
        "view_mask": f.Tensor(shape=(num_views,), dtype=np.bool_),
    }
    if multi_label:
        spec["labels"] = f.Tensor(shape=(num_classes,), dtype=np.float32)
    else:
        spec["label"] = f.ClassLabel(num_classes=num_classes)
    if skeleton is not None:
        persons, joints = skeleton
        spec["skeleton"] = f.Tensor(shape=(num_views, persons, None, joints, 3), dtype=np.float32)
    if rgb is not None:
        height, width = rgb
        # NOTE: raw uint8 tensors, not encoded video: decoding must stay cheap in the input pipeline.
        spec["rgb"] = f.Tensor(shape=(num_views, None, height, width, 3), dtype=np.uint8)
    if audio is not None:
        frames, mel_bins = audio
        spec["audio"] = f.Tensor(shape=(num_views, None, frames, mel_bins), dtype=np.float32)
        spec["audio_mask"] = f.Tensor(shape=(num_views,), dtype=np.bool_)
    if frame_labels:
        spec["frame_labels"] = (f.Tensor(shape=(None, num_classes), dtype=np.float32) if multi_label
                                else f.Tensor(shape=(None,), dtype=np.int32))
    return f.FeaturesDict(spec)


def check_example(example: dict, where: str = "example") -> None:
    """Raise ValueError naming the key and the shapes when `example` breaks the layout."""
    for key in REQUIRED:
        if key not in example:
            raise ValueError(f"{where}: missing key {key!r}")
    views = np.shape(example["view_mask"])
    if len(views) != 1:
        raise ValueError(f"{where}: view_mask must be [V], got shape {views}")
    v = views[0]
    t = np.shape(example["human_score"])
    if len(t) != 2 or t[0] != v:
        raise ValueError(f"{where}: human_score must be [V={v}, T], got shape {t}")
    frames = t[1]
    for key, axis in TIME_AXIS.items():
        if key in example and key != "human_score":
            shape = np.shape(example[key])
            if len(shape) <= axis or shape[axis] != frames:
                raise ValueError(f"{where}: {key} has shape {shape}; expected T={frames} on axis {axis}")
    if "skeleton" in example and np.shape(example["skeleton"])[0] != v:
        raise ValueError(f"{where}: skeleton must be [V={v}, M, T, J, 3], got {np.shape(example['skeleton'])}")
    if "rgb" in example and np.shape(example["rgb"])[0] != v:
        raise ValueError(f"{where}: rgb must be [V={v}, T, H, W, 3], got {np.shape(example['rgb'])}")
    if "audio" in example:
        shape = np.shape(example["audio"])
        if len(shape) != 4 or shape[0] != v:
            raise ValueError(f"{where}: audio must be [V={v}, T, F, M], got {shape}")
        if np.shape(example.get("audio_mask", ())) != (v,):
            raise ValueError(f"{where}: audio needs audio_mask [V={v}] bool, got "
                             f"{np.shape(example['audio_mask']) if 'audio_mask' in example else 'none'}")
    if "label" not in example and "labels" not in example:
        raise ValueError(f"{where}: needs 'label' (single-label) or 'labels' (multi-hot)")
