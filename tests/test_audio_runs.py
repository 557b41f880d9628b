"""Runs that hear, on SynthMV with sound: an RGB+audio teacher distilled into an RGB student (the MultiSensor-Home
setting, experiments/synth_audio_vicokd.py), and an audio student; each export evaluates to its run's numbers."""
import json
import pathlib

import numpy as np
import pytest

import vicokd_jax as vk
from vicokd_jax.evaluate import evaluate_export

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "experiments" / "synth_audio_vicokd.py") + ":smoke"
FAST = ["data.num_train=32", "data.num_test=16", "train.steps=4", "teacher.steps=4", "train.checkpoint_every=4",
        "train.log_every=2"]


@pytest.fixture(scope="module")
def rgb_student_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("audio_teacher")
    return vk.launch.run(vk.config.from_file(SMOKE, FAST), workdir), workdir


@pytest.mark.slow
def test_an_rgb_student_learns_from_a_teacher_that_hears(rgb_student_run):
    summary, workdir = rgb_student_run
    cfg = json.loads((workdir / "config.json").read_text())
    assert cfg["model"]["teacher_modalities"] == ["rgb", "audio"] and "skeleton" not in cfg["model"]["teacher_modalities"]
    records = [json.loads(x) for x in (workdir / "student" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["loss/feat"] > 0 and records[0]["feat/positions"] > 0  # aligned to the teacher's audio tokens
    export = json.loads((workdir / "export" / "config.json").read_text())
    assert sorted(export["input_spec"]) == ["rgb", "view_mask"]
    metrics = evaluate_export(workdir / "export")
    np.testing.assert_allclose(metrics["top1"], summary["student"]["top1"], atol=1e-6)


@pytest.mark.slow
def test_an_audio_student_stands_in_for_the_rgb_stream_and_exports_audio_inputs(tmp_path):
    summary = vk.launch.run(vk.config.from_file(SMOKE, FAST + ["model.student_input=audio"]), tmp_path)
    export = json.loads((tmp_path / "export" / "config.json").read_text())
    assert export["input_spec"]["audio"]["shape"] == [4, 8, 16, 32] and "rgb" not in export["input_spec"]
    records = [json.loads(x) for x in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["loss/feat"] > 0  # towards the teacher's RGB tokens
    metrics = evaluate_export(tmp_path / "export")
    np.testing.assert_allclose(metrics["top1"], summary["student"]["top1"], atol=1e-6)


def test_withholding_sound_silences_every_view_and_leaves_the_batch_alone():
    from vicokd_jax.evaluate import withhold

    rng = np.random.default_rng(0)
    batch = {"audio": rng.standard_normal((2, 3, 4, 5)).astype(np.float32), "audio_mask": np.ones((2, 3), bool),
             "rgb": rng.integers(0, 256, (2, 3, 2, 4, 4, 3), dtype=np.uint8), "view_mask": np.ones((2, 3), bool)}
    out = withhold(batch, ("audio",))
    assert not out["audio"].any() and out["audio"].dtype == np.float32 and not out["audio_mask"].any()
    assert out["rgb"] is batch["rgb"] and batch["audio_mask"].all() and batch["audio"].any()
    assert not withhold(batch, ("rgb",))["rgb"].any()
    with pytest.raises(ValueError, match="cannot withhold 'skeleton': the batch has no skeleton"):
        withhold(batch, ("skeleton",))


@pytest.mark.slow
def test_a_teacher_that_heard_evaluates_without_sound(rgb_student_run):
    from vicokd_jax.evaluate import evaluate_stage, main

    summary, workdir = rgb_student_run
    full = evaluate_stage(workdir, "teacher")
    silent = evaluate_stage(workdir, "teacher", without=("audio",))
    assert full["top1"] == summary["teacher"]["top1"] and silent["num_examples"] == full["num_examples"]
    assert silent["confusion"] != full["confusion"] or silent["mean_view_top1"] != full["mean_view_top1"]
    with pytest.raises(ValueError, match=r"--without skeleton: only a teacher's modalities"):
        evaluate_stage(workdir, "teacher", without=("skeleton",))
    with pytest.raises(ValueError, match=r"--without rgb audio: .*not all of them"):
        evaluate_stage(workdir, "teacher", without=("rgb", "audio"))
    with pytest.raises(ValueError, match=r"--without audio: only a teacher's"):
        evaluate_stage(workdir, "student", without=("audio",))
    with pytest.raises(SystemExit):
        main(["--export", str(workdir / "export"), "--without", "audio"])
