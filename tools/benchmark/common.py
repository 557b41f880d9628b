"""What several benchmark modes share: the machine line, interleaved timing, XLA cost and memory analysis."""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from typing import Callable

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root


def machine() -> str:
    """One line naming the CPU, core count, Python and jax versions, and the devices."""
    import jax

    devices = jax.devices()
    kind = devices[0].device_kind if devices else "?"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
            f", jax {jax.__version__}, {len(devices)} x {jax.default_backend()} ({kind})")


def interleaved_medians(fns: dict[str, Callable[[], None]], reps: int, warmup: int = 1,
                        settle: int = 0) -> dict[str, float]:
    """Median seconds per call of each function, called in turn A, B, A, B, ... (so load drifts hit all alike).

    `settle` untimed calls precede each timed one. Two frameworks in one process disturb each other: the first
    JAX step after a PyTorch step was measured ~2 s slower than the next one (B=16 ST-GCN, 2 cores; the other's
    freed memory and caches), which no real training loop sees. With `settle=1`, each timed call is the second of
    a pair, i.e. a steady-state step.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            for _ in range(settle):
                fn()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def repeat_step(step: Callable, steps_per_call: int, num_carry: int, unroll: bool = False) -> Callable:
    """`step(*carry, *batch) -> (*carry, loss)` (the first `num_carry` arguments are the carry) as one function
    that makes `steps_per_call` updates on the same batch in a `lax.scan`, as the training loop does over stacked
    batches with `train.steps_per_call`, and returns the carry and the loss of the call's first step (so that a
    worker's first loss is step 1's whatever the call size); `unroll`: as straight-line code, not a loop.
    1: `step` itself."""
    if steps_per_call == 1:
        return step
    import jax

    def steps(*args):
        carry, batch = tuple(args[:num_carry]), args[num_carry:]

        def one(c, _):
            *c, loss = step(*c, *batch)
            return tuple(c), loss
        carry, losses = jax.lax.scan(one, carry, length=steps_per_call, unroll=unroll)
        return (*carry, losses[0])

    return steps


def experiment_call_plan(experiment: str, stage: str, step_input_bytes: int, overrides=()) -> tuple[int, bool]:
    """(steps per call, unrolled) that the default `train.steps_per_call=0` makes on CPU for `stage` of
    `experiment` (a file in experiments/, with `overrides`) when each step reads `step_input_bytes` per host:
    what a user's run of it does (`vicokd_jax.train.setup.call_plan`'s rule)."""
    import vicokd_jax as vk
    from vicokd_jax.train import setup

    cfg = vk.config.from_file(os.path.join(REPO, "experiments", experiment), list(overrides))
    return setup.cpu_call_plan(cfg, stage, setup.stage_steps_and_lr(stage, cfg)[0], step_input_bytes)


def cost_flops(compiled) -> float:
    """FLOPs of one call of a compiled (per-device) program from XLA's cost analysis; nan if unavailable."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per device
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


@contextlib.contextmanager
def unchunked_kernel_grads():
    """Trace ST-GCN kernel gradients without their batch-chunk loop, for FLOP counting only.

    XLA's cost analysis counts a while loop's body once, so the chunked kernel gradient (`stgcn.kernel_grad`, a
    `lax.map` over batch chunks) would be undercounted by the trip count. The same step traced unchunked has the
    true FLOPs.
    """
    from vicokd_jax.models import stgcn

    saved, stgcn.KERNEL_GRAD_CHUNKS = stgcn.KERNEL_GRAD_CHUNKS, 1
    try:
        yield
    finally:
        stgcn.KERNEL_GRAD_CHUNKS = saved


def memory(compiled) -> dict:
    """Per-device bytes of the compiled program: arguments, outputs, temporaries, and their peak."""
    m = compiled.memory_analysis()
    if m is None:
        return {}
    out = {k: int(getattr(m, f"{k}_size_in_bytes", 0)) for k in ("argument", "output", "alias", "temp")}
    # Donated arguments alias outputs: arguments + outputs - aliased + temporaries bounds the peak from above.
    # (XLA's own peak_memory_in_bytes is exact on GPU/TPU but not filled in by the CPU backend.)
    bound = out["argument"] + out["output"] - out["alias"] + out["temp"]
    out["peak"] = max(int(getattr(m, "peak_memory_in_bytes", 0) or 0), bound) if out["temp"] else bound
    return out


def gib(n: float) -> str:
    """Bytes as GiB (from 1 GiB up) or MiB, two decimals."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"
