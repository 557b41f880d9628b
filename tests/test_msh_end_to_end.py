"""MultiSensor-Home as the ViCoKD paper runs it, end to end on a test-written home folder: 5 views of MP4 with AAC
soundtracks and MultiTSF's JSON files -> tools.prepare_data -> vicokd_jax.launch with experiments/msh1_vicokd.py
(an RGB+audio teacher, an RGB student) -> the export evaluates to the run's own mAP."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from multisensor_home_files import write_home

# Two to three minutes on 2 CPU cores, half of it in checkpoint saves of the 8-device test mesh.
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["model.preset=micro", "model.dtype=float32", "data.image_size=32", "data.num_frames=8",
         "train.steps=4", "teacher.steps=4", "train.batch_size=8", "train.eval_batch_size=8", "train.log_every=2",
         "train.checkpoint_every=4", "train.warmup_steps=1", "data.num_workers=0"]


def _run(args, timeout=900):
    out = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def msh_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("msh")
    # View 4 of one training record has no soundtrack: zeros, audio_mask False, a warning, not a crash.
    home = write_home(root / "manual", no_audio=[("01/00-Part2", 4)])
    data_dir = root / "tfds"
    prepared = _run(["tools.prepare_data", "multisensor_home", "--config", "home1", "--manual_dir", str(home.path),
                     "--data_dir", str(data_dir)])
    workdir = root / "run"
    launched = _run(["vicokd_jax.launch", "--config", "experiments/msh1_vicokd.py", "--workdir", str(workdir),
                     f"--config.data.data_dir={data_dir}", *[f"--config.{o}" for o in SMALL]])
    report = json.loads(launched.stdout[launched.stdout.index("{"):])
    summary = json.loads((workdir / "summary.json").read_text())
    return prepared, {**summary, "export": report["export"]}, workdir


def test_prepared_copy_has_the_soundtracks_and_warns_for_the_silent_view(msh_run):
    prepared, _, _ = msh_run
    assert "00-View4-Part2.mp4" in prepared.stderr + prepared.stdout and "no audio track" in (
        prepared.stderr + prepared.stdout)


def test_the_teacher_hears_and_sees_and_the_student_only_sees(msh_run):
    _, report, workdir = msh_run
    cfg = json.loads((workdir / "config.json").read_text())
    assert cfg["model"]["teacher_modalities"] == ["rgb", "audio"] and cfg["data"]["audio"]
    assert cfg["data"]["multi_label"] and cfg["model"]["audio_encoder"] == "multitsf"
    for stage in ("teacher", "student"):
        for key in ("map_class", "map_sample"):
            assert 0.0 <= report[stage][key] <= 100.0, (stage, key, report[stage])
        assert len(report[stage]["per_view_map_class"]) == 5  # the per-view table
    export = json.loads((pathlib.Path(report["export"]) / "config.json").read_text())
    assert sorted(export["input_spec"]) == ["rgb", "view_mask"]  # the student needs RGB only


def test_the_export_evaluates_to_the_runs_own_map(msh_run):
    _, report, _ = msh_run
    evaluated = _run(["vicokd_jax.evaluate", "--export", report["export"]], timeout=600)
    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    for key in ("map_class", "map_sample"):
        np.testing.assert_allclose(metrics[key], report["student"][key], atol=1e-4, err_msg=key)
