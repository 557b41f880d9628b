"""A stage's evaluation: its eval step over a whole split, accumulated into the metrics of METHOD.md.

The pretrain stage's metric is its reconstruction loss (`reconstruction`). Every threshold comes from the run
config (`metrics.EvalAccumulator.from_config`): visibility from the method's VC score threshold (the teacher's
view threshold for the teacher), pseudo-label diagnostics from `method.pl`.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from vicokd_jax import parallel
from vicokd_jax.data import datasets, pipeline
from vicokd_jax.train import metrics as metrics_lib
from vicokd_jax.train.setup import per_host_batch


def pad_batch(batch: dict, size: int) -> dict:
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


def evaluate(stage, cfg, variables, source) -> dict:
    """The metrics of `stage` (a `setup.Stage`) with `variables` on `source`, as a JSON-able dict."""
    size = cfg.train.eval_batch_size
    per_host_batch(size, stage.mesh)  # checks that the devices divide it
    if stage.name == "pretrain":
        return reconstruction(stage, cfg, variables, source)
    acc = metrics_lib.EvalAccumulator.from_config(cfg, stage.name, class_names=getattr(source, "class_names", None))
    for full_batch, outputs in eval_outputs(stage, cfg, variables, source):
        acc.add({k: np.asarray(v) for k, v in outputs.items()}, full_batch)
    return acc.result()


def eval_outputs(stage, cfg, variables, source):
    """Yield `(batch, eval-step outputs on the host)` over the whole of `source`, last batch padded."""
    size = cfg.train.eval_batch_size
    # NOTE: every process reads the whole (small) test split in the same order and builds the same global batches:
    # the same number of steps on every process (no collective left waiting) and the replicated outputs line up
    # with the labels each process holds.
    config = dataclasses.replace(datasets.pipeline_config(cfg, False, size), shard_index=0, shard_count=1)
    for full_batch in pipeline.make_dataset(source, config):
        full_batch = pad_batch(full_batch, size)
        batch = parallel.global_batch_from_full(full_batch, stage.mesh)
        yield full_batch, jax.device_get(stage.eval_step(variables, batch, *stage.step_extras))


def reconstruction(stage, cfg, variables, source) -> dict:
    """The pretrain stage's metrics: `reconstruction_loss`, the mean squared error over every masked patch of the
    split (one fixed draw of masks), and `num_examples`."""
    total = count = examples = 0.0
    for full_batch, outputs in eval_outputs(stage, cfg, variables, source):
        total += float(outputs["loss"]) * float(outputs["count"])
        count += float(outputs["count"])
        examples += float(np.sum(full_batch["valid"]))
    return {"reconstruction_loss": total / max(count, 1.0), "num_examples": int(examples)}
