"""`deploy` mode: an exported student's per-clip latency (batch 1) and throughput (batch 16) for the jax.export
predictor, ONNX Runtime fp32 and ONNX Runtime int8, each in its own worker process, alternated."""
from __future__ import annotations

import json
import pathlib
import tempfile

from tools.benchmark import processes

HELP = "exported student: latency at batch 1 and throughput at batch 16, jax.export vs ONNX Runtime fp32 / int8"
BACKENDS = {"jax.export": "predict-jax", "onnx fp32": "predict-onnx", "onnx int8": "predict-onnx-int8"}


def add_arguments(parser) -> None:
    parser.add_argument("--export", default="", help="an export directory (default: the default config's "
                        "student with random weights, exported to a temporary directory)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds of the three workers")
    parser.add_argument("--steps", type=int, default=20, help="timed calls per worker and round")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: the cores)")


def default_export(directory: pathlib.Path) -> pathlib.Path:
    """The default config's student (experiments/synth_vicokd.py), random trained-like weights, exported."""
    import jax
    import numpy as np

    import vicokd_jax as vk
    from vicokd_jax.models import presets
    from vicokd_jax.train import setup

    cfg = vk.config.from_file(str(pathlib.Path(processes.REPO) / "experiments" / "synth_vicokd.py"))
    cfg.export.onnx = "always"
    student = presets.student_from_config(cfg)
    variables = setup.model_init(student, cfg, "student")(jax.random.key(0))
    noise = np.random.default_rng(0)
    variables = jax.tree.map(lambda x: x + 0.05 * noise.standard_normal(x.shape).astype(x.dtype), variables)
    return vk.export.export_student(cfg, variables, directory / "export")


def run(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        export = pathlib.Path(args.export) if args.export else default_export(pathlib.Path(tmp))
        manifest = json.loads((export / "MANIFEST.json").read_text())["files"]
        sizes = {name: manifest[f]["bytes"] for name, f in (("jax.export variables", "variables.msgpack"),
                                                            ("onnx fp32", "model.onnx"),
                                                            ("onnx int8", "model_int8.onnx")) if f in manifest}
        print("deploy: sizes " + ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in sizes.items()), flush=True)
        results = {"export": str(args.export or "default config, random weights"), "sizes_bytes": sizes,
                   "batches": {}}
        for batch in args.batches:
            workers = {name: [kind, "--export", str(export), "--batch", str(batch), "--warmup", "3",
                              "--steps", str(args.steps), "--threads", str(args.threads)]
                       for name, kind in BACKENDS.items()}
            summary = processes.alternate(workers, args.rounds)
            row = {}
            for name, s in summary.items():
                row[name] = {"ms_per_call": s["median_s"] * 1e3, "ms_per_clip": s["median_s"] * 1e3 / batch,
                             "clips_per_s": batch / s["median_s"], "spread_ms": [x * 1e3 for x in s["spread_s"]],
                             "load_s": s["compile_s"], "peak_rss_mib": s["peak_rss_mib"]}
                print(f"deploy: batch {batch:>2} {name:<10} {row[name]['ms_per_call']:8.2f} ms/call, "
                      f"{row[name]['ms_per_clip']:7.2f} ms/clip, {row[name]['clips_per_s']:7.1f} clips/s, load "
                      f"{s['compile_s']:.1f} s, peak RSS {s['peak_rss_mib']:.0f} MiB", flush=True)
            base = row["jax.export"]["ms_per_call"]
            print(f"deploy: batch {batch:>2} speed-up over jax.export: " + ", ".join(
                f"{n} {base / r['ms_per_call']:.2f}x" for n, r in row.items() if n != "jax.export"), flush=True)
            results["batches"][str(batch)] = row
    return results


def predictor(kind: str, export: str, batch: int, threads: int):
    """For a worker: (run() -> float, load seconds) calling the export's `kind` predictor on a random batch."""
    import time

    import numpy as np

    start = time.perf_counter()
    if kind == "predict-jax":
        from vicokd_jax.export.format import load

        model = load(export)
    else:
        from vicokd_jax.export.onnx_predictor import load_onnx

        model = load_onnx(export, int8=kind == "predict-onnx-int8", threads=threads or None)
    rng = np.random.default_rng(0)
    inputs = {}
    for key, spec in model.input_spec.items():
        shape = (batch, *spec["shape"])
        inputs[key] = (rng.integers(0, 256, shape, dtype=np.uint8) if spec["dtype"] == "uint8"
                       else np.ones(shape, spec["dtype"]))

    def call() -> float:
        return float(np.asarray(model(inputs)["logits"]).sum())  # to host: the call has finished

    call()  # the jax predictor compiles for this batch size here
    return call, time.perf_counter() - start
