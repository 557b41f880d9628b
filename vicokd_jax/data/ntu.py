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
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re
from collections.abc import Iterable, Mapping

import numpy as np

from vicokd_jax.data import schema

log = logging.getLogger(__name__)

NUM_JOINTS = 25
NUM_CAMERAS = 3
# One joint line: x y z depthX depthY colorX colorY orientationW orientationX orientationY orientationZ trackingState.
JOINT_VALUES = 12
# One body line: trackingId clippedEdges handLeftConfidence handLeftState handRightConfidence handRightState
# isRestricted leanX leanY trackingState.
BODY_VALUES = 10

SKELETON_DIR = "nturgb+d_skeletons"  # folder name inside the official skeleton zips
RGB_DIR = "nturgb+d_rgb"  # folder name inside the official RGB zips
SKELETON_SUFFIX = ".skeleton"
RGB_SUFFIX = "_rgb.avi"
DEFAULT_RGB_SIZE = (128, 128)  # (H, W)


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

# Camera files with missing or incomplete skeletons, as published by the dataset authors
# (github.com/shahroudy/NTURGB-D, Matlab/NTU_RGBD120_samples_with_missing_skeletons.txt, 535 names; the NTU-60
# list NTU_RGBD_samples_with_missing_skeletons.txt, 302 names, is exactly its subset with setup <= 17). The
# authors ask to leave these files out of skeleton-based training and testing: their view counts as missing.
_MISSING_SKELETON_NAMES = """
    S001C002P005R002A008 S001C002P006R001A008 S001C003P002R001A055 S001C003P002R002A012 S001C003P005R002A004
    S001C003P005R002A005 S001C003P005R002A006 S001C003P006R002A008 S002C002P011R002A030 S002C003P008R001A020
    S002C003P010R002A010 S002C003P011R002A007 S002C003P011R002A011 S002C003P014R002A007 S003C001P019R001A055
    S003C002P002R002A055 S003C002P018R002A055 S003C003P002R001A055 S003C003P016R001A055 S003C003P018R002A024
    S004C002P003R001A013 S004C002P008R001A009 S004C002P020R001A003 S004C002P020R001A004 S004C002P020R001A012
    S004C002P020R001A020 S004C002P020R001A021 S004C002P020R001A036 S005C002P004R001A001 S005C002P004R001A003
    S005C002P010R001A016 S005C002P010R001A017 S005C002P010R001A048 S005C002P010R001A049 S005C002P016R001A009
    S005C002P016R001A010 S005C002P018R001A003 S005C002P018R001A028 S005C002P018R001A029 S005C003P016R002A009
    S005C003P018R002A013 S005C003P021R002A057 S006C001P001R002A055 S006C002P007R001A005 S006C002P007R001A006
    S006C002P016R001A043 S006C002P016R001A051 S006C002P016R001A052 S006C002P022R001A012 S006C002P023R001A020
    S006C002P023R001A021 S006C002P023R001A022 S006C002P023R001A023 S006C002P024R001A018 S006C002P024R001A019
    S006C003P001R002A013 S006C003P007R002A009 S006C003P007R002A010 S006C003P007R002A025 S006C003P016R001A060
    S006C003P017R001A055 S006C003P017R002A013 S006C003P017R002A014 S006C003P017R002A015 S006C003P022R002A013
    S007C001P018R002A050 S007C001P025R002A051 S007C001P028R001A050 S007C001P028R001A051 S007C001P028R001A052
    S007C002P008R002A008 S007C002P015R002A055 S007C002P026R001A008 S007C002P026R001A009 S007C002P026R001A010
    S007C002P026R001A011 S007C002P026R001A012 S007C002P026R001A050 S007C002P027R001A011 S007C002P027R001A013
    S007C002P028R002A055 S007C003P007R001A002 S007C003P007R001A004 S007C003P019R001A060 S007C003P027R002A001
    S007C003P027R002A002 S007C003P027R002A003 S007C003P027R002A004 S007C003P027R002A005 S007C003P027R002A006
    S007C003P027R002A007 S007C003P027R002A008 S007C003P027R002A009 S007C003P027R002A010 S007C003P027R002A011
    S007C003P027R002A012 S007C003P027R002A013 S008C002P001R001A009 S008C002P001R001A010 S008C002P001R001A014
    S008C002P001R001A015 S008C002P001R001A016 S008C002P001R001A018 S008C002P001R001A019 S008C002P008R002A059
    S008C002P025R001A060 S008C002P029R001A004 S008C002P031R001A005 S008C002P031R001A006 S008C002P032R001A018
    S008C002P034R001A018 S008C002P034R001A019 S008C002P035R001A059 S008C002P035R002A002 S008C002P035R002A005
    S008C003P007R001A009 S008C003P007R001A016 S008C003P007R001A017 S008C003P007R001A018 S008C003P007R001A019
    S008C003P007R001A020 S008C003P007R001A021 S008C003P007R001A022 S008C003P007R001A023 S008C003P007R001A025
    S008C003P007R001A026 S008C003P007R001A028 S008C003P007R001A029 S008C003P007R002A003 S008C003P008R002A050
    S008C003P025R002A002 S008C003P025R002A011 S008C003P025R002A012 S008C003P025R002A016 S008C003P025R002A020
    S008C003P025R002A022 S008C003P025R002A023 S008C003P025R002A030 S008C003P025R002A031 S008C003P025R002A032
    S008C003P025R002A033 S008C003P025R002A049 S008C003P025R002A060 S008C003P031R001A001 S008C003P031R002A004
    S008C003P031R002A014 S008C003P031R002A015 S008C003P031R002A016 S008C003P031R002A017 S008C003P032R002A013
    S008C003P033R002A001 S008C003P033R002A011 S008C003P033R002A012 S008C003P034R002A001 S008C003P034R002A012
    S008C003P034R002A022 S008C003P034R002A023 S008C003P034R002A024 S008C003P034R002A044 S008C003P034R002A045
    S008C003P035R002A016 S008C003P035R002A017 S008C003P035R002A018 S008C003P035R002A019 S008C003P035R002A020
    S008C003P035R002A021 S009C002P007R001A001 S009C002P007R001A003 S009C002P007R001A014 S009C002P008R001A014
    S009C002P015R002A050 S009C002P016R001A002 S009C002P017R001A028 S009C002P017R001A029 S009C003P017R002A030
    S009C003P025R002A054 S010C001P007R002A020 S010C002P016R002A055 S010C002P017R001A005 S010C002P017R001A018
    S010C002P017R001A019 S010C002P019R001A001 S010C002P025R001A012 S010C003P007R002A043 S010C003P008R002A003
    S010C003P016R001A055 S010C003P017R002A055 S011C001P002R001A008 S011C001P018R002A050 S011C002P008R002A059
    S011C002P016R002A055 S011C002P017R001A020 S011C002P017R001A021 S011C002P018R002A055 S011C002P027R001A009
    S011C002P027R001A010 S011C002P027R001A037 S011C003P001R001A055 S011C003P002R001A055 S011C003P008R002A012
    S011C003P015R001A055 S011C003P016R001A055 S011C003P019R001A055 S011C003P025R001A055 S011C003P028R002A055
    S012C001P019R001A060 S012C001P019R002A060 S012C002P015R001A055 S012C002P017R002A012 S012C002P025R001A060
    S012C003P008R001A057 S012C003P015R001A055 S012C003P015R002A055 S012C003P016R001A055 S012C003P017R002A055
    S012C003P018R001A055 S012C003P018R001A057 S012C003P019R002A011 S012C003P019R002A012 S012C003P025R001A055
    S012C003P027R001A055 S012C003P027R002A009 S012C003P028R001A035 S012C003P028R002A055 S013C001P015R001A054
    S013C001P017R002A054 S013C001P018R001A016 S013C001P028R001A040 S013C002P015R001A054 S013C002P017R002A054
    S013C002P028R001A040 S013C003P008R002A059 S013C003P015R001A054 S013C003P017R002A054 S013C003P025R002A022
    S013C003P027R001A055 S013C003P028R001A040 S014C001P027R002A040 S014C002P015R001A003 S014C002P019R001A029
    S014C002P025R002A059 S014C002P027R002A040 S014C002P039R001A050 S014C003P007R002A059 S014C003P015R002A055
    S014C003P019R002A055 S014C003P025R001A048 S014C003P027R002A040 S015C001P008R002A040 S015C001P016R001A055
    S015C001P017R001A055 S015C001P017R002A055 S015C002P007R001A059 S015C002P008R001A003 S015C002P008R001A004
    S015C002P008R002A040 S015C002P015R001A002 S015C002P016R001A001 S015C002P016R002A055 S015C003P008R002A007
    S015C003P008R002A011 S015C003P008R002A012 S015C003P008R002A028 S015C003P008R002A040 S015C003P025R002A012
    S015C003P025R002A017 S015C003P025R002A020 S015C003P025R002A021 S015C003P025R002A030 S015C003P025R002A033
    S015C003P025R002A034 S015C003P025R002A036 S015C003P025R002A037 S015C003P025R002A044 S016C001P019R002A040
    S016C001P025R001A011 S016C001P025R001A012 S016C001P025R001A060 S016C001P040R001A055 S016C001P040R002A055
    S016C002P008R001A011 S016C002P019R002A040 S016C002P025R002A012 S016C003P008R001A011 S016C003P008R002A002
    S016C003P008R002A003 S016C003P008R002A004 S016C003P008R002A006 S016C003P008R002A009 S016C003P019R002A040
    S016C003P039R002A016 S017C001P016R002A031 S017C002P007R001A013 S017C002P008R001A009 S017C002P015R001A042
    S017C002P016R002A031 S017C002P016R002A055 S017C003P007R002A013 S017C003P008R001A059 S017C003P016R002A031
    S017C003P017R001A055 S017C003P020R001A059 S019C001P046R001A075 S019C002P042R001A094 S019C002P042R001A095
    S019C002P042R001A096 S019C002P042R001A097 S019C002P042R001A098 S019C002P042R001A099 S019C002P042R001A100
    S019C002P042R001A101 S019C002P042R001A102 S019C002P049R002A074 S019C002P049R002A079 S019C002P051R001A061
    S019C003P046R001A061 S019C003P046R002A061 S019C003P046R002A062 S020C002P041R001A063 S020C002P041R001A064
    S020C002P044R001A063 S020C002P044R001A064 S020C002P044R001A066 S020C002P044R001A084 S020C002P054R001A081
    S021C001P059R001A108 S021C002P055R001A065 S021C002P055R001A092 S021C002P055R001A093 S021C002P057R001A064
    S021C002P058R001A063 S021C002P058R001A064 S021C002P059R001A074 S021C002P059R001A075 S021C002P059R001A076
    S021C002P059R001A077 S021C002P059R001A078 S021C002P059R001A079 S021C003P057R002A078 S021C003P057R002A079
    S021C003P057R002A094 S022C002P061R001A113 S022C003P061R002A061 S022C003P061R002A062 S022C003P063R002A061
    S022C003P063R002A062 S022C003P063R002A063 S022C003P063R002A064 S022C003P063R002A078 S022C003P064R002A061
    S022C003P064R002A062 S022C003P065R002A061 S022C003P065R002A062 S022C003P065R002A119 S022C003P067R002A064
    S023C002P055R001A114 S023C002P055R002A092 S023C002P059R001A075 S023C002P063R001A075 S023C003P055R002A093
    S023C003P055R002A094 S023C003P061R002A061 S023C003P064R001A092 S024C001P063R001A109 S024C002P062R002A074
    S024C002P067R001A100 S024C002P067R001A101 S024C002P067R001A102 S024C002P067R001A103 S024C003P062R002A074
    S024C003P063R002A061 S024C003P063R002A062 S025C001P055R002A119 S025C003P056R002A119 S025C003P059R002A115
    S026C002P044R001A061 S026C002P044R001A062 S026C002P070R001A092 S026C003P069R002A075 S026C003P074R002A061
    S026C003P074R002A062 S026C003P075R001A117 S026C003P075R001A118 S027C001P082R001A063 S027C002P044R002A092
    S027C002P079R001A061 S027C002P079R001A062 S027C002P079R001A063 S027C002P079R001A064 S027C002P082R001A092
    S027C002P084R001A061 S027C002P084R001A062 S027C002P086R001A061 S027C003P041R002A087 S027C003P080R002A061
    S027C003P082R002A061 S027C003P082R002A062 S027C003P086R002A061 S027C003P086R002A062 S028C001P087R001A061
    S028C002P041R001A091 S028C002P087R001A061 S028C003P042R002A064 S028C003P046R002A063 S028C003P046R002A066
    S028C003P046R002A067 S028C003P046R002A068 S028C003P046R002A069 S028C003P046R002A070 S028C003P046R002A071
    S028C003P046R002A072 S028C003P046R002A074 S028C003P046R002A075 S028C003P046R002A077 S028C003P046R002A081
    S028C003P046R002A082 S028C003P046R002A083 S028C003P046R002A084 S028C003P048R002A061 S028C003P048R002A062
    S028C003P048R002A073 S028C003P073R002A073 S028C003P087R001A061 S028C003P087R002A061 S028C003P087R002A062
    S029C001P043R002A092 S029C001P044R002A092 S029C001P048R001A073 S029C001P089R001A063 S029C002P041R001A074
    S029C002P041R001A084 S029C002P044R001A091 S029C002P048R001A075 S029C002P048R001A081 S029C002P074R001A081
    S029C002P074R001A095 S029C002P074R001A096 S029C002P080R001A091 S029C002P088R001A066 S029C002P089R001A065
    S029C002P090R001A067 S029C003P008R002A065 S029C003P008R002A067 S029C003P041R001A089 S029C003P043R001A080
    S029C003P043R001A092 S029C003P043R001A105 S029C003P043R002A085 S029C003P043R002A086 S029C003P044R002A106
    S029C003P048R001A065 S029C003P048R002A073 S029C003P048R002A074 S029C003P048R002A075 S029C003P048R002A076
    S029C003P048R002A092 S029C003P048R002A094 S029C003P051R002A073 S029C003P051R002A074 S029C003P051R002A075
    S029C003P051R002A076 S029C003P051R002A077 S029C003P051R002A078 S029C003P051R002A079 S029C003P051R002A080
    S029C003P051R002A081 S029C003P051R002A082 S029C003P051R002A083 S029C003P051R002A084 S029C003P051R002A085
    S029C003P051R002A086 S029C003P051R002A110 S029C003P067R001A098 S029C003P074R002A110 S029C003P080R002A066
    S029C003P088R002A078 S029C003P089R001A075 S029C003P089R002A061 S029C003P089R002A062 S029C003P089R002A063
    S029C003P090R002A092 S029C003P090R002A095 S030C002P091R002A091 S030C002P091R002A092 S030C002P091R002A093
    S030C002P091R002A094 S030C002P091R002A095 S030C002P091R002A096 S030C002P091R002A097 S030C002P091R002A098
    S030C002P091R002A099 S030C002P091R002A100 S030C002P091R002A101 S030C002P091R002A102 S030C002P091R002A103
    S030C002P091R002A104 S030C002P091R002A105 S030C003P044R002A065 S030C003P044R002A081 S030C003P044R002A084
    S031C002P042R001A111 S031C002P051R001A061 S031C002P051R001A062 S031C002P067R001A067 S031C002P067R001A068
    S031C002P067R001A069 S031C002P067R001A070 S031C002P067R001A071 S031C002P067R001A072 S031C002P082R001A075
    S031C002P082R002A117 S031C002P097R001A061 S031C002P097R001A062 S031C003P043R002A074 S031C003P043R002A075
    S031C003P044R002A094 S031C003P082R002A067 S031C003P082R002A068 S031C003P082R002A069 S031C003P082R002A070
    S031C003P082R002A071 S031C003P082R002A072 S031C003P082R002A073 S031C003P082R002A075 S031C003P082R002A076
    S031C003P082R002A077 S031C003P082R002A084 S031C003P082R002A085 S031C003P082R002A086 S032C002P067R001A092
    S032C003P067R002A066 S032C003P067R002A067 S032C003P067R002A075 S032C003P067R002A076 S032C003P067R002A077
"""
MISSING_SKELETONS_NTU120 = frozenset(_MISSING_SKELETON_NAMES.split())


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

_NAME_RE = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


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
    match = _NAME_RE.match(base)
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


# ----------------------------------------------------------------------------------------------------------------
# The .skeleton text format
# ----------------------------------------------------------------------------------------------------------------

class EmptySkeletonError(ValueError):
    """A `.skeleton` file that declares 0 frames (a recording without skeleton data)."""


class _Lines:
    """Cursor over the lines of one file; its errors name the file and the 1-based line number."""

    def __init__(self, path: str, lines: list[str]):
        self.path, self.lines, self.pos = path, lines, 0

    def error(self, lineno: int, message: str, cls=ValueError) -> ValueError:
        if lineno == len(self.lines):
            message += " (this is the last line of the file: is it truncated?)"
        return cls(f"{self.path}, line {lineno}: {message}")

    def eof_error(self, what: str) -> ValueError:
        return ValueError(f"{self.path}, line {len(self.lines) + 1}: the file ends after {len(self.lines)} lines, "
                          f"expected {what}: the file is truncated")

    def next(self, what: str) -> tuple[int, str]:
        """(line number, text) of the next line; raises the truncation error when there is none."""
        if self.pos >= len(self.lines):
            raise self.eof_error(what)
        self.pos += 1
        return self.pos, self.lines[self.pos - 1]

    def read_int(self, what: str) -> int:
        lineno, text = self.next(what)
        try:
            value = int(text.strip())
        except ValueError:
            raise self.error(lineno, f"expected {what} (a non-negative integer), found {text.strip()!r}") from None
        if value < 0:
            raise self.error(lineno, f"expected {what} (a non-negative integer), found {value}")
        return value


def _parse_numbers(reader: _Lines, start: int, count: int, width: int, what) -> np.ndarray:
    """Parse lines [start, start+count) (0-based) of `width` numbers each -> float64 [count, width].

    `what(k)` describes line k in errors. Fast path: one numpy conversion of the whole block; on failure, line
    by line to name the bad line.
    """
    block = reader.lines[start:start + count]
    try:
        values = np.array(" ".join(block).split(), dtype=np.float64)
        if values.size == count * width and len(block) == count:
            return values.reshape(count, width)
    except ValueError:
        pass
    for k, text in enumerate(block):
        lineno = start + k + 1
        fields = text.split()
        if len(fields) != width:
            raise reader.error(lineno, f"expected {width} values for {what(k)}, found {len(fields)}: {text.strip()!r}")
        for field in fields:
            try:
                np.float64(field)
            except ValueError:
                raise reader.error(lineno, f"expected a number in {what(k)}, found {field!r}") from None
    if len(block) < count:
        raise reader.eof_error(what(len(block)))
    raise reader.error(start + 1, f"cannot parse {count} lines of {width} numbers from here ({what(0)} onwards)")


def _read_body(reader: _Lines, frame: int, body: int, num_frames: int) -> tuple[int, np.ndarray]:
    """Read one body record -> (tracking id, joint values float64 [25, 12])."""
    where = f"body {body + 1} of frame {frame + 1}/{num_frames}"
    lineno, text = reader.next(f"the body line of {where}")
    fields = text.split()
    if len(fields) != BODY_VALUES:
        raise reader.error(lineno, f"expected {BODY_VALUES} values in the body line of {where} "
                                   f"(trackingId, clippedEdges, ...), found {len(fields)}: {text.strip()!r}")
    try:
        tracking_id = int(fields[0])
        np.array(fields[1:], dtype=np.float64)
    except ValueError:
        raise reader.error(lineno, f"expected an integer tracking id and 9 numbers in the body line of {where}, "
                                   f"found {text.strip()!r}") from None
    joint_line = reader.pos + 1
    num_joints = reader.read_int(f"the joint count of {where}")
    if num_joints != NUM_JOINTS:
        raise reader.error(joint_line, f"expected {NUM_JOINTS} joints for {where} (Kinect v2), found {num_joints}")
    start = reader.pos
    values = _parse_numbers(reader, start, NUM_JOINTS, JOINT_VALUES, lambda k: f"joint {k + 1} of {where}")
    reader.pos += NUM_JOINTS
    bad = ~np.isfinite(values[:, :3]).all(axis=1)
    if bad.any():
        k = int(np.argmax(bad))
        raise reader.error(start + k + 1, f"joint {k + 1} of {where} has x y z = {values[k, :3].tolist()}; "
                                          "expected finite numbers")
    return tracking_id, values


def read_skeleton(path: str | os.PathLike) -> dict:
    """Read one raw NTU RGB+D `.skeleton` file, tracking bodies by their Kinect tracking id across frames.

    Returns a dict:
        joints      [M, T, 25, 3] float32  camera-space x, y, z (metres); 0 in frames where a body is absent
        color_xy    [M, T, 25, 2] float32  joint positions in the 1920x1080 RGB frame (colorX, colorY)
        present     [M, T] bool            body m is listed in frame t
        num_bodies  [T] int32              number of bodies listed in each frame (may be 0)
        body_ids    list[int]              Kinect tracking id of each body, in order of first appearance
        num_frames  int                    T, as declared by the file's first line
        path        str

    M is the number of distinct bodies (0 when no frame lists one). A tracking id listed twice in one frame
    (not produced by the Kinect SDK) becomes two bodies. Raises ValueError naming the file and the line for a
    truncated file, a non-numeric value, a wrong value or joint count, non-finite coordinates or trailing data,
    and EmptySkeletonError (a ValueError) for a file that declares 0 frames.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8", errors="replace").splitlines()  # CRLF or LF
    reader = _Lines(path, lines)
    num_frames = reader.read_int("the frame count")
    if num_frames == 0:
        raise reader.error(1, "the frame count is 0; expected at least 1 frame (no skeleton data recorded)",
                           EmptySkeletonError)
    keys: dict[tuple[int, int], int] = {}  # (tracking id, repeat index within the frame) -> body index
    records: list[tuple[int, int, np.ndarray]] = []  # (body index, frame, values [25, 12])
    num_bodies = np.zeros(num_frames, np.int32)
    for t in range(num_frames):
        num_bodies[t] = reader.read_int(f"the body count of frame {t + 1}/{num_frames}")
        seen: dict[int, int] = {}
        for b in range(num_bodies[t]):
            tracking_id, values = _read_body(reader, t, b, num_frames)
            key = (tracking_id, seen.get(tracking_id, 0))
            seen[tracking_id] = key[1] + 1
            records.append((keys.setdefault(key, len(keys)), t, values))
    for lineno in range(reader.pos + 1, len(lines) + 1):
        if lines[lineno - 1].strip():
            raise reader.error(lineno, f"expected the end of the file after frame {num_frames}/{num_frames}, "
                                       f"found more data: {lines[lineno - 1].strip()[:60]!r}")
    return _assemble_bodies(path, keys, records, num_bodies)


def _assemble_bodies(path: str, keys: dict, records: list, num_bodies: np.ndarray) -> dict:
    num_frames, m = len(num_bodies), len(keys)
    joints = np.zeros((m, num_frames, NUM_JOINTS, 3), np.float32)
    color = np.zeros((m, num_frames, NUM_JOINTS, 2), np.float32)
    present = np.zeros((m, num_frames), bool)
    for body, t, values in records:
        joints[body, t] = values[:, 0:3]  # float64 text value -> float32, as the reference tools do
        color[body, t] = values[:, 5:7]
        present[body, t] = True
    return {"joints": joints, "color_xy": color, "present": present, "num_bodies": num_bodies,
            "body_ids": [tracking_id for tracking_id, _ in keys], "num_frames": num_frames, "path": path}


# ----------------------------------------------------------------------------------------------------------------
# Body selection
# ----------------------------------------------------------------------------------------------------------------

def body_activity(joints: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Motion of each body: sum over joints and x/y/z of the temporal variance over the frames it is present.

    joints [M, T, J, 3], present [M, T] bool (default: any non-zero coordinate) -> [M] float64.
    A body present in fewer than 2 frames has activity 0.
    """
    joints = np.asarray(joints, np.float64)
    if present is None:
        present = np.any(joints != 0, axis=(2, 3))
    activity = np.zeros(joints.shape[0])
    for m in range(joints.shape[0]):
        frames = joints[m, present[m]]
        if len(frames) > 1:
            activity[m] = frames.var(axis=0).sum()
    return activity


def assign_bodies(joints: np.ndarray, present: np.ndarray | None = None, max_bodies: int = 2) -> list[list[int]]:
    """Assign tracked bodies to at most `max_bodies` person slots; returns the body indices of each slot.

    Bodies are taken by decreasing `body_activity` (ties: first appearance). Each goes to the first slot whose
    frames it does not overlap (so a person whose tracking id changed mid-clip is stitched back into one slot),
    else to a new slot while fewer than `max_bodies` exist, else it is dropped (the least active extra people
    or spurious detections). Slot 0 therefore holds the most active body.

    This is the motion ranking of CTR-GCN's / pyskl's NTU preprocessing (by tracking id, most moving first),
    without their extra noise filters (minimum track length, body spread). When every frame lists the same
    bodies in the same order (the usual case) the result equals st-gcn's per-frame `read_xyz` up to the order
    of the slots.
    """
    if present is None:
        present = np.any(np.asarray(joints) != 0, axis=(2, 3))
    activity = body_activity(joints, present)
    order = sorted(range(len(activity)), key=lambda m: (-activity[m], m))
    slots: list[list[int]] = []
    occupied: list[np.ndarray] = []
    for m in order:
        if not present[m].any():
            continue
        for slot, frames in zip(slots, occupied):
            if not np.any(frames & present[m]):
                slot.append(m)
                frames |= present[m]
                break
        else:
            if len(slots) < max_bodies:
                slots.append([m])
                occupied.append(present[m].copy())
    return slots


def select_bodies(joints: np.ndarray, max_bodies: int = 2, present: np.ndarray | None = None) -> np.ndarray:
    """Keep the `max_bodies` most active people (rule of `assign_bodies`): [M, T, J, 3] -> [max_bodies, T, J, 3].

    Slots with no body are zero. `present` [M, T] bool defaults to "any non-zero coordinate".
    """
    joints = np.asarray(joints, np.float32)
    if present is None:
        present = np.any(joints != 0, axis=(2, 3))
    out = np.zeros((max_bodies,) + joints.shape[1:], np.float32)
    for slot, bodies in enumerate(assign_bodies(joints, present, max_bodies)):
        for m in bodies:
            out[slot, present[m]] = joints[m, present[m]]
    return out


# ----------------------------------------------------------------------------------------------------------------
# RGB video
# ----------------------------------------------------------------------------------------------------------------

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
                if not entry.name.endswith(suffix) or not _NAME_RE.fullmatch(entry.name[:-len(suffix)]):
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
