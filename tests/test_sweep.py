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
    assert "| kd | 0.1 | partial | 2 | 15.00 ± 7.07 |" in sweep_report.markdown_table([agg])


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
    assert "| kd | 0.1 | partial | 2 | +1.00 ± 2.83 | +3.0 -1.0 |" in table and "| vicokd |" not in table


def _fake_summary(top1):
    return {"student": {"top1": top1, "mean_view_top1": top1 / 2, "mean_view_top1_visible": top1,
                        "per_view_top1_visible": [top1] * 4, "agreement": 50.0, "seconds": 1.0}}


def test_run_sweep_trains_one_teacher_skips_finished_runs_and_reports(tmp_path, monkeypatch):
    """launch.run is replaced by a recorder: which workdirs are launched, and which are skipped on a rerun."""
    from vicokd_jax import launch

    launched = []

    def fake_run(cfg, workdir):
        launched.append((cfg.name, tuple(cfg.stages), cfg.teacher.checkpoint))
        summary = ({"teacher": {"top1": 99.0, "mean_view_top1_visible": 80.0}} if cfg.stages == ("teacher",)
                   else _fake_summary(10.0 * (cfg.train.seed + 1)))
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(json.dumps(cfg.to_dict()))
        (workdir / "summary.json").write_text(json.dumps(summary))
        return summary

    monkeypatch.setattr(launch, "run", fake_run)
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
    assert "| kd | 0.1 | partial | 3 | 20.00 ± 10.00 |" in text and "| skeleton_rgb_partial | 99.00 |" in text
    assert len(list(csv.DictReader(open(paths["csv"])))) == 3
    assert sweep.collect(tmp_path) == rows  # --report-only rebuilds the same rows from the run folders
    assert paths["per_view"].is_file()


@pytest.mark.slow  # trains a smoke teacher and two smoke students (a few minutes on 2 CPU cores)
def test_cli_smoke_sweep_end_to_end(tmp_path, capsys):
    assert sweep.main(["--root", str(tmp_path), "--methods", "student_only", "kd", "--teachers", "skeleton_rgb",
                       "--smoke"]) == 0
    out = capsys.readouterr().out
    assert "| student_only | 0.1 | partial | 1 |" in out and "| kd | 0.1 | partial | 1 |" in out
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
                                         r"train\.steps: 400 -> 300.*another --root"):
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
    assert "train.lr: 0.001 -> 0.5" in out and "log_every" not in out  # only changes that affect results
    launch.write_config(cfg, tmp_path)
    assert (tmp_path / "config.previous-2.json").is_file()
    (tmp_path / "config.previous-1.json").unlink()  # a gap in the numbering must not make a later copy replace one
    launch.write_config(changed, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("config.previous-*.json")) == ["config.previous-2.json",
                                                                                 "config.previous-3.json"]
