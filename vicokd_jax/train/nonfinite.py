"""Non-finite losses and gradients: the step skips such an update; the loop names the first one, exactly.

The record of the first non-finite update is kept on device (`record_first`, asynchronous after every call), so
the loop can name the exact step and loss term at its next log point without fetching every step's metrics.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


class NonFiniteLossError(FloatingPointError):
    """A training step produced a non-finite loss or gradient (train.on_nonfinite="raise")."""


@jax.jit
def record_first(record, metrics: dict, done):
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


def raise_if_any(stage: str, record, checkpoints) -> None:
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
