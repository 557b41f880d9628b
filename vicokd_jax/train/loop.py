"""The training loop of one stage (pretrain, teacher or student), top to bottom.

setup (models, state, compiled steps: `train/setup.py`) -> restore or init -> data -> global sharded batch ->
the stage's step -> metrics (fetched every `log_every`) -> evaluation -> checkpoints (every `checkpoint_every`,
async) -> the stage's result. A rerun of the same workdir resumes from the newest checkpoint (state + data
iterator) and ends with the same numbers; a finished stage is not redone. SIGTERM (`train/preemption.py`) makes the
loop save a checkpoint and return `preempted=True`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import sys
import time
from typing import Any

import jax

from vicokd_jax import __version__, parallel
from vicokd_jax.config import to_dict
from vicokd_jax.data import datasets, pipeline
from vicokd_jax.train import checkpoint as ckpt
from vicokd_jax.train import evaluation, nonfinite, preemption, report, setup
from vicokd_jax.train.progress import Progress
from vicokd_jax.train.writer import MetricWriter, write_atomic

CURVES = ("loss/total", "loss/reconstruction", "loss/sup", "loss/kd", "loss/vc", "loss/feat", "loss/sequence",
          "loss/frame", "train/top1", "train/teacher_top1")


@dataclasses.dataclass
class StageResult:
    """A stage's result (`metrics`: what result.json holds) and, when it was trained in this call, its final
    variables in memory (what the export is written from)."""

    metrics: dict
    variables: Any = None


def call_size(done: int, steps: int, train, per_call: int) -> int:
    """Steps in the next multi-step call: up to `per_call`, ending at the next log, eval or checkpoint point (or the
    last step), so every such point falls on a call boundary."""
    every = [e for e in (train.log_every, train.checkpoint_every, train.eval_every) if e > 0]
    next_point = min([steps] + [(done // e + 1) * e for e in every])
    return min(per_call, next_point - done)


def metadata(cfg, stage: str, mesh, step: int) -> dict:
    import flax

    return {"stage": stage, "step": int(step), "config": to_dict(cfg), "mesh": dict(mesh.shape),
            "versions": {"vicokd_jax": __version__, "jax": jax.__version__, "flax": flax.__version__},
            "layout": cfg.model.layout, "process_count": jax.process_count()}


def train_stage(stage_name: str, cfg, workdir) -> StageResult:
    """Train `stage_name` ("pretrain" | "teacher" | "student") of `cfg` in `workdir/<stage>`.

    The result holds the final test metrics (METHOD.md names), `checkpoint`, `seconds`, `steps`, and
    `preempted=True` when SIGTERM stopped it early (a checkpoint was saved; rerun to resume).
    """
    workdir = pathlib.Path(workdir).absolute()
    stage_dir = workdir / stage_name
    result_file = stage_dir / "result.json"
    if result_file.exists():
        logging.info("%s stage already finished in %s", stage_name, stage_dir)
        return StageResult(json.loads(result_file.read_text()))
    stage_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    checkpoints = ckpt.StageCheckpointer(stage_dir / "checkpoints", keep=cfg.train.keep_checkpoints)
    latest = checkpoints.latest_step() or 0
    if preemption.PREEMPTED.is_set() and latest < setup.stage_steps_and_lr(stage_name, cfg)[0]:
        # SIGTERM before this stage started: stop before compiling its step, which can outlast a grace period.
        checkpoints.close()
        print(f"[{stage_name}] preempted before its first step (SIGTERM before its setup); nothing to save past "
              f"step {latest}; rerun the same command to resume", file=sys.stderr)
        return StageResult({"preempted": True, "step": latest, "checkpoint": str(checkpoints.directory)})
    mesh = parallel.mesh_from_config(cfg.mesh)
    train_source = datasets.make_source(cfg, cfg.data.train_split)
    test_source = datasets.make_source(cfg, cfg.data.test_split)
    with pipeline.filled_in_background(train_source, test_source):  # on the core the compiler leaves idle
        stage = setup.build_stage(stage_name, cfg, workdir, mesh)
    steps = stage.steps

    data = iter(pipeline.make_dataset(train_source, datasets.pipeline_config(
        cfg, True, setup.per_host_batch(cfg.train.batch_size, mesh))))
    restored = checkpoints.restore(stage.abstract_state, data)  # straight into the abstract target
    if restored is not None:
        state = restored[0]
        print(f"[{stage_name}] resumed from step {int(state.step)} ({checkpoints.directory})", file=sys.stderr)
    else:
        state = stage.initial_state()
    writer = MetricWriter(stage_dir)
    start = int(state.step)
    writer.truncate(start)  # records a killed run wrote after its last checkpoint are written again below
    progress = Progress(stage_name, steps, start, cfg.train.batch_size)
    per_call = stage.steps_per_call
    preempted = False
    pending: dict[str, Any] = writer.last_train_record(steps) if start == steps else {}
    first_bad = None  # device-side record of the first skipped (non-finite) update: no host sync per step
    done = start
    if preemption.PREEMPTED.is_set() and done < steps:
        # SIGTERM during setup (compile, data, teacher, restore): nothing was trained since the last checkpoint.
        preempted = True
        print(f"[{stage_name}] preempted before its first step; nothing to save past step {done}; rerun the same "
              "command to resume", file=sys.stderr)
    while done < steps and not preempted:
        if per_call == 1:
            batch, n = parallel.global_batch(next(data), mesh), 1
        else:  # the steps up to the next log, eval or checkpoint point, at most per_call, in one call
            n = call_size(done, steps, cfg.train, per_call)
            batch = parallel.global_batches([next(data) for _ in range(n)], mesh)
        state, metrics = stage.train_step(state, batch, *stage.step_extras)
        done += n
        first_bad = nonfinite.record_first(first_bad, metrics, done)
        log_point = done % cfg.train.log_every == 0 or done == steps
        saved = done % cfg.train.checkpoint_every == 0 or done == steps
        stop = preemption.requested(n)
        if cfg.train.on_nonfinite == "raise" and (log_point or saved or stop):
            nonfinite.raise_if_any(stage_name, first_bad, checkpoints)  # before a checkpoint could save past it
        if log_point:
            fetched = jax.device_get(metrics)  # the only host sync; the last step's values when stacked [K]
            pending = {k: float(v if per_call == 1 else v[-1]) for k, v in fetched.items()}
            pending.pop("nonfinite", None)
            pending["skipped"] = float(state.skipped)
            writer.write(done, pending)
            progress.update(done, pending)
        if cfg.train.eval_every and done % cfg.train.eval_every == 0 and done < steps:
            metrics_eval = evaluation.evaluate(stage, cfg, {"params": state.params, **state.model_state},
                                               test_source)
            writer.write(done, {f"eval/{k}": v for k, v in metrics_eval.items() if isinstance(v, (int, float))})
        if saved:
            checkpoints.save(done, state, data, metadata(cfg, stage_name, mesh, done))
        if stop and done < steps:
            if not saved:
                checkpoints.save(done, state, data, metadata(cfg, stage_name, mesh, done))
            preempted = True
            print(f"[{stage_name}] preempted: saved step {done}; rerun the same command to resume", file=sys.stderr)
            break
    checkpoints.close()
    if preempted:
        writer.close()
        return StageResult({"preempted": True, "step": int(state.step), "checkpoint": str(checkpoints.directory)})

    variables = {"params": state.params, **state.model_state}
    metrics_test = evaluation.evaluate(stage, cfg, variables, test_source)
    writer.write(steps, {f"test/{k}": v for k, v in metrics_test.items() if isinstance(v, (int, float))})
    ckpt.save_variables(stage_dir / "final_variables", jax.device_get(variables))
    plots = report.stage_plots(metrics_test, writer.history(), getattr(train_source, "class_names", None),
                               stage_dir, CURVES)
    writer.close()
    print(f"[{stage_name}] test metrics:\n{report.format_table(metrics_test)}", file=sys.stderr, flush=True)
    result = {**{k: v for k, v in metrics_test.items() if k != "confusion"}, "confusion": metrics_test.get("confusion"),
              "checkpoint": str(checkpoints.directory), "steps": steps, "plots": plots,
              "seconds": time.perf_counter() - t_start, "preempted": False,
              "final_train": pending}
    if jax.process_index() == 0:
        write_atomic(result_file, json.dumps(result, indent=1))
    return StageResult(result, variables)
