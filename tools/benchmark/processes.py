"""Each framework in its own process, alternated: how a user compares two frameworks.

    results = alternate({"jax": [...argv...], "torch": [...argv...]}, rounds=3)

Every round starts each worker once, in turn (A, B, A, B, ...), so a load drift on the machine hits both alike.
A worker (`python -m tools.benchmark.worker KIND ...`) builds its step, runs `--warmup` untimed steps, times
`--steps` steps one by one and prints one JSON line: per-step seconds, compile seconds, the first loss and its
peak resident memory (`ru_maxrss`). The summary per framework is the median over every timed step of every round,
with the spread (min, 25th and 75th percentiles, max) and the largest peak RSS.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tools.benchmark.common import REPO


def run_worker(argv: list[str], timeout: float = 1800, python: str = "") -> dict:
    """Start one worker process (`python -m tools.benchmark.worker ...argv`, with this interpreter or `python`)
    and return its JSON report."""
    out = subprocess.run([python or sys.executable, "-m", "tools.benchmark.worker", *argv], cwd=REPO,
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark worker {' '.join(argv)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def alternate(workers: dict[str, list[str]], rounds: int, log=print, pythons: dict | None = None) -> dict[str, dict]:
    """Run every worker `rounds` times, alternating (a worker named in `pythons` with that interpreter); -> per
    name: median_s, spread_s (min, p25, p75, max), peak RSS in MiB, compile seconds (median), first loss, and the
    raw reports."""
    reports = {name: [] for name in workers}
    for r in range(rounds):
        for name, argv in workers.items():
            report = run_worker(argv, python=(pythons or {}).get(name, ""))
            reports[name].append(report)
            log(f"  round {r + 1}/{rounds} {name}: median {np.median(report['step_s']) * 1e3:.0f} ms/step, "
                f"peak RSS {report['peak_rss_mib']:.0f} MiB")
    return {name: summarise(rs) for name, rs in reports.items()}


def summarise(reports: list[dict]) -> dict:
    steps = np.concatenate([r["step_s"] for r in reports])
    return {"median_s": float(np.median(steps)),
            "spread_s": [float(x) for x in np.percentile(steps, [0, 25, 75, 100])],
            "peak_rss_mib": max(r["peak_rss_mib"] for r in reports),
            "compile_s": float(np.median([r["compile_s"] for r in reports])),
            "first_loss": reports[0]["first_loss"], "timed_steps": int(steps.size), "reports": reports}


def compare(mode: str, workers: dict[str, list[str]], rounds: int, batch: int, other_python: str = "") -> dict:
    """`alternate` the two workers `{ours: argv, peer: argv}` (ours first), print each summary and the speed-up
    ours/peer -> `{ours: summary, peer: summary, "speedup": peer median / our median}`.

    other_python: also alternate our worker under that interpreter (a virtualenv with other pins), as
    "<ours>@other", and print its speed-ups over the peer and over ours (`"speedup_other"`, `"other_over_ours"`).
    """
    (ours, peer), pythons = list(workers), {}
    if other_python:
        other = f"{ours}@other"
        workers, pythons = {ours: workers[ours], other: workers[ours], peer: workers[peer]}, {other: other_python}
    s = alternate(workers, rounds, pythons=pythons)
    for name in workers:
        print(f"{mode}: " + describe(name, s[name], batch), flush=True)
    ratio = s[peer]["median_s"] / s[ours]["median_s"]
    print(f"{mode}: speed-up {ours}/{peer} = {ratio:.2f}x; peak RSS {ours}/{peer} = "
          f"{s[ours]['peak_rss_mib']:.0f} / {s[peer]['peak_rss_mib']:.0f} MiB", flush=True)
    result = {**s, "speedup": ratio}
    if other_python:
        result["speedup_other"] = s[peer]["median_s"] / s[other]["median_s"]
        result["other_over_ours"] = s[ours]["median_s"] / s[other]["median_s"]
        print(f"{mode}: {other} ({other_python}, jax {s[other]['reports'][0].get('jax', '?')}): speed-up over "
              f"{peer} {result['speedup_other']:.2f}x, over {ours} {result['other_over_ours']:.2f}x; peak RSS "
              f"{s[other]['peak_rss_mib']:.0f} MiB", flush=True)
    return result


def describe(name: str, s: dict, batch: int) -> str:
    lo, p25, p75, hi = (x * 1e3 for x in s["spread_s"])
    return (f"{name}: {s['median_s'] * 1e3:.0f} ms/step ({batch / s['median_s']:.1f} clips/s), spread "
            f"{lo:.0f} / {p25:.0f} / {p75:.0f} / {hi:.0f} ms (min / p25 / p75 / max of {s['timed_steps']} steps), "
            f"compile {s['compile_s']:.1f} s, peak RSS {s['peak_rss_mib']:.0f} MiB, first loss {s['first_loss']:.4f}")
