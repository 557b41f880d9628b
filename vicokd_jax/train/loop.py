"""The training loop of one stage (teacher or student), top to bottom.

data -> global sharded batch -> the stage's jit step -> metrics (fetched every `log_every`) -> evaluation ->
checkpoints (every `checkpoint_every`, async) -> the stage's result. A rerun of the same workdir resumes from
the newest checkpoint (state + data iterator) and ends with the same numbers; a finished stage is not redone.
SIGTERM (preemption) makes the loop save a checkpoint and return `preempted=True`.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import pathlib
import sys
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from vicokd_jax import __version__, parallel
from vicokd_jax.config import to_dict
from vicokd_jax.data import pipeline
from vicokd_jax.models import presets
from vicokd_jax.train import checkpoint as ckpt
from vicokd_jax.train import evaluate as ev
from vicokd_jax.train import step as step_lib
from vicokd_jax.train.state import abstract_with_shardings, create_state, make_optimizer

# Set by the SIGTERM handler of `vicokd_jax.launch` (one process) or when every process has reached JAX's
# preemption sync point (several); checked once per step on the host (no device sync).
PREEMPTED = threading.Event()
_SYNC_STEP_IDS = itertools.count(1)  # one id per update of any stage: the same sequence on every process


def preemption_requested(steps_made: int) -> bool:
    """Whether to stop after the call that made `steps_made` updates.

    One process: its own SIGTERM flag. Several: JAX's preemption sync (`jax.distributed` catches SIGTERM and
    agrees a step on all processes), so that every process saves the same step and none is left waiting in a
    collective for the others. Its step ids run on across stages, so a notice near the end of the teacher stage
    stops the student before its first step.
    """
    if jax.process_count() > 1:
        reached = [multihost_utils.reached_preemption_sync_point(next(_SYNC_STEP_IDS)) for _ in range(steps_made)]
        if any(reached):
            PREEMPTED.set()
    return PREEMPTED.is_set()


class NonFiniteLossError(FloatingPointError):
    """A training step produced a non-finite loss or gradient (train.on_nonfinite="raise")."""


# ------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------
def make_source(cfg, split: str):
    """The random-access source of `split`: SynthMV generated on the fly, or a prepared TFDS dataset."""
    d = cfg.data
    if d.name == "synth_mv" and not d.tfds_config:
        from vicokd_jax.data.synthetic import SynthConfig, SynthMV

        n = d.num_train if split == d.train_split else d.num_test
        split_name = "train" if split == d.train_split else "test"
        source = SynthMV(split_name, n, seed=d.seed, num_views=d.num_views, num_frames=d.num_frames,
                         image_size=d.image_size, num_classes=d.num_classes, multi_label=d.multi_label,
                         config=SynthConfig(overlap=d.overlap, room_half=d.room_half, limb_radius=d.limb_radius,
                                            noise_std=d.noise_std, occluders=d.occluders))
        return pipeline.CachedSource(source) if d.get("cache_examples", False) else source
    from vicokd_jax.data.builders import open_source

    data_dir = d.data_dir or str(pathlib.Path("~/tensorflow_datasets").expanduser())
    return open_source(d.name, d.tfds_config, split, data_dir)


def pipeline_config(cfg, training: bool, batch_size: int) -> pipeline.PipelineConfig:
    d = cfg.data
    return pipeline.PipelineConfig(
        batch_size=batch_size, training=training, seed=cfg.train.seed, num_frames=d.num_frames,
        temporal_sampling=d.temporal_sampling, image_size=d.image_size, flip=d.flip,
        labeled_fraction=d.labeled_fraction if training else 1.0, labeled_seed=d.labeled_seed,
        num_workers=d.num_workers if training else 0)


def per_host_batch(global_batch_size: int, mesh) -> int:
    devices, hosts = mesh.devices.size, jax.process_count()
    if global_batch_size % devices:
        raise ValueError(f"train.batch_size={global_batch_size} must be divisible by the {devices} devices of the "
                         f"mesh {dict(mesh.shape)}")
    return global_batch_size // hosts


def example_batch(source, cfg) -> dict:
    """One transformed example with a leading batch axis of 1: the shapes models are initialised with."""
    example = pipeline.transform_example(source[0], pipeline_config(cfg, False, 1), None)
    return {k: np.asarray(v)[None] for k, v in example.items() if np.asarray(v).dtype.kind in "biuf"}


# ------------------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------------------
def _teacher_init(model, cfg, example):
    modalities = tuple(cfg.model.teacher_modalities)
    rgb = jnp.asarray(example["rgb"]) if "rgb" in modalities else None
    return lambda key: model.init(key, jnp.asarray(example["skeleton"]), rgb, jnp.asarray(example["view_mask"]))


def _student_init(model, example):
    return lambda key: model.init(key, jnp.asarray(example["rgb"]), jnp.asarray(example["view_mask"]))


def load_teacher(cfg, workdir: pathlib.Path, example: dict, mesh):
    """(teacher module, its trained variables replicated on the mesh) from this workdir or teacher.checkpoint."""
    teacher = presets.teacher_from_config(cfg)
    abstract = jax.eval_shape(_teacher_init(teacher, cfg, example), jax.random.key(0))
    rep = parallel.replicated(mesh)
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), abstract)
    root = pathlib.Path(cfg.teacher.checkpoint) if cfg.teacher.checkpoint else workdir
    path = root / "final_variables" if (root / "final_variables").exists() else root / "teacher" / "final_variables"
    return teacher, ckpt.load_variables(path, target)


# ------------------------------------------------------------------------------------------------------------
# Metrics output
# ------------------------------------------------------------------------------------------------------------
class MetricWriter:
    """JSON lines (always) and TensorBoard event files (when the `tensorboard` package is installed)."""

    def __init__(self, directory: pathlib.Path):
        self.jsonl = directory / "metrics.jsonl"
        self.tb = None
        # NOTE: every process computes the same (replicated) metrics; one writes them.
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        try:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self.tb = EventFileWriter(str(directory / "tensorboard"))
        except ImportError:
            logging.info("tensorboard not installed: metrics go to %s only", self.jsonl)

    def write(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        with self.jsonl.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            from tensorboard.compat.proto import event_pb2, summary_pb2

            values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
            self.tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                              summary=summary_pb2.Summary(value=values)))

    def history(self) -> list[dict]:
        if not self.jsonl.exists():
            return []
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]

    def truncate(self, step: int) -> None:
        """Keep the records of steps <= `step` (no test/ results): what a run resumed from `step` had written.

        A run killed after its last checkpoint may have logged later steps (or half a line); the resumed run
        logs them again, so metrics.jsonl ends up equal to an uninterrupted run's.
        """
        if not self.enabled or not self.jsonl.exists():
            return
        kept = []
        for line in self.jsonl.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            if record.get("step", 0) <= step and not any(k.startswith("test/") for k in record):
                kept.append(line + "\n")
        _write_atomic(self.jsonl, "".join(kept))

    def last_train_record(self, step: int) -> dict:
        """The training metrics logged at `step` (a resumed, already finished stage reports them again)."""
        for record in reversed(self.history()):
            if record.get("step") == step and "loss/total" in record:
                return {k: v for k, v in record.items() if k != "step"}
        return {}

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class Progress:
    """One line per log point on stderr: step, key metrics, throughput and ETA."""

    def __init__(self, stage: str, total: int, start_step: int, batch_size: int):
        self.stage, self.total, self.batch = stage, total, batch_size
        self.t0, self.s0 = time.perf_counter(), start_step

    def update(self, step: int, metrics: dict) -> None:
        elapsed = time.perf_counter() - self.t0
        rate = (step - self.s0) / max(elapsed, 1e-9)
        eta = (self.total - step) / max(rate, 1e-9)
        shown = " ".join(f"{k.split('/')[-1]}={v:.3g}" for k, v in metrics.items()
                         if k in ("loss/total", "train/top1", "train/teacher_top1", "loss/vc", "loss/kd"))
        print(f"[{self.stage}] step {step}/{self.total} {shown} | {rate:.2f} steps/s, "
              f"{rate * self.batch:.1f} clips/s, ETA {int(eta) // 60}:{int(eta) % 60:02d}", file=sys.stderr,
              flush=True)


# ------------------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------------------
def _pad_batch(batch: dict, size: int) -> dict:
    """Pad a partial last batch to `size` rows (repeating the last row) with `valid` False on the padding."""
    n = len(batch["view_mask"])
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if n < size:
            value = np.concatenate([value, np.repeat(value[-1:], size - n, axis=0)])
        out[key] = value
    out["valid"] = np.arange(size) < n
    return out


def evaluate(stage: str, cfg, mesh, model, variables, teacher=None, teacher_variables=None,
             source=None, eval_fn=None) -> dict:
    """The metrics of METHOD.md on the test split (`train/evaluate.py`), as a JSON-able dict.

    Pass the stage's `eval_fn` (`step.make_eval_step`) when evaluating repeatedly, so it compiles once.
    """
    source = source if source is not None else make_source(cfg, cfg.data.test_split)
    eval_fn = eval_fn or step_lib.make_eval_step(stage, model, cfg, mesh, teacher)
    size = cfg.train.eval_batch_size
    per_host_batch(size, mesh)  # checks that the devices divide it
    acc = ev.EvalAccumulator(cfg.data.num_classes, multi_label=cfg.data.multi_label,
                             class_names=getattr(source, "class_names", None))
    # NOTE: every process reads the whole (small) test split in the same order and builds the same global batches:
    # the same number of steps on every process (no collective left waiting) and the replicated outputs line up
    # with the labels each process holds.
    config = dataclasses.replace(pipeline_config(cfg, False, size), shard_index=0, shard_count=1)
    for full_batch in pipeline.make_dataset(source, config):
        full_batch = _pad_batch(full_batch, size)
        batch = parallel.global_batch_from_full(full_batch, mesh)
        args = (variables, batch) + ((teacher_variables,) if teacher is not None else ())
        outputs = jax.device_get(eval_fn(*args))
        acc.add({k: np.asarray(v) for k, v in outputs.items()}, full_batch)
    return acc.result()


# ------------------------------------------------------------------------------------------------------------
# One stage
# ------------------------------------------------------------------------------------------------------------
def _metadata(cfg, stage: str, mesh, step: int) -> dict:
    import flax

    return {"stage": stage, "step": int(step), "config": to_dict(cfg), "mesh": dict(mesh.shape),
            "versions": {"vicokd_jax": __version__, "jax": jax.__version__, "flax": flax.__version__},
            "layout": cfg.model.layout, "process_count": jax.process_count()}


def _call_size(done: int, steps: int, train) -> int:
    """Steps in the next multi-step call: up to `train.steps_per_call`, ending at the next log, eval or checkpoint
    point (or the last step), so every such point falls on a call boundary."""
    every = [e for e in (train.log_every, train.checkpoint_every, train.eval_every) if e > 0]
    next_point = min([steps] + [(done // e + 1) * e for e in every])
    return min(train.steps_per_call, next_point - done)


def train_stage(stage: str, cfg, workdir) -> dict:
    """Train `stage` ("teacher" | "student") of `cfg` in `workdir/<stage>`; returns the stage's result dict.

    The result holds the final test metrics (METHOD.md names), `checkpoint`, `seconds`, `steps`, and
    `preempted=True` when SIGTERM stopped it early (a checkpoint was saved; rerun to resume).
    """
    workdir = pathlib.Path(workdir).absolute()
    stage_dir = workdir / stage
    result_file = stage_dir / "result.json"
    if result_file.exists():
        logging.info("%s stage already finished in %s", stage, stage_dir)
        return json.loads(result_file.read_text())
    stage_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    mesh = parallel.mesh_from_config(cfg.mesh)
    steps = cfg.teacher.steps if stage == "teacher" and cfg.teacher.steps > 0 else cfg.train.steps
    lr = cfg.teacher.lr if stage == "teacher" and cfg.teacher.lr > 0 else cfg.train.lr

    train_source = make_source(cfg, cfg.data.train_split)
    example = example_batch(train_source, cfg)
    teacher = teacher_variables = None
    if stage == "teacher":
        model = presets.teacher_from_config(cfg)
        init = _teacher_init(model, cfg, example)
    else:
        model = presets.student_from_config(cfg)
        init = _student_init(model, example)
        teacher, teacher_variables = load_teacher(cfg, workdir, example, mesh)
    tx, schedule = make_optimizer(cfg.train, steps, lr)
    state, shardings = create_state(init, tx, cfg.train.seed, mesh, cfg.mesh.fsdp_min_size)
    teacher_shardings = (jax.tree.map(lambda x: x.sharding, teacher_variables)
                         if teacher_variables is not None else None)
    per_call = cfg.train.steps_per_call
    train_step = step_lib.make_train_step(stage, model, tx, schedule, cfg, mesh, shardings, teacher,
                                          teacher_shardings, steps_per_call=per_call)
    eval_fn = step_lib.make_eval_step(stage, model, cfg, mesh, teacher)
    test_source = make_source(cfg, cfg.data.test_split)

    data = iter(pipeline.make_dataset(train_source, pipeline_config(cfg, True, per_host_batch(cfg.train.batch_size,
                                                                                               mesh))))
    checkpoints = ckpt.StageCheckpointer(stage_dir / "checkpoints", keep=cfg.train.keep_checkpoints)
    restored = checkpoints.restore(abstract_with_shardings(jax.eval_shape(lambda: state), shardings), data)
    if restored is not None:
        state = restored[0]
        print(f"[{stage}] resumed from step {int(state.step)} ({checkpoints.directory})", file=sys.stderr)
    writer = MetricWriter(stage_dir)
    start = int(state.step)
    writer.truncate(start)  # records a killed run wrote after its last checkpoint are written again below
    progress = Progress(stage, steps, start, cfg.train.batch_size)
    extra = (teacher_variables,) if stage == "student" else ()
    preempted = False
    pending: dict[str, Any] = writer.last_train_record(steps) if start == steps else {}
    first_bad = None  # device-side record of the first skipped (non-finite) update: no host sync per step
    done = start
    if PREEMPTED.is_set() and done < steps:
        # SIGTERM during setup (data, teacher, restore): nothing was trained since the last checkpoint, so stop
        # before compiling the step, which can take longer than a preemption's grace period.
        preempted = True
        print(f"[{stage}] preempted before its first step; nothing to save past step {done}; rerun the same "
              "command to resume", file=sys.stderr)
    while done < steps and not preempted:
        if per_call == 1:
            batch, n = parallel.global_batch(next(data), mesh), 1
        else:  # the steps up to the next log, eval or checkpoint point, at most per_call, in one call
            n = _call_size(done, steps, cfg.train)
            batch = parallel.global_batches([next(data) for _ in range(n)], mesh)
        state, metrics = train_step(state, batch, *extra)
        done += n
        first_bad = _record_first_nonfinite(first_bad, metrics, done)
        log_point = done % cfg.train.log_every == 0 or done == steps
        saved = done % cfg.train.checkpoint_every == 0 or done == steps
        stop = preemption_requested(n)
        if cfg.train.on_nonfinite == "raise" and (log_point or saved or stop):
            _raise_if_nonfinite(stage, first_bad, checkpoints)  # before a checkpoint could save past it
        if log_point:
            fetched = jax.device_get(metrics)  # the only host sync; the last step's values when stacked [K]
            pending = {k: float(v if per_call == 1 else v[-1]) for k, v in fetched.items()}
            pending.pop("nonfinite", None)
            pending["skipped"] = float(state.skipped)
            writer.write(done, pending)
            progress.update(done, pending)
        if cfg.train.eval_every and done % cfg.train.eval_every == 0 and done < steps:
            metrics_eval = evaluate(stage, cfg, mesh, model, {"params": state.params, **state.model_state},
                                    teacher, teacher_variables, test_source, eval_fn)
            writer.write(done, {f"eval/{k}": v for k, v in metrics_eval.items() if isinstance(v, (int, float))})
        if saved:
            checkpoints.save(done, state, data, _metadata(cfg, stage, mesh, done))
        if stop and done < steps:
            if not saved:
                checkpoints.save(done, state, data, _metadata(cfg, stage, mesh, done))
            preempted = True
            print(f"[{stage}] preempted: saved step {done}; rerun the same command to resume", file=sys.stderr)
            break
    checkpoints.close()
    if preempted:
        writer.close()
        return {"preempted": True, "step": int(state.step), "checkpoint": str(checkpoints.directory)}

    variables = {"params": state.params, **state.model_state}
    metrics_test = evaluate(stage, cfg, mesh, model, variables, teacher, teacher_variables, test_source,
                            eval_fn)
    writer.write(steps, {f"test/{k}": v for k, v in metrics_test.items() if isinstance(v, (int, float))})
    ckpt.save_variables(stage_dir / "final_variables", jax.device_get(variables))
    plots = {}
    if "confusion" in metrics_test and ev.plot_confusion(metrics_test["confusion"],
                                                         getattr(train_source, "class_names", None),
                                                         stage_dir / "confusion.png"):
        plots["confusion"] = str(stage_dir / "confusion.png")
    history = writer.history()
    shown = [k for k in ("loss/total", "loss/sup", "loss/kd", "loss/vc", "loss/feat", "loss/sequence", "loss/frame",
                         "train/top1", "train/teacher_top1") if any(k in rec for rec in history)]
    if ev.plot_curves(history, stage_dir / "curves.png", keys=shown or None):
        plots["curves"] = str(stage_dir / "curves.png")
    writer.close()
    print(f"[{stage}] test metrics:\n{ev.format_table(metrics_test)}", file=sys.stderr, flush=True)
    result = {**{k: v for k, v in metrics_test.items() if k != "confusion"}, "confusion": metrics_test.get("confusion"),
              "checkpoint": str(checkpoints.directory), "steps": steps, "plots": plots,
              "seconds": time.perf_counter() - t_start, "preempted": False,
              "final_train": pending}
    if jax.process_index() == 0:
        _write_atomic(result_file, json.dumps(result, indent=1))
    return result


# ------------------------------------------------------------------------------------------------------------
# Failure handling
# ------------------------------------------------------------------------------------------------------------
@jax.jit
def _record_first_nonfinite(record, metrics: dict, done):
    """{"step", "metrics"} of the first update whose loss or gradient was non-finite (step -1: none yet).

    Runs on device after every call (asynchronous), so the loop can name the exact step and loss term at its next
    log point without fetching the metrics of every step. `metrics` of a multi-step call are stacked `[K]`, and
    `done` counts the call's last step.
    """
    if metrics["nonfinite"].ndim:  # a multi-step call: its first non-finite step, if any
        bad = metrics["nonfinite"] > 0
        first_in_call = jnp.argmax(bad)
        done = done - bad.shape[0] + 1 + first_in_call
        metrics = jax.tree.map(lambda m: m[first_in_call], metrics)
    if record is None:
        record = {"step": jnp.asarray(-1, jnp.int32), "metrics": jax.tree.map(jnp.zeros_like, metrics)}
    first = (record["step"] < 0) & (metrics["nonfinite"] > 0)
    new = {"step": jnp.asarray(done, jnp.int32), "metrics": metrics}
    return jax.tree.map(lambda a, b: jnp.where(first, a, b), new, record)


def _raise_if_nonfinite(stage: str, record, checkpoints: ckpt.StageCheckpointer) -> None:
    """NonFiniteLossError naming the first non-finite step and term(s), once the newest checkpoint is on disk."""
    record = jax.device_get(record)
    step = int(record["step"])
    if step < 0:
        return
    values = {k: float(v) for k, v in record["metrics"].items() if k != "nonfinite"}
    bad = sorted(k for k, v in values.items() if not np.isfinite(v))
    terms = [k for k in bad if k not in ("loss/total", "grad_norm")] or bad
    checkpoints.close()  # finish writing the last good checkpoint
    latest = checkpoints.latest_step()
    kept = (f"the last checkpoint, step {latest} ({checkpoints.step_path(latest)}), is intact" if latest is not None
            else f"no checkpoint was written yet in {checkpoints.directory}")
    what = "gradient (every loss term finite)" if terms == ["grad_norm"] else "loss"
    raise NonFiniteLossError(f"[{stage}] non-finite {what} at step {step}: {', '.join(terms)} went non-finite "
                             f"({ {k: values[k] for k in bad} }); the update was not applied and {kept}. "
                             "Set train.on_nonfinite='skip' to skip such updates and go on.")


def _write_atomic(path: pathlib.Path, text: str) -> None:
    """Write `text` to `path` through a temporary file + rename: a killed process never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
