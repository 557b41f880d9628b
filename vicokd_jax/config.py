"""Experiment configuration: the ConfigDict schema, defaults, validation, and loading from experiment files.

    cfg = vk.config.from_file("experiments/synth_vicokd.py:smoke", overrides=["train.steps=50"])

An experiment file defines `get_config(arg) -> ConfigDict`, usually `vk.config.default_config(...)` plus changes.
The returned config is locked: assigning an unknown key or a value of the wrong type raises an error naming the
key. Every field is documented in `default_config`.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import pathlib
import sys

import ml_collections
from flax import traverse_util

from vicokd_jax import methods, parallel
from vicokd_jax.data import datasets
from vicokd_jax.export import onnx_convert

STAGES = ("pretrain", "teacher", "student")
DATASETS = datasets.DATASET_NAMES


def default_config(method: str = "vicokd") -> ml_collections.ConfigDict:
    """Defaults for a SynthMV run of `method` (METHOD.md presets); experiment files override what they change."""
    cfg = ml_collections.ConfigDict()
    cfg.name = f"synth_{method}"
    # Stages to train, in order; () = what the method needs: ("teacher", "student"), or ("student",) for an
    # objective that uses no teacher (stages_of). "pretrain" (masked video autoencoding of the student's encoder on
    # every training clip, labelled or not) comes first when listed: ("pretrain", "teacher", "student").
    cfg.stages = ()

    # ---- data ------------------------------------------------------------------------------------------------
    cfg.data = ml_collections.ConfigDict(dict(
        name="synth_mv",            # synth_mv (generated on the fly unless tfds_config is set) | ntu_rgbd | pyskl | ...
        tfds_config="",             # TFDS builder config to read from data_dir (prepared with tools.prepare_data)
        data_dir="",                # TFDS data_dir ("" = ~/tensorflow_datasets)
        seed=0,                     # SynthMV generation seed
        num_views=4,
        num_frames=16,              # T of a batch (the pipeline samples it from each clip)
        image_size=32,              # H = W of a batch
        num_classes=12,
        multi_label=False,
        overlap="partial",          # SynthMV: partial | full
        # SynthMV difficulty (the generator's defaults; see vicokd_jax.data.synthetic for why they are these).
        room_half=1.5,              # SynthMV: half the room's side in metres (smaller room = larger actors)
        fov_deg=52.0,               # SynthMV: horizontal field of view of the partial-overlap cameras (degrees)
        aim_offset=0.40,            # SynthMV: how far off-centre (x room_half) each partial-overlap camera aims
        camera_height=2.2,          # SynthMV: mounting height of the partial-overlap cameras (metres)
        limb_radius=0.14,           # SynthMV: limb thickness in metres (RGB difficulty)
        noise_std=2.0,              # SynthMV: sensor noise in uint8 levels
        occluders=0,                # SynthMV: pillars in the room
        # Soundtracks: `audio [V, T, F, M]` log-mel windows per view and frame (vicokd_jax.data.audio), F x M =
        # audio_frames x audio_mel_bins. SynthMV generates them (every camera has a microphone); MultiSensor-Home
        # reads them from a copy prepared with the same F and M (its builder default: 40 x 128); NTU has none.
        audio=False,                # the dataset's soundtracks are read (a teacher with "audio", an audio student)
        audio_frames=16,            # F: 10-ms filterbank frames per window (SynthMV: a frame's 0.2 s is ~18)
        audio_mel_bins=32,          # M: mel bins (AST checkpoints: 128)
        num_train=2000,             # SynthMV split sizes
        num_test=400,
        labeled_fraction=0.1,       # share of training samples whose label the student may use
        labeled_seed=0,
        train_split="train",
        test_split="test",
        temporal_sampling="random_crop",
        flip=False,                 # SynthMV has left/right-specific actions: no flips by default
        num_workers=0,              # grain worker processes (0: read threads in the main process, whose SynthMV
                                    # cache the stages share; on 2 cores workers cost the step more than they give)
        cache_examples=True,        # SynthMV on the fly: keep rendered clips in memory (~215 KB each) for later epochs
        read_ahead=500,             # batches each reading process (a worker, or this one) prepares ahead of the step
    ))

    # ---- model -----------------------------------------------------------------------------------------------
    cfg.model = ml_collections.ConfigDict(dict(
        preset="micro",             # vicokd_jax.models.presets: micro | micro_fine | synth | vit_s16 | vit_b16 | ...
        student_preset="",          # the student's preset when it differs from the teacher's ("" = preset)
        layout="nturgb+d",          # skeleton graph of the teacher's ST-GCN
        dtype="float32",            # compute dtype (bfloat16 on accelerators); parameters stay float32
        teacher_modalities=("skeleton", "rgb"),  # any of skeleton, rgb, audio (audio needs data.audio)
        teacher_rgb_input="rgb_diff",  # what the teacher's RGB stream sees: rgb | rgb_diff (as student_input)
        student_input="rgb_diff",   # rgb | rgb_diff (differences of consecutive frames, computed in the model) |
                                    # audio (an audio student: the soundtrack's windows)
        audio_encoder="",           # the audio stream's encoder ("" = the preset's): ast_micro | ast_small |
                                    # ast_base | multitsf (models.presets.AUDIO_ENCODERS)
        memory_tokens=16,           # the student's adapter memory bank size K
        fusion_layers=1,
        dropout=0.0,
    ))

    # ---- method (the student objective) ----------------------------------------------------------------------
    cfg.method = methods.method_config(method)

    # ---- teacher stage ---------------------------------------------------------------------------------------
    cfg.teacher = ml_collections.ConfigDict(dict(
        checkpoint="",              # a run's workdir (or its teacher/ folder) to load when there is no teacher stage
        steps=800,                  # -1: train.steps (SynthMV v2: 90.6% skeleton+RGB, 1600 steps 92.6%; docs/RESULTS.md)
        lr=1e-3,                    # -1: train.lr
        frame_loss_weight=0.5,      # weight of the frame-level loss (frame logits max-pooled over views)
        view_loss_weight=0.5,       # weight of the per-view loss (each view head vs the label, visibility-weighted)
        view_score_threshold=0.5,   # human_score at or above which a view sees the person in a frame
    ))

    # ---- pretrain stage (VideoMAE: models/masked_autoencoder.py) ---------------------------------------------
    cfg.pretrain = ml_collections.ConfigDict(dict(
        checkpoint="",              # a run's workdir (or its pretrain/ folder) whose pretrained encoder the student
                                    # starts from when there is no pretrain stage in this run
        steps=600,
        lr=1e-3,
        mask_ratio=0.75,            # share of patch positions hidden from the encoder (tube masking)
        decoder_width=64,
        decoder_depth=1,
        decoder_heads=2,
        normalize_targets=True,     # reconstruct per-patch normalised pixels (VideoMAE's norm_pix_loss)
    ))

    # ---- optimisation and the loop (every stage) ------------------------------------------------------------
    cfg.train = ml_collections.ConfigDict(dict(
        steps=2400,                 # one SynthMV student run: see docs/RESULTS.md for its time on 2 CPU cores
        batch_size=16,              # global batch
        seed=0,
        optimizer="adamw",          # adamw | sgd
        lr=2e-3,
        weight_decay=0.05,
        momentum=0.9,               # sgd only
        warmup_steps=50,
        grad_clip=1.0,              # global-norm clipping (0: off)
        log_every=50,
        eval_every=0,               # 0: only at the end of the stage
        checkpoint_every=200,
        keep_checkpoints=2,
        eval_batch_size=32,
        on_nonfinite="raise",       # raise | skip
        steps_per_call=0,           # K steps per compiled call (lax.scan); 0: chosen from the cadence (setup.py)
    ))

    # ---- export --------------------------------------------------------------------------------------------
    cfg.export = ml_collections.ConfigDict(dict(
        # The student's export also holds model.onnx and model_int8.onnx (vicokd_jax.export.format): "auto" when
        # the edge extra (requirements-edge.txt) is installed, "always" requires it (refused before any work),
        # "never" writes the jax.export predictor only.
        onnx="auto",
    ))

    # ---- devices -------------------------------------------------------------------------------------------
    cfg.mesh = ml_collections.ConfigDict(dict(
        data=-1,                    # data-parallel axis size (-1: all remaining devices)
        fsdp=1,                     # parameters sharded over this axis (FSDP)
        fsdp_min_size=2**16,        # tensors smaller than this stay replicated (when no rule matches them)
        rules=(),                   # ((regex on the variable path, spec), ...): first match wins; see parallel.py
        dcn_data=1,                 # across-host (DCN) part of the data axis: dcn_data x dcn_fsdp > 1 = hybrid
        dcn_fsdp=1,                 # across-host part of the fsdp axis (product = processes or TPU slices)
    ))
    cfg.lock()
    return cfg


def stages_of(cfg) -> tuple[str, ...]:
    """The stages a run trains: `cfg.stages`, or when it is empty what the method needs (a teacher stage only
    for an objective that uses a teacher)."""
    if cfg.stages:
        return tuple(cfg.stages)
    return ("teacher", "student") if methods.needs_teacher(cfg.method) else ("student",)


def validate(cfg) -> None:
    """Raise ValueError naming the field for inconsistent settings (types are checked on assignment)."""
    bad = [s for s in cfg.stages if s not in STAGES]
    if bad:
        raise ValueError(f"config.stages: unknown stage(s) {bad}; expected a sequence of {STAGES} (or () for what "
                         "the method needs)")
    stages = stages_of(cfg)
    if "student" in stages and "teacher" not in stages and methods.needs_teacher(cfg.method) and not cfg.teacher.checkpoint:
        raise ValueError(f"config.stages has a student stage but no teacher stage, and method {cfg.method.name!r} "
                         "distils from a teacher: set config.teacher.checkpoint to a workdir whose teacher was trained")
    _check_pretrain(cfg, stages)
    if cfg.method.name not in methods.METHODS:
        raise ValueError(f"config.method.name={cfg.method.name!r}; expected one of {list(methods.METHODS)}")
    if cfg.data.name not in DATASETS:
        raise ValueError(f"config.data.name={cfg.data.name!r}; expected one of {DATASETS}")
    for key, least in (("num_workers", 0), ("read_ahead", 1)):
        if not isinstance(cfg.data[key], int) or cfg.data[key] < least:
            raise ValueError(f"config.data.{key}={cfg.data[key]!r}; expected an integer >= {least}")
    if cfg.data.name != "synth_mv" and not cfg.data.tfds_config:
        raise ValueError(f"config.data.tfds_config: {cfg.data.name} is read from prepared TFDS files; set the "
                         "builder config (see python -m tools.prepare_data --list)")
    needed = {}
    if "teacher" in stages or ("student" in stages and methods.needs_teacher(cfg.method)):
        needed["teacher (config.model.teacher_modalities)"] = tuple(cfg.model.teacher_modalities)
    student_modality = "audio" if cfg.model.student_input == "audio" else "rgb"
    if "student" in stages:
        needed[f"{student_modality} student (config.model.student_input={cfg.model.student_input!r})"] = (
            student_modality,)
    if "pretrain" in stages:
        needed["pretrain stage (an RGB video encoder)"] = ("rgb",)
    if cfg.model.student_input not in ("rgb", "rgb_diff", "audio"):
        raise ValueError(f"config.model.student_input={cfg.model.student_input!r}; expected rgb, rgb_diff or audio")
    if cfg.model.teacher_rgb_input not in ("rgb", "rgb_diff"):
        raise ValueError(f"config.model.teacher_rgb_input={cfg.model.teacher_rgb_input!r}; expected rgb or rgb_diff")
    _check_audio(cfg)
    _check_export(cfg, stages)
    datasets.check_pyskl(cfg)
    datasets.check_modalities(cfg, needed)
    if "student" in stages and methods.needs_teacher(cfg.method):
        _check_student_teacher(cfg, student_modality)
    if not 0.0 <= cfg.data.labeled_fraction <= 1.0:
        raise ValueError(f"config.data.labeled_fraction={cfg.data.labeled_fraction} is not in [0, 1]")
    if cfg.train.optimizer not in ("adamw", "sgd"):
        raise ValueError(f"config.train.optimizer={cfg.train.optimizer!r}; expected 'adamw' or 'sgd'")
    if cfg.train.on_nonfinite not in ("raise", "skip"):
        raise ValueError(f"config.train.on_nonfinite={cfg.train.on_nonfinite!r}; expected 'raise' or 'skip'")
    if cfg.model.dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"config.model.dtype={cfg.model.dtype!r}; expected float32, bfloat16 or float16")
    for key in ("steps", "batch_size", "log_every", "checkpoint_every", "eval_batch_size"):
        if cfg.train[key] < 1:
            raise ValueError(f"config.train.{key}={cfg.train[key]} must be >= 1")
    if cfg.train.steps_per_call < 0:
        raise ValueError(f"config.train.steps_per_call={cfg.train.steps_per_call} must be >= 1, or 0 to choose it "
                         "from the log, eval and checkpoint cadence")
    parallel.validate_mesh_config(cfg.mesh)


def _check_audio(cfg) -> None:
    d, m = cfg.data, cfg.model
    if m.audio_encoder:
        from vicokd_jax.models.presets import AUDIO_ENCODERS

        if m.audio_encoder not in AUDIO_ENCODERS:
            raise ValueError(f"config.model.audio_encoder={m.audio_encoder!r}; expected '' (the preset's) or one of "
                             f"{sorted(AUDIO_ENCODERS)}")
    if d.audio and d.name == "ntu_rgbd":
        raise ValueError("config.data.audio=True: NTU RGB+D has no soundtracks")
    if d.audio_frames < 1 or d.audio_mel_bins < 1:
        raise ValueError(f"config.data.audio_frames={d.audio_frames} and data.audio_mel_bins={d.audio_mel_bins} must "
                         "be >= 1")


ONNX_EXPORT = ("auto", "always", "never")


def _check_export(cfg, stages: tuple[str, ...]) -> None:
    if cfg.export.onnx not in ONNX_EXPORT:
        raise ValueError(f"config.export.onnx={cfg.export.onnx!r}; expected one of {ONNX_EXPORT}")
    missing = onnx_convert.missing_extra()
    if cfg.export.onnx == "always" and "student" in stages and missing:
        raise ValueError(f"config.export.onnx='always' but {missing} (or set config.export.onnx='auto')")


def uses_pretrained_encoder(cfg) -> bool:
    """Whether the student stage starts from a pretrained encoder (a pretrain stage, or `pretrain.checkpoint`)."""
    return "pretrain" in stages_of(cfg) or bool(cfg.pretrain.checkpoint)


def _check_pretrain(cfg, stages: tuple[str, ...]) -> None:
    p = cfg.pretrain
    if "pretrain" in stages:
        if "student" in stages and stages.index("pretrain") > stages.index("student"):
            raise ValueError(f"config.stages={stages}: 'pretrain' trains the student's encoder and must come "
                             "before 'student'")
        if p.checkpoint:
            raise ValueError(f"config.pretrain.checkpoint={p.checkpoint!r} and a pretrain stage in config.stages: "
                             "the student would start from one of two encoders; drop one of them")
    if not uses_pretrained_encoder(cfg):
        return
    if cfg.model.student_input not in ("rgb", "rgb_diff"):
        raise ValueError(f"config.model.student_input={cfg.model.student_input!r}: the pretrain stage trains an RGB "
                         "video encoder (rgb or rgb_diff)")
    if cfg.method.student.per_view_weights:
        raise ValueError(f"config.method.student.per_view_weights=True (method {cfg.method.name!r}): the pretrain "
                         "stage trains one encoder shared by all views")
    if not 0.0 <= p.mask_ratio < 1.0:
        raise ValueError(f"config.pretrain.mask_ratio={p.mask_ratio} must be in [0, 1)")
    for key in ("steps", "decoder_width", "decoder_depth", "decoder_heads"):
        if p[key] < 1:
            raise ValueError(f"config.pretrain.{key}={p[key]} must be >= 1")
    if p.decoder_width % p.decoder_heads:
        raise ValueError(f"config.pretrain.decoder_width={p.decoder_width} is not divisible by "
                         f"pretrain.decoder_heads={p.decoder_heads}")


def _check_student_teacher(cfg, student_modality: str) -> None:
    """The student's distillation terms need teacher streams it can be aligned to."""
    teacher = tuple(cfg.model.teacher_modalities)
    if cfg.method.weights.feat and cfg.method.feat.kind == "adapter" and cfg.method.student.adapter:
        if not [t for t in teacher if t != student_modality]:
            raise ValueError(f"config.method.weights.feat={cfg.method.weights.feat}: the adapter stands in for the "
                             f"teacher's modalities the {student_modality} student lacks, and "
                             f"config.model.teacher_modalities={teacher} has none; set weights.feat=0 or give the "
                             "teacher another modality")
    if cfg.method.weights.feat and cfg.method.feat.kind == "hint" and student_modality not in teacher:
        raise ValueError(f"config.method.feat.kind='hint' aligns the student's {student_modality} tokens to the "
                         f"teacher's, but config.model.teacher_modalities={teacher} has no {student_modality!r}")


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string


def apply_override(cfg, override: str) -> None:
    """`"train.steps=50"` -> cfg.train.steps = 50, with a clear error for unknown keys and wrong types."""
    if "=" not in override:
        raise ValueError(f"config override {override!r}: expected KEY=VALUE, e.g. train.steps=50")
    key, text = override.split("=", 1)
    key = key.strip().removeprefix("config.")
    *parents, leaf = key.split(".")
    node = cfg
    for i, part in enumerate(parents):
        if part not in node:
            raise KeyError(f"config override {override!r}: unknown key {'.'.join(parents[:i + 1])!r}")
        node = node[part]
    if leaf not in node:
        raise KeyError(f"config override {override!r}: unknown key {key!r}; "
                       f"{'.'.join(parents) or 'config'} has {sorted(node.keys())}")
    value = _parse_value(text)
    current = node[leaf]
    if isinstance(current, tuple) and isinstance(value, (list, tuple)):
        value = tuple(value)
    elif isinstance(current, tuple) and isinstance(value, str):
        value = tuple(v for v in value.split(",") if v)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, str) and not isinstance(value, str):
        value = text
    try:
        node[leaf] = value
    except TypeError as err:
        raise TypeError(f"config override {override!r}: {key} is a {type(current).__name__} "
                        f"(currently {current!r}); got {value!r}") from err


def from_file(spec: str, overrides=()) -> ml_collections.ConfigDict:
    """Load `path[:arg]` (an experiment file with `get_config(arg)`), apply `overrides`, validate."""
    path, _, arg = spec.partition(":")
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file {file} not found (spec {spec!r})")
    module_spec = importlib.util.spec_from_file_location(f"vicokd_experiment_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    # Experiment files may import shared helpers from their own folder.
    sys.path.insert(0, str(file.parent.absolute()))
    try:
        module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(file.parent.absolute()))
    if not hasattr(module, "get_config"):
        raise AttributeError(f"{file} defines no get_config(arg)")
    cfg = module.get_config(arg or None)
    apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


# Overrides that select a preset are applied first, so field overrides given with them apply on top, in any order.
PRESET_KEYS = ("method.name", "method.ablation")


def apply_overrides(cfg, overrides) -> None:
    """Apply `KEY=VALUE` overrides: `method.name`, then `method.ablation` (each refills the method's preset),
    then the rest in the order given."""
    key = lambda o: o.split("=", 1)[0].strip().removeprefix("config.")  # noqa: E731
    ordered = sorted(overrides, key=lambda o: PRESET_KEYS.index(key(o)) if key(o) in PRESET_KEYS else len(PRESET_KEYS))
    for override in ordered:
        apply_override(cfg, override)


def to_dict(cfg) -> dict:
    """A JSON-able plain dict of the config (tuples become lists)."""
    return cfg.to_dict()


# Keys that change how a run executes or where it reads from, not what it computes (up to float rounding):
# a finished run whose config differs from a new one only in these still counts as the same run.
EXECUTION_KEYS = frozenset({
    "name", "data.num_workers", "data.cache_examples", "data.read_ahead", "data.data_dir", "teacher.checkpoint",
    "train.log_every", "train.checkpoint_every", "train.keep_checkpoints", "train.eval_batch_size",
    "train.on_nonfinite", "train.steps_per_call", "mesh.data", "mesh.fsdp", "mesh.fsdp_min_size",
    "mesh.rules", "mesh.dcn_data", "mesh.dcn_fsdp", "export.onnx",
})


# Keys added after runs were made whose default is not what those runs did: the value an absent key stands for
# (SynthMV v1's camera layout, the teacher's raw-RGB stream).
ABSENT_KEY_VALUES = {**{f"data.{k}": v for k, v in datasets.SYNTH_FIELD_DEFAULTS.items()},
                     "model.teacher_rgb_input": "rgb"}


def result_changes(old: dict, new) -> list[str]:
    """`"key: old -> new"` for every key set in both configs whose value differs, except EXECUTION_KEYS.

    `old` is a loaded config.json; `new` a ConfigDict. A key missing from `old` takes its ABSENT_KEY_VALUES value,
    or else its default for `old`'s method: a key added to the defaults after a run was made holds the value
    that reproduces the earlier behaviour, so a new config that sets it otherwise is a change.
    """
    method = old.get("method", {}).get("name", "vicokd")
    defaults = json.loads(json.dumps(to_dict(default_config(method if method in methods.METHODS else "vicokd"))))
    old_flat = {**traverse_util.flatten_dict(defaults, sep="."), **ABSENT_KEY_VALUES,
                **traverse_util.flatten_dict(old, sep=".")}
    new_flat = traverse_util.flatten_dict(json.loads(json.dumps(to_dict(new))), sep=".")  # tuples -> lists, as saved
    return [f"{key}: {old_flat[key]!r} -> {new_flat[key]!r}" for key in sorted(old_flat.keys() & new_flat.keys())
            if key not in EXECUTION_KEYS and old_flat[key] != new_flat[key]]


def smoke(cfg) -> ml_collections.ConfigDict:
    """The `:smoke` variant of any experiment: same pipeline, tiny sizes, < 2 minutes on 2 CPU cores."""
    cfg.model.preset = "micro"
    cfg.data.num_train, cfg.data.num_test = 64, 32
    cfg.data.num_frames = min(cfg.data.num_frames, 8)
    cfg.data.num_workers = 0
    cfg.train.steps, cfg.teacher.steps = 12, 12
    cfg.train.batch_size, cfg.train.eval_batch_size = 8, 16
    cfg.train.warmup_steps = 2
    cfg.train.log_every, cfg.train.checkpoint_every = 4, 6
    cfg.train.eval_every = 0
    cfg.export.onnx = "never"  # the ONNX conversion would take about as long as the smoke run itself
    cfg.name = cfg.name + "_smoke"
    return cfg
