"""TFDS builder for pyskl / mmaction2 skeleton annotation pickles (ArrayRecord; builds and reads without TensorFlow).

pyskl's NTU files, from a folder (`manual_dir`) holding them under pyskl's or mmaction2's names:

    python -m tools.prepare_data pyskl --config ntu60_xsub_3d --manual_dir /data/pyskl --data_dir /data/tfds

Configs `{variant}_{protocol}_{3d|2d}` (`vicokd_jax.data.pyskl.STANDARD_CONFIGS`): ntu60_xsub, ntu60_xview,
ntu120_xsub, ntu120_xset; 3d reads `{variant}_3danno.pkl` (mmaction2: `{variant}_3d.pkl`), 25 joints (x, y, z);
2d reads `{variant}_hrnet.pkl` (mmaction2: `{variant}_2d.pkl`), 17 COCO keypoints (x, y, score) normalised to
[-1, 1] like pyskl's PreNormalize2D. TFDS split "train" is the pickle's `{protocol}_train`, "test" its
`{protocol}_val`.

Any other pickle in the format: a config of your own, built from Python (`pkl_path` absolute, or relative to
manual_dir):

    from vicokd_jax.data.builders.pyskl import Pyskl, PysklConfig
    config = PysklConfig(name="gym_2d", pkl_path="/data/gym_hrnet.pkl", splits={"train": "train", "test": "val"},
                         layout="coco", num_classes=99, grouping="none", normalize_2d=True)
    Pyskl(config=config, data_dir="/data/tfds", file_format="array_record").download_and_prepare()
    # then read it as config.data.name="pyskl", data.tfds_config="gym_2d", data.data_dir="/data/tfds"

Examples are `vicokd_jax.data.pyskl.PysklSource`'s (the layout of `schema.py`): `as_data_source()[split][i]`
equals `PysklSource(pkl, pickle_split, ...)[i]`. The copy records its config (layout, views, persons, classes,
splits) in its TFDS metadata under "pyskl", which `vicokd_jax.data.datasets.prepared_pyskl_fields` reads for a
config of your own.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from collections.abc import Mapping

import tensorflow_datasets as tfds

from vicokd_jax.data import ntu, pyskl, schema

_SPLIT_NAME = re.compile(r"\w+")  # TFDS split names

_INSTRUCTIONS = """
pyskl's skeleton annotations cannot be downloaded by TFDS here: fetch them from pyskl's data page
(https://github.com/kennymckormick/pyskl/blob/main/tools/data/README.md) or mmaction2's
(https://mmaction2.readthedocs.io/en/latest/dataset_zoo/skeleton.html), and put into `manual_dir`:

  manual_dir/ntu60_3danno.pkl    (mmaction2: ntu60_3d.pkl)    ntu60_xsub_3d, ntu60_xview_3d
  manual_dir/ntu60_hrnet.pkl     (mmaction2: ntu60_2d.pkl)    ntu60_xsub_2d, ntu60_xview_2d
  manual_dir/ntu120_3danno.pkl   (mmaction2: ntu120_3d.pkl)   ntu120_xsub_3d, ntu120_xset_3d
  manual_dir/ntu120_hrnet.pkl    (mmaction2: ntu120_2d.pkl)   ntu120_xsub_2d, ntu120_xset_2d

Other pickles in the same format: a `PysklConfig(name=..., pkl_path=..., splits=..., layout=..., num_classes=...)`.
The pickles are read with a restricted unpickler (numpy arrays and plain Python types only).
"""

_CITATION = """
@inproceedings{duan2022pyskl,
  title={PYSKL: Towards Good Practices for Skeleton Action Recognition},
  author={Duan, Haodong and Wang, Jiaqi and Chen, Kai and Lin, Dahua}, booktitle={ACM MM}, year={2022}}
"""


@dataclasses.dataclass(eq=False)
class PysklConfig(tfds.core.BuilderConfig):
    """One pickle prepared as TFDS splits.

    pkl_path:     the pickle; a relative path is looked up in manual_dir (also under mmaction2's name of pyskl's
                  NTU files, `pyskl.MMACTION2_NAMES`)
    splits:       {TFDS split: pickle split}, e.g. {"train": "xsub_train", "test": "xsub_val"} (a dict or pairs)
    layout:       "nturgb+d" | "ntu-rgb+d" (3-D, 25 joints) | "coco" (2-D, 17 keypoints + score)
    num_classes:  labels lie in [0, num_classes)
    grouping:     "ntu" (cameras of one NTU sample -> V = 3 views) | "none" (each annotation one view, V = 1)
    max_persons:  M, persons kept per view (the first ones in the pickle), zero-padded
    normalize_2d: pyskl's PreNormalize2D on 2-D coordinates (2-D layouts only)
    """

    pkl_path: str = ""
    splits: tuple[tuple[str, str], ...] = (("train", "xsub_train"), ("test", "xsub_val"))
    layout: str = "nturgb+d"
    num_classes: int = 60
    grouping: str = "ntu"
    max_persons: int = pyskl.DEFAULT_MAX_PERSONS
    normalize_2d: bool = False

    def __post_init__(self):
        if isinstance(self.splits, Mapping):
            self.splits = tuple(self.splits.items())
        self.splits = tuple((str(a), str(b)) for a, b in self.splits)
        where = f"PysklConfig {self.name!r}"
        if not self.pkl_path:
            raise ValueError(f"{where}: pkl_path is empty; give the pickle's path (absolute, or relative to "
                             "manual_dir)")
        tfds_splits = [a for a, _ in self.splits]
        if not tfds_splits or len(set(tfds_splits)) != len(tfds_splits) or not all(
                _SPLIT_NAME.fullmatch(s) for s in tfds_splits):
            raise ValueError(f"{where}: splits={dict(self.splits)} must map distinct TFDS split names (letters, "
                             "digits, _) to the pickle's split names, e.g. {'train': 'xsub_train', 'test': 'xsub_val'}")
        pyskl.channel_names(self.layout)  # unknown layout -> ValueError listing them
        if self.grouping not in ("ntu", "none"):
            raise ValueError(f"{where}: grouping={self.grouping!r}; expected 'ntu' (V = 3) or 'none' (V = 1)")
        if self.num_classes < 1 or self.max_persons < 1:
            raise ValueError(f"{where}: num_classes={self.num_classes} and max_persons={self.max_persons} must be >= 1")
        if self.normalize_2d and pyskl.KEYPOINT_LAYOUTS[self.layout][1] != 2:
            raise ValueError(f"{where}: normalize_2d=True needs a 2-D layout; {self.layout!r} is 3-D")

    @property
    def num_views(self) -> int:
        return ntu.NUM_CAMERAS if self.grouping == "ntu" else 1

    @property
    def num_joints(self) -> int:
        return pyskl.KEYPOINT_LAYOUTS[self.layout][0]

    def fields(self) -> dict:
        """What a copy of this config holds (recorded in its TFDS metadata; `datasets.describe` reads it)."""
        return pyskl.copy_fields(pkl_path=self.pkl_path, splits=dict(self.splits), layout=self.layout,
                                 num_classes=self.num_classes, grouping=self.grouping, max_persons=self.max_persons,
                                 normalize_2d=self.normalize_2d)


def _standard_configs() -> list[PysklConfig]:
    configs = []
    for name, fields in pyskl.STANDARD_CONFIGS.items():
        dims = "2-D COCO keypoints (x, y, score), PreNormalize2D" if fields["layout"] == "coco" else "3-D joints"
        configs.append(PysklConfig(name=name, grouping="ntu", **fields,
                                   description=f"{fields['pkl_path']}: 3-view NTU samples, {dims}, "
                                               f"splits {fields['splits']}"))
    return configs


class Pyskl(tfds.core.GeneratorBasedBuilder):
    """A pyskl / mmaction2 skeleton annotation pickle; NTU cameras of one action grouped as views."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "pyskl annotation pickles as multi-view skeleton samples."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    BUILDER_CONFIGS = _standard_configs()

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        features = schema.tfds_features(num_views=config.num_views, num_classes=config.num_classes,
                                        skeleton=(config.max_persons, config.num_joints), frame_labels=False)
        return tfds.core.DatasetInfo(builder=self, description=__doc__, features=features,
                                     homepage="https://github.com/kennymckormick/pyskl", citation=_CITATION,
                                     metadata=tfds.core.MetadataDict(pyskl=config.fields()))

    def _split_generators(self, dl_manager):
        config = self.builder_config
        manual_dir = None
        if not os.path.isabs(config.pkl_path):
            try:
                manual_dir = dl_manager.manual_dir
            except AssertionError as err:  # TFDS: no or empty manual_dir
                raise FileNotFoundError(f"config {config.name}: pkl_path {config.pkl_path!r} is relative to "
                                        f"manual_dir, which is missing or empty ({err})") from None
        path = resolve_pickle(config, manual_dir)
        file = pyskl.PysklFile(path)
        # NOTE: every split is read and checked before anything is written, so a bad pickle leaves no copy.
        sources = {tfds_split: pyskl.PysklSource(file, split, layout=config.layout, grouping=config.grouping,
                                                 max_persons=config.max_persons, num_classes=config.num_classes,
                                                 normalize_2d=config.normalize_2d)
                   for tfds_split, split in config.splits}
        return {tfds_split: self._generate_examples(source) for tfds_split, source in sources.items()}

    def _generate_examples(self, source: pyskl.PysklSource):
        for i in range(len(source)):
            example = source[i]
            yield example["id"], example


# ----------------------------------------------------------------------------------------------------------------
# Configs, files, prepared copies
# ----------------------------------------------------------------------------------------------------------------

def get_config(config_name: str) -> PysklConfig:
    """The builder config called `config_name` (ValueError listing the valid names otherwise)."""
    for config in Pyskl.BUILDER_CONFIGS:
        if config.name == config_name:
            return config
    raise ValueError(f"unknown pyskl config {config_name!r}; expected one of {[c.name for c in Pyskl.BUILDER_CONFIGS]}"
                     " or a PysklConfig of your own")


def _candidates(config: PysklConfig, manual_dir) -> list[pathlib.Path]:
    path = pathlib.Path(config.pkl_path)
    if path.is_absolute():
        return [path]
    root = pathlib.Path(manual_dir) if manual_dir is not None else pathlib.Path()
    names = [config.pkl_path] + ([pyskl.MMACTION2_NAMES[config.pkl_path]] if config.pkl_path in pyskl.MMACTION2_NAMES
                                 else [])
    return [root / name for name in names]


def resolve_pickle(config: PysklConfig, manual_dir: str | os.PathLike | None) -> pathlib.Path:
    """The pickle `config` reads: `pkl_path` if absolute, else the first of it and its mmaction2 name in
    `manual_dir` that exists. FileNotFoundError naming the paths tried otherwise."""
    candidates = _candidates(config, manual_dir)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"config {config.name}: pyskl annotation file not found (tried "
                            f"{', '.join(map(str, candidates))})\n{_INSTRUCTIONS}")


def missing_files(manual_dir: str | os.PathLike, config_name: str | PysklConfig) -> list[str]:
    """What `config_name` needs and `manual_dir` lacks, one line per problem ([] = ready to build)."""
    config = get_config(config_name) if isinstance(config_name, str) else config_name
    candidates = _candidates(config, manual_dir)
    if any(path.is_file() for path in candidates):
        return []
    return [f"{' or '.join(map(str, candidates))}: pyskl annotation file not found (see pyskl's data page, "
            "tools/data/README.md)"]

