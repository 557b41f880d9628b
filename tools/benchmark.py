"""Performance measurements. Claims in docs come from this tool's output.

    python -m tools.benchmark data [--examples 200] [--workers 0 2] [--batch 8]

Modes:
  data   examples/s of SynthMV generation alone, and of the grain pipeline over it with N worker processes
         (measured after the first batch, so worker start-up is excluded).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def bench_data(args) -> None:
    from vicokd_jax.data.pipeline import PipelineConfig, make_dataset
    from vicokd_jax.data.synthetic import SynthMV

    source = SynthMV("train", max(args.examples, 64), seed=0)
    start = time.perf_counter()
    for i in range(args.examples):
        source[i]
    generate = args.examples / (time.perf_counter() - start)
    print(f"data: SynthMV generation ({source.num_views} views x {source.num_frames} x {source.image_size}^2): "
          f"{generate:.1f} examples/s (1 process)")
    for workers in args.workers:
        cfg = PipelineConfig(batch_size=args.batch, num_workers=workers, shard_index=0, shard_count=1,
                             labeled_fraction=0.1)
        it = iter(make_dataset(source, cfg))
        next(it)
        steps = max(1, args.examples // args.batch)
        start = time.perf_counter()
        for _ in range(steps):
            next(it)
        rate = steps * args.batch / (time.perf_counter() - start)
        print(f"data: grain pipeline, {workers} workers, batch {args.batch}: {rate:.1f} examples/s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    data = sub.add_parser("data", help="input pipeline throughput")
    data.add_argument("--examples", type=int, default=200)
    data.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    data.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    print(f"machine: {_machine()}")
    {"data": bench_data}[args.mode](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
