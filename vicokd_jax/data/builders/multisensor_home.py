"""TFDS builder for MultiSensor-Home 1/2 (ArrayRecord; works without TensorFlow).

    b = MultisensorHome(config="home1", data_dir=DATA_DIR, file_format="array_record")
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=MANUAL_DIR))
    example = b.as_data_source()["train"][0]      # the layout of vicokd_jax/data/schema.py

Parsing, sampling and format decisions live in `vicokd_jax.data.multisensor_home` (see its docstring). Examples
carry each view's soundtrack as per-frame AST log-mel windows (`audio [V, T, 40, 128]`, `audio_mask [V]`); other
resolutions / frame rates / class lists / whole-recording examples / window sizes, or no audio, are configs built
from the same class:

    MultisensorHome(config=MultisensorHomeConfig(name="home1_240p_5fps", home="home1", height=240, width=320,
                                                 fps=5.0), data_dir=..., file_format="array_record")
    MultisensorHomeConfig(name="home1_noaudio", home="home1", audio=False)   # the 1.0.0 layout (no audio keys)
"""
from __future__ import annotations

import dataclasses
import os

import tensorflow_datasets as tfds

from vicokd_jax.data import audio
from vicokd_jax.data import multisensor_home as msh
from vicokd_jax.data import schema

_CITATION = """\
@inproceedings{nguyen2025multisensor,
  author    = {Trung Thanh Nguyen and Yasutomo Kawanishi and Vijay John and Takahiro Komamizu and Ichiro Ide},
  title     = {MultiSensor-Home: A Wide-area Multi-modal Multi-view Dataset for Action Recognition and
               Transformer-based Sensor Fusion},
  booktitle = {Proceedings of the 19th IEEE International Conference on Automatic Face and Gesture Recognition},
  year      = {2025}
}"""


@dataclasses.dataclass(eq=False)
class MultisensorHomeConfig(tfds.core.BuilderConfig):
    """One home at one sampling: `home` ("home1" | "home2"), frames at `fps`, resized to `height` x `width`.

    classes:         class vocabulary in label-index order (default: the 16 MultiTSF classes)
    merge_parts:     one example per recording (parts concatenated) instead of one per annotation record
    max_view_skew_s: largest allowed difference between view lengths (shorter views are cut to the shortest)
    audio:           decode each view's soundtrack into `audio` / `audio_mask` (False: neither key)
    audio_frames:    F, 10-ms filterbank frames per window (one window per sampled frame, 1/fps s of sound)
    audio_mel_bins:  M, mel bins per filterbank frame (128: AST's)
    """
    home: str = "home1"
    fps: float = msh.DEFAULT_FPS
    height: int = msh.DEFAULT_SIZE[0]
    width: int = msh.DEFAULT_SIZE[1]
    classes: tuple[str, ...] = msh.HOME_CLASSES
    merge_parts: bool = False
    max_view_skew_s: float = msh.DEFAULT_MAX_VIEW_SKEW_S
    audio: bool = True
    audio_frames: int = msh.DEFAULT_AUDIO_FRAMES
    audio_mel_bins: int = msh.DEFAULT_AUDIO_MEL_BINS


def _default_config(home: str) -> MultisensorHomeConfig:
    return MultisensorHomeConfig(
        name=home, home=home,
        description=(f"MultiSensor-Home{home[-1]}: 5 views, one example per annotation record (one part), "
                     f"{msh.DEFAULT_FPS} fps, {msh.DEFAULT_SIZE[0]}x{msh.DEFAULT_SIZE[1]} RGB, "
                     f"{len(msh.HOME_CLASSES)} classes, multi-label with frame labels, per-frame log-mel "
                     f"windows ({msh.DEFAULT_AUDIO_FRAMES}x{msh.DEFAULT_AUDIO_MEL_BINS}) of each soundtrack."))


class MultisensorHome(tfds.core.GeneratorBasedBuilder):
    """MultiSensor-Home 1/2: 5 synchronised home cameras, multi-label actions with frame-level labels."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "1.1.0": "Per-view soundtracks: audio [V, T, F, M] float32 (AST log-mel window of each sampled frame's "
                 "stretch) and audio_mask [V] bool; config audio=False keeps the 1.0.0 layout.",
    }
    BUILDER_CONFIGS = [_default_config("home1"), _default_config("home2")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download MultiSensor-Home1 / MultiSensor-Home2 from https://huggingface.co/datasets/thanhhff/MultiSensor-Home1
(and .../MultiSensor-Home2), unzip the videos, and lay out manual_dir as (either home may be absent):

    <manual_dir>/
      {msh.HOME_FOLDERS['home1']}/           config home1
        train.json  test.json                     required
        human_save_train.json  human_save_test.json   optional person scores ([V][T] per record)
        all_labels.json                           optional
        01/00-View1-Part1.mp4 ...                 the paths written in video_url_1..5, relative to this folder
      {msh.HOME_FOLDERS['home2']}/           config home2
        train_data.json  test_data.json           required
        human_save_train.json  human_save_test.json   optional
        01/00-View1-Part1.mp4 ...

When <manual_dir>/{msh.HOME_FOLDERS['home1']}/ (resp. Home2) does not exist, <manual_dir> itself is taken as that
home's folder. A view whose file is missing is kept with view_mask False; a record with no view file is an error.
A view file without an audio track is kept with audio_mask False (a warning names it).
`missing_files(manual_dir, config_name)` in {__name__} lists what is missing.
"""

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return self.dataset_info_from_configs(
            features=schema.tfds_features(num_views=msh.NUM_VIEWS, num_classes=len(cfg.classes), multi_label=True,
                                          rgb=(cfg.height, cfg.width), frame_labels=True,
                                          audio=(cfg.audio_frames, cfg.audio_mel_bins) if cfg.audio else None),
            homepage="https://github.com/thanhhff/MultiTSF",
            citation=_CITATION,
            metadata=tfds.core.MetadataDict(classes=list(cfg.classes), fps=cfg.fps, home=cfg.home,
                                            merge_parts=cfg.merge_parts, audio=cfg.audio,
                                            audio_sample_rate=audio.SAMPLE_RATE if cfg.audio else None),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = dl_manager.manual_dir
        missing = missing_files(manual_dir, self.builder_config)
        if missing:
            raise FileNotFoundError(f"MultiSensor-Home ({self.builder_config.name}): missing in {manual_dir}:\n  "
                                    + "\n  ".join(missing) + "\n\n" + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        return {split: self._generate_examples(manual_dir, split) for split in msh.SPLITS}

    def _generate_examples(self, manual_dir, split: str):
        cfg = self.builder_config
        source = msh.MultisensorHomeSource(
            manual_dir, split, home=cfg.home, fps=cfg.fps, height=cfg.height, width=cfg.width, classes=cfg.classes,
            merge_parts=cfg.merge_parts, max_view_skew_s=cfg.max_view_skew_s, audio=cfg.audio,
            audio_frames=cfg.audio_frames, audio_mel_bins=cfg.audio_mel_bins)
        for i in range(len(source)):
            example = source[i]  # checked against schema.py by the source
            yield example["id"], example


def missing_files(manual_dir: str | os.PathLike, config_name: str | MultisensorHomeConfig) -> list[str]:
    """Human-readable list of what `config_name` ("home1", "home2" or a config) needs and `manual_dir` lacks.

    Empty when the build can start: the split annotation files exist and every record has at least one view file.
    """
    if isinstance(config_name, MultisensorHomeConfig):
        config = config_name
    else:
        configs = {c.name: c for c in MultisensorHome.BUILDER_CONFIGS}
        if config_name not in configs:
            raise ValueError(f"unknown MultiSensor-Home config {config_name!r}; expected one of {sorted(configs)}")
        config = configs[config_name]
    return msh.missing_files(manual_dir, config.home, config.classes)
