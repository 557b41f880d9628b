"""NTU RGB+D 60 / 120: raw `.skeleton` parser, body selection, multi-view grouping, benchmark splits, RGB decoding.

Datasets (Shahroudy et al., CVPR 2016; Liu et al., TPAMI 2019). Every recording is a *camera file* named
`SsssCcccPpppRrrrAaaa` (setup, camera 1-3, performer, replication, action). The three Kinect v2 cameras of one
(setup, performer, replication, action) film the same performance from -45, 0 and +45 degrees; here they form
one multi-view sample with id `SsssPpppRrrrAaaa` (camera dropped) and V = 3 views, camera c -> view c - 1.

    NTU-60:  actions 1-60,  setups 1-17, 56,880 camera files (302 with missing or incomplete skeletons)
    NTU-120: actions 1-120, setups 1-32, 114,480 camera files (535 with missing or incomplete skeletons)

A multi-view example (layout of `vicokd_jax.data.schema`):

    id           "S001P001R001A001"
    label        action - 1 (0-based)
    skeleton     [3, M=2, T, 25, 3] float32   camera-space x, y, z in metres; 0 where a body / view is absent
    human_score  [3, T] float32               1 where the camera's frame lists at least one body, else 0
    view_mask    [3] bool                     the camera file exists, has skeletons and belongs to the split
    rgb          [3, T, H, W, 3] uint8        optional; each camera's video resized to (H, W)

The cameras of one sample record slightly different numbers of frames: T is the longest kept view, shorter
views are zero-padded at the end (their `human_score` is 0 there). Everything is pure numpy; the TFDS
builder lives in `vicokd_jax.data.builders.ntu_rgbd`.

This module finds the files on disk and builds the multi-view samples; it re-exports (`__all__`) the names,
releases, benchmarks and published missing list of `ntu_names`, the `.skeleton` parser and body selection of
`ntu_skeleton`, and the RGB decoding of `ntu_rgb`, so every name is importable from `vicokd_jax.data.ntu`.
"""
from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Iterable, Mapping

import numpy as np

from vicokd_jax.data import schema
from vicokd_jax.data.ntu_names import (
    ALL_CAMERAS, BENCHMARKS, MISSING_SKELETONS_FILE, MISSING_SKELETONS_NTU120, NAME_PATTERN, NTU120_TRAIN_SUBJECTS,
    NTU60_TRAIN_SUBJECTS, NUM_CAMERAS, RGB_SUFFIX, SKELETON_SUFFIX, SPLITS, VARIANTS, XVIEW_TEST_CAMERAS,
    XVIEW_TRAIN_CAMERAS, Benchmark, NtuName, Variant, get_benchmark, group_views, parse_name, published_missing)
from vicokd_jax.data.ntu_rgb import DEFAULT_RGB_SIZE, match_length, read_rgb
from vicokd_jax.data.ntu_skeleton import (
    BODY_VALUES, JOINT_VALUES, NUM_JOINTS, EmptySkeletonError, assign_bodies, body_activity, read_skeleton,
    select_bodies)

__all__ = [
    # names, releases, benchmarks (ntu_names)
    "ALL_CAMERAS", "BENCHMARKS", "MISSING_SKELETONS_FILE", "MISSING_SKELETONS_NTU120", "NAME_PATTERN",
    "NTU120_TRAIN_SUBJECTS", "NTU60_TRAIN_SUBJECTS", "NUM_CAMERAS", "RGB_SUFFIX", "SKELETON_SUFFIX", "SPLITS",
    "VARIANTS", "XVIEW_TEST_CAMERAS", "XVIEW_TRAIN_CAMERAS", "Benchmark", "NtuName", "Variant", "get_benchmark",
    "group_views", "parse_name", "published_missing",
    # the .skeleton format and body selection (ntu_skeleton)
    "BODY_VALUES", "JOINT_VALUES", "NUM_JOINTS", "EmptySkeletonError", "assign_bodies", "body_activity",
    "read_skeleton", "select_bodies",
    # RGB video (ntu_rgb)
    "DEFAULT_RGB_SIZE", "match_length", "read_rgb",
    # files on disk and multi-view samples (here)
    "RGB_DIR", "SKELETON_DIR", "find_files", "find_skeletons", "find_videos", "load_sample", "read_view",
]

log = logging.getLogger(__name__)

SKELETON_DIR = "nturgb+d_skeletons"  # folder name inside the official skeleton zips
RGB_DIR = "nturgb+d_rgb"  # folder name inside the official RGB zips


# ----------------------------------------------------------------------------------------------------------------
# Files on disk and multi-view samples
# ----------------------------------------------------------------------------------------------------------------

def find_files(root: str | os.PathLike, suffix: str, subdir: str) -> dict[NtuName, pathlib.Path]:
    """Camera files `*{suffix}` directly in `root` or in `root/subdir`: {name: path}.

    Files whose names do not parse are ignored; a name present in both places raises ValueError.
    """
    found: dict[NtuName, pathlib.Path] = {}
    for folder in (pathlib.Path(root), pathlib.Path(root) / subdir):
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                if not entry.name.endswith(suffix) or not NAME_PATTERN.fullmatch(entry.name[:-len(suffix)]):
                    continue
                name = parse_name(entry.name)
                if name in found:
                    raise ValueError(f"{name} is present twice: {found[name]} and {entry.path}; keep one")
                found[name] = pathlib.Path(entry.path)
    return found


def find_skeletons(manual_dir: str | os.PathLike) -> dict[NtuName, pathlib.Path]:
    """`.skeleton` files in `manual_dir` or `manual_dir/nturgb+d_skeletons`."""
    return find_files(manual_dir, SKELETON_SUFFIX, SKELETON_DIR)


def find_videos(manual_dir: str | os.PathLike) -> dict[NtuName, pathlib.Path]:
    """`_rgb.avi` files in `manual_dir` or `manual_dir/nturgb+d_rgb`."""
    return find_files(manual_dir, RGB_SUFFIX, RGB_DIR)


def read_view(path: str | os.PathLike, max_bodies: int = 2) -> tuple[np.ndarray, np.ndarray] | None:
    """One camera file -> (skeleton [max_bodies, T, 25, 3] float32, human_score [T] float32), or None when
    the file has no skeleton at all (0 frames, or 0 bodies in every frame)."""
    try:
        parsed = read_skeleton(path)
    except EmptySkeletonError:
        log.info("%s: declares 0 frames; view treated as missing", path)
        return None
    if not parsed["num_bodies"].any():
        log.info("%s: no body in any frame; view treated as missing", path)
        return None
    skeleton = select_bodies(parsed["joints"], max_bodies, parsed["present"])
    return skeleton, (parsed["num_bodies"] > 0).astype(np.float32)


def load_sample(skeleton_files: Mapping[int, str | os.PathLike], *, cameras: Iterable[int] = ALL_CAMERAS,
                rgb_files: Mapping[int, str | os.PathLike] | None = None,
                rgb_size: tuple[int, int] | None = DEFAULT_RGB_SIZE, max_bodies: int = 2,
                exclude: Iterable[str] = ()) -> dict | None:
    """Build one multi-view example (`vicokd_jax.data.schema` layout) from the camera files of one sample.

    skeleton_files: {camera (1-3): path of its `.skeleton`} for the camera files that exist.
    cameras: the cameras the split keeps (see `Benchmark.cameras`); the others are masked out and zeroed.
    rgb_files: {camera: path of its `_rgb.avi`} to add `rgb` [3, T, H, W, 3]; every kept view needs one.
    exclude: camera-file names to treat as missing (e.g. `published_missing(...)`).
    A view is present when its camera is kept, its file exists, is not excluded and lists a body in some frame.
    Returns None when no view is present. T = the longest present view; shorter views are zero-padded.
    """
    if not skeleton_files:
        raise ValueError("load_sample needs at least one skeleton file")
    names = {camera: parse_name(path) for camera, path in skeleton_files.items()}
    ids = {name.sample_id for name in names.values()}
    if len(ids) != 1 or any(name.camera != camera for camera, name in names.items()):
        raise ValueError(f"skeleton files do not form one sample (camera -> file): {dict(skeleton_files)}")
    first = next(iter(names.values()))
    excluded = set(exclude)
    views: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for camera in sorted(set(cameras) & set(skeleton_files)):
        if str(names[camera]) in excluded:
            continue
        view = read_view(skeleton_files[camera], max_bodies)
        if view is not None:
            views[camera] = view
    if not views:
        return None
    videos = None if rgb_files is None else _read_videos(views, names, rgb_files, rgb_size)
    example = _assemble_sample(first, views, videos, max_bodies)
    schema.check_example(example, where=first.sample_id)
    return example


def _read_videos(views: dict, names: dict, rgb_files: Mapping, size) -> dict[int, np.ndarray]:
    videos = {}
    for camera, (skeleton, _) in views.items():
        if camera not in rgb_files:
            raise FileNotFoundError(f"{names[camera]}: the skeleton file has no RGB video "
                                    f"({names[camera]}{RGB_SUFFIX} not found)")
        videos[camera] = read_rgb(rgb_files[camera], size, num_frames=skeleton.shape[1])
    return videos


def _assemble_sample(name: NtuName, views: dict, videos: dict | None, max_bodies: int) -> dict:
    """Stack the present views into the [V=3, ...] arrays, zero-padded to the longest view."""
    frames = max(skeleton.shape[1] for skeleton, _ in views.values())
    skeleton = np.zeros((NUM_CAMERAS, max_bodies, frames, NUM_JOINTS, 3), np.float32)
    score = np.zeros((NUM_CAMERAS, frames), np.float32)
    mask = np.zeros((NUM_CAMERAS,), bool)
    for camera, (joints, present) in views.items():
        v, t = camera - 1, joints.shape[1]
        skeleton[v, :, :t], score[v, :t], mask[v] = joints, present, True
    example = {"id": name.sample_id, "label": np.int64(name.label), "skeleton": skeleton,
               "human_score": score, "view_mask": mask}
    if videos is not None:
        shape = next(iter(videos.values())).shape[1:]
        rgb = np.zeros((NUM_CAMERAS, frames) + shape, np.uint8)
        for camera, video in videos.items():
            rgb[camera - 1, :len(video)] = video
        example["rgb"] = rgb
    return example
