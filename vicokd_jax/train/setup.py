"""Stage assembly: everything a stage needs before its first step, built from the config alone.

    spec = setup.input_specs(cfg, batch_size)            # one jax.ShapeDtypeStruct per batch key
    stage = setup.build_stage("student", cfg, workdir, mesh)
    state = stage.initial_state()                        # sharded random init (only when nothing is restored)
    state, metrics = stage.train_step(state, batch, *stage.step_extras)

A stage is: its model, optimizer and schedule, the abstract train state (`jax.eval_shape`) with its shardings,
the train step compiled ahead of time (its memory use printed before any data is read), the eval step, and, for a
student whose objective uses one, the frozen teacher, sharded by the same rules as the state. No model init needs
a decoded example: input shapes come from the config (`input_specs`), and a resumed run restores straight into the
abstract target.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from flax import traverse_util

from vicokd_jax import config as config_lib
from vicokd_jax import methods, parallel
from vicokd_jax.data import datasets
from vicokd_jax.models import presets
from vicokd_jax.train import checkpoint as ckpt
from vicokd_jax.train import step as step_lib
from vicokd_jax.train.state import TrainState, abstract_with_shardings, init_state_fn, make_optimizer, state_shardings

model_inputs = step_lib.model_inputs


# ------------------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------------------
def input_specs(cfg, batch_size: int = 1) -> dict[str, jax.ShapeDtypeStruct]:
    """The batch the pipeline delivers, as shapes: one `jax.ShapeDtypeStruct` per key.

    rgb [B,V,T,H,W,3] uint8, skeleton [B,V,M,T,J,3] float32 (datasets with skeletons), audio [B,V,T,F,M] float32
    and audio_mask [B,V] bool (with `data.audio`), human_score [B,V,T],
    view_mask [B,V] bool, label [B] int32 or labels [B,C] float32, frame_labels [B,T] int32 or [B,T,C] float32
    (datasets with frame labels), labeled [B] bool, index [B] int32 (the example's index in its source).
    """
    d = cfg.data
    info = datasets.describe(cfg)
    b, v, t, size, c = batch_size, d.num_views, d.num_frames, d.image_size, d.num_classes
    f32 = jnp.float32
    spec = {"human_score": ((b, v, t), f32), "view_mask": ((b, v), jnp.bool_), "labeled": ((b,), jnp.bool_),
            "index": ((b,), jnp.int32)}
    spec.update({"labels": ((b, c), f32)} if d.multi_label else {"label": ((b,), jnp.int32)})
    if "rgb" in info.modalities:
        spec["rgb"] = ((b, v, t, size, size, 3), jnp.uint8)
    if "skeleton" in info.modalities:
        spec["skeleton"] = ((b, v, info.num_persons, t, info.num_joints, 3), f32)
    if "audio" in info.modalities:
        spec["audio"] = ((b, v, t, d.audio_frames, d.audio_mel_bins), f32)
        spec["audio_mask"] = ((b, v), jnp.bool_)
    if info.frame_labels:
        spec["frame_labels"] = ((b, t, c), f32) if d.multi_label else ((b, t), jnp.int32)
    return {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in spec.items()}


def model_init(model, cfg, stage: str) -> Callable[[jax.Array], dict]:
    """`key -> variables` of the stage's model, initialised on zeros of the config's input shapes."""
    specs = input_specs(cfg, 1)

    def init(key):
        batch = {k: jnp.zeros(s.shape, s.dtype) for k, s in specs.items()}
        rngs = {"params": key, "masking": key} if stage == "pretrain" else key  # the autoencoder draws masks
        return model.init(rngs, *model_inputs(stage, cfg, batch))

    return init


# `train.steps_per_call=0` (auto) on CPU: at most this many steps per call in a `lax.scan` loop (stages that train
# an ST-GCN alone), or unrolled (stages with a transformer), and their stacked batches at most this large per host.
# Measured on 2 cores (docs/PERFORMANCE.md): a scan loop makes the NTU-size ST-GCN step about 17% faster (XLA:CPU
# maps the step's temporaries once per call) but the transformer steps 1.25-3.8x slower; unrolled, the transformer
# steps are 16-31% faster, with memory and compile time growing with K.
AUTO_MAX_STEPS_PER_CALL = 8
AUTO_MAX_UNROLLED_STEPS = 4
AUTO_MAX_CALL_INPUT_BYTES = 256 * 2**20


def auto_steps_per_call(points: list[int], steps: int, step_input_bytes: int,
                        max_steps: int = AUTO_MAX_STEPS_PER_CALL) -> int:
    """The largest K <= max_steps that divides the stage's length and every cadence in `points` (log, eval,
    checkpoint; 0 = none), so that every call has the same size and the step compiles once, with K batches of
    `step_input_bytes` each (per host) within AUTO_MAX_CALL_INPUT_BYTES. 1 when nothing larger fits."""
    period = math.gcd(steps, *[p for p in points if p > 0])
    fits = [k for k in range(1, max_steps + 1)
            if period % k == 0 and k * step_input_bytes <= AUTO_MAX_CALL_INPUT_BYTES]
    return max(fits, default=1)


def call_plan(cfg, stage: str, steps: int, mesh) -> tuple[int, bool]:
    """(steps per compiled call, unrolled) of `stage` (of `steps` steps).

    `train.steps_per_call=K` >= 1: K steps per call. 0 (the default): one step per call on accelerators; on CPU
    `auto_steps_per_call`, at most AUTO_MAX_UNROLLED_STEPS for a stage with a transformer. On CPU the steps of a
    stage with a transformer are unrolled (`unrolled_on_cpu`), whoever chose K; elsewhere they run in a loop.
    """
    if cfg.train.steps_per_call > 0:
        k = cfg.train.steps_per_call
        return k, k > 1 and jax.default_backend() == "cpu" and unrolled_on_cpu(cfg, stage)
    if jax.default_backend() != "cpu":
        return 1, False
    specs = input_specs(cfg, per_host_batch(cfg.train.batch_size, mesh))
    return cpu_call_plan(cfg, stage, steps, sum(math.prod(s.shape) * s.dtype.itemsize for s in specs.values()))


def unrolled_on_cpu(cfg, stage: str) -> bool:
    """Whether `stage`'s steps of one call are unrolled on CPU: every stage but one that trains an ST-GCN alone (a
    teacher over skeletons alone), whose steps gain from a loop."""
    return not (stage == "teacher" and tuple(cfg.model.teacher_modalities) == ("skeleton",))


def cpu_call_plan(cfg, stage: str, steps: int, step_input_bytes: int) -> tuple[int, bool]:
    """`call_plan`'s choice on CPU for `train.steps_per_call=0`, each step reading `step_input_bytes` per host."""
    unroll = unrolled_on_cpu(cfg, stage)
    t = cfg.train
    k = auto_steps_per_call([t.log_every, t.eval_every, t.checkpoint_every], steps, step_input_bytes,
                            AUTO_MAX_UNROLLED_STEPS if unroll else AUTO_MAX_STEPS_PER_CALL)
    return k, unroll and k > 1


def stage_steps_and_lr(stage: str, cfg) -> tuple[int, float]:
    """Steps and peak learning rate of a stage (`teacher.steps` / `teacher.lr` override the train ones;
    `pretrain.steps` / `pretrain.lr` are the pretrain stage's)."""
    if stage == "pretrain":
        return cfg.pretrain.steps, cfg.pretrain.lr
    if stage == "teacher":
        return (cfg.teacher.steps if cfg.teacher.steps > 0 else cfg.train.steps,
                cfg.teacher.lr if cfg.teacher.lr > 0 else cfg.train.lr)
    return cfg.train.steps, cfg.train.lr


# ------------------------------------------------------------------------------------------------------------
# The frozen teacher
# ------------------------------------------------------------------------------------------------------------
def teacher_variables_path(cfg, workdir: pathlib.Path) -> pathlib.Path:
    """Where the trained teacher's variables are: this workdir's teacher stage, or `teacher.checkpoint`."""
    root = pathlib.Path(cfg.teacher.checkpoint) if cfg.teacher.checkpoint else workdir
    return root / "final_variables" if (root / "final_variables").exists() else root / "teacher" / "final_variables"


def load_teacher(cfg, workdir: pathlib.Path, mesh):
    """(teacher module, its trained variables on the mesh, their shardings): sharded by `mesh.rules` like the
    student's parameters, so a large teacher is not replicated on every device."""
    teacher = presets.teacher_from_config(cfg)
    abstract = jax.eval_shape(model_init(teacher, cfg, "teacher"), jax.random.key(0))
    shardings = parallel.variable_shardings(mesh, abstract, cfg.mesh.rules, cfg.mesh.fsdp_min_size)
    variables = ckpt.load_variables(teacher_variables_path(cfg, workdir), abstract_with_shardings(abstract, shardings))
    return teacher, variables, shardings


# ------------------------------------------------------------------------------------------------------------
# The pretrained encoder
# ------------------------------------------------------------------------------------------------------------
ENCODER = "rgb_encoder"  # the encoder's name in the student's and the masked autoencoder's parameter trees


def pretrained_variables_path(cfg, workdir: pathlib.Path) -> pathlib.Path:
    """Where the pretrain stage's variables are: this workdir's pretrain stage, or `pretrain.checkpoint`."""
    root = pathlib.Path(cfg.pretrain.checkpoint) if cfg.pretrain.checkpoint else workdir
    return root / "final_variables" if (root / "final_variables").exists() else root / "pretrain" / "final_variables"


def check_pretrained_encoder(cfg, workdir: pathlib.Path) -> pathlib.Path:
    """The path of the pretrained variables, or FileNotFoundError naming where they were looked for."""
    path = pretrained_variables_path(cfg, workdir)
    if not path.exists():
        raise FileNotFoundError(f"no pretrained encoder at {path}: train the pretrain stage (config.stages) or set "
                                "config.pretrain.checkpoint to a workdir whose pretrain stage finished")
    return path


def load_pretrained_encoder(cfg, workdir: pathlib.Path, student_params, mesh) -> dict:
    """The pretrained encoder's parameters, placed with the shardings of the student's `student_params[ENCODER]`
    (arrays or ShapeDtypeStructs with shardings). Every pretrained leaf must exist in the student's encoder with
    the same shape; leaves only the student has (its pooling norm) keep their initialisation."""
    path = check_pretrained_encoder(cfg, workdir)
    model = presets.pretrainer_from_config(cfg)
    abstract = jax.eval_shape(model_init(model, cfg, "pretrain"), jax.random.key(0))
    shardings = parallel.variable_shardings(mesh, abstract, cfg.mesh.rules, cfg.mesh.fsdp_min_size)
    encoder = ckpt.load_variables(path, abstract_with_shardings(abstract, shardings))["params"][ENCODER]
    flat_student = traverse_util.flatten_dict(student_params[ENCODER], sep="/")
    flat = traverse_util.flatten_dict(encoder, sep="/")
    for key, value in flat.items():
        if key not in flat_student or flat_student[key].shape != value.shape:
            have = flat_student[key].shape if key in flat_student else "nothing"
            raise ValueError(f"pretrained encoder {path}: {ENCODER}/{key} has shape {value.shape}, the student's "
                             f"has {have}; pretrain with the student's preset (config.model.student_preset)")
    merged = {k: jax.device_put(flat.get(k, v), v.sharding) for k, v in flat_student.items()}
    return traverse_util.unflatten_dict(merged, sep="/")


def with_pretrained_encoder(state: TrainState, encoder: dict) -> TrainState:
    """`state` with the student's encoder parameters replaced by `encoder` (the optimizer moments are zeros at
    initialisation and do not depend on the parameters' values)."""
    return state.replace(params={**state.params, ENCODER: encoder})


# ------------------------------------------------------------------------------------------------------------
# The stage
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Stage:
    """What one stage trains with. `train_step(state, batch, *step_extras)`; `eval_step(variables, batch,
    *step_extras)`; `step_extras` holds the frozen teacher's variables when the objective uses a teacher."""

    name: str
    model: Any
    steps: int
    mesh: Any
    abstract_state: TrainState  # ShapeDtypeStructs carrying the state's shardings (the restore target)
    initial_state: Callable[[], TrainState]  # a fresh state, created sharded (jit with out_shardings)
    train_step: Callable
    eval_step: Callable
    steps_per_call: int = 1  # every call makes this many steps, or fewer up to a log, eval or checkpoint point
    teacher: Any = None
    teacher_variables: Any = None

    @property
    def step_extras(self) -> tuple:
        return (self.teacher_variables,) if self.teacher is not None else ()


def build_stage(stage: str, cfg, workdir, mesh, log=print) -> Stage:
    """Assemble `stage` of `cfg` on `mesh`; compiles the train step ahead of time and prints its memory use."""
    workdir = pathlib.Path(workdir).absolute()
    steps, lr = stage_steps_and_lr(stage, cfg)
    model = {"pretrain": presets.pretrainer_from_config, "teacher": presets.teacher_from_config,
             "student": presets.student_from_config}[stage](cfg)
    teacher = teacher_variables = teacher_shardings = None
    if stage == "student" and methods.needs_teacher(cfg.method):
        teacher, teacher_variables, teacher_shardings = load_teacher(cfg, workdir, mesh)
    if stage == "student" and config_lib.uses_pretrained_encoder(cfg) and "pretrain" not in config_lib.stages_of(cfg):
        check_pretrained_encoder(cfg, workdir)  # before compiling: a missing encoder is a config error
    tx, schedule = make_optimizer(cfg.train, steps, lr)
    init = init_state_fn(model_init(model, cfg, stage), tx)
    seed = jnp.asarray(cfg.train.seed, jnp.uint32)
    abstract = jax.eval_shape(init, seed)
    shardings = state_shardings(abstract, mesh, cfg.mesh.fsdp_min_size, rules=cfg.mesh.rules)
    per_call, unroll = call_plan(cfg, stage, steps, mesh)
    train_step = step_lib.make_train_step(stage, model, tx, schedule, cfg, mesh, shardings, teacher,
                                          teacher_shardings, steps_per_call=per_call, unroll=unroll)
    compiled = compile_ahead(stage, train_step, abstract_with_shardings(abstract, shardings), cfg, mesh,
                             teacher_variables, log, per_call)
    def initial_state():
        state = jax.jit(init, out_shardings=shardings)(seed)
        if stage == "student" and config_lib.uses_pretrained_encoder(cfg):
            state = with_pretrained_encoder(state, load_pretrained_encoder(cfg, workdir, state.params, mesh))
            log(f"[student] encoder initialised from {pretrained_variables_path(cfg, workdir)}", file=sys.stderr,
                flush=True)
        return state

    return Stage(name=stage, model=model, steps=steps, mesh=mesh,
                 abstract_state=abstract_with_shardings(abstract, shardings),
                 initial_state=initial_state, train_step=compiled,
                 eval_step=step_lib.make_eval_step(stage, model, cfg, mesh, teacher), steps_per_call=per_call,
                 teacher=teacher,
                 teacher_variables=teacher_variables)


def per_host_batch(global_batch_size: int, mesh) -> int:
    """The rows each process feeds; the global batch must divide over the mesh's devices."""
    devices, hosts = mesh.devices.size, jax.process_count()
    if global_batch_size % devices:
        raise ValueError(f"train.batch_size={global_batch_size} must be divisible by the {devices} devices of the "
                         f"mesh {dict(mesh.shape)}")
    return global_batch_size // hosts


def compile_ahead(stage: str, train_step, abstract_state, cfg, mesh, teacher_variables, log=print,
                  k: int = 1) -> "AheadOfTime":
    """Compile the train step (`k` steps per call) for the config's batch before any data is read and print its
    memory analysis (arguments, outputs, temporaries per device), so a config that does not fit fails in
    seconds."""
    per_host_batch(cfg.train.batch_size, mesh)
    specs = input_specs(cfg, cfg.train.batch_size)
    sharding = parallel.stacked_batch_sharding(mesh) if k > 1 else parallel.batch_sharding(mesh)
    batch = {key: jax.ShapeDtypeStruct(((k,) if k > 1 else ()) + s.shape, s.dtype, sharding=sharding)
             for key, s in specs.items()}
    extras = (teacher_variables,) if teacher_variables is not None else ()
    t0 = time.perf_counter()
    compiled = train_step.lower(abstract_state, batch, *extras).compile()
    seconds = time.perf_counter() - t0
    calls = f" ({k} steps per call)" if k > 1 else ""  # `call_plan`
    log(f"[{stage}] train step{calls} compiled in {seconds:.1f} s; {memory_summary(compiled)}", file=sys.stderr,
        flush=True)
    return AheadOfTime(train_step, compiled, jax.tree.map(lambda s: s.shape, batch))


def memory_summary(compiled) -> str:
    """`arguments A, outputs O, temporaries T, code C per device` from XLA's memory analysis (or why not)."""
    try:
        m = compiled.memory_analysis()
    except Exception as err:  # noqa: BLE001 -- backends without the analysis
        return f"memory analysis unavailable ({type(err).__name__})"
    if m is None:
        return "memory analysis unavailable on this backend"
    mb = lambda n: f"{n / 2**20:.1f} MiB"  # noqa: E731
    return (f"per device: arguments {mb(m.argument_size_in_bytes)}, outputs {mb(m.output_size_in_bytes)}, "
            f"temporaries {mb(m.temp_size_in_bytes)}, code {mb(m.generated_code_size_in_bytes)}")


class AheadOfTime:
    """The train step: the executable compiled ahead of time for the config's batch, and the jitted function for
    any other batch shape (a shorter multi-step call before a log or checkpoint point)."""

    def __init__(self, jitted, compiled, batch_shapes):
        self.jitted, self.compiled, self.batch_shapes = jitted, compiled, batch_shapes

    def __call__(self, state, batch, *extras):
        if jax.tree.map(lambda x: x.shape, batch) == self.batch_shapes:
            return self.compiled(state, batch, *extras)
        return self.jitted(state, batch, *extras)
