"""`step` mode: teacher-stage step, student alone and student-stage step: clips/s, compile time, FLOPs/MFU, memory."""
from __future__ import annotations

from tools.benchmark.common import gib
from tools.benchmark.train_steps import KINDS, measure_step, stage_config

HELP = "teacher / student / student-stage step: clips/s, compile, FLOPs, memory"


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="micro")
    parser.add_argument("--batch", type=int, default=16, help="global batch (clips)")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--frames", type=int, help="clip length (default: the preset's)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--method", default="vicokd")
    parser.add_argument("--which", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--steps", type=int, default=10, help="timed calls (after 2 warm-up calls)")
    parser.add_argument("--steps-per-call", type=int, default=1,
                        help="steps per compiled call (lax.scan over stacked batches), as train.steps_per_call; "
                             "times are per step")
    parser.add_argument("--unroll", action="store_true", help="those steps unrolled (straight-line), not a loop")
    parser.add_argument("--compile-only", action="store_true", help="compile and analyse; do not run")
    parser.add_argument("--peak-tflops", type=float, help="per-device peak (e.g. 790 for H200 dense bf16): MFU")


def format_result(r: dict, cfg) -> str:
    """The line printed for one step kind's `measure_step` result."""
    line = (f"step[{r['kind']:7s}] preset {cfg.model.preset} {cfg.model.dtype} batch {cfg.train.batch_size} "
            f"({cfg.data.num_views} views x {cfg.data.num_frames} x {cfg.data.image_size}^2): compile "
            f"{r['compile_s']:.1f} s, {r['flops'] / 1e12:.3f} TFLOP/step/device")
    if r.get("steps_per_call", 1) > 1:
        line += f", {r['steps_per_call']} steps per call{' (unrolled)' if r.get('unroll') else ''}"
    if "step_s" in r:
        line += f", {r['step_s'] * 1e3:.1f} ms/step, {r['clips_per_s']:.2f} clips/s"
    if "mfu" in r:
        line += f", MFU {100 * r['mfu']:.1f}%"
    if r["memory"]:
        m = r["memory"]
        line += (f", memory/device: peak {gib(m['peak'])} (args {gib(m['argument'])}, temp "
                 f"{gib(m['temp'])})")
    return line


def run(args) -> list[dict]:
    from vicokd_jax import parallel

    cfg = stage_config(args.preset, args.batch, args.views, args.frames, args.dtype, args.method)
    mesh = parallel.mesh_from_config(cfg.mesh)
    results = []
    for kind in args.which:
        r = measure_step(kind, cfg, mesh, args.steps, args.compile_only, args.peak_tflops, args.steps_per_call,
                         args.unroll)
        print(format_result(r, cfg), flush=True)
        results.append(r)
    return results
