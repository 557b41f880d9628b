"""TFDS builder for SynthMV: writes the generated benchmark to ArrayRecord (no download, no TensorFlow).

Training can read SynthMV straight from `vicokd_jax.data.synthetic.SynthMV` (generated on the fly). Writing it
once pays off when rendering would starve the accelerator, or to freeze a benchmark version on disk:

    python -m tools.prepare_data synth_mv --config partial --data_dir ~/tensorflow_datasets

Configs: `partial` (the default benchmark: corner cameras, limited fields of view), `full` (every camera sees the
whole room), `partial_multilabel` (two actions per clip), `partial_audio` (`partial` with every camera's
soundtrack: `audio [V, T, F, M]` log-mel windows and `audio_mask [V]`). Custom sizes: `SynthMvConfig(name=..., ...)`.
"""
from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from vicokd_jax.data import datasets, schema
from vicokd_jax.data.synthetic import SynthConfig, SynthMV


@dataclasses.dataclass(eq=False)
class SynthMvConfig(tfds.core.BuilderConfig):
    """Split sizes and the `SynthMV` arguments of one on-disk version of the benchmark."""

    num_train: int = 2000
    num_test: int = 500
    seed: int = 0
    num_views: int = 4
    num_frames: int = 16
    image_size: int = 32
    num_classes: int = 12
    multi_label: bool = False
    overlap: str = "partial"
    room_half: float = SynthConfig.room_half
    fov_deg: float = SynthConfig.fov_deg
    aim_offset: float = SynthConfig.aim_offset
    camera_height: float = SynthConfig.camera_height
    limb_radius: float = SynthConfig.limb_radius
    noise_std: float = SynthConfig.noise_std
    occluders: int = SynthConfig.occluders
    audio: bool = False
    audio_frames: int = 16
    audio_mel_bins: int = 32

    def generator_fields(self) -> dict:
        """The run-config `data.*` fields this copy fixes (recorded in its TFDS metadata, checked on reading)."""
        return {f: getattr(self, f) for f in datasets.SYNTH_GENERATOR_FIELDS}

    def source(self, split: str) -> SynthMV:
        return SynthMV(split, self.num_train if split == "train" else self.num_test, seed=self.seed,
                       num_views=self.num_views, num_frames=self.num_frames, image_size=self.image_size,
                       num_classes=self.num_classes, multi_label=self.multi_label,
                       config=datasets.synth_config(self),
                       audio=self.audio, audio_frames=self.audio_frames, audio_mel_bins=self.audio_mel_bins)


class SynthMv(tfds.core.GeneratorBasedBuilder):
    """SynthMV as an ArrayRecord dataset; `as_data_source()[split][i]` equals `SynthMV(split, ...)[i]`."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"1.0.0": "First version.",
                     "1.1.0": "Easier RGB: 4x4 m room, 0.1 m limbs, noise 3, no pillars.",
                     "1.2.0": "Optional per-camera soundtracks (audio, audio_mask); clips without audio unchanged.",
                     "2.0.0": "Learnable single views with the papers' partial overlap: a 3x3 m room, 52-degree "
                              "lenses aimed 0.40 x room_half off-centre from 2.2 m, 0.14 m limbs, noise 2."}
    BUILDER_CONFIGS = [
        SynthMvConfig(name="partial", description="4 corner cameras, partially overlapping views"),
        SynthMvConfig(name="full", overlap="full", description="every camera sees the whole room"),
        SynthMvConfig(name="partial_multilabel", multi_label=True, description="two actions per clip"),
        SynthMvConfig(name="partial_audio", audio=True, description="partial overlap; every camera has a microphone"),
    ]
    DEFAULT_CONFIG_NAME = "partial"

    def _info(self) -> tfds.core.DatasetInfo:
        c = self.builder_config
        return self.dataset_info_from_configs(
            features=schema.tfds_features(num_views=c.num_views, num_classes=c.num_classes,
                                          multi_label=c.multi_label, skeleton=(1, 25),
                                          rgb=(c.image_size, c.image_size), frame_labels=True,
                                          audio=(c.audio_frames, c.audio_mel_bins) if c.audio else None),
            metadata=tfds.core.MetadataDict(generator=c.generator_fields()),
            description="SynthMV: procedural multi-view actions (vicokd_jax.data.synthetic).")

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split: str):
        source = self.builder_config.source(split)
        for i in range(len(source)):
            example = source[i]
            yield example["id"], example


def missing_files(manual_dir, config_name) -> list[str]:
    """SynthMV needs no files."""
    return []
