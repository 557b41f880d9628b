"""Performance measurements. Claims in docs come from this tool's output (docs/PERFORMANCE.md).

    python -m tools.benchmark step --preset micro --batch 16                    # teacher, student, student stage
    python -m tools.benchmark step --preset vit_b16 --batch 8 --dtype bfloat16 --peak-tflops 790   # on a GPU
    python -m tools.benchmark step --preset vit_b16 --batch 1 --compile-only    # compile time, FLOPs, memory
    python -m tools.benchmark data                                              # default SynthMV size vs the step
    python -m tools.benchmark data --tfds synth_mv/partial --data-dir ~/tensorflow_datasets
    python -m tools.benchmark stgcn-vs-torch                                    # B=16, M=2, T=100, NTU-25, SGD
    python -m tools.benchmark scaling --presets vit_b16 vit_l16 --devices 8 64  # DP vs FSDP, compile only

Modes:
  step            clips/s and compile time of the teacher-stage step, the student alone (forward, backward,
                  update; no teacher) and the full student-stage step (frozen teacher forward + student);
                  FLOPs per step from XLA's cost analysis, MFU given --peak-tflops (per device), memory from
                  the compiled step's memory analysis. Steps run back to back without a host sync; the clock
                  stops when the last step's outputs are ready.
  data            examples/s of SynthMV generation and of the grain pipeline (SynthMV or a prepared TFDS
                  source), against what the student-stage step consumes at the same sizes (clips/s), and the
                  two together (pipeline feeding the step, as in the training loop).
  stgcn-vs-torch  our ST-GCN train step against a PyTorch ST-GCN with pyskl's layout (tools/torch_stgcn.py),
                  same batch, same optimiser (SGD, Nesterov momentum, weight decay), alternating A, B, A, B
                  in one process on the same cores; prints both medians and the ratio.
  scaling         compiles (never runs) the student-stage step on fake CPU meshes of N devices, one subprocess
                  per N (the device count is fixed when JAX starts), and reports per-device parameter +
                  optimizer memory for data parallelism (DP: replicated) vs FSDP, and the collectives in the HLO.

Timings on a shared machine are noisy: compare ratios from one run (interleaved), never absolute numbers
taken at different times.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from typing import Callable

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------------------------
def _machine() -> str:
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


def _cost_flops(compiled) -> float:
    """FLOPs of one call of a compiled (per-device) program from XLA's cost analysis; nan if unavailable."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per device
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


@contextlib.contextmanager
def _unchunked_kernel_grads():
    """Trace ST-GCN kernel gradients without their batch-chunk loop, for FLOP counting only.

    XLA's cost analysis counts a while loop's body once, so the chunked kernel gradient (`stgcn._kernel_grad`, a
    `lax.map` over batch chunks) would be undercounted by the trip count. The same step traced unchunked has the
    true FLOPs.
    """
    from vicokd_jax.models import stgcn

    saved, stgcn.KERNEL_GRAD_CHUNKS = stgcn.KERNEL_GRAD_CHUNKS, 1
    try:
        yield
    finally:
        stgcn.KERNEL_GRAD_CHUNKS = saved


def _memory(compiled) -> dict:
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


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


# ------------------------------------------------------------------------------------------------------------
# step: teacher, student, student stage
# ------------------------------------------------------------------------------------------------------------
def _stage_config(preset: str, batch: int, views: int, frames: int | None, dtype: str, method: str,
                  mesh_fsdp: int = 1):
    from vicokd_jax.config import default_config
    from vicokd_jax.models import presets

    p = presets.get_preset(preset)
    cfg = default_config(method)
    cfg.model.preset, cfg.model.dtype = preset, dtype
    cfg.data.num_views, cfg.data.num_frames, cfg.data.image_size = views, frames or p.frames, p.image_size
    cfg.train.batch_size = batch
    cfg.mesh.data, cfg.mesh.fsdp = -1, mesh_fsdp
    return cfg


def _example(cfg) -> dict:
    """One training example of the config's sizes (SynthMV through the pipeline's transform), batch axis of 1."""
    from vicokd_jax.data.synthetic import SynthMV
    from vicokd_jax.train import loop

    d = cfg.data
    source = SynthMV("train", 4, seed=d.seed, num_views=d.num_views, num_frames=d.num_frames,
                     image_size=d.image_size, num_classes=d.num_classes)
    return loop.example_batch(source, cfg)


def _host_batch(example: dict, batch: int) -> dict:
    """`example` repeated to `batch` rows: a training batch of real content and exact dtypes."""
    import numpy as np

    return {k: np.repeat(v, batch, axis=0) for k, v in example.items()}


def _abstract(tree, shardings=None):
    import jax

    if shardings is None:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def build_step(kind: str, cfg, mesh, example: dict, materialize: bool = True) -> dict:
    """One jit step of `kind` ("teacher" | "student" | "stage") with its arguments (abstract or concrete).

    teacher: the teacher-stage step of `vicokd_jax.train.step`; stage: the student-stage step (frozen teacher
    forward + student forward/backward/update); student: the student alone (cross-entropy on the labels).
    The batch is `example` repeated to `cfg.train.batch_size`. materialize=False: every argument is a
    ShapeDtypeStruct with its sharding (for `fn.lower(*args).compile()` without allocating anything).
    Returns dict(fn, args, state_shardings, abstract_state).
    """
    import jax
    import jax.numpy as jnp
    import optax

    from vicokd_jax import parallel
    from vicokd_jax.models import presets
    from vicokd_jax.train import loop, state as state_lib, step as step_lib

    tx, schedule = state_lib.make_optimizer(cfg.train, 1000, cfg.train.lr)
    teacher = presets.teacher_from_config(cfg)
    model = teacher if kind == "teacher" else presets.student_from_config(cfg)
    init = loop._teacher_init(teacher, cfg, example) if kind == "teacher" else loop._student_init(model, example)

    captured = {}

    def make_state():
        state, shardings = state_lib.create_state(init, tx, cfg.train.seed, mesh, cfg.mesh.fsdp_min_size)
        captured["shardings"] = shardings
        return state

    abstract_state = jax.eval_shape(make_state)  # traces create_state: shardings without materialising
    shardings = captured["shardings"]
    state = make_state() if materialize else _abstract(abstract_state, shardings)
    n = cfg.train.batch_size
    if materialize:
        batch = parallel.global_batch(_host_batch(example, n), mesh)
    else:
        narrow = {"int64": jnp.int32, "float64": jnp.float32}  # as parallel.global_batch converts them
        batch = {k: jax.ShapeDtypeStruct((n, *v.shape[1:]), narrow.get(v.dtype.name, v.dtype),
                                         sharding=parallel.batch_sharding(mesh))
                 for k, v in example.items()}

    if kind == "teacher":
        fn = step_lib.make_train_step("teacher", model, tx, schedule, cfg, mesh, shardings)
        return dict(fn=fn, args=(state, batch), abstract_state=abstract_state, state_shardings=shardings)

    if kind == "stage":
        teacher_init = loop._teacher_init(teacher, cfg, example)
        rep = parallel.replicated(mesh)
        abstract_teacher = jax.eval_shape(teacher_init, jax.random.key(0))
        teacher_shardings = jax.tree.map(lambda _: rep, abstract_teacher)
        teacher_vars = (jax.jit(teacher_init, out_shardings=teacher_shardings)(jax.random.key(1)) if materialize
                        else _abstract(abstract_teacher, teacher_shardings))
        fn = step_lib.make_train_step("student", model, tx, schedule, cfg, mesh, shardings, teacher,
                                      teacher_shardings)
        return dict(fn=fn, args=(state, batch, teacher_vars), abstract_state=abstract_state,
                    state_shardings=shardings)

    def student_step(state, batch):  # the student's own cost: no teacher, plain cross-entropy
        def loss_fn(params):
            out, new_ms = model.apply({"params": params, **state.model_state}, batch["rgb"], batch["view_mask"],
                                      train=True, mutable=list(state.model_state.keys()),
                                      rngs={"dropout": jax.random.wrap_key_data(state.rng)})
            loss = optax.softmax_cross_entropy_with_integer_labels(out["logits"].astype(jnp.float32),
                                                                   batch["label"]).mean()
            return loss, dict(new_ms)
        (loss, new_ms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                             model_state=new_ms, opt_state=opt_state), {"loss/total": loss}

    fn = jax.jit(student_step, donate_argnums=(0,), in_shardings=(shardings, parallel.batch_sharding(mesh)),
                 out_shardings=(shardings, parallel.replicated(mesh)))
    return dict(fn=fn, args=(state, batch), abstract_state=abstract_state, state_shardings=shardings)


def measure_step(kind: str, cfg, mesh, example: dict, steps: int, compile_only: bool,
                 peak_tflops: float | None) -> dict:
    """Compile time, FLOPs, memory and (unless compile_only) clips/s of one step kind."""
    import jax

    built = build_step(kind, cfg, mesh, example, materialize=not compile_only)
    start = time.perf_counter()
    compiled = built["fn"].lower(*built["args"]).compile()
    result = dict(kind=kind, compile_s=time.perf_counter() - start, flops=_cost_flops(compiled),
                  memory=_memory(compiled), devices=mesh.devices.size)
    if kind == "teacher":  # the only step that differentiates the ST-GCN: count its chunked loops in full
        with _unchunked_kernel_grads():
            unchunked = build_step(kind, cfg, mesh, example, materialize=False)
            result["flops"] = _cost_flops(unchunked["fn"].lower(*unchunked["args"]).compile())
    if compile_only:
        return result
    state, rest = built["args"][0], built["args"][1:]
    for _ in range(2):  # warm-up (first calls allocate)
        state, metrics = compiled(state, *rest)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):  # no host sync inside: dispatch runs ahead, as in the training loop
        state, metrics = compiled(state, *rest)
    jax.block_until_ready((state, metrics))
    seconds = (time.perf_counter() - start) / steps
    result.update(step_s=seconds, clips_per_s=cfg.train.batch_size / seconds)
    if peak_tflops:
        result["mfu"] = result["flops"] / seconds / (peak_tflops * 1e12)  # per-device FLOPs vs per-device peak
    return result


def _print_step(r: dict, cfg) -> None:
    line = (f"step[{r['kind']:7s}] preset {cfg.model.preset} {cfg.model.dtype} batch {cfg.train.batch_size} "
            f"({cfg.data.num_views} views x {cfg.data.num_frames} x {cfg.data.image_size}^2): compile "
            f"{r['compile_s']:.1f} s, {r['flops'] / 1e12:.3f} TFLOP/step/device")
    if "step_s" in r:
        line += f", {r['step_s'] * 1e3:.1f} ms/step, {r['clips_per_s']:.2f} clips/s"
    if "mfu" in r:
        line += f", MFU {100 * r['mfu']:.1f}%"
    if r["memory"]:
        m = r["memory"]
        line += (f", memory/device: peak {_gib(m['peak'])} (args {_gib(m['argument'])}, temp "
                 f"{_gib(m['temp'])})")
    print(line, flush=True)


def bench_step(args) -> list[dict]:
    from vicokd_jax import parallel

    cfg = _stage_config(args.preset, args.batch, args.views, args.frames, args.dtype, args.method)
    mesh = parallel.mesh_from_config(cfg.mesh)
    example = _example(cfg)
    results = []
    for kind in args.which:
        r = measure_step(kind, cfg, mesh, example, args.steps, args.compile_only, args.peak_tflops)
        _print_step(r, cfg)
        results.append(r)
    return results


# ------------------------------------------------------------------------------------------------------------
# data: the input pipeline against the step's consumption
# ------------------------------------------------------------------------------------------------------------
def _pipeline_rate(source, cfg, batch: int, workers: int, examples: int, warmup_batches: int) -> float:
    """Steady-state examples/s of the training pipeline: `examples` timed after `warmup_batches` untimed ones.

    Grain reads a MapDataset's elements (here: whole batches) with 16 prefetch threads by default: batches behind
    the first are already being made while it is awaited, so a timer started after the first batch measures that
    buffer, not the pipeline (it once reported 5x the rendering rate). The warm-up must exceed the prefetch depth.
    """
    import dataclasses

    from vicokd_jax.data.pipeline import make_dataset
    from vicokd_jax.train import loop

    pcfg = dataclasses.replace(loop.pipeline_config(cfg, True, batch), num_workers=workers, shard_index=0,
                               shard_count=1)
    it = iter(make_dataset(source, pcfg))
    for _ in range(warmup_batches):
        next(it)
    steps = max(1, examples // batch)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - start)


def _fed_rate(cfg, mesh, source, example: dict, steps: int) -> float:
    """Clips/s of the student-stage step fed by the training pipeline (`cfg.data.num_workers`), as in the loop."""
    import dataclasses

    import jax

    from vicokd_jax import parallel
    from vicokd_jax.data.pipeline import make_dataset
    from vicokd_jax.train import loop

    built = build_step("stage", cfg, mesh, example)
    fn, state, teacher_vars = built["fn"], built["args"][0], built["args"][2]
    pcfg = dataclasses.replace(loop.pipeline_config(cfg, True, cfg.train.batch_size), shard_index=0, shard_count=1)
    it = iter(make_dataset(source, pcfg))
    state, metrics = fn(state, parallel.global_batch(next(it), mesh), teacher_vars)  # compile + worker start-up
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = fn(state, parallel.global_batch(next(it), mesh), teacher_vars)
    jax.block_until_ready((state, metrics))
    return steps * cfg.train.batch_size / (time.perf_counter() - start)


def bench_data(args) -> dict:
    from vicokd_jax import parallel
    from vicokd_jax.config import default_config
    from vicokd_jax.train import loop

    cfg = default_config("vicokd")  # the default SynthMV size: 4 views x 16 x 32^2, batch 16, preset micro
    cfg.data.cache_examples = False  # measure rendering, not the in-memory cache of later epochs
    if args.tfds:
        name, _, config = args.tfds.partition("/")
        cfg.data.name, cfg.data.tfds_config = name, config or "partial"
        cfg.data.data_dir = os.path.expanduser(args.data_dir or "")
    batch = args.batch or cfg.train.batch_size
    cfg.train.batch_size = batch
    source = loop.make_source(cfg, cfg.data.train_split)
    label = args.tfds or "SynthMV (generated on the fly)"
    result = {"source": label}
    if not args.tfds:
        n = min(len(source), args.examples)
        start = time.perf_counter()
        for i in range(n):
            source[i]
        result["generate"] = n / (time.perf_counter() - start)
        print(f"data: SynthMV generation ({source.num_views} views x {source.num_frames} x "
              f"{source.image_size}^2): {result['generate']:.1f} examples/s (1 process)", flush=True)
    for workers in args.workers:
        rate = _pipeline_rate(source, cfg, batch, workers, args.examples, args.warmup_batches)
        result[f"pipeline_{workers}"] = rate
        print(f"data: grain pipeline over {label}, {workers} workers, batch {batch}: {rate:.1f} examples/s",
              flush=True)
    if args.cached and not args.tfds:
        # The config default (data.cache_examples) keeps rendered clips in memory: every epoch after the first
        # reads them from there. The pipeline's order is seeded, so a first pass renders exactly the clips that a
        # second, measured pass then reads from the cache.
        from vicokd_jax.data.pipeline import CachedSource

        cached = CachedSource(source)
        _pipeline_rate(cached, cfg, batch, 0, args.examples, args.warmup_batches)
        rate = _pipeline_rate(cached, cfg, batch, 0, args.examples, args.warmup_batches)
        result["pipeline_cached_0"] = rate
        print(f"data: grain pipeline over the example cache (epochs after the first), 0 workers, batch {batch}: "
              f"{rate:.1f} examples/s", flush=True)
    if args.no_step:
        return result

    # The consumer: the student-stage step at the same sizes (default preset), alone, then fed by the pipeline.
    mesh = parallel.mesh_from_config(cfg.mesh)
    example = _example(cfg)
    step = measure_step("stage", cfg, mesh, example, args.steps, False, None)
    result["step_clips_per_s"] = step["clips_per_s"]
    ratios = ", ".join(f"{w} workers {result[f'pipeline_{w}'] / step['clips_per_s']:.2f}x" for w in args.workers)
    if "pipeline_cached_0" in result:
        ratios += f", cached epochs (0 workers) {result['pipeline_cached_0'] / step['clips_per_s']:.2f}x"
    print(f"data: student-stage step (preset {cfg.model.preset}, batch {batch}) consumes "
          f"{step['clips_per_s']:.1f} clips/s; pipeline / step: {ratios}", flush=True)
    default_workers = cfg.data.num_workers
    if args.fed_workers is not None:
        cfg.data.num_workers = args.fed_workers
    fed = _fed_rate(cfg, mesh, source, example, args.steps)
    result["loop_clips_per_s"] = fed
    which = "the config default" if cfg.data.num_workers == default_workers else "--fed-workers"
    print(f"data: pipeline ({cfg.data.num_workers} worker(s), {which}) feeding the step: {fed:.1f} "
          f"clips/s ({100 * fed / step['clips_per_s']:.0f}% of the step alone)", flush=True)
    return result


# ------------------------------------------------------------------------------------------------------------
# stgcn-vs-torch
# ------------------------------------------------------------------------------------------------------------
def _jax_stgcn_step(x, y, num_classes: int, lr: float, momentum: float, weight_decay: float, channels, strides,
                    steps_per_call: int = 1):
    """Our ST-GCN SGD train step (forward, backward, update, BN statistics), compiled; -> run() closure.

    steps_per_call > 1: one call makes that many steps in a `lax.scan` (on the same batch), as the training loop
    does with `train.steps_per_call`; run() then returns after all of them."""
    import jax
    import jax.numpy as jnp
    import optax

    from vicokd_jax.models.stgcn import STGCN

    model = STGCN(num_classes, channels=tuple(channels), strides=tuple(strides))
    variables = model.init(jax.random.key(0), x[:1])
    # Same update as torch.optim.SGD(momentum, nesterov=True, weight_decay): decay added to the gradient.
    tx = optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum=momentum, nesterov=True))

    def step(params, batch_stats, opt_state, x, y):
        def loss_fn(p):
            logits, new = model.apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                      mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new["batch_stats"]
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    carry = [variables["params"], variables["batch_stats"], tx.init(variables["params"])]
    x, y = jnp.asarray(x), jnp.asarray(y)
    def steps(params, batch_stats, opt_state, x, y):  # steps_per_call updates on the same batch
        def one(c, _):
            *c, loss = step(*c, x, y)
            return tuple(c), loss
        c, losses = jax.lax.scan(one, (params, batch_stats, opt_state), length=steps_per_call)
        return (*c, losses[-1])

    start = time.perf_counter()
    compiled = jax.jit(steps if steps_per_call > 1 else step, donate_argnums=(0, 1, 2)).lower(*carry, x, y).compile()
    compile_s = time.perf_counter() - start

    with _unchunked_kernel_grads():  # a fresh trace of the same step, for its FLOPs
        flops = _cost_flops(jax.jit(lambda *a: step(*a)).lower(*carry, x, y).compile())

    def run():
        *new, loss = compiled(*carry, x, y)
        carry[:] = new
        loss.block_until_ready()
        return float(loss)

    return run, compile_s, flops


def _torch_stgcn_step(x, y, num_classes: int, lr: float, momentum: float, weight_decay: float, channels, strides,
                      threads: int):
    import torch

    sys.path.insert(0, _REPO)
    from tools.torch_stgcn import TorchSTGCN

    torch.set_num_threads(threads)
    model = TorchSTGCN(num_classes, channels=tuple(channels), strides=tuple(strides)).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()

    def run():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return run


def bench_stgcn_vs_torch(args) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.persons, args.frames, 25, 3), dtype=np.float32)
    y = rng.integers(0, args.classes, args.batch).astype(np.int32)
    hyper = dict(num_classes=args.classes, lr=0.01, momentum=0.9, weight_decay=5e-4, channels=args.channels,
                 strides=args.strides)
    per_call = args.steps_per_call
    jax_run, compile_s, flops = _jax_stgcn_step(x, y, **hyper, steps_per_call=per_call)
    torch_run = _torch_stgcn_step(x, y, threads=args.threads, **hyper)
    calls = f", {per_call} steps per call" if per_call > 1 else ""
    print(f"stgcn-vs-torch: B={args.batch}, M={args.persons}, T={args.frames}, 25 joints, SGD; jax compile "
          f"{compile_s:.1f} s, {flops / 1e9:.1f} GFLOP/step (XLA cost analysis){calls}; torch {args.threads} "
          "threads", flush=True)
    med = interleaved_medians({"jax": jax_run, "torch": torch_run}, args.reps, warmup=2, settle=1)
    med["jax"] /= per_call  # time per step
    ratio = med["torch"] / med["jax"]
    print(f"stgcn-vs-torch: jax {med['jax'] * 1e3:.0f} ms/step ({args.batch / med['jax']:.1f} clips/s), torch "
          f"{med['torch'] * 1e3:.0f} ms/step ({args.batch / med['torch']:.1f} clips/s); speed-up jax/torch = "
          f"{ratio:.2f}x (medians of {args.reps}, interleaved, each timed step the second of a pair)", flush=True)
    return dict(jax_s=med["jax"], torch_s=med["torch"], speedup=ratio, compile_s=compile_s, steps_per_call=per_call)


# ------------------------------------------------------------------------------------------------------------
# scaling: DP vs FSDP on fake meshes (compile only)
# ------------------------------------------------------------------------------------------------------------
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


def count_collectives(hlo_text: str) -> dict[str, int]:
    """Collective ops in compiled HLO text (async pairs count once, by their -start op)."""
    counts = {}
    for name in COLLECTIVES:
        counts[name] = len(re.findall(rf"= [^=]*? {name}(?:-start)?\(", hlo_text))
    return counts


def per_device_bytes(abstract_tree, shardings) -> int:
    """Bytes one device holds of a pytree of ShapeDtypeStructs laid out by `shardings` (from shard shapes)."""
    import jax
    import numpy as np

    sizes = jax.tree.map(lambda x, s: int(np.prod(s.shard_shape(x.shape), dtype=np.int64)) * x.dtype.itemsize,
                         abstract_tree, shardings)
    return int(sum(jax.tree.leaves(sizes)))


def scaling_child(preset: str, views: int, frames: int | None, layout: str, dtype: str,
                  fsdp_min_size: int | None = None) -> dict:
    """In a process started with N fake devices: compile the student-stage step for `layout` ("dp" | "fsdp")."""
    import jax

    from vicokd_jax import parallel

    n = jax.device_count()
    fsdp = n if layout == "fsdp" else 1
    cfg = _stage_config(preset, n, views, frames, dtype, "vicokd", mesh_fsdp=fsdp)  # 1 clip per device
    if fsdp_min_size is not None:
        cfg.mesh.fsdp_min_size = fsdp_min_size
    mesh = parallel.mesh_from_config(cfg.mesh)
    built = build_step("stage", cfg, mesh, _example(cfg), materialize=False)
    abstract, shardings = built["abstract_state"], built["state_shardings"]
    start = time.perf_counter()
    compiled = built["fn"].lower(*built["args"]).compile()
    compile_s = time.perf_counter() - start
    full = lambda tree: per_device_bytes(tree, jax.tree.map(lambda _: parallel.replicated(mesh), tree))  # noqa
    return dict(preset=preset, devices=n, layout=layout, compile_s=compile_s,
                params_bytes=per_device_bytes(abstract.params, shardings.params),
                opt_bytes=per_device_bytes(abstract.opt_state, shardings.opt_state),
                params_full_bytes=full(abstract.params), opt_full_bytes=full(abstract.opt_state),
                memory=_memory(compiled),
                collectives=count_collectives(compiled.as_text()), frames=cfg.data.num_frames)


def _run_scaling_child(devices: int, preset: str, layout: str, args) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    cmd = [sys.executable, "-m", "tools.benchmark", "_scaling_child", "--preset", preset, "--layout", layout,
           "--views", str(args.views), "--dtype", args.dtype]
    cmd += ["--frames", str(args.frames)] if args.frames else []
    cmd += ["--fsdp-min-size", str(args.fsdp_min_size)] if args.fsdp_min_size is not None else []
    proc = subprocess.run(cmd, cwd=_REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"scaling child {cmd} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_scaling(args) -> list[dict]:
    rows = []
    for preset in args.presets:
        for devices in args.devices:
            pair = {layout: _run_scaling_child(devices, preset, layout, args) for layout in ("dp", "fsdp")}
            for layout, r in pair.items():
                coll = ", ".join(f"{k} {v}" for k, v in r["collectives"].items() if v) or "none"
                print(f"scaling: {preset} student stage, {devices} devices, {layout.upper():4s} (1 clip/device, "
                      f"{args.views} views x {r['frames']} frames): params+opt/device "
                      f"{_gib(r['params_bytes'] + r['opt_bytes'])} (params {_gib(r['params_bytes'])}, opt "
                      f"{_gib(r['opt_bytes'])}); compiled peak/device {_gib(r['memory'].get('peak', 0))}; "
                      f"compile {r['compile_s']:.1f} s; collectives: {coll}", flush=True)
                rows.append(r)
            dp, fs = (pair[k]["params_bytes"] + pair[k]["opt_bytes"] for k in ("dp", "fsdp"))
            print(f"scaling: {preset}, {devices} devices: FSDP / DP params+opt per device = {fs / dp:.3f} "
                  f"(1/{dp / fs:.1f})", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the results to this JSON file")
    sub = parser.add_subparsers(dest="mode", required=True)

    step = sub.add_parser("step", help="teacher / student / student-stage step: clips/s, compile, FLOPs, memory")
    step.add_argument("--preset", default="micro")
    step.add_argument("--batch", type=int, default=16, help="global batch (clips)")
    step.add_argument("--views", type=int, default=4)
    step.add_argument("--frames", type=int, help="clip length (default: the preset's)")
    step.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    step.add_argument("--method", default="vicokd")
    step.add_argument("--which", nargs="+", default=["teacher", "student", "stage"],
                      choices=["teacher", "student", "stage"])
    step.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    step.add_argument("--compile-only", action="store_true", help="compile and analyse; do not run")
    step.add_argument("--peak-tflops", type=float, help="per-device peak (e.g. 790 for H200 dense bf16): MFU")

    data = sub.add_parser("data", help="input pipeline throughput against the step's consumption")
    data.add_argument("--examples", type=int, default=192, help="timed examples per pipeline measurement")
    data.add_argument("--warmup-batches", type=int, default=20,
                      help="untimed batches first; must exceed grain's read-ahead (16 threads)")
    data.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    data.add_argument("--batch", type=int, help="default: train.batch_size of the default config (16)")
    data.add_argument("--tfds", help="NAME/CONFIG of a prepared TFDS dataset instead of on-the-fly SynthMV")
    data.add_argument("--data-dir", help="TFDS data_dir (default ~/tensorflow_datasets)")
    data.add_argument("--steps", type=int, default=10)
    data.add_argument("--no-step", action="store_true", help="pipeline only")
    data.add_argument("--fed-workers", type=int,
                      help="grain workers of the pipeline feeding the step (default: data.num_workers of the config; "
                           "the sweep uses 0 with --prepared ArrayRecord data)")
    data.add_argument("--cached", action="store_true",
                      help="also measure epochs after the first, read from the in-memory example cache "
                           "(data.cache_examples, the default for SynthMV on the fly)")

    vs = sub.add_parser("stgcn-vs-torch", help="ST-GCN train step: ours vs PyTorch, interleaved")
    vs.add_argument("--batch", type=int, default=16)
    vs.add_argument("--persons", type=int, default=2)
    vs.add_argument("--frames", type=int, default=100)
    vs.add_argument("--classes", type=int, default=60)
    vs.add_argument("--reps", type=int, default=10)
    vs.add_argument("--steps-per-call", type=int, default=1,
                    help="our steps per compiled call (lax.scan), as train.steps_per_call; times are per step")
    vs.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads (= cores)")
    vs.add_argument("--channels", type=int, nargs="+", default=[64, 64, 64, 64, 128, 128, 128, 256, 256, 256],
                    help="block widths (default: the reference ST-GCN)")
    vs.add_argument("--strides", type=int, nargs="+", default=[1, 1, 1, 1, 2, 1, 1, 2, 1, 1])

    sc = sub.add_parser("scaling", help="DP vs FSDP memory and collectives on fake meshes (compile only)")
    sc.add_argument("--presets", nargs="+", default=["vit_b16", "vit_l16"])
    sc.add_argument("--devices", type=int, nargs="+", default=[8, 64])
    sc.add_argument("--views", type=int, default=4)
    sc.add_argument("--frames", type=int, help="clip length (default: the preset's)")
    sc.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    sc.add_argument("--fsdp-min-size", type=int, help="tensors smaller stay replicated (default: the config's)")

    child = sub.add_parser("_scaling_child")  # internal: one mesh size per process
    child.add_argument("--preset", required=True)
    child.add_argument("--layout", required=True, choices=["dp", "fsdp"])
    child.add_argument("--views", type=int, default=4)
    child.add_argument("--frames", type=int)
    child.add_argument("--dtype", default="bfloat16")
    child.add_argument("--fsdp-min-size", type=int)
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.mode == "_scaling_child":
        with contextlib.redirect_stdout(sys.stderr):
            result = scaling_child(args.preset, args.views, args.frames, args.layout, args.dtype,
                                   args.fsdp_min_size)
        print(json.dumps(result))
        return 0
    if args.mode == "data":
        import grain
        from absl import flags  # grain worker processes need parsed absl flags outside absl.app.run

        flags.FLAGS.mark_as_parsed()
        read_ahead = grain.ReadOptions().num_threads
        if args.warmup_batches <= read_ahead:
            # Batches read ahead during a shorter warm-up come out of a buffer: the rate would be meaningless
            # (a 2-batch warm-up once reported 19319 examples/s for a pipeline rendering 46/s).
            _parser().error(f"data: --warmup-batches {args.warmup_batches} must exceed grain's read-ahead of "
                            f"{read_ahead} batches (ReadOptions.num_threads), or the timed batches are buffered")
    print(f"machine: {_machine()}", flush=True)
    modes = {"step": bench_step, "data": bench_data, "stgcn-vs-torch": bench_stgcn_vs_torch,
             "scaling": bench_scaling}
    result = modes[args.mode](args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
