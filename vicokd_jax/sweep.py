"""A resumable study over methods, ablations, label fractions, overlap settings and seeds on SynthMV.

Python:
    from vicokd_jax import sweep
    specs = sweep.grid(methods=("kd", "vicokd"), seeds=(0, 1, 2), fractions=(0.1, 1.0))
    rows = sweep.run_sweep(specs, "runs/study")          # trains each teacher once, skips finished runs
    sweep.write_report(rows, "runs/study")               # results.md, results.csv, plots (vicokd_jax.sweep_report)

CLI:
    python -m vicokd_jax.sweep --root runs/study --prepared runs/tfds --grid study   # docs/RESULTS.md's study
    python -m vicokd_jax.sweep --root runs/s --methods kd vicokd --seeds 0 1 --fractions 0.1 \\
        --override train.steps=200
    python -m vicokd_jax.sweep --root runs/study --report-only         # rebuild the tables from summaries

Layout of `root`: `teachers/<modalities>_<overlap>/` (one teacher per data setting, shared by every student of
that setting), `runs/<run name>/` (one student run each, with its own summary.json), and the report files. A run
whose summary.json exists is not redone, provided it was made with the same config (up to
vicokd_jax.config.EXECUTION_KEYS; otherwise the sweep stops with the changed keys); an interrupted run resumes
from its checkpoints (vicokd_jax.launch).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import json
import pathlib
import sys
import time

from vicokd_jax import config as config_lib
from vicokd_jax import methods
from vicokd_jax.sweep_report import read_summary, write_report

STUDENT_METHODS = ("student_only", "kd", "dkd", "fitnet", "mskd", "vicokd", "vicokd_semi")
TEACHER_MODALITIES = {"skeleton": ("skeleton",), "skeleton_rgb": ("skeleton", "rgb")}
# The teacher that students distil from (ViCoKD's multi-modal teacher).
STUDENT_TEACHER = "skeleton_rgb"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One student run: a method (with an optional ViCoKD ablation) in one data setting with one seed."""

    method: str
    seed: int = 0
    labeled_fraction: float = 0.1
    overlap: str = "partial"
    ablation: str = ""

    def __post_init__(self):
        methods.method_config(self.method, self.ablation or None)  # raises for unknown names
        if self.overlap not in ("partial", "full"):
            raise ValueError(f"RunSpec.overlap must be 'partial' or 'full', got {self.overlap!r}")
        if not 0.0 < self.labeled_fraction <= 1.0:
            raise ValueError(f"RunSpec.labeled_fraction must be in (0, 1], got {self.labeled_fraction}")

    @property
    def variant(self) -> str:
        return f"{self.method}/{self.ablation}" if self.ablation else self.method

    @property
    def group(self) -> str:
        """The name shared by the seeds of one setting (a row of the results table)."""
        return f"{self.variant.replace('/', '-')}_lf{self.labeled_fraction:g}_{self.overlap}"

    @property
    def name(self) -> str:
        return f"{self.group}_s{self.seed}"


def grid(methods=STUDENT_METHODS, seeds=(0,), fractions=(0.1,), overlaps=("partial",), ablations=()) -> list:
    """The product of methods × fractions × overlaps × seeds, plus ViCoKD ablations over the same settings."""
    specs = [RunSpec(m, s, f, o) for m, f, o, s in itertools.product(methods, fractions, overlaps, seeds)]
    specs += [RunSpec("vicokd", s, f, o, a) for a, f, o, s in itertools.product(ablations, fractions, overlaps, seeds)]
    return specs


def study_grid(seeds=(0, 1, 2)) -> list:
    """The study of docs/RESULTS.md (every method and ViCoKD ablation at 10% labels, the main methods at 50% and
    100%, and the full-overlap control, each over `seeds`), deduplicated, in the order it is run (the 10%-label,
    partial-overlap comparison first, so an interrupted study already answers the main question)."""
    specs = grid(STUDENT_METHODS, seeds, (0.1,), ("partial",))
    specs += grid((), seeds, (0.1,), ("partial",), tuple(methods.ABLATIONS))
    specs += grid(("student_only", "kd", "mskd", "vicokd", "vicokd_semi"), seeds, (0.5, 1.0), ("partial",))
    specs += grid(("student_only", "kd", "vicokd"), seeds, (0.1,), ("full",))
    specs += grid((), seeds, (0.1,), ("full",), ("no_vc",))
    return list(dict.fromkeys(specs))


# ------------------------------------------------------------------------------------------------------------
# Configs
# ------------------------------------------------------------------------------------------------------------
def _use_prepared(cfg, data_dir, overrides) -> None:
    """Read SynthMV from the prepared ArrayRecord copy in `data_dir` (builder config = the overlap setting), with
    the generator fields set to the ones that copy was built with (so the config says what the runs read)."""
    from vicokd_jax.data import datasets
    from vicokd_jax.data.builders import synth_mv

    generator = {f"data.{f}" for f in datasets.SYNTH_GENERATOR_FIELDS}
    fixed = [o for o in overrides if o.split("=", 1)[0].strip().removeprefix("config.") in generator]
    if fixed:
        raise ValueError(f"overrides {fixed} change how SynthMV is generated, but the runs read the prepared copy in "
                         f"{data_dir}, built with the builder config's settings; drop --prepared to generate on the fly")
    builder_config = {c.name: c for c in synth_mv.SynthMv.BUILDER_CONFIGS}[cfg.data.overlap]
    for field, value in builder_config.generator_fields().items():
        cfg.data[field] = value
    cfg.data.tfds_config = cfg.data.overlap
    cfg.data.data_dir = str(pathlib.Path(data_dir).absolute())
    cfg.data.num_workers = 0  # reading ArrayRecord is cheap; a worker process only competes for the cores


def prepare_data(data_dir, overlaps, log=print) -> None:
    """Build the SynthMV ArrayRecord copy of each overlap setting in `data_dir` once (TFDS skips finished ones)."""
    from vicokd_jax.data import builders

    for overlap in overlaps:
        log(f"[sweep] SynthMV/{overlap} in {data_dir} (built once: about 2 minutes on 2 cores)")
        builder = builders.build("synth_mv", overlap, data_dir)
        splits = {name: info.num_examples for name, info in builder.info.splits.items()}
        log(f"[sweep] prepared synth_mv/{overlap} in {builder.data_dir}: {splits}")


def _finish(cfg, overrides, smoke: bool, data_dir=None):
    """`config.smoke` when asked, the prepared data source when given, then the overrides, then validation."""
    if smoke:
        config_lib.smoke(cfg)
    if data_dir:
        _use_prepared(cfg, data_dir, overrides)
    config_lib.apply_overrides(cfg, overrides)
    config_lib.validate(cfg)
    return cfg


def teacher_config(modalities: str, overlap: str, overrides=(), smoke: bool = False, data_dir=None):
    """The teacher-only config of one data setting (`data_dir`: read the prepared SynthMV copy there)."""
    cfg = config_lib.default_config("vicokd")
    cfg.name = f"synth_teacher_{modalities}_{overlap}"
    cfg.stages = ("teacher",)
    cfg.model.teacher_modalities = TEACHER_MODALITIES[modalities]
    cfg.data.overlap = overlap
    return _finish(cfg, overrides, smoke, data_dir)


def student_config(spec: RunSpec, teacher_dir, overrides=(), smoke: bool = False, data_dir=None):
    """The student-only config of `spec`, distilling from the finished teacher in `teacher_dir`."""
    cfg = config_lib.default_config(spec.method)
    cfg.method.ablation = spec.ablation  # refills the method's preset with the ablation
    cfg.name = f"synth_{spec.name}"
    cfg.stages = ("student",)
    cfg.teacher.checkpoint = str(teacher_dir)
    cfg.model.teacher_modalities = TEACHER_MODALITIES[STUDENT_TEACHER]
    cfg.data.overlap = spec.overlap
    cfg.data.labeled_fraction = spec.labeled_fraction
    cfg.data.labeled_seed = spec.seed
    cfg.train.seed = spec.seed
    return _finish(cfg, overrides, smoke, data_dir)


# ------------------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------------------
def _check_same_config(cfg, workdir: pathlib.Path) -> None:
    """A finished run is reused only if it was made with this config (up to config.EXECUTION_KEYS): otherwise
    the table would mix results of different settings under one name."""
    path = workdir / "config.json"
    if not path.is_file():
        return
    changes = config_lib.result_changes(json.loads(path.read_text()), cfg)
    if changes:
        raise ValueError(f"{workdir} finished with a different config than this sweep asks for: " + "; ".join(changes)
                         + ". Use another --root, or delete that folder to rerun it with the new config.")


def _launch(cfg, workdir: pathlib.Path, log) -> dict:
    from vicokd_jax import launch

    summary = read_summary(workdir)
    if summary is not None:
        _check_same_config(cfg, workdir)
        log(f"[sweep] {workdir.name}: done earlier, reusing {workdir / 'summary.json'}")
        return summary
    log(f"[sweep] {workdir.name}: running in {workdir}")
    t0 = time.perf_counter()
    result = dict(launch.run(cfg, workdir))
    if result.get("preempted"):
        raise KeyboardInterrupt(f"preempted during {workdir}; rerun the same command to resume")
    log(f"[sweep] {workdir.name}: finished in {time.perf_counter() - t0:.0f} s")
    return result


def ensure_teacher(root, modalities: str, overlap: str, overrides=(), smoke=False, log=print,
                   data_dir=None) -> pathlib.Path:
    """Train the teacher of one data setting once (reused by every later call) and return its workdir."""
    workdir = pathlib.Path(root) / "teachers" / f"{modalities}_{overlap}"
    _launch(teacher_config(modalities, overlap, overrides, smoke, data_dir), workdir, log)
    return workdir


def run_sweep(specs, root, overrides=(), teachers=(STUDENT_TEACHER,), smoke=False, log=print,
              data_dir=None) -> list:
    """Run every spec (skipping those with a summary) and return one result row per spec.

    `overrides` (`"train.steps=200"`, ...) apply to teachers and students alike, after `config.smoke` when
    `smoke`. `teachers` lists the teacher modalities to train and report per overlap setting; students always
    distil from STUDENT_TEACHER's. `data_dir`: prepare SynthMV once there as ArrayRecord files and read every run
    from them instead of rendering clips again in every run (the same examples).
    """
    root = pathlib.Path(root)
    specs = list(specs)
    repeated = [name for name, n in collections.Counter(s.name for s in specs).items() if n > 1]
    if repeated:
        raise ValueError(f"runs {repeated} appear more than once in the sweep")
    if smoke and data_dir:
        raise ValueError("smoke runs generate their tiny SynthMV on the fly; the prepared copy is full size: "
                         "drop --prepared (data_dir) or --smoke")
    overlaps = list(dict.fromkeys(s.overlap for s in specs))
    if data_dir:
        prepare_data(data_dir, overlaps, log)
    rows = []
    for overlap in overlaps:
        for modalities in dict.fromkeys((*teachers, STUDENT_TEACHER)):
            ensure_teacher(root, modalities, overlap, overrides, smoke, log, data_dir)
    for i, spec in enumerate(specs):
        log(f"[sweep] run {i + 1}/{len(specs)}: {spec.name}")
        teacher_dir = root / "teachers" / f"{STUDENT_TEACHER}_{spec.overlap}"
        summary = _launch(student_config(spec, teacher_dir, overrides, smoke, data_dir), root / "runs" / spec.name,
                          log)
        rows.append(student_row(spec, summary))
    return rows


# ------------------------------------------------------------------------------------------------------------
# Result rows (tables and plots: vicokd_jax.sweep_report)
# ------------------------------------------------------------------------------------------------------------
def student_row(spec: RunSpec, summary: dict) -> dict:
    """The result row of one finished student run (what `sweep_report` aggregates)."""
    student = summary["student"]
    return dict(run=spec.name, group=spec.group, method=spec.variant, seed=spec.seed,
                labeled_fraction=spec.labeled_fraction, overlap=spec.overlap, top1=student["top1"],
                mean_view_top1=student.get("mean_view_top1"),
                mean_view_top1_visible=student.get("mean_view_top1_visible"),
                per_view_top1_visible=student.get("per_view_top1_visible"),
                agreement=student.get("agreement"), seconds=student.get("seconds"))


def collect(root) -> list:
    """The rows of every finished student run under `root` (for `--report-only`)."""
    rows = []
    for workdir in sorted((pathlib.Path(root) / "runs").glob("*")):
        summary, cfg_path = read_summary(workdir), workdir / "config.json"
        if summary is None or "student" not in summary or not cfg_path.is_file():
            continue
        cfg = json.loads(cfg_path.read_text())
        spec = RunSpec(cfg["method"]["name"], cfg["train"]["seed"], cfg["data"]["labeled_fraction"],
                       cfg["data"]["overlap"], cfg["method"]["ablation"])
        rows.append(student_row(spec, summary))
    return rows


# ------------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------------
def parse_args(argv):
    """The CLI's arguments (`python -m vicokd_jax.sweep --help`)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder of teachers, runs and the report")
    p.add_argument("--grid", choices=("study", "custom"), default="custom",
                   help="study: the full grid of docs/RESULTS.md; custom: the product of the options below")
    p.add_argument("--methods", nargs="+", default=list(STUDENT_METHODS), choices=STUDENT_METHODS)
    p.add_argument("--ablations", nargs="*", default=[], choices=tuple(methods.ABLATIONS))
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="default: 0 1 2 for --grid study, 0 for a custom grid")
    p.add_argument("--fractions", nargs="+", type=float, default=[0.1])
    p.add_argument("--overlaps", nargs="+", default=["partial"], choices=("partial", "full"))
    p.add_argument("--teachers", nargs="+", default=list(TEACHER_MODALITIES), choices=tuple(TEACHER_MODALITIES),
                   help="teacher modalities to train and report (students use skeleton_rgb)")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for every run, e.g. train.steps=200 data.num_train=1000")
    p.add_argument("--prepared", metavar="DATA_DIR", default="",
                   help="build SynthMV once as ArrayRecord files in DATA_DIR and read every run from them (faster "
                        "on few cores; the generator's default knobs)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (config.smoke) for a quick check")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from finished runs")
    return p.parse_args(argv)


def specs_from_args(args) -> list:
    """The runs the CLI asks for. The study's seeds default to 0 1 2 (its tables are mean ± std over 3 seeds)."""
    if args.grid == "study":
        return study_grid(tuple(args.seeds or (0, 1, 2)))
    return grid(args.methods, args.seeds or (0,), args.fractions, args.overlaps, args.ablations)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.report_only:
        rows = collect(args.root)
    else:
        specs = specs_from_args(args)
        print(f"[sweep] {len(specs)} student runs in {args.root}", file=sys.stderr)
        rows = run_sweep(specs, args.root, args.override, tuple(args.teachers), args.smoke,
                         log=lambda m: print(m, file=sys.stderr, flush=True), data_dir=args.prepared or None)
    paths = write_report(rows, args.root)
    print((pathlib.Path(args.root) / "results.md").read_text())
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
