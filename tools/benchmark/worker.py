"""One benchmark worker process: builds one framework's train step, warms it up, times steps one by one, and
prints one JSON line (`processes.run_worker` reads it).

    python -m tools.benchmark.worker stgcn-jax --weights W.npz --batch 16 --warmup 3 --steps 10
    python -m tools.benchmark.worker videomae-hf --weights W.npz --batch 4 ...

Kinds: stgcn-jax, stgcn-torch (tools/benchmark/stgcn_vs_torch.py), videomae-jax, videomae-hf
(tools/benchmark/videomae_vs_hf.py), predict-jax, predict-onnx, predict-onnx-int8 (an export's predictors,
tools/benchmark/deploy.py; a "step" is one prediction call, and "compile" the load and first call). Only the
framework a kind needs is imported: the ONNX kinds never import JAX.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import sys
import time

KINDS = ("stgcn-jax", "stgcn-torch", "videomae-jax", "videomae-hf", "predict-jax", "predict-onnx",
         "predict-onnx-int8")


def build(kind: str, args):
    """-> (run() returning the loss, compile seconds)."""
    threads = args.threads or os.cpu_count()
    if kind.startswith("predict"):
        from tools.benchmark import deploy

        return deploy.predictor(kind, args.export, args.batch, args.threads)
    if kind.startswith("videomae"):
        from tools.benchmark import videomae_vs_hf as vm

        weights = pathlib.Path(args.weights)
        return vm.jax_step(args, weights) if kind == "videomae-jax" else vm.torch_step(args, weights, threads)
    import numpy as np

    from tools.benchmark import stgcn_vs_torch as st

    x, y = st.batch(args)
    state_dict = dict(np.load(args.weights)) if args.weights else None
    hyper = st.hyper(args)
    if kind == "stgcn-jax":
        run, compile_s, _ = st.jax_stgcn_step(x, y, **hyper, steps_per_call=args.steps_per_call, unroll=args.unroll,
                                              torch_state_dict=state_dict)
        return run, compile_s
    return st.torch_stgcn_step(x, y, threads=threads, state_dict=state_dict, **hyper), 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--weights", default="", help="initial weights (.npz) shared by both frameworks")
    parser.add_argument("--export", default="", help="predict kinds: the export directory")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: the cores)")
    parser.add_argument("--steps-per-call", type=int, default=1, help="jax kinds: steps per compiled call")
    parser.add_argument("--unroll", action="store_true", help="jax kinds: those steps unrolled, not a loop")
    # The sizes of either comparison (each kind reads its own).
    for flag, default in (("--batch", 16), ("--persons", 2), ("--frames", 100), ("--classes", 60), ("--size", 112),
                          ("--hidden", 384), ("--depth", 12), ("--heads", 6)):
        parser.add_argument(flag, type=int, default=default)
    parser.add_argument("--channels", type=int, nargs="+", default=None)
    parser.add_argument("--strides", type=int, nargs="+", default=None)
    args = parser.parse_args(argv)
    run, compile_s = build(args.kind, args)
    # With K steps per call, --warmup and --steps count steps: whole calls of K, at least one each.
    per_call = args.steps_per_call if args.kind.endswith("-jax") else 1
    first_loss = run()
    for _ in range(max(1, -(-args.warmup // per_call)) - 1):
        run()
    times = []
    for _ in range(max(1, -(-args.steps // per_call))):
        start = time.perf_counter()
        run()  # returns a Python float: the call has finished
        times.append((time.perf_counter() - start) / per_call)  # per step
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    versions = {"python": sys.version.split()[0]}
    if args.kind.endswith("-jax") or "jax" in sys.modules:
        import jax
        import flax

        versions.update(jax=jax.__version__, flax=flax.__version__)
    print(json.dumps({"kind": args.kind, "steps_per_call": per_call, "unroll": args.unroll, "step_s": times,
                      "compile_s": compile_s, "first_loss": first_loss, **versions, "peak_rss_mib": peak_kib / 1024}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
