"""`data` mode: SynthMV generation and grain pipeline throughput against what the student-stage step consumes."""
from __future__ import annotations

import dataclasses
import os
import time

from tools.benchmark.train_steps import build_step, measure_step

HELP = "input pipeline throughput against the step's consumption"


def add_arguments(parser) -> None:
    parser.add_argument("--examples", type=int, default=192, help="timed examples per pipeline measurement")
    parser.add_argument("--warmup-batches", type=int, default=20,
                        help="untimed batches first; must exceed grain's read-ahead (16 threads)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch", type=int, help="default: train.batch_size of the default config (16)")
    parser.add_argument("--tfds", help="NAME/CONFIG of a prepared TFDS dataset instead of on-the-fly SynthMV")
    parser.add_argument("--data-dir", help="TFDS data_dir (default ~/tensorflow_datasets)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no-step", action="store_true", help="pipeline only")
    parser.add_argument("--fed-workers", type=int,
                        help="grain workers of the pipeline feeding the step (default: data.num_workers of the "
                             "config; the sweep uses 0 with --prepared ArrayRecord data)")
    parser.add_argument("--cached", action="store_true",
                        help="also measure epochs after the first, read from the in-memory example cache "
                             "(data.cache_examples, the default for SynthMV on the fly)")


def check_args(args) -> str | None:
    """Why the arguments cannot give a meaningful rate (an error message), or None."""
    import grain

    read_ahead = grain.ReadOptions().num_threads
    if args.warmup_batches <= read_ahead:
        # Batches read ahead during a shorter warm-up come out of a buffer: the rate would be meaningless
        # (a 2-batch warm-up once reported 19319 examples/s for a pipeline rendering 46/s).
        return (f"data: --warmup-batches {args.warmup_batches} must exceed grain's read-ahead of {read_ahead} "
                "batches (ReadOptions.num_threads), or the timed batches are buffered")
    return None


def pipeline_rate(source, cfg, batch: int, workers: int, examples: int, warmup_batches: int) -> float:
    """Steady-state examples/s of the training pipeline: `examples` timed after `warmup_batches` untimed ones.

    Grain reads a MapDataset's elements (here: whole batches) with 16 prefetch threads by default: batches behind
    the first are already being made while it is awaited, so a timer started after the first batch measures that
    buffer, not the pipeline (it once reported 5x the rendering rate). The warm-up must exceed the prefetch depth.
    """
    from vicokd_jax.data import datasets
    from vicokd_jax.data.pipeline import make_dataset

    pcfg = dataclasses.replace(datasets.pipeline_config(cfg, True, batch), num_workers=workers, shard_index=0,
                               shard_count=1)
    it = iter(make_dataset(source, pcfg))
    for _ in range(warmup_batches):
        next(it)
    steps = max(1, examples // batch)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - start)


def fed_rate(cfg, mesh, source, steps: int, plan: tuple[int, bool] = (1, False)) -> float:
    """Clips/s of the student-stage step fed by the training pipeline (`cfg.data.num_workers`), as in the loop:
    `plan` = (steps per call, unrolled), each call fed that many batches."""
    import jax

    from vicokd_jax import parallel
    from vicokd_jax.data import datasets
    from vicokd_jax.data.pipeline import make_dataset

    k, unroll = plan
    built = build_step("stage", cfg, mesh, steps_per_call=k, unroll=unroll)
    fn, state, teacher_vars = built["fn"], built["args"][0], built["args"][2]
    pcfg = dataclasses.replace(datasets.pipeline_config(cfg, True, cfg.train.batch_size), shard_index=0,
                               shard_count=1)
    it = iter(make_dataset(source, pcfg))
    feed = lambda: (parallel.global_batches([next(it) for _ in range(k)], mesh) if k > 1  # noqa: E731
                    else parallel.global_batch(next(it), mesh))
    state, metrics = fn(state, feed(), teacher_vars)  # compile + worker start-up
    jax.block_until_ready(metrics)
    calls = max(1, -(-steps // k))
    start = time.perf_counter()
    for _ in range(calls):
        state, metrics = fn(state, feed(), teacher_vars)
    jax.block_until_ready((state, metrics))
    return calls * k * cfg.train.batch_size / (time.perf_counter() - start)


def run(args) -> dict:
    from absl import flags

    from vicokd_jax import parallel
    from vicokd_jax.config import default_config
    from vicokd_jax.data import datasets

    flags.FLAGS.mark_as_parsed()  # grain worker processes need parsed absl flags outside absl.app.run
    cfg = default_config("vicokd")  # the default SynthMV size: 4 views x 16 x 32^2, batch 16, preset micro
    cfg.data.cache_examples = False  # measure rendering, not the in-memory cache of later epochs
    if args.tfds:
        name, _, config = args.tfds.partition("/")
        cfg.data.name, cfg.data.tfds_config = name, config or "partial"
        cfg.data.data_dir = os.path.expanduser(args.data_dir or "")
    batch = args.batch or cfg.train.batch_size
    cfg.train.batch_size = batch
    source = datasets.make_source(cfg, cfg.data.train_split)
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
        rate = pipeline_rate(source, cfg, batch, workers, args.examples, args.warmup_batches)
        result[f"pipeline_{workers}"] = rate
        print(f"data: grain pipeline over {label}, {workers} workers, batch {batch}: {rate:.1f} examples/s",
              flush=True)
    if args.cached and not args.tfds:
        # The config default (data.cache_examples) keeps rendered clips in memory: every epoch after the first
        # reads them from there. The pipeline's order is seeded, so a first pass renders exactly the clips that a
        # second, measured pass then reads from the cache.
        from vicokd_jax.data.pipeline import CachedSource

        cached = CachedSource(source)
        pipeline_rate(cached, cfg, batch, 0, args.examples, args.warmup_batches)
        rate = pipeline_rate(cached, cfg, batch, 0, args.examples, args.warmup_batches)
        result["pipeline_cached_0"] = rate
        print(f"data: grain pipeline over the example cache (epochs after the first), 0 workers, batch {batch}: "
              f"{rate:.1f} examples/s", flush=True)
    if args.no_step:
        return result

    # The consumer: the student-stage step at the same sizes (default preset), as the loop runs it by default
    # (`setup.call_plan`: steps per call and unrolling), alone, then fed by the pipeline.
    from vicokd_jax.train import setup

    mesh = parallel.mesh_from_config(cfg.mesh)
    plan = setup.call_plan(cfg, "student", cfg.train.steps, mesh)
    step = measure_step("stage", cfg, mesh, max(1, -(-args.steps // plan[0])), False, None, *plan)
    result["steps_per_call"], result["unroll"] = plan
    result["step_clips_per_s"] = step["clips_per_s"]
    ratios = ", ".join(f"{w} workers {result[f'pipeline_{w}'] / step['clips_per_s']:.2f}x" for w in args.workers)
    if "pipeline_cached_0" in result:
        ratios += f", cached epochs (0 workers) {result['pipeline_cached_0'] / step['clips_per_s']:.2f}x"
    calls = f", {plan[0]} steps per call{' unrolled' if plan[1] else ''}" if plan[0] > 1 else ""
    print(f"data: student-stage step (preset {cfg.model.preset}, batch {batch}{calls}) consumes "
          f"{step['clips_per_s']:.1f} clips/s; pipeline / step: {ratios}", flush=True)
    default_workers = cfg.data.num_workers
    if args.fed_workers is not None:
        cfg.data.num_workers = args.fed_workers
    rate = fed_rate(cfg, mesh, source, args.steps, plan)
    result["loop_clips_per_s"] = rate
    which = "the config default" if cfg.data.num_workers == default_workers else "--fed-workers"
    print(f"data: pipeline ({cfg.data.num_workers} worker(s), {which}) feeding the step: {rate:.1f} "
          f"clips/s ({100 * rate / step['clips_per_s']:.0f}% of the step alone)", flush=True)
    return result
