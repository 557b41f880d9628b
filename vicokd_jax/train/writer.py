"""Metrics output of a stage: JSON lines (always) and TensorBoard event files (when tensorboard is installed).

A run resumed from step s first drops what a killed run wrote after s (`truncate`), so metrics.jsonl ends up
equal to an uninterrupted run's.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import time

import jax


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
        write_atomic(self.jsonl, "".join(kept))

    def last_train_record(self, step: int) -> dict:
        """The training metrics logged at `step` (a resumed, already finished stage reports them again)."""
        for record in reversed(self.history()):
            if record.get("step") == step and "loss/total" in record:
                return {k: v for k, v in record.items() if k != "step"}
        return {}

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def write_atomic(path: pathlib.Path, text: str) -> None:
    """Write `text` to `path` through a temporary file + rename: a killed process never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
