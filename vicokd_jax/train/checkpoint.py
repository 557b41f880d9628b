"""Checkpoints of a training stage: orbax `CheckpointManager` (async, keep N) with three items per step:

    state   the TrainState (StandardSave; restored onto any mesh through a sharded abstract target)
    data    the grain iterator's state (so a resumed run sees exactly the batches it would have seen)
    meta    JSON: config, versions, mesh, model description, step

Each finished stage also saves its final variables (params + batch_stats) as `<workdir>/<stage>/final_variables`:
the student stage loads the frozen teacher from there (never re-saved in the student's checkpoints), and the
export reads the student's.

Damaged checkpoints: orbax writes each step into a `*.orbax-checkpoint-tmp-*` folder renamed into place when
complete, so a save cut short (kill -9) is never listed. A listed step that fails to restore (a file deleted,
truncated or unreadable) is moved aside to `<stage>/corrupt_checkpoints/` (never deleted) and the previous step is
restored instead, with a `CheckpointFallbackWarning` naming both.
"""
from __future__ import annotations

import logging
import pathlib
import shutil
import time
import warnings
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

_ITEMS = ("state", "data", "meta")


class CheckpointFallbackWarning(RuntimeWarning):
    """The newest checkpoint could not be restored; an older one was used (both are named)."""


class CorruptCheckpointError(RuntimeError):
    """No checkpoint of a stage could be restored (each failure is named); nothing was deleted."""


def committed_steps(directory) -> list[int]:
    """The steps whose checkpoint is complete in `directory` (a stage's `checkpoints/`), ascending: step folders
    under their final name, since orbax renames a save's temporary folder into place once it is complete (a
    marker file inside, such as `commit_success.txt`, depends on the orbax version)."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


class StageCheckpointer:
    """Saves and restores (state, data iterator, metadata) under `directory` (a stage's checkpoints/)."""

    def __init__(self, directory, keep: int = 2):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_iterator, meta: dict) -> None:
        """Asynchronous: returns once the arrays are copied; `wait()` blocks until they are on disk."""
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator),
            meta=ocp.args.JsonSave(meta)), force=True)

    def restore(self, abstract_state, data_iterator, step: int | None = None) -> tuple[Any, dict] | None:
        """Restore `step` (default: the newest that restores) onto the shardings of `abstract_state`; the iterator
        is restored in place (pass None to restore the state alone). None when there is no checkpoint.

        Without `step`, a damaged newest checkpoint makes it fall back to the one before (a warning names both;
        the damaged one is moved aside, so later saves of that step do not collide with it). Raises
        `CorruptCheckpointError` when none restores.
        """
        steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
        failures = []
        for candidate in steps:
            try:
                restored = self._restore_step(candidate, abstract_state, data_iterator)
            except Exception as err:  # noqa: BLE001 -- any unreadable file: try the previous checkpoint
                failures.append((candidate, err))
                if step is not None:
                    break
                continue
            if failures:
                self._fall_back(failures, candidate)
            logging.info("restored %s step %d", self.directory, candidate)
            return restored
        if failures:
            raise CorruptCheckpointError(f"no checkpoint in {self.directory} could be restored (none was deleted): "
                                         + "; ".join(f"step {s} ({self.step_path(s)}): {type(e).__name__}: {e}"
                                                     for s, e in failures)) from failures[0][1]
        return None

    def step_path(self, step: int) -> pathlib.Path:
        return self.directory / str(step)

    def _restore_step(self, step: int, abstract_state, data_iterator) -> tuple[Any, dict]:
        items = dict(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
        if data_iterator is not None:  # None: state only (e.g. another process count, whose iterators differ)
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"], restored["meta"]

    def _fall_back(self, failures, used: int) -> None:
        """Warn naming the damaged steps and the one used; move the damaged ones aside (kept for inspection)."""
        aside = self.directory.parent / "corrupt_checkpoints"
        moved = []
        for step, _ in failures:
            target = aside / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
            if jax.process_index() == 0 and self.step_path(step).exists():
                aside.mkdir(parents=True, exist_ok=True)
                shutil.move(str(self.step_path(step)), str(target))
            moved.append(f"step {step} ({self.step_path(step)}, moved to {target})")
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("vicokd_checkpoint_fallback")
        self.manager.reload()
        detail = "; ".join(f"step {s}: {type(e).__name__}: {str(e)[:300]}" for s, e in failures)
        message = (f"checkpoint {', '.join(moved)} could not be restored; restored the previous checkpoint, step "
                   f"{used} ({self.step_path(used)}), instead. Cause: {detail}")
        logging.warning(message)
        warnings.warn(message, CheckpointFallbackWarning, stacklevel=3)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def save_variables(path, variables: dict) -> None:
    """Write a variables pytree (e.g. the trained teacher) as one orbax checkpoint (replaces a previous one)."""
    path = pathlib.Path(path).absolute()
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, jax.tree.map(lambda x: x, variables), force=True)
    checkpointer.wait_until_finished()


def load_variables(path, abstract_variables, local: bool = False) -> dict:
    """Read what `save_variables` wrote, onto the shardings of `abstract_variables` (ShapeDtypeStructs).

    `local=True` restores in the calling process alone. Orbax otherwise syncs all processes at barriers, which
    deadlocks code that only one process runs (the export after a multi-process run)."""
    path = pathlib.Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: no trained teacher there (run the teacher stage, or point "
                                "config.teacher.checkpoint at a workdir whose teacher stage finished)")
    options = ocp.options.MultiprocessingOptions()
    if local:
        me = jax.process_index()
        options = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    return ocp.StandardCheckpointer(multiprocessing_options=options).restore(path, abstract_variables)
