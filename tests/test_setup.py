"""Stage assembly (`train/setup.py`): input specs from the config, the ahead-of-time compiled step, restore into
the abstract target."""
import pathlib

import numpy as np
import pytest

import vicokd_jax as vk
from vicokd_jax import parallel
from vicokd_jax.data import datasets, pipeline
from vicokd_jax.train import loop, setup

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "experiments" / "synth_vicokd.py") + ":smoke"
FAST = ["data.num_train=32", "data.num_test=16", "train.steps=4", "teacher.steps=4", "train.checkpoint_every=2",
        "train.log_every=2", "model.teacher_modalities=('skeleton',)"]


@pytest.mark.parametrize("multi_label", [False, True])
def test_input_specs_are_exactly_the_batches_the_pipeline_delivers(multi_label):
    cfg = vk.config.from_file(SMOKE, FAST + [f"data.multi_label={multi_label}"])
    source = datasets.make_source(cfg, "train")
    host = next(iter(pipeline.make_dataset(source, datasets.pipeline_config(cfg, True, 8))))
    batch = parallel.global_batch(host, parallel.make_mesh(-1, 1))
    specs = setup.input_specs(cfg, 8)
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {k: (s.shape, s.dtype) for k, s in specs.items()}


def test_the_stage_runs_the_executable_compiled_ahead_of_time(capsys):
    cfg = vk.config.from_file(SMOKE, FAST)
    mesh = parallel.make_mesh(-1, 1)
    stage = setup.build_stage("teacher", cfg, "unused", mesh)
    err = capsys.readouterr().err
    assert "[teacher] train step (2 steps per call) compiled in" in err and "temporaries" in err, err
    calls = []
    stage.train_step.jitted = lambda *a: calls.append(1)  # a fallback compile would land here
    source = datasets.make_source(cfg, "train")
    host = next(iter(pipeline.make_dataset(source, datasets.pipeline_config(cfg, True, cfg.train.batch_size))))
    k = stage.steps_per_call  # chosen from the cadence (checkpoints and logs every 2 of 4 steps): 2
    assert k == 2
    state, metrics = stage.train_step(stage.initial_state(), parallel.global_batches([host] * k, mesh))
    assert calls == [] and int(state.step) == k and np.isfinite(np.asarray(metrics["loss/total"])).all()


@pytest.mark.slow
def test_a_resumed_stage_restores_into_the_abstract_target_without_initialising(tmp_path, monkeypatch):
    cfg = vk.config.from_file(SMOKE, FAST + ["stages=('teacher',)", "teacher.steps=2"])
    first = loop.train_stage("teacher", cfg, tmp_path).metrics
    (tmp_path / "teacher" / "result.json").unlink()  # as if killed after its last checkpoint
    original = setup.build_stage

    def no_init(*args, **kwargs):
        stage = original(*args, **kwargs)
        stage.initial_state = lambda: pytest.fail("a resumed stage initialised a random state")
        return stage

    monkeypatch.setattr(setup, "build_stage", no_init)
    again = loop.train_stage("teacher", cfg, tmp_path).metrics
    assert again["top1"] == first["top1"] and again["steps"] == 2


def test_an_rgb_only_teacher_stage_trains_a_step():
    cfg = vk.config.from_file(SMOKE, FAST + ["model.teacher_modalities=('rgb',)", "stages=('teacher',)",
                                             "train.steps_per_call=1"])
    mesh = parallel.make_mesh(-1, 1)
    stage = setup.build_stage("teacher", cfg, "unused", mesh)
    assert not any(k.startswith("skeleton") for k in stage.abstract_state.params)
    source = datasets.make_source(cfg, "train")
    host = next(iter(pipeline.make_dataset(source, datasets.pipeline_config(cfg, True, cfg.train.batch_size))))
    state, metrics = stage.train_step(stage.initial_state(), parallel.global_batch(host, mesh))
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss/total"]))
