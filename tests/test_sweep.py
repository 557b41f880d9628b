"""vicokd_jax/sweep.py and sweep_report.py: the grid, the configs it builds, resumability, and mean ± std tables."""
import csv
import json
import pathlib

import pytest

from vicokd_jax import methods, sweep, sweep_report


def test_grid_is_the_product_and_names_are_unique():
    specs = sweep.grid(("kd", "vicokd"), seeds=(0, 1), fractions=(0.1, 1.0), overlaps=("partial", "full"),
                       ablations=("no_vc",))
    assert len(specs) == 2 * 2 * 2 * 2 + 2 * 2 * 2
    assert len({s.name for s in specs}) == len(specs)
    assert sweep.RunSpec("vicokd", 2, 0.1, "full", "vc_kl").name == "vicokd-vc_kl_lf0.1_full_s2"
    with pytest.raises(ValueError, match="unknown method"):
        sweep.RunSpec("nope")
    with pytest.raises(ValueError, match="overlap"):
        sweep.RunSpec("kd", overlap="some")


def test_study_grid_covers_every_method_ablation_fraction_overlap_and_seed():
    specs = sweep.study_grid()
    variants = {s.variant for s in specs}
    assert set(sweep.STUDENT_METHODS) <= variants
    assert {f"vicokd/{a}" for a in methods.ABLATIONS} <= variants
    assert {s.labeled_fraction for s in specs} == {0.1, 0.5, 1.0}
    assert {s.overlap for s in specs} == {"partial", "full"} and {s.seed for s in specs} == {0, 1, 2}
    assert len(set(specs)) == len(specs)


def test_cli_study_grid_runs_three_seeds_unless_told():
    # `--grid study` alone once ran only seed 0 (27 of the 81 runs): the study's default is 3 seeds.
    assert sweep.specs_from_args(sweep.parse_args(["--root", "r", "--grid", "study"])) == sweep.study_grid((0, 1, 2))
    assert len(sweep.specs_from_args(sweep.parse_args(["--root", "r", "--grid", "study"]))) == 81
    four = sweep.specs_from_args(sweep.parse_args(["--root", "r", "--grid", "study", "--seeds", "4"]))
    assert {s.seed for s in four} == {4}
    custom = sweep.specs_from_args(sweep.parse_args(["--root", "r", "--methods", "kd"]))
    assert custom == [sweep.RunSpec("kd", 0, 0.1, "partial")]


def test_student_config_sets_method_ablation_data_and_teacher(tmp_path):
    spec = sweep.RunSpec("vicokd", 2, 0.5, "full", "vc_no_mask")
    cfg = sweep.student_config(spec, tmp_path / "t", overrides=("train.steps=7",))
    assert cfg.stages == ("student",) and cfg.teacher.checkpoint == str(tmp_path / "t")
    assert cfg.method.name == "vicokd" and cfg.method.vc.use_detection_mask is False
    assert (cfg.data.overlap, cfg.data.labeled_fraction, cfg.data.labeled_seed, cfg.train.seed) == ("full", 0.5, 2, 2)
    assert cfg.train.steps == 7
    smoke = sweep.student_config(spec, tmp_path / "t", smoke=True)  # the project's own :smoke sizes
    assert smoke.train.steps == 12 and smoke.name.endswith("_smoke") and smoke.method.name == "vicokd"
    teacher = sweep.teacher_config("skeleton", "partial")
    assert teacher.stages == ("teacher",) and tuple(teacher.model.teacher_modalities) == ("skeleton",)


def test_prepared_data_reads_the_overlap_setting_and_refuses_generator_overrides(tmp_path):
    spec = sweep.RunSpec("kd", 0, 0.1, "full")
    cfg = sweep.student_config(spec, tmp_path / "t", overrides=("train.steps=7",), data_dir="rel/tfds")
    assert (cfg.data.tfds_config, cfg.data.num_workers) == ("full", 0)
    assert cfg.data.data_dir == str(pathlib.Path("rel/tfds").absolute())  # runs may start elsewhere
    assert sweep.teacher_config("skeleton", "partial", data_dir=tmp_path).data.tfds_config == "partial"
    for override in ("data.room_half=3.0", "config.data.num_train=100"):
        with pytest.raises(ValueError, match="prepared copy"):
            sweep.student_config(spec, tmp_path / "t", overrides=(override,), data_dir=tmp_path)
    assert sweep.student_config(spec, tmp_path / "t", overrides=("data.labeled_fraction=0.5",), data_dir=tmp_path)
    with pytest.raises(ValueError, match="drop --prepared"):
        sweep.run_sweep([spec], tmp_path, smoke=True, data_dir=tmp_path)


def test_prepared_data_is_built_by_the_package_once_per_overlap(tmp_path, monkeypatch):
    """The sweep builds its ArrayRecord copies with `vicokd_jax.data.builders.build` (the library never imports
    `tools`)."""
    import ast
    import types

    from vicokd_jax.data import builders

    built = []

    def fake_build(name, config, data_dir, manual_dir=None):
        built.append((name, config, str(data_dir), manual_dir))
        split = types.SimpleNamespace(num_examples=3)
        return types.SimpleNamespace(data_dir=str(data_dir), info=types.SimpleNamespace(splits={"train": split}))

    monkeypatch.setattr(builders, "build", fake_build)
    logged = []
    sweep.prepare_data(tmp_path, ["partial", "full"], log=logged.append)
    assert built == [("synth_mv", "partial", str(tmp_path), None), ("synth_mv", "full", str(tmp_path), None)]
    assert any("prepared synth_mv/full" in m and "'train': 3" in m for m in logged)

    package = pathlib.Path(sweep.__file__).parent
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n == "tools" or n.startswith("tools.")], f"{path} imports {names}"


def test_mean_std_and_aggregate_by_hand():
    assert sweep_report.mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert sweep_report.mean_std([5.0]) == (5.0, 0.0)
    rows = [dict(group="kd_lf0.1_partial", method="kd", labeled_fraction=0.1, overlap="partial", top1=v,
                 mean_view_top1_visible=None, agreement=None) for v in (10.0, 20.0)]
    (agg,) = sweep_report.aggregate(rows)
    assert agg["top1"] == 15.0 and agg["top1_std"] == pytest.approx(7.0710678) and agg["seeds"] == 2
    assert "| kd | 0.1 | partial | – | 2 | 15.00 ± 7.07 |" in sweep_report.markdown_table([agg])  # no teacher


def test_paired_difference_by_hand():
    rows = [dict(group=g, seed=s, top1=v) for g, s, v in
            (("a", 0, 10.0), ("a", 1, 14.0), ("a", 2, 9.0), ("b", 0, 8.0), ("b", 1, 11.0))]
    out = sweep_report.paired_difference(rows, "a", "b")  # seed 2 has no "b" run: left out
    assert out["seeds"] == [0, 1] and out["differences"] == [2.0, 3.0]
    assert out["mean"] == 2.5 and out["std"] == pytest.approx(0.70710678)
    with pytest.raises(ValueError, match="no seed"):
        sweep_report.paired_difference(rows, "a", "c")
    runs = [dict(group=f"{m}_lf0.1_partial", method=m, labeled_fraction=0.1, overlap="partial", seed=s, top1=v)
            for m, s, v in (("vicokd", 0, 30.0), ("vicokd", 1, 26.0), ("kd", 0, 27.0), ("kd", 1, 27.0))]
    table = sweep_report.paired_table(runs, sweep_report.aggregate(runs))
    assert "| kd | 0.1 | partial | – | 2 | +1.00 ± 2.83 | +3.0 -1.0 |" in table and "| vicokd |" not in table


def _fake_summary(top1):
    return {"student": {"top1": top1, "mean_view_top1": top1 / 2, "mean_view_top1_visible": top1,
                        "per_view_top1_visible": [top1] * 4, "agreement": 50.0, "seconds": 1.0}}


def _fake_launch(launched, configs=None):
    """A stand-in for launch.run: records (name, stages, teacher checkpoint) and each config (by workdir name),
    writes config.json and a summary (a student's top-1 is 10 × (seed + 1))."""
    def fake_run(cfg, workdir):
        launched.append((cfg.name, tuple(cfg.stages), cfg.teacher.checkpoint))
        if configs is not None:
            configs[workdir.name] = cfg
        summary = ({"teacher": {"top1": 99.0, "mean_view_top1_visible": 80.0}} if cfg.stages == ("teacher",)
                   else _fake_summary(10.0 * (cfg.train.seed + 1)))
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(json.dumps(cfg.to_dict()))
        (workdir / "summary.json").write_text(json.dumps(summary))
        return summary

    return fake_run


def test_run_sweep_trains_one_teacher_skips_finished_runs_and_reports(tmp_path, monkeypatch):
    """launch.run is replaced by a recorder: which workdirs are launched, and which are skipped on a rerun."""
    from vicokd_jax import launch

    launched = []
    monkeypatch.setattr(launch, "run", _fake_launch(launched))
    specs = sweep.grid(("kd",), seeds=(0, 1, 2))
    rows = sweep.run_sweep(specs, tmp_path, log=lambda m: None)
    teachers = [c for c in launched if c[1] == ("teacher",)]
    assert len(teachers) == 1  # one teacher for all three seeds
    assert all(c[2] == str(tmp_path / "teachers" / "skeleton_rgb_partial") for c in launched if c[1] == ("student",))
    assert [r["top1"] for r in rows] == [10.0, 20.0, 30.0]

    launched.clear()
    (tmp_path / "runs" / specs[1].name / "summary.json").unlink()  # as if seed 1 had been interrupted
    rows = sweep.run_sweep(specs, tmp_path, log=lambda m: None)
    assert [c[0] for c in launched] == [f"synth_{specs[1].name}"]  # only the unfinished run is redone
    paths = sweep_report.write_report(rows, tmp_path)
    text = paths["markdown"].read_text()
    assert "| kd | 0.1 | partial | skeleton_rgb | 3 | 20.00 ± 10.00 |" in text
    assert "| skeleton_rgb_partial | 99.00 |" in text
    assert len(list(csv.DictReader(open(paths["csv"])))) == 3
    assert sweep.collect(tmp_path) == rows  # --report-only rebuilds the same rows from the run folders
    assert paths["per_view"].is_file()


@pytest.mark.slow  # trains a smoke teacher and two smoke students (a few minutes on 2 CPU cores)
def test_cli_smoke_sweep_end_to_end(tmp_path, capsys):
    assert sweep.main(["--root", str(tmp_path), "--methods", "student_only", "kd", "--teachers", "skeleton_rgb",
                       "--smoke"]) == 0
    out = capsys.readouterr().out
    assert "| student_only | 0.1 | partial | skeleton_rgb | 1 |" in out
    assert "| kd | 0.1 | partial | skeleton_rgb | 1 |" in out
    assert (tmp_path / "runs" / "kd_lf0.1_partial_s0" / "export").is_dir()


def test_a_finished_run_is_reused_only_with_the_same_config(tmp_path, monkeypatch):
    """Rerunning a sweep with a setting that changes results (train.steps) must not reuse the old summaries under
    the same names; a setting that only changes execution (train.log_every) must."""
    from vicokd_jax import launch

    launched = []

    def fake_run(cfg, workdir):
        launched.append(cfg.name)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(json.dumps(cfg.to_dict()))
        summary = ({"teacher": {"top1": 99.0}} if cfg.stages == ("teacher",) else _fake_summary(10.0))
        (workdir / "summary.json").write_text(json.dumps(summary))
        return summary

    monkeypatch.setattr(launch, "run", fake_run)
    specs = sweep.grid(("kd",))
    sweep.run_sweep(specs, tmp_path, log=lambda m: None)
    launched.clear()
    sweep.run_sweep(specs, tmp_path, overrides=["train.log_every=7", "train.steps_per_call=2"], log=lambda m: None)
    assert launched == []  # execution-only changes: both finished runs are reused
    with pytest.raises(ValueError, match=r"teachers/skeleton_rgb_partial finished with a different config.*"
                                         r"train\.steps: 2400 -> 300.*another --root"):
        sweep.run_sweep(specs, tmp_path, overrides=["train.steps=300"], log=lambda m: None)
    assert launched == []


def test_resuming_a_run_with_another_config_keeps_the_earlier_config(tmp_path, capsys):
    from vicokd_jax import config as config_lib
    from vicokd_jax import launch

    cfg = config_lib.default_config("kd")
    launch.write_config(cfg, tmp_path)
    launch.write_config(cfg, tmp_path)  # same config: nothing kept, nothing printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"] and capsys.readouterr().out == ""
    changed = config_lib.default_config("kd")
    changed.train.lr, changed.train.log_every = 0.5, 3
    launch.write_config(changed, tmp_path)
    assert json.loads((tmp_path / "config.previous-1.json").read_text()) == json.loads(
        json.dumps(config_lib.to_dict(cfg)))
    assert json.loads((tmp_path / "config.json").read_text())["train"]["lr"] == 0.5
    out = capsys.readouterr().out
    assert "train.lr: 0.002 -> 0.5" in out and "log_every" not in out  # only changes that affect results
    launch.write_config(cfg, tmp_path)
    assert (tmp_path / "config.previous-2.json").is_file()
    (tmp_path / "config.previous-1.json").unlink()  # a gap in the numbering must not make a later copy replace one
    launch.write_config(changed, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("config.previous-*.json")) == ["config.previous-2.json",
                                                                                 "config.previous-3.json"]


# ------------------------------------------------------------------------------------------------------------
# Teachers other than skeleton + RGB (audio included)
# ------------------------------------------------------------------------------------------------------------
def test_default_teacher_keeps_its_names_and_other_teachers_are_suffixed():
    assert sweep.RunSpec("kd").teacher == sweep.STUDENT_TEACHER == "skeleton_rgb"
    assert sweep.RunSpec("kd").name == sweep.RunSpec("kd", teacher="skeleton_rgb").name == "kd_lf0.1_partial_s0"
    other = sweep.RunSpec("kd", 0, 0.1, "partial", teacher="rgb_audio")
    assert (other.group, other.name) == ("kd_lf0.1_partial_trgb_audio", "kd_lf0.1_partial_trgb_audio_s0")
    assert sweep.RunSpec("vicokd", 1, 0.5, "full", "no_vc", "audio").name == "vicokd-no_vc_lf0.5_full_taudio_s1"
    assert len({sweep.RunSpec("kd", teacher=t).name for t in sweep.TEACHER_MODALITIES}) == len(
        sweep.TEACHER_MODALITIES)
    with pytest.raises(ValueError, match="RunSpec.teacher must be one of"):
        sweep.RunSpec("kd", teacher="depth")
    with pytest.raises(ValueError, match="student_only distils from no teacher"):
        sweep.RunSpec("student_only", teacher="rgb_audio")


def test_grid_and_cli_distil_from_the_named_teachers():
    specs = sweep.grid(("student_only", "kd"), seeds=(0, 1), teachers_for_students=("skeleton_rgb", "rgb_audio"),
                       ablations=("no_vc",))
    names = [s.name for s in specs]
    assert names == ["student_only_lf0.1_partial_s0", "student_only_lf0.1_partial_s1",  # no teacher: once
                     "kd_lf0.1_partial_s0", "kd_lf0.1_partial_s1",
                     "kd_lf0.1_partial_trgb_audio_s0", "kd_lf0.1_partial_trgb_audio_s1",
                     "vicokd-no_vc_lf0.1_partial_s0", "vicokd-no_vc_lf0.1_partial_s1",
                     "vicokd-no_vc_lf0.1_partial_trgb_audio_s0", "vicokd-no_vc_lf0.1_partial_trgb_audio_s1"]
    cli = sweep.specs_from_args(sweep.parse_args(["--root", "r", "--methods", "kd", "vicokd", "--student-teacher",
                                                  "rgb_audio", "--seeds", "0", "1", "2"]))
    assert cli == sweep.grid(("kd", "vicokd"), (0, 1, 2), teachers_for_students=("rgb_audio",))
    assert {s.teacher for s in cli} == {"rgb_audio"} and len(cli) == 6
    default = sweep.parse_args(["--root", "r"])
    assert default.student_teacher == ["skeleton_rgb"] and default.teachers == ["skeleton", "skeleton_rgb"]
    with pytest.raises(ValueError, match="--student-teacher rgb: the study grid"):
        sweep.specs_from_args(sweep.parse_args(["--root", "r", "--grid", "study", "--student-teacher", "rgb"]))


def test_an_audio_teacher_reads_soundtracks_for_itself_and_its_students(tmp_path):
    spec = sweep.RunSpec("vicokd", 1, 0.1, "partial", teacher="rgb_audio")
    cfg = sweep.student_config(spec, tmp_path / "t", overrides=("teacher.steps=100",))
    assert tuple(cfg.model.teacher_modalities) == ("rgb", "audio") and cfg.data.audio is True
    assert cfg.name == "synth_vicokd_lf0.1_partial_trgb_audio_s1" and cfg.teacher.steps == 100
    assert sweep.student_config(sweep.RunSpec("kd"), tmp_path / "t").data.audio is False
    for name, modalities in sweep.TEACHER_MODALITIES.items():
        teacher = sweep.teacher_config(name, "full", overrides=("teacher.steps=100",))  # generated on the fly
        assert tuple(teacher.model.teacher_modalities) == modalities and teacher.teacher.steps == 100
        assert teacher.data.audio is ("audio" in modalities)
    with pytest.raises(ValueError, match="teacher 'depth'"):
        sweep.teacher_config("depth", "partial")


def test_prepared_data_of_an_audio_teacher_is_partial_audio_and_full_overlap_is_refused(tmp_path):
    assert [sweep.prepared_config(o, a) for o, a in (("partial", False), ("full", False), ("partial", True))] == [
        "partial", "full", "partial_audio"]
    spec = sweep.RunSpec("kd", 0, 0.1, "partial", teacher="audio")
    cfg = sweep.student_config(spec, tmp_path / "t", data_dir=tmp_path)
    assert (cfg.data.tfds_config, cfg.data.audio) == ("partial_audio", True)
    assert sweep.teacher_config("skeleton_rgb_audio", "partial", data_dir=tmp_path).data.tfds_config == "partial_audio"
    assert sweep.student_config(sweep.RunSpec("kd"), tmp_path / "t", data_dir=tmp_path).data.tfds_config == "partial"
    refused = r"no builder config 'full_audio' for overlap 'full' with an audio teacher.*Drop --prepared"
    with pytest.raises(ValueError, match=refused):
        sweep.student_config(sweep.RunSpec("kd", overlap="full", teacher="rgb_audio"), tmp_path / "t",
                             data_dir=tmp_path)
    with pytest.raises(ValueError, match=refused):
        sweep.teacher_config("audio", "full", data_dir=tmp_path)


def test_run_sweep_trains_each_teacher_its_students_need_once(tmp_path, monkeypatch):
    """launch.run and builders.build are replaced by recorders: the teachers trained, the copies built, and what
    each student reads and distils from."""
    import types

    from vicokd_jax import launch
    from vicokd_jax.data import builders

    built = []

    def fake_build(name, config, data_dir, manual_dir=None):
        built.append(config)
        split = types.SimpleNamespace(num_examples=3)
        return types.SimpleNamespace(data_dir=str(data_dir), info=types.SimpleNamespace(splits={"train": split}))

    launched, configs = [], {}
    monkeypatch.setattr(launch, "run", _fake_launch(launched, configs))
    monkeypatch.setattr(builders, "build", fake_build)
    specs = [sweep.RunSpec("kd", 0, teacher="rgb_audio"), sweep.RunSpec("vicokd", 0, teacher="rgb_audio"),
             sweep.RunSpec("kd", 1, teacher="rgb_audio"), sweep.RunSpec("student_only", 0),
             sweep.RunSpec("kd", 0, overlap="full")]
    data_dir = tmp_path / "tfds"
    rows = sweep.run_sweep(specs, tmp_path, overrides=("teacher.steps=100", "train.steps=5"), teachers=("skeleton",),
                           log=lambda m: None, data_dir=data_dir)
    assert sweep.teacher_settings(specs, ("skeleton",)) == [  # none for student_only, which distils from none
        ("skeleton", "partial"), ("rgb_audio", "partial"), ("skeleton", "full"), ("skeleton_rgb", "full")]
    assert sweep.teacher_settings([specs[0]], ()) == [("rgb_audio", "partial")]  # not the default one too
    assert [c[0] for c in launched if c[1] == ("teacher",)] == [
        "synth_teacher_skeleton_partial", "synth_teacher_rgb_audio_partial", "synth_teacher_skeleton_full",
        "synth_teacher_skeleton_rgb_full"]
    assert built == ["partial", "partial_audio", "full"]  # each copy the runs read, once
    assert all(cfg.teacher.steps == 100 and cfg.train.steps == 5 for cfg in configs.values())  # teachers and students
    assert configs["rgb_audio_partial"].data.tfds_config == "partial_audio"
    for spec in specs:
        cfg = configs[spec.name]
        distils = spec.method != "student_only"
        assert cfg.teacher.checkpoint == (str(sweep.teacher_workdir(tmp_path, spec.teacher, spec.overlap)) if distils
                                          else "")
        assert tuple(cfg.model.teacher_modalities) == sweep.TEACHER_MODALITIES[spec.teacher]
        assert cfg.data.tfds_config == sweep.prepared_config(spec.overlap, spec.teacher == "rgb_audio")
    assert configs["kd_lf0.1_partial_trgb_audio_s0"].data.audio is True
    assert [r["teacher"] for r in rows] == ["rgb_audio"] * 3 + ["skeleton_rgb"] * 2
    assert sorted(sweep.collect(tmp_path), key=lambda r: r["run"]) == sorted(rows, key=lambda r: r["run"])

    launched.clear(), built.clear()
    with pytest.raises(ValueError, match="'full_audio' for overlap 'full'"):  # refused before anything runs
        sweep.run_sweep([sweep.RunSpec("kd", overlap="full", teacher="audio")], tmp_path / "b", log=lambda m: None,
                        data_dir=data_dir)
    with pytest.raises(ValueError, match="'full_audio' for overlap 'full'"):  # a reported teacher too
        sweep.run_sweep([sweep.RunSpec("kd", overlap="full")], tmp_path / "b", teachers=("audio",),
                        log=lambda m: None, data_dir=data_dir)
    with pytest.raises(ValueError, match="adapter stands in"):  # an invalid student config stops the sweep early
        sweep.run_sweep([sweep.RunSpec("kd", teacher="rgb_audio"), sweep.RunSpec("vicokd", teacher="rgb")],
                        tmp_path / "c", log=lambda m: None)
    assert launched == [] and built == []


def test_teacher_of_reads_the_config_and_defaults_when_absent(tmp_path):
    from vicokd_jax import config as config_lib

    cfg = sweep.student_config(sweep.RunSpec("kd", teacher="rgb"), tmp_path).to_dict()
    assert sweep.teacher_of(json.loads(json.dumps(cfg))) == "rgb"  # as read back from config.json
    del cfg["model"]["teacher_modalities"]
    assert sweep.teacher_of(cfg) == "skeleton_rgb"
    no_teacher = config_lib.default_config("student_only").to_dict()
    no_teacher["model"]["teacher_modalities"] = ["rgb"]
    assert sweep.teacher_of(no_teacher) == "skeleton_rgb"  # student_only: the default name, whatever is recorded
    cfg["model"]["teacher_modalities"] = ["rgb", "skeleton"]
    with pytest.raises(ValueError, match=r"runs/x/config.json: model.teacher_modalities=\['rgb', 'skeleton'\]"):
        sweep.teacher_of(cfg, "runs/x/config.json")


def test_report_shows_the_teacher_and_pairs_only_runs_of_the_same_teacher(tmp_path):
    runs = [dict(run=f"{m}{t}{s}", group=f"{m}_lf0.1_partial{t and '_t' + t}", method=m, labeled_fraction=0.1,
                 overlap="partial", teacher=t or "skeleton_rgb", seed=s, top1=v)
            for m, t, s, v in (("vicokd", "", 0, 30.0), ("vicokd", "", 1, 26.0), ("kd", "", 0, 27.0),
                               ("kd", "", 1, 27.0), ("kd", "rgb_audio", 0, 20.0), ("kd", "rgb_audio", 1, 21.0),
                               ("fitnet", "rgb_audio", 0, 1.0), ("vicokd", "rgb_audio", 0, 25.0),
                               ("vicokd", "rgb_audio", 1, 29.0))]
    aggregated = sweep_report.aggregate(runs)
    table = sweep_report.markdown_table(aggregated)
    assert "| method | labels | overlap | teacher | seeds |" in table
    assert "| kd | 0.1 | partial | rgb_audio | 2 | 20.50 ± 0.71 |" in table
    assert "| kd | 0.1 | partial | skeleton_rgb | 2 | 27.00 ± 0.00 |" in table
    paired = sweep_report.paired_table(runs, aggregated)
    assert "| kd | 0.1 | partial | skeleton_rgb | 2 | +1.00 ± 2.83 | +3.0 -1.0 |" in paired
    assert "| kd | 0.1 | partial | rgb_audio | 2 | +6.50 ± 2.12 | +5.0 +8.0 |" in paired
    assert "| fitnet | 0.1 | partial | rgb_audio | 1 | +24.00 ± 0.00 | +24.0 |" in paired
    without_own_reference = [r for r in runs if not (r["method"] == "vicokd" and r["teacher"] == "rgb_audio")]
    paired = sweep_report.paired_table(without_own_reference, sweep_report.aggregate(without_own_reference))
    assert "rgb_audio" not in paired and "| kd | 0.1 | partial | skeleton_rgb | 2 |" in paired
    paths = sweep_report.write_report(runs, tmp_path)
    assert {r["teacher"] for r in csv.DictReader(open(paths["csv"]))} == {"skeleton_rgb", "rgb_audio"}


def test_a_run_that_cannot_work_is_refused_by_name_before_any_teacher_trains(tmp_path, monkeypatch):
    """ViCoKD's adapter has nothing to stand in for when the teacher reads only RGB: the sweep names the run and
    the field, and trains nothing."""
    from vicokd_jax import launch

    launched = []
    monkeypatch.setattr(launch, "run", lambda *a, **k: launched.append(a))
    specs = [sweep.RunSpec("kd", 0, teacher="rgb"), sweep.RunSpec("vicokd", 0, teacher="rgb")]
    with pytest.raises(ValueError, match=r"run vicokd_lf0\.1_partial_trgb_s0: config\.method\.weights\.feat"):
        sweep.run_sweep(specs, tmp_path, log=lambda m: None)
    assert launched == [] and not (tmp_path / "teachers").exists()


def test_teachers_only_trains_and_reports_the_named_teachers_and_no_student(tmp_path, monkeypatch, capsys):
    """A teacher lever (e.g. `--override teacher.lr=0.002`) is measured without paying for student runs."""
    from vicokd_jax import launch

    launched, configs = [], {}
    monkeypatch.setattr(launch, "run", _fake_launch(launched, configs))
    assert sweep.main(["--root", str(tmp_path), "--teachers-only", "--teachers", "rgb", "skeleton_rgb",
                       "--overlaps", "partial", "full", "--override", "teacher.lr=0.002"]) == 0
    assert [c[0] for c in launched] == ["synth_teacher_rgb_partial", "synth_teacher_skeleton_rgb_partial",
                                        "synth_teacher_rgb_full", "synth_teacher_skeleton_rgb_full"]
    assert all(cfg.teacher.lr == 0.002 for cfg in configs.values())
    assert not (tmp_path / "runs").exists()
    out = capsys.readouterr().out
    assert "| rgb_partial | 99.00 | 80.00 |" in out and "| skeleton_rgb_full | 99.00 | 80.00 |" in out
    assert "| method |" not in out  # no empty students' table
    with pytest.raises(SystemExit):  # student options have nothing to act on
        sweep.parse_args(["--root", str(tmp_path), "--teachers-only", "--methods", "kd"])
    with pytest.raises(SystemExit):  # nothing to train
        sweep.parse_args(["--root", str(tmp_path), "--teachers-only", "--teachers"])


def test_a_student_that_distils_from_no_teacher_trains_none(tmp_path, monkeypatch):
    from vicokd_jax import launch

    assert sweep.teacher_settings([sweep.RunSpec("student_only", 0, 1.0)], ()) == []
    assert sweep.teacher_settings([sweep.RunSpec("student_only"), sweep.RunSpec("kd")], ()) == [
        ("skeleton_rgb", "partial")]
    launched = []
    monkeypatch.setattr(launch, "run", _fake_launch(launched))
    sweep.main(["--root", str(tmp_path), "--methods", "student_only", "--teachers"])  # no teacher for the report
    assert [c[1] for c in launched] == [("student",)]
