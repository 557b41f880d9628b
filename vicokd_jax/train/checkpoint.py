"""Checkpoints of a training stage: orbax `CheckpointManager` (async, keep N) with three items per step:

    state   the TrainState (StandardSave; restored onto any mesh through a sharded abstract target)
    data    the grain iterator's state (so a resumed run sees exactly the batches it would have seen)
    meta    JSON: config, versions, mesh, model description, step

Each finished stage also saves its final variables (params + batch_stats) as `<workdir>/<stage>/final_variables`:
the student stage loads the frozen teacher from there (never re-saved in the student's checkpoints), and the
export reads the student's.
"""
from __future__ import annotations

import logging
import pathlib
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

_ITEMS = ("state", "data", "meta")


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
        """Restore `step` (default: the newest) onto the shardings of `abstract_state`; the iterator is restored
        in place. None when there is no checkpoint."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=grain.checkpoint.CheckpointRestore(data_iterator),
            meta=ocp.args.JsonRestore()))
        logging.info("restored %s step %d", self.directory, step)
        return restored["state"], restored["meta"]

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


def load_variables(path, abstract_variables) -> dict:
    """Read what `save_variables` wrote, onto the shardings of `abstract_variables` (ShapeDtypeStructs)."""
    path = pathlib.Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: no trained teacher there (run the teacher stage, or point "
                                "config.teacher.checkpoint at a workdir whose teacher stage finished)")
    return ocp.StandardCheckpointer().restore(path, abstract_variables)
