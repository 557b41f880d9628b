"""Progress on stderr: one line per log point with the key metrics, throughput and ETA."""
from __future__ import annotations

import sys
import time

SHOWN = ("loss/total", "train/top1", "train/teacher_top1", "loss/vc", "loss/kd")


class Progress:
    """`update(step, metrics)` prints `[stage] step s/total loss=... | steps/s, clips/s, ETA m:ss`."""

    def __init__(self, stage: str, total: int, start_step: int, batch_size: int):
        self.stage, self.total, self.batch = stage, total, batch_size
        self.t0, self.s0 = time.perf_counter(), start_step

    def update(self, step: int, metrics: dict) -> None:
        elapsed = time.perf_counter() - self.t0
        rate = (step - self.s0) / max(elapsed, 1e-9)
        eta = (self.total - step) / max(rate, 1e-9)
        shown = " ".join(f"{k.split('/')[-1]}={v:.3g}" for k, v in metrics.items() if k in SHOWN)
        print(f"[{self.stage}] step {step}/{self.total} {shown} | {rate:.2f} steps/s, "
              f"{rate * self.batch:.1f} clips/s, ETA {int(eta) // 60}:{int(eta) % 60:02d}", file=sys.stderr,
              flush=True)
