"""Preemption: SIGTERM asks the training loop to save a checkpoint and stop at the next step boundary.

One process: its own SIGTERM flag (`install_handler`). Several: JAX's preemption sync (`jax.distributed` catches
SIGTERM and agrees on a step with every process), so that every process saves the same step and none is left
waiting in a collective for the others.
"""
from __future__ import annotations

import itertools
import signal
import threading

import jax
from jax.experimental import multihost_utils

# Set by the SIGTERM handler (one process) or once every process has reached JAX's preemption sync point
# (several); checked once per step on the host (no device sync).
PREEMPTED = threading.Event()
_SYNC_STEP_IDS = itertools.count(1)  # one id per update of any stage: the same sequence on every process


def requested(steps_made: int) -> bool:
    """Whether to stop after the call that made `steps_made` updates.

    Several processes: the sync step ids run on across stages, so a notice near the end of the teacher stage
    stops the student before its first step.
    """
    if jax.process_count() > 1:
        reached = [multihost_utils.reached_preemption_sync_point(next(_SYNC_STEP_IDS)) for _ in range(steps_made)]
        if any(reached):
            PREEMPTED.set()
    return PREEMPTED.is_set()


def on_sigterm(signum, frame) -> None:
    PREEMPTED.set()


def install_handler():
    """Install our SIGTERM handler (one process, main thread only) and clear the flag; returns the previous
    handler to restore, or None when none was installed. With several processes jax.distributed's own handler
    drives the preemption sync; installing ours would replace it."""
    PREEMPTED.clear()
    if threading.current_thread() is threading.main_thread() and jax.process_count() == 1:
        return signal.signal(signal.SIGTERM, on_sigterm)
    return None


def restore_handler(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
