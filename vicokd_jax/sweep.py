"""A resumable study over methods, ablations, label fractions, overlap settings, teachers and seeds on SynthMV.

Python:
    from vicokd_jax import sweep
    specs = sweep.grid(methods=("kd", "vicokd"), seeds=(0, 1, 2), fractions=(0.1, 1.0))
    specs += sweep.grid(("kd", "vicokd"), seeds=(0, 1, 2), teachers_for_students=("rgb_audio",))  # audio teacher
    rows = sweep.run_sweep(specs, "runs/study")          # trains each teacher once, skips finished runs
    sweep.write_report(rows, "runs/study")               # results.md, results.csv, plots (vicokd_jax.sweep_report)

CLI:
    python -m vicokd_jax.sweep --root runs/study --prepared runs/tfds --grid study   # docs/RESULTS.md's study
    python -m vicokd_jax.sweep --root runs/s --methods kd vicokd --seeds 0 1 --fractions 0.1 \\
        --override train.steps=200
    python -m vicokd_jax.sweep --root runs/msh_like --methods kd vicokd --student-teacher rgb_audio --seeds 0 1 2
    python -m vicokd_jax.sweep --root runs/study --report-only         # rebuild the tables from summaries
    python -m vicokd_jax.sweep --root runs/t2400 --teachers-only --teachers rgb_audio \\
        --override teacher.steps=2400                                  # a teacher's lever, no students

Teachers (TEACHER_MODALITIES): students distil from STUDENT_TEACHER (skeleton + RGB, ViCoKD's) unless a run names
another (`RunSpec.teacher`, `grid(teachers_for_students=...)`, `--student-teacher`): rgb, audio, rgb_audio,
skeleton_rgb_audio, skeleton. A teacher with audio reads SynthMV's soundtracks (`data.audio`, for its students too;
with --prepared the `partial_audio` copy, so there overlap "full" has no audio teacher). A run with another teacher
is named `<variant>_lf<fraction>_<overlap>_t<teacher>_s<seed>` (e.g. kd_lf0.1_partial_trgb_audio_s0); the
default teacher's keep `<variant>_lf<fraction>_<overlap>_s<seed>`. student_only distils from none:
it runs once, under the default teacher's name.

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
TEACHER_MODALITIES = {"skeleton": ("skeleton",), "skeleton_rgb": ("skeleton", "rgb"), "rgb": ("rgb",),
                      "audio": ("audio",), "rgb_audio": ("rgb", "audio"),
                      "skeleton_rgb_audio": ("skeleton", "rgb", "audio")}
# The teacher that students distil from unless a run names another (ViCoKD's multi-modal teacher).
STUDENT_TEACHER = "skeleton_rgb"


def _distils(method: str, ablation: str = "") -> bool:
    """Whether the variant's objective has a teacher term (student_only has none)."""
    return methods.needs_teacher(methods.method_config(method, ablation or None))


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One student run: a method (with an optional ViCoKD ablation) in one data setting with one seed, distilling
    from the teacher `teacher` (a key of TEACHER_MODALITIES) of that setting."""

    method: str
    seed: int = 0
    labeled_fraction: float = 0.1
    overlap: str = "partial"
    ablation: str = ""
    teacher: str = STUDENT_TEACHER

    def __post_init__(self):
        distils = self.distils  # raises for unknown names
        if self.overlap not in ("partial", "full"):
            raise ValueError(f"RunSpec.overlap must be 'partial' or 'full', got {self.overlap!r}")
        if not 0.0 < self.labeled_fraction <= 1.0:
            raise ValueError(f"RunSpec.labeled_fraction must be in (0, 1], got {self.labeled_fraction}")
        if self.teacher not in TEACHER_MODALITIES:
            raise ValueError(f"RunSpec.teacher must be one of {list(TEACHER_MODALITIES)}, got {self.teacher!r}")
        if not distils and self.teacher != STUDENT_TEACHER:
            raise ValueError(f"RunSpec.teacher={self.teacher!r}: {self.variant} distils from no teacher; leave the "
                             f"teacher at {STUDENT_TEACHER!r} (one run per setting, not one per unused teacher)")

    @property
    def distils(self) -> bool:
        """Whether the variant's objective has a teacher term (student_only has none)."""
        return _distils(self.method, self.ablation)

    @property
    def variant(self) -> str:
        return f"{self.method}/{self.ablation}" if self.ablation else self.method

    @property
    def group(self) -> str:
        """The name shared by the seeds of one setting (a row of the results table); `_t<teacher>` at the end for
        a teacher other than STUDENT_TEACHER (the default teacher's names predate the field)."""
        suffix = "" if self.teacher == STUDENT_TEACHER else f"_t{self.teacher}"
        return f"{self.variant.replace('/', '-')}_lf{self.labeled_fraction:g}_{self.overlap}{suffix}"

    @property
    def name(self) -> str:
        return f"{self.group}_s{self.seed}"


def grid(methods=STUDENT_METHODS, seeds=(0,), fractions=(0.1,), overlaps=("partial",), ablations=(),
         teachers_for_students=(STUDENT_TEACHER,)) -> list:
    """The product of methods × teachers_for_students × fractions × overlaps × seeds, plus ViCoKD ablations over
    the same settings. A method without a teacher term (student_only) runs once per setting, under
    STUDENT_TEACHER's name, whatever `teachers_for_students` lists."""
    teachers = (teachers_for_students,) if isinstance(teachers_for_students, str) else tuple(teachers_for_students)
    variants = [(m, "") for m in methods] + [("vicokd", a) for a in ablations]
    return [RunSpec(m, s, f, o, a, t) for m, a in variants
            for t in (teachers if _distils(m, a) else (STUDENT_TEACHER,))
            for f, o, s in itertools.product(fractions, overlaps, seeds)]


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
def prepared_config(overlap: str, audio: bool) -> str:
    """The SynthMV builder config (synth_mv.SynthMv.BUILDER_CONFIGS) that --prepared reads for one overlap setting,
    with soundtracks (`audio`: a teacher with audio, or its student) or without."""
    from vicokd_jax.data.builders import synth_mv

    name = f"{overlap}_audio" if audio else overlap
    names = [c.name for c in synth_mv.SynthMv.BUILDER_CONFIGS]
    if name not in names:
        raise ValueError(f"--prepared (data_dir): SynthMV has no builder config {name!r} for overlap {overlap!r}"
                         + (" with an audio teacher (soundtracks)" if audio else "") + f"; its configs are {names}. "
                         "Drop --prepared to generate the clips on the fly, or choose another overlap or teacher")
    return name


def _use_prepared(cfg, data_dir, overrides) -> None:
    """Read SynthMV from the prepared ArrayRecord copy in `data_dir` (builder config: `prepared_config` of the
    overlap setting and `data.audio`), with the generator fields set to the ones that copy was built with (so the
    config says what the runs read)."""
    from vicokd_jax.data import datasets
    from vicokd_jax.data.builders import synth_mv

    generator = {f"data.{f}" for f in datasets.SYNTH_GENERATOR_FIELDS}
    fixed = [o for o in overrides if o.split("=", 1)[0].strip().removeprefix("config.") in generator]
    if fixed:
        raise ValueError(f"overrides {fixed} change how SynthMV is generated, but the runs read the prepared copy in "
                         f"{data_dir}, built with the builder config's settings; drop --prepared to generate on the fly")
    name = prepared_config(cfg.data.overlap, cfg.data.audio)
    builder_config = {c.name: c for c in synth_mv.SynthMv.BUILDER_CONFIGS}[name]
    for field, value in builder_config.generator_fields().items():
        cfg.data[field] = value
    cfg.data.tfds_config = builder_config.name
    cfg.data.data_dir = str(pathlib.Path(data_dir).absolute())
    cfg.data.num_workers = 0  # reading ArrayRecord is cheap; a worker process only competes for the cores


def prepare_data(data_dir, configs, log=print) -> None:
    """Build the SynthMV ArrayRecord copy of each builder config in `configs` (`prepared_config`'s names, e.g.
    "partial", "full", "partial_audio") in `data_dir` once (TFDS skips finished ones)."""
    from vicokd_jax.data import builders

    for name in dict.fromkeys(configs):
        log(f"[sweep] SynthMV/{name} in {data_dir} (built once: about 2 minutes on 2 cores)")
        builder = builders.build("synth_mv", name, data_dir)
        splits = {split: info.num_examples for split, info in builder.info.splits.items()}
        log(f"[sweep] prepared synth_mv/{name} in {builder.data_dir}: {splits}")


def _finish(cfg, overrides, smoke: bool, data_dir=None):
    """`config.smoke` when asked, the prepared data source when given, then the overrides, then validation."""
    if smoke:
        config_lib.smoke(cfg)
    if data_dir:
        _use_prepared(cfg, data_dir, overrides)
    config_lib.apply_overrides(cfg, overrides)
    config_lib.validate(cfg)
    return cfg


def _set_teacher(cfg, modalities: str) -> None:
    """The teacher's streams, and SynthMV's soundtracks when it has an audio stream."""
    if modalities not in TEACHER_MODALITIES:
        raise ValueError(f"teacher {modalities!r}: expected one of {list(TEACHER_MODALITIES)}")
    cfg.model.teacher_modalities = TEACHER_MODALITIES[modalities]
    cfg.data.audio = "audio" in TEACHER_MODALITIES[modalities]


def teacher_config(modalities: str, overlap: str, overrides=(), smoke: bool = False, data_dir=None):
    """The teacher-only config of one data setting (`modalities`: a key of TEACHER_MODALITIES; `data_dir`: read
    the prepared SynthMV copy there)."""
    cfg = config_lib.default_config("vicokd")
    cfg.name = f"synth_teacher_{modalities}_{overlap}"
    cfg.stages = ("teacher",)
    _set_teacher(cfg, modalities)
    cfg.data.overlap = overlap
    return _finish(cfg, overrides, smoke, data_dir)


def student_config(spec: RunSpec, teacher_dir, overrides=(), smoke: bool = False, data_dir=None):
    """The student-only config of `spec`, distilling from the finished teacher in `teacher_dir` (spec.teacher's;
    none for a variant without a teacher term)."""
    cfg = config_lib.default_config(spec.method)
    cfg.method.ablation = spec.ablation  # refills the method's preset with the ablation
    cfg.name = f"synth_{spec.name}"
    cfg.stages = ("student",)
    cfg.teacher.checkpoint = str(teacher_dir) if spec.distils else ""
    _set_teacher(cfg, spec.teacher)
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


def teacher_workdir(root, modalities: str, overlap: str) -> pathlib.Path:
    """Where the sweep in `root` keeps the teacher `modalities` (a key of TEACHER_MODALITIES) of one overlap."""
    return pathlib.Path(root) / "teachers" / f"{modalities}_{overlap}"


def ensure_teacher(root, modalities: str, overlap: str, overrides=(), smoke=False, log=print,
                   data_dir=None) -> pathlib.Path:
    """Train the teacher of one data setting once (reused by every later call) and return its workdir."""
    workdir = teacher_workdir(root, modalities, overlap)
    _launch(teacher_config(modalities, overlap, overrides, smoke, data_dir), workdir, log)
    return workdir


def run_sweep(specs, root, overrides=(), teachers=(STUDENT_TEACHER,), smoke=False, log=print,
              data_dir=None, overlaps=()) -> list:
    """Run every spec (skipping those with a summary) and return one result row per spec.

    `overrides` (`"train.steps=200"`, ...) apply to teachers and students alike, after `config.smoke` when
    `smoke`. Per overlap setting of the specs, the sweep trains (once) every teacher a spec distils from
    (`RunSpec.teacher`) and the ones `teachers` lists (keys of TEACHER_MODALITIES, trained for the report's
    teacher table). Every run's config is built and validated before anything is trained. `data_dir`: prepare
    SynthMV once there as ArrayRecord files (each builder config the runs read) and read every run from them
    instead of rendering clips again in every run (the same examples). `overlaps`: settings whose `teachers`
    are trained even where no spec has that overlap (with no specs: a sweep of teachers only).
    """
    root = pathlib.Path(root)
    specs = list(specs)
    repeated = [name for name, n in collections.Counter(s.name for s in specs).items() if n > 1]
    if repeated:
        raise ValueError(f"runs {repeated} appear more than once in the sweep")
    if smoke and data_dir:
        raise ValueError("smoke runs generate their tiny SynthMV on the fly; the prepared copy is full size: "
                         "drop --prepared (data_dir) or --smoke")
    settings = teacher_settings(specs, teachers, overlaps)
    configs = [_checked_student_config(spec, root, overrides, smoke, data_dir) for spec in specs]
    if data_dir:
        prepare_data(data_dir, [prepared_config(o, "audio" in TEACHER_MODALITIES[t]) for t, o in settings], log)
    for modalities, overlap in settings:
        ensure_teacher(root, modalities, overlap, overrides, smoke, log, data_dir)
    rows = []
    for i, (spec, cfg) in enumerate(zip(specs, configs)):
        log(f"[sweep] run {i + 1}/{len(specs)}: {spec.name}")
        rows.append(student_row(spec, _launch(cfg, root / "runs" / spec.name, log)))
    return rows


def _checked_student_config(spec: RunSpec, root, overrides, smoke: bool, data_dir):
    """`student_config`, with a refusal naming the run it is about (a sweep builds many before training any)."""
    try:
        return student_config(spec, teacher_workdir(root, spec.teacher, spec.overlap), overrides, smoke, data_dir)
    except ValueError as e:
        raise ValueError(f"run {spec.name}: {e}") from e


def teacher_settings(specs, teachers=(STUDENT_TEACHER,), overlaps=()) -> list:
    """The (teacher, overlap) pairs `run_sweep` trains, in order: per overlap setting of `specs` (and of
    `overlaps`, which a sweep of teachers only names), the `teachers` (for the report), then each teacher a spec
    of that setting distils from (student_only's distil from none)."""
    unknown = [t for t in teachers if t not in TEACHER_MODALITIES]
    if unknown:
        raise ValueError(f"teachers {unknown}: expected keys of TEACHER_MODALITIES {list(TEACHER_MODALITIES)}")
    overlaps = dict.fromkeys([*(s.overlap for s in specs), *overlaps])
    return list(dict.fromkeys((t, o) for o in overlaps
                              for t in (*teachers, *(s.teacher for s in specs
                                                     if s.overlap == o and s.distils))))


# ------------------------------------------------------------------------------------------------------------
# Result rows (tables and plots: vicokd_jax.sweep_report)
# ------------------------------------------------------------------------------------------------------------
def student_row(spec: RunSpec, summary: dict) -> dict:
    """The result row of one finished student run (what `sweep_report` aggregates)."""
    student = summary["student"]
    return dict(run=spec.name, group=spec.group, method=spec.variant, teacher=spec.teacher, seed=spec.seed,
                labeled_fraction=spec.labeled_fraction, overlap=spec.overlap, top1=student["top1"],
                mean_view_top1=student.get("mean_view_top1"),
                mean_view_top1_visible=student.get("mean_view_top1_visible"),
                per_view_top1_visible=student.get("per_view_top1_visible"),
                agreement=student.get("agreement"), seconds=student.get("seconds"))


def teacher_of(cfg: dict, where="config") -> str:
    """The TEACHER_MODALITIES name of a student run's config (a dict, as in config.json): the one of
    `model.teacher_modalities`, STUDENT_TEACHER when absent or when the method distils from no teacher."""
    if not _distils(cfg["method"]["name"], cfg["method"].get("ablation", "")):
        return STUDENT_TEACHER
    modalities = tuple(cfg.get("model", {}).get("teacher_modalities", TEACHER_MODALITIES[STUDENT_TEACHER]))
    names = [name for name, mods in TEACHER_MODALITIES.items() if mods == modalities]
    if not names:
        raise ValueError(f"{where}: model.teacher_modalities={list(modalities)} is none of the sweep's teachers "
                         f"{dict(TEACHER_MODALITIES)}")
    return names[0]


def collect(root) -> list:
    """The rows of every finished student run under `root` (for `--report-only`)."""
    rows = []
    for workdir in sorted((pathlib.Path(root) / "runs").glob("*")):
        summary, cfg_path = read_summary(workdir), workdir / "config.json"
        if summary is None or "student" not in summary or not cfg_path.is_file():
            continue
        cfg = json.loads(cfg_path.read_text())
        spec = RunSpec(cfg["method"]["name"], cfg["train"]["seed"], cfg["data"]["labeled_fraction"],
                       cfg["data"]["overlap"], cfg["method"]["ablation"], teacher_of(cfg, cfg_path))
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
    p.add_argument("--teachers", nargs="*", default=["skeleton", STUDENT_TEACHER], choices=tuple(TEACHER_MODALITIES),
                   help="teachers to train and report per overlap setting, besides those the students distil from "
                        f"(default: skeleton {STUDENT_TEACHER}; none when given without names)")
    p.add_argument("--student-teacher", nargs="+", default=[STUDENT_TEACHER], choices=tuple(TEACHER_MODALITIES),
                   metavar="NAME", help=f"the teachers the students distil from, one run each (default: "
                   f"{STUDENT_TEACHER}; audio ones read SynthMV's soundtracks; student_only runs once, without one); "
                   f"custom grid only; one of {', '.join(TEACHER_MODALITIES)}")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for every run, e.g. train.steps=200 data.num_train=1000")
    p.add_argument("--prepared", metavar="DATA_DIR", default="",
                   help="build SynthMV once as ArrayRecord files in DATA_DIR and read every run from them (faster "
                        "on few cores; the generator's default knobs)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (config.smoke) for a quick check")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from finished runs")
    p.add_argument("--teachers-only", action="store_true",
                   help="train and report only the --teachers, for each of --overlaps (a teacher's lever, e.g. "
                        "--override teacher.steps=2400, without student runs)")
    args = p.parse_args(argv)
    if args.teachers_only:
        student_options = ("grid", "methods", "ablations", "seeds", "fractions", "student_teacher")
        given = [f"--{name.replace('_', '-')}" for name in student_options
                 if getattr(args, name) != p.get_default(name)]
        if given:
            p.error(f"--teachers-only trains no students, so {' '.join(given)} would be ignored; drop them")
        if not args.teachers:
            p.error("--teachers-only with no --teachers has nothing to train; name them (e.g. --teachers rgb_audio)")
    return args


def specs_from_args(args) -> list:
    """The runs the CLI asks for. The study's seeds default to 0 1 2 (its tables are mean ± std over 3 seeds)."""
    if args.grid == "study":
        if list(args.student_teacher) != [STUDENT_TEACHER]:
            raise ValueError(f"--student-teacher {' '.join(args.student_teacher)}: the study grid distils from "
                             f"{STUDENT_TEACHER}; use a custom grid (--methods ...) for other teachers")
        return study_grid(tuple(args.seeds or (0, 1, 2)))
    return grid(args.methods, args.seeds or (0,), args.fractions, args.overlaps, args.ablations,
                args.student_teacher)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.report_only:
        rows = collect(args.root)
    else:
        specs = [] if args.teachers_only else specs_from_args(args)
        print(f"[sweep] {len(specs)} student runs in {args.root}", file=sys.stderr)
        rows = run_sweep(specs, args.root, args.override, tuple(args.teachers), args.smoke,
                         log=lambda m: print(m, file=sys.stderr, flush=True), data_dir=args.prepared or None,
                         overlaps=tuple(args.overlaps) if args.teachers_only else ())
    paths = write_report(rows, args.root)
    print((pathlib.Path(args.root) / "results.md").read_text())
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
