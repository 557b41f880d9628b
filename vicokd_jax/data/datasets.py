"""The dataset a run config names: what it holds, its random-access sources, and the pipeline settings.

    info = datasets.describe(cfg)                 # modalities, persons, joints, frame labels: no file is read
    datasets.check_modalities(cfg, needed)        # before any work: the modalities the models read
    datasets.check_prepared(cfg)                  # a prepared copy was generated with the config's fields
    source = datasets.make_source(cfg, "train")   # SynthMV on the fly, or the prepared TFDS copy
    pcfg = datasets.pipeline_config(cfg, training=True, batch_size=8)

A prepared SynthMV copy records the generator fields it was built with (TFDS metadata); reading it with a config
whose `data.*` generator fields differ is an error naming each field, so a prepared copy never silently replaces
what the config asks for. A pyskl copy (`data.name="pyskl"`) is described by its standard config
(`pyskl.STANDARD_CONFIGS`) or, for a `PysklConfig` of your own, by the fields its copy recorded
(`prepared_pyskl_fields`); `check_pyskl` refuses views, classes, layout and augmentation fields that disagree.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import sys

DATASET_NAMES = ("synth_mv", "ntu_rgbd", "multisensor_home", "pyskl")
# `cfg.data` fields that decide which SynthMV clips exist (`SynthMV`'s arguments and its `SynthConfig`).
# The `SynthConfig` (scene and difficulty) knobs a run config sets; `synth_config` builds one from them.
SYNTH_SCENE_FIELDS = ("overlap", "room_half", "fov_deg", "aim_offset", "camera_height", "limb_radius", "noise_std",
                      "occluders")
SYNTH_GENERATOR_FIELDS = ("seed", "num_train", "num_test", "num_views", "num_frames", "image_size", "num_classes",
                          "multi_label", *SYNTH_SCENE_FIELDS, "audio", "audio_frames", "audio_mel_bins")
# What a copy recorded before a field existed: the value that reproduces it (SynthMV before soundtracks; before
# the camera layout was a field, v1's lenses, aims and mounting height).
SYNTH_FIELD_DEFAULTS = {"audio": False, "fov_deg": 62.0, "aim_offset": 0.45, "camera_height": 2.6}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a dataset's examples hold (data/schema.py layout)."""

    name: str
    modalities: tuple[str, ...]  # of "skeleton", "rgb", "audio"
    num_persons: int = 0  # M of skeleton [V, M, T, J, 3]
    num_joints: int = 0
    frame_labels: bool = True
    skeleton_channels: tuple[str, ...] = ("x", "y", "z")  # pyskl 2-D: ("x", "y", "score")


def describe(cfg) -> DatasetInfo:
    """The modalities and fixed sizes of `cfg.data`'s dataset, from the config alone (no file is read)."""
    d = cfg.data
    audio = ("audio",) if d.audio else ()
    if d.name == "synth_mv":
        return DatasetInfo("synth_mv", ("skeleton", "rgb") + audio, num_persons=1, num_joints=25)
    if d.name == "ntu_rgbd":
        from vicokd_jax.data import ntu

        rgb = ("rgb",) if d.tfds_config.endswith("_rgb") else ()  # ntu60_xsub_skeleton_rgb, ...
        return DatasetInfo("ntu_rgbd", ("skeleton",) + rgb, num_persons=2, num_joints=ntu.NUM_JOINTS,
                           frame_labels=False)
    if d.name == "multisensor_home":
        return DatasetInfo("multisensor_home", ("rgb",) + audio)
    if d.name == "pyskl":
        fields = pyskl_fields(cfg)
        return DatasetInfo("pyskl", ("skeleton",), num_persons=fields["max_persons"], num_joints=fields["num_joints"],
                           frame_labels=False, skeleton_channels=tuple(fields["channels"]))
    raise ValueError(f"config.data.name={d.name!r}; expected one of {DATASET_NAMES}")


def check_modalities(cfg, needed: dict[str, tuple[str, ...]]) -> None:
    """Raise ValueError naming the modality, the model and the dataset when a model reads a modality the
    dataset does not have. `needed`: {"teacher (config.model.teacher_modalities)": ("skeleton", "rgb"), ...}."""
    info = describe(cfg)
    for who, modalities in needed.items():
        missing = [m for m in modalities if m not in info.modalities]
        if missing:
            source = f"{cfg.data.name}" + (f"/{cfg.data.tfds_config}" if cfg.data.tfds_config else "")
            raise ValueError(f"the {who} needs the modality {missing[0]!r}, but the dataset {source} has only "
                             f"{list(info.modalities)}; choose modalities it has or another dataset")


def data_dir(cfg) -> pathlib.Path:
    return pathlib.Path(cfg.data.data_dir or "~/tensorflow_datasets").expanduser()


# ------------------------------------------------------------------------------------------------------------
# pyskl copies
# ------------------------------------------------------------------------------------------------------------
def prepared_pyskl_fields(root, config_name: str) -> dict | None:
    """The fields (`PysklConfig.fields()`) the pyskl copy `root/pyskl/<config_name>` recorded in its metadata;
    None when no copy is prepared there."""
    folder = pathlib.Path(root).expanduser() / "pyskl" / config_name
    versions = sorted(p for p in folder.glob("*") if (p / "dataset_info.json").is_file()) if folder.is_dir() else []
    metadata = versions[-1] / "metadata.json" if versions else None
    if metadata is None or not metadata.is_file():
        return None
    return json.loads(metadata.read_text()).get("pyskl")


def pyskl_fields(cfg) -> dict:
    """What `cfg.data.tfds_config`'s pyskl copy holds: layout, channels, num_joints, num_views, max_persons,
    num_classes. A standard config is known without files; another must have been prepared in data_dir."""
    from vicokd_jax.data import pyskl

    name = cfg.data.tfds_config
    if name in pyskl.STANDARD_CONFIGS:
        return pyskl.copy_fields(**pyskl.STANDARD_CONFIGS[name])
    fields = prepared_pyskl_fields(data_dir(cfg), name)
    if fields is None:
        raise ValueError(f"config.data.tfds_config={name!r}: not a standard pyskl config "
                         f"({sorted(pyskl.STANDARD_CONFIGS)}) and no prepared copy in "
                         f"{data_dir(cfg) / 'pyskl' / name}; prepare it first with "
                         "vicokd_jax.data.builders.pyskl.PysklConfig(name=..., pkl_path=...)")
    return fields


def check_pyskl(cfg) -> None:
    """A run on a pyskl copy: `data.num_views`, `data.num_classes` and `model.layout` must be the copy's, and
    fields it cannot honour (`data.audio`, `data.multi_label`, `data.flip` on 2-D or non-NTU joints) are refused;
    ValueError naming the field. No-op for other datasets."""
    d = cfg.data
    if d.name != "pyskl":
        return
    from vicokd_jax.data import pyskl

    fields = pyskl_fields(cfg)
    copy = f"the pyskl copy {d.tfds_config!r} (layout {fields['layout']!r})"
    if d.num_views != fields["num_views"]:
        raise ValueError(f"config.data.num_views={d.num_views}, but {copy} has {fields['num_views']} views; "
                         f"set data.num_views={fields['num_views']}")
    if d.num_classes != fields["num_classes"]:
        raise ValueError(f"config.data.num_classes={d.num_classes}, but {copy} has {fields['num_classes']} classes; "
                         f"set data.num_classes={fields['num_classes']}")
    joints = pyskl.KEYPOINT_LAYOUTS.get(cfg.model.layout, (None,))[0]
    if joints != fields["num_joints"]:
        raise ValueError(f"config.model.layout={cfg.model.layout!r} does not fit {copy}, {fields['num_joints']} "
                         f"joints; set model.layout={fields['layout']!r}")
    if d.audio:
        raise ValueError("config.data.audio=True: pyskl skeleton annotations have no soundtracks")
    if d.multi_label:
        raise ValueError("config.data.multi_label=True: pyskl annotations have one label per sample")
    if d.flip and (tuple(fields["channels"]) != ("x", "y", "z") or fields["num_joints"] != 25):
        raise ValueError(f"config.data.flip=True: the flip augmentation mirrors 3-D NTU-25 joints, and {copy} holds "
                         f"{fields['num_joints']} joints {tuple(fields['channels'])}; set data.flip=False")


def prepared_generator_fields(cfg) -> dict | None:
    """The generator fields a prepared SynthMV copy was built with: its recorded metadata, or, for a copy
    written before the metadata was recorded, its builder config's (which then fixed every field). None when
    the copy is not on disk yet (opening it then fails with TFDS's own error)."""
    root = data_dir(cfg) / "synth_mv" / cfg.data.tfds_config
    versions = sorted(p for p in root.glob("*") if (p / "dataset_info.json").is_file()) if root.is_dir() else []
    if not versions:
        return None
    metadata = versions[-1] / "metadata.json"
    if metadata.is_file():
        recorded = json.loads(metadata.read_text()).get("generator")
        if recorded:
            return recorded
    from vicokd_jax.data.builders import synth_mv

    for config in synth_mv.SynthMv.BUILDER_CONFIGS:
        if config.name == cfg.data.tfds_config:
            return config.generator_fields()
    return None


def check_prepared(cfg) -> None:
    """A prepared SynthMV copy must have been generated with the config's generator fields; raise ValueError
    naming every field that differs."""
    d = cfg.data
    if d.name != "synth_mv" or not d.tfds_config:
        return
    recorded = prepared_generator_fields(cfg)
    if recorded is None:
        return
    recorded = {**SYNTH_FIELD_DEFAULTS, **recorded}
    if not recorded["audio"]:  # the window sizes of a copy without soundtracks do not matter
        recorded = {k: x for k, x in recorded.items() if k not in ("audio_frames", "audio_mel_bins")}
    differ = [f"data.{k}={d[k]!r} (the copy has {recorded[k]!r})" for k in SYNTH_GENERATOR_FIELDS
              if k in recorded and _differs(d[k], recorded[k])]
    if differ:
        raise ValueError(f"config.data.tfds_config={d.tfds_config!r}: the prepared SynthMV copy in "
                         f"{data_dir(cfg) / 'synth_mv' / d.tfds_config} was generated with other settings than the "
                         f"config asks for: {'; '.join(differ)}. Prepare a copy with these settings (a custom "
                         "SynthMvConfig), set the fields to the copy's, or clear data.tfds_config to generate on the fly")


def _differs(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) != float(b)
    return a != b


# ------------------------------------------------------------------------------------------------------------
# Sources and pipeline settings
# ------------------------------------------------------------------------------------------------------------
def synth_config(fields):
    """The `SynthConfig` of `fields`: a run config's `data`, or anything with the SYNTH_SCENE_FIELDS attributes."""
    from vicokd_jax.data.synthetic import SynthConfig

    return SynthConfig(**{f: getattr(fields, f) for f in SYNTH_SCENE_FIELDS})


@functools.lru_cache(maxsize=2)
def shared_cached_synth(split_name: str, n: int, args: tuple):
    """The process's one `CachedSource` over `SynthMV(split_name, n, **dict(args))`: the stages of a run and its
    evaluations read the clips rendered once (the two most recent kept: a run's train and test splits). Grain's
    worker processes receive a copy of what it holds when their pipeline starts."""
    from vicokd_jax.data import pipeline
    from vicokd_jax.data.synthetic import SynthMV

    return pipeline.CachedSource(SynthMV(split_name, n, **dict(args)))


def make_source(cfg, split: str):
    """The random-access source of `split`: SynthMV generated on the fly (with `data.cache_examples`, shared by
    the calls of this process that ask for the same clips: `shared_cached_synth`), or a prepared TFDS dataset."""
    d = cfg.data
    if d.name == "synth_mv" and not d.tfds_config:
        from vicokd_jax.data.synthetic import SynthMV

        n = d.num_train if split == d.train_split else d.num_test
        split_name = "train" if split == d.train_split else "test"
        args = dict(seed=d.seed, num_views=d.num_views, num_frames=d.num_frames, image_size=d.image_size,
                    num_classes=d.num_classes, multi_label=d.multi_label, audio=d.audio,
                    audio_frames=d.audio_frames, audio_mel_bins=d.audio_mel_bins, config=synth_config(d))
        if d.cache_examples:
            return shared_cached_synth(split_name, n, tuple(sorted(args.items())))
        return SynthMV(split_name, n, **args)
    from vicokd_jax.data.builders import open_source

    check_prepared(cfg)
    source = open_source(d.name, d.tfds_config, split, str(data_dir(cfg)))
    if d.audio:
        check_soundtracks(cfg, source)
    return source


def check_soundtracks(cfg, source) -> None:
    """A prepared copy read with `data.audio` must hold `audio` windows of the config's F x M: else ValueError
    naming the fields."""
    d = cfg.data
    if not len(source):
        return
    first = source[0]
    where = f"{d.name}/{d.tfds_config} in {data_dir(cfg)}"
    if "audio" not in first:
        raise ValueError(f"config.data.audio=True, but the prepared copy {where} has no soundtracks; prepare it with "
                         "audio (the builder's audio option) or set data.audio=False")
    windows = tuple(first["audio"].shape[2:])
    if windows != (d.audio_frames, d.audio_mel_bins):
        raise ValueError(f"config.data.audio_frames={d.audio_frames}, data.audio_mel_bins={d.audio_mel_bins}: the "
                         f"prepared copy {where} holds log-mel windows of {windows[0]} frames x {windows[1]} mel "
                         "bins; set the fields to those or prepare a copy with these")


def workers_can_start() -> bool:
    """Whether grain's spawned worker processes can re-import the main program: not when it was read from
    standard input (`python - <<EOF`), whose `__main__.__file__` names no file."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or os.path.exists(main_file)


_warned_in_process = []


def pipeline_config(cfg, training: bool, batch_size: int):
    """The grain pipeline settings of `cfg.data` for training (shuffled, augmented, labelled subset, workers)
    or evaluation (one ordered pass, in-process). Without spawnable workers the data load in this process."""
    from vicokd_jax.data import pipeline

    d = cfg.data
    workers = d.num_workers if training else 0
    if workers and not workers_can_start():
        if not _warned_in_process:
            print(f"[data] config.data.num_workers={workers}: worker processes cannot start from a program read "
                  "from standard input, so data load in this process (slower); run a script file for workers",
                  file=sys.stderr, flush=True)
            _warned_in_process.append(True)
        workers = 0
    # NOTE: centring on the spine joint is for 3-D joints; 2-D keypoints carry a score channel and are
    # normalised by the image size instead (pyskl's PreNormalize2D, the builder's normalize_2d).
    center = describe(cfg).skeleton_channels == ("x", "y", "z")
    return pipeline.PipelineConfig(
        batch_size=batch_size, training=training, seed=cfg.train.seed, num_frames=d.num_frames,
        temporal_sampling=d.temporal_sampling, image_size=d.image_size, flip=d.flip, center_skeleton=center,
        labeled_fraction=d.labeled_fraction if training else 1.0, labeled_seed=d.labeled_seed,
        # A run saved before `read_ahead` existed read grain's default.
        num_workers=workers, read_ahead=d.get("read_ahead", pipeline.PipelineConfig.read_ahead))


def class_names(cfg) -> list[str] | None:
    """The class names of `cfg.data`'s dataset in label order, where the dataset defines them."""
    if cfg.data.name == "synth_mv":
        from vicokd_jax.data.synthetic import ACTIONS

        return list(ACTIONS[:cfg.data.num_classes])
    if cfg.data.name == "multisensor_home":
        from vicokd_jax.data.multisensor_home import HOME_CLASSES

        return list(HOME_CLASSES)
    return None
