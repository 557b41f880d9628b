"""Run an experiment: train the configured stages, export the student, write summary.json.

Python:
    import vicokd_jax as vk
    cfg = vk.config.from_file("experiments/synth_vicokd.py:smoke", overrides=["train.steps=50"])
    summary = vk.launch.run(cfg, "runs/demo")        # summary["teacher"]["top1"], summary["student"]["top1"], ...

CLI:
    python -m vicokd_jax.launch --config experiments/synth_vicokd.py[:smoke] --workdir runs/demo \\
        [--config.train.steps=100 ...]

Rerunning the same command on the same workdir resumes from the newest checkpoints; finished stages are not
redone. SIGTERM (preemption) saves a checkpoint and exits with status 0.
"""
from __future__ import annotations

import json
import pathlib
import sys
import time

import jax
import numpy as np

from vicokd_jax import config as config_lib
from vicokd_jax import parallel
from vicokd_jax.data import datasets
from vicokd_jax.train import loop, preemption


class Summary(dict):
    """`run`'s result: one entry per stage (final test metrics, checkpoint path, seconds), `export`, `workdir`."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as err:
            raise AttributeError(name) from err


def run(cfg, workdir) -> Summary:
    """Train the config's stages in order in `workdir`, export the student, write and return the Summary."""
    config_lib.validate(cfg)
    parallel.initialize_distributed()
    stages = config_lib.stages_of(cfg)
    datasets.check_prepared(cfg)  # before any work: a prepared copy generated with other settings is refused
    workdir = pathlib.Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    write_config(cfg, workdir)
    previous = preemption.install_handler()
    summary = Summary(workdir=str(workdir), name=cfg.name)
    t0 = time.perf_counter()
    student = None
    try:
        for stage in stages:
            result = loop.train_stage(stage, cfg, workdir)
            summary[stage] = result.metrics
            if result.metrics.get("preempted"):
                summary["preempted"] = True
                return summary
            if stage == "student":
                student = result.variables
        if "student" in stages:
            summary["export"] = str(_export(cfg, workdir, student))
    finally:
        preemption.restore_handler(previous)
    summary["seconds"] = time.perf_counter() - t0
    if jax.process_index() == 0:
        (workdir / "summary.json").write_text(json.dumps(summary, indent=1, default=_json_default))
    return summary


def _export(cfg, workdir: pathlib.Path, variables):
    """The student's export, written by process 0 from the trained variables in memory (or, for a stage finished
    by an earlier run, from its saved variables)."""
    from vicokd_jax import export as export_lib

    out_dir = workdir / "export"
    if variables is None:
        return export_lib.export(workdir, out_dir) if jax.process_index() == 0 else out_dir
    if jax.process_count() > 1:  # every process takes part in gathering the sharded variables
        from jax.experimental import multihost_utils

        variables = multihost_utils.process_allgather(variables, tiled=True)
    return export_lib.export_student(cfg, variables, out_dir) if jax.process_index() == 0 else out_dir


def write_config(cfg, workdir: pathlib.Path) -> None:
    """Write workdir/config.json. Resuming with a different config keeps the earlier one (config.previous-N.json)
    and prints the changes that affect results, so a run's history is never overwritten silently."""
    if jax.process_index() != 0:
        return
    path, text = workdir / "config.json", json.dumps(config_lib.to_dict(cfg), indent=1)
    earlier = path.read_text() if path.is_file() else text
    if earlier != text:
        kept = [int(p.stem.rsplit("-", 1)[1]) for p in workdir.glob("config.previous-*.json")
                if p.stem.rsplit("-", 1)[1].isdigit()]
        n = max(kept, default=0) + 1  # past the highest, so no earlier copy is ever replaced
        path.rename(workdir / f"config.previous-{n}.json")
        changes = config_lib.result_changes(json.loads(earlier), cfg)
        if changes:
            print(f"[launch] {workdir}: resuming with a config that differs from the earlier one "
                  f"(kept as config.previous-{n}.json): " + "; ".join(changes), flush=True)
    path.write_text(text)


def _json_default(x):
    if isinstance(x, (np.generic,)):
        return x.item()
    return str(x)


def parse_cli(argv):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment file, optionally with :arg (e.g. :smoke)")
    parser.add_argument("--workdir", required=True)
    args, rest = parser.parse_known_args(argv)
    overrides = []
    for item in rest:
        if not item.startswith("--config."):
            parser.error(f"unrecognised argument {item!r} (overrides look like --config.train.steps=100)")
        overrides.append(item[len("--config."):])
    return args, overrides


def main(argv=None) -> int:
    args, overrides = parse_cli(sys.argv[1:] if argv is None else argv)
    cfg = config_lib.from_file(args.config, overrides)
    summary = run(cfg, args.workdir)
    stages = config_lib.stages_of(cfg)
    shown = ("top1", "top5", "mean_view_top1", "map_class", "agreement", "reconstruction_loss")
    report = {stage: {k: summary[stage].get(k) for k in shown if k in summary[stage]}
              for stage in stages if stage in summary}
    print(json.dumps({"workdir": summary["workdir"], "preempted": summary.get("preempted", False), **report,
                      "export": summary.get("export")}, indent=1, default=_json_default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
