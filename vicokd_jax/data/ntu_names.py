"""NTU RGB+D camera-file names, releases (NTU-60 / NTU-120), benchmark protocols and the published missing list.

A camera file is named `SsssCcccPpppRrrrAaaa` (setup, camera 1-3, performer, replication, action); the cameras
of one (setup, performer, replication, action) form one multi-view sample `SsssPpppRrrrAaaa`. Re-exported by
`vicokd_jax.data.ntu`.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from importlib import resources

NUM_CAMERAS = 3
SKELETON_SUFFIX = ".skeleton"
RGB_SUFFIX = "_rgb.avi"
MISSING_SKELETONS_FILE = "ntu_missing_skeletons.txt"  # data file of the package `vicokd_jax.data`


# ----------------------------------------------------------------------------------------------------------------
# Dataset constants: variants, benchmark protocols, published lists
# ----------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Variant:
    """One release: its classes (actions 1..num_classes) and setups (1..num_setups)."""

    name: str
    num_classes: int
    num_setups: int


VARIANTS = {"ntu60": Variant("ntu60", 60, 17), "ntu120": Variant("ntu120", 120, 32)}

# Cross-subject training performers (Shahroudy et al. 2016, Sec. 4.1; Liu et al. 2019, Sec. 4.1, 53 IDs).
# NTU-120 extends the NTU-60 list, so NTU-60 performers keep their side.
NTU60_TRAIN_SUBJECTS = frozenset({1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38})
NTU120_TRAIN_SUBJECTS = NTU60_TRAIN_SUBJECTS | frozenset({
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93,
    94, 95, 97, 98, 100, 103})
# Cross-view (NTU-60): cameras 2 and 3 train, camera 1 tests.
XVIEW_TRAIN_CAMERAS = (2, 3)
XVIEW_TEST_CAMERAS = (1,)
ALL_CAMERAS = (1, 2, 3)
SPLITS = ("train", "test")


def _read_name_list(text: str) -> frozenset[str]:
    """The names of a list file: one per line; blank lines and lines starting with '#' are skipped."""
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


# Camera files with missing or incomplete skeletons, as published by the dataset authors (the data file's first
# line says where from; 535 names for NTU-120; the NTU-60 list, 302 names, is exactly its subset with
# setup <= 17). The authors ask to leave these files out of skeleton-based training and testing: their view
# counts as missing.
MISSING_SKELETONS_NTU120 = _read_name_list(
    resources.files("vicokd_jax.data").joinpath(MISSING_SKELETONS_FILE).read_text(encoding="utf-8"))


def published_missing(variant: str) -> frozenset[str]:
    """Camera-file names (`SsssCcccPpppRrrrAaaa`) with missing skeletons in `variant` ("ntu60" | "ntu120")."""
    num_setups = _variant(variant).num_setups
    return frozenset(n for n in MISSING_SKELETONS_NTU120 if int(n[1:4]) <= num_setups)


def _variant(variant: str) -> Variant:
    if variant not in VARIANTS:
        raise ValueError(f"unknown NTU variant {variant!r}; expected one of {sorted(VARIANTS)}")
    return VARIANTS[variant]


# ----------------------------------------------------------------------------------------------------------------
# Names and splits
# ----------------------------------------------------------------------------------------------------------------

NAME_PATTERN = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


@dataclasses.dataclass(frozen=True, order=True)
class NtuName:
    """The fields of a camera-file name `SsssCcccPpppRrrrAaaa` (all 1-based, as in the name)."""

    setup: int
    camera: int
    performer: int
    replication: int
    action: int

    def __str__(self) -> str:
        return (f"S{self.setup:03d}C{self.camera:03d}P{self.performer:03d}"
                f"R{self.replication:03d}A{self.action:03d}")

    @property
    def sample_id(self) -> str:
        """Multi-view sample id: the name without its camera, `SsssPpppRrrrAaaa`."""
        return f"S{self.setup:03d}P{self.performer:03d}R{self.replication:03d}A{self.action:03d}"

    @property
    def label(self) -> int:
        """0-based class index (action - 1)."""
        return self.action - 1

    @property
    def view(self) -> int:
        """0-based view index (camera - 1)."""
        return self.camera - 1

    def with_camera(self, camera: int) -> NtuName:
        return dataclasses.replace(self, camera=camera)


def parse_name(name: str | os.PathLike) -> NtuName:
    """Parse `SsssCcccPpppRrrrAaaa` from a name or path (suffixes such as `.skeleton`, `_rgb.avi` are allowed)."""
    base = os.path.basename(os.fspath(name))
    match = NAME_PATTERN.match(base)
    if match is None or base[match.end():] not in ("", SKELETON_SUFFIX, RGB_SUFFIX, "_rgb"):
        raise ValueError(f"{name!r} is not an NTU RGB+D name: expected SsssCcccPpppRrrrAaaa "
                         f"(e.g. S001C002P003R002A013), optionally followed by {SKELETON_SUFFIX} or {RGB_SUFFIX}")
    parsed = NtuName(*(int(g) for g in match.groups()))
    if not 1 <= parsed.camera <= NUM_CAMERAS:
        raise ValueError(f"{name!r}: camera {parsed.camera} is out of range; NTU RGB+D has cameras 1-3")
    if min(parsed.setup, parsed.performer, parsed.replication, parsed.action) < 1:
        raise ValueError(f"{name!r}: setup, performer, replication and action numbers start at 1")
    return parsed


def group_views(names: Iterable[NtuName]) -> dict[str, dict[int, NtuName]]:
    """Group camera files into multi-view samples: {sample_id: {camera: name}}, both sorted."""
    groups: dict[str, dict[int, NtuName]] = {}
    for name in sorted(names):
        groups.setdefault(name.sample_id, {})[name.camera] = name
    return groups


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A standard evaluation protocol.

    xsub  (NTU-60, NTU-120): performers in the published training list train, the others test; all 3 views.
    xview (NTU-60): every sample is in both splits, with only cameras 2, 3 kept in train and camera 1 in test
          (the other views are masked out and zeroed), so no view is seen both in training and testing.
    xset  (NTU-120): even setup IDs train, odd setup IDs test; all 3 views.
    """

    name: str
    variant: str
    protocol: str

    @property
    def num_classes(self) -> int:
        return _variant(self.variant).num_classes

    @property
    def num_setups(self) -> int:
        return _variant(self.variant).num_setups

    def includes(self, name: NtuName) -> bool:
        """Whether this camera file belongs to the release (setup and action in range)."""
        return name.setup <= self.num_setups and name.action <= self.num_classes

    def cameras(self, split: str, name: NtuName) -> tuple[int, ...]:
        """Cameras of `name`'s multi-view sample that `split` keeps; () when the sample is not in the split."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if self.protocol == "xview":
            return XVIEW_TRAIN_CAMERAS if split == "train" else XVIEW_TEST_CAMERAS
        if self.protocol == "xsub":
            subjects = NTU60_TRAIN_SUBJECTS if self.variant == "ntu60" else NTU120_TRAIN_SUBJECTS
            is_train = name.performer in subjects
        else:  # xset
            is_train = name.setup % 2 == 0
        return ALL_CAMERAS if is_train == (split == "train") else ()


BENCHMARKS = {
    "ntu60_xsub": Benchmark("ntu60_xsub", "ntu60", "xsub"),
    "ntu60_xview": Benchmark("ntu60_xview", "ntu60", "xview"),
    "ntu120_xsub": Benchmark("ntu120_xsub", "ntu120", "xsub"),
    "ntu120_xset": Benchmark("ntu120_xset", "ntu120", "xset"),
}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown NTU benchmark {name!r}; expected one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]
