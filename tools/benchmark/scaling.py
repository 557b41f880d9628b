"""`scaling` mode: DP vs FSDP per-device memory and collectives of the student-stage step on fake CPU meshes.

Each mesh size runs in its own process (`python -m tools.benchmark _scaling_child ...`: the device count is
fixed when JAX starts); nothing runs, the step is only compiled.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from tools.benchmark.common import REPO, gib, memory
from tools.benchmark.train_steps import build_step, stage_config

HELP = "DP vs FSDP memory and collectives on fake meshes (compile only)"


def add_arguments(parser) -> None:
    parser.add_argument("--presets", nargs="+", default=["vit_b16", "vit_l16"])
    parser.add_argument("--devices", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--frames", type=int, help="clip length (default: the preset's)")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--fsdp-min-size", type=int, help="tensors smaller stay replicated (default: the config's)")


def add_child_arguments(parser) -> None:
    """The internal `_scaling_child` command: one mesh size and layout per process."""
    parser.add_argument("--preset", required=True)
    parser.add_argument("--layout", required=True, choices=["dp", "fsdp"])
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--fsdp-min-size", type=int)


def run_child(args) -> dict:
    """`scaling_child` of the `_scaling_child` command's arguments."""
    return scaling_child(args.preset, args.views, args.frames, args.layout, args.dtype, args.fsdp_min_size)


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
    cfg = stage_config(preset, n, views, frames, dtype, "vicokd", mesh_fsdp=fsdp)  # 1 clip per device
    if fsdp_min_size is not None:
        cfg.mesh.fsdp_min_size = fsdp_min_size
    mesh = parallel.mesh_from_config(cfg.mesh)
    built = build_step("stage", cfg, mesh, materialize=False)
    abstract, shardings = built["abstract_state"], built["state_shardings"]
    start = time.perf_counter()
    compiled = built["fn"].lower(*built["args"]).compile()
    compile_s = time.perf_counter() - start
    full = lambda tree: per_device_bytes(tree, jax.tree.map(lambda _: parallel.replicated(mesh), tree))  # noqa
    return dict(preset=preset, devices=n, layout=layout, compile_s=compile_s,
                params_bytes=per_device_bytes(abstract.params, shardings.params),
                opt_bytes=per_device_bytes(abstract.opt_state, shardings.opt_state),
                params_full_bytes=full(abstract.params), opt_full_bytes=full(abstract.opt_state),
                memory=memory(compiled),
                collectives=count_collectives(compiled.as_text()), frames=cfg.data.num_frames)


def run_scaling_child(devices: int, preset: str, layout: str, args) -> dict:
    """`scaling_child` in a new process with `devices` fake CPU devices (`python -m tools.benchmark
    _scaling_child`); -> its result (the last line of its stdout, JSON)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    cmd = [sys.executable, "-m", "tools.benchmark", "_scaling_child", "--preset", preset, "--layout", layout,
           "--views", str(args.views), "--dtype", args.dtype]
    cmd += ["--frames", str(args.frames)] if args.frames else []
    cmd += ["--fsdp-min-size", str(args.fsdp_min_size)] if args.fsdp_min_size is not None else []
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"scaling child {cmd} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args) -> list[dict]:
    rows = []
    for preset in args.presets:
        for devices in args.devices:
            pair = {layout: run_scaling_child(devices, preset, layout, args) for layout in ("dp", "fsdp")}
            for layout, r in pair.items():
                coll = ", ".join(f"{k} {v}" for k, v in r["collectives"].items() if v) or "none"
                print(f"scaling: {preset} student stage, {devices} devices, {layout.upper():4s} (1 clip/device, "
                      f"{args.views} views x {r['frames']} frames): params+opt/device "
                      f"{gib(r['params_bytes'] + r['opt_bytes'])} (params {gib(r['params_bytes'])}, opt "
                      f"{gib(r['opt_bytes'])}); compiled peak/device {gib(r['memory'].get('peak', 0))}; "
                      f"compile {r['compile_s']:.1f} s; collectives: {coll}", flush=True)
                rows.append(r)
            dp, fs = (pair[k]["params_bytes"] + pair[k]["opt_bytes"] for k in ("dp", "fsdp"))
            print(f"scaling: {preset}, {devices} devices: FSDP / DP params+opt per device = {fs / dp:.3f} "
                  f"(1/{dp / fs:.1f})", flush=True)
    return rows
