"""The training system: sharded step parity, no recompilation, exact resume, end-to-end runs, export, CLI."""
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vicokd_jax as vk
from vicokd_jax import parallel
from vicokd_jax.data import datasets, pipeline
from vicokd_jax.models import presets
from vicokd_jax.train import checkpoint as ckpt
from vicokd_jax.train import loop, nonfinite, preemption, setup
from vicokd_jax.train import step as step_lib
from vicokd_jax.train.state import abstract_with_shardings, create_state, make_optimizer

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "experiments" / "synth_vicokd.py") + ":smoke"
FAST = ["data.num_train=32", "data.num_test=16", "train.steps=6", "teacher.steps=6", "train.checkpoint_every=3",
        "train.log_every=3"]


def _cfg(*extra):
    return vk.config.from_file(SMOKE, FAST + list(extra))


# The step-level tests only need *a* train step: the skeleton-only teacher compiles much faster.
SKELETON_ONLY = "model.teacher_modalities=('skeleton',)"


def _teacher_setup(cfg, mesh, fsdp_min_size=2**16, steps_per_call=1):
    source = datasets.make_source(cfg, "train")
    model = presets.teacher_from_config(cfg)
    tx, schedule = make_optimizer(cfg.train, cfg.train.steps, cfg.train.lr)
    state, shardings = create_state(setup.model_init(model, cfg, "teacher"), tx, 0, mesh, fsdp_min_size)
    step = step_lib.make_train_step("teacher", model, tx, schedule, cfg, mesh, shardings,
                                    steps_per_call=steps_per_call)
    batches = pipeline.make_dataset(source, datasets.pipeline_config(cfg, True, cfg.train.batch_size))
    return state, shardings, step, iter(batches)


@pytest.mark.slow
def test_sharded_steps_equal_single_device():
    """One step on 8 devices, data-parallel (8 x 1) and FSDP (2 x 4), equals the step on 1 device."""
    cfg = _cfg(SKELETON_ONLY)
    one = parallel.make_mesh(1, 1, devices=jax.devices()[:1])
    s1, _, step1, batches = _teacher_setup(cfg, one)
    host = next(batches)
    s1, m1 = step1(s1, parallel.global_batch(host, one))
    for data, fsdp in ((8, 1), (2, 4)):
        many = parallel.make_mesh(data, fsdp)
        s8, shardings8, step8, _ = _teacher_setup(cfg, many, fsdp_min_size=1)
        if fsdp > 1:  # FSDP really shards parameters
            specs = [sh.spec for sh in jax.tree.leaves(shardings8.params)]
            assert any("fsdp" in tuple(spec) for spec in specs)
        s8, m8 = step8(s8, parallel.global_batch(host, many))
        assert float(m8["loss/total"]) == pytest.approx(float(m1["loss/total"]), rel=1e-5), (data, fsdp)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-6),
                     s1.params, s8.params)


@pytest.mark.slow
def test_several_steps_per_call_equal_one_step_per_call():
    """train.steps_per_call=3: one call over 3 stacked batches (on 8 devices) makes the same 3 updates."""
    cfg = _cfg(SKELETON_ONLY)
    mesh = parallel.make_mesh(-1, 1)
    single, _, step1, batches = _teacher_setup(cfg, mesh)
    hosts = [next(batches) for _ in range(3)]
    losses = []
    for host in hosts:
        single, m = step1(single, parallel.global_batch(host, mesh))
        losses.append(float(m["loss/total"]))
    multi, _, step3, _ = _teacher_setup(cfg, mesh, steps_per_call=3)
    stacked = parallel.global_batches(hosts, mesh)
    assert stacked["skeleton"].shape[:2] == (3, cfg.train.batch_size)
    multi, m3 = step3(multi, stacked)
    assert m3["loss/total"].shape == (3,) and int(multi.step) == 3
    np.testing.assert_allclose(np.asarray(m3["loss/total"]), losses, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6),
                 single.params, multi.params)


def test_multi_step_calls_end_on_every_log_and_checkpoint_point():
    train = vk.config.default_config("vicokd").train
    train.steps_per_call, train.log_every, train.checkpoint_every, train.eval_every = 8, 4, 6, 0
    done, sizes = 0, []
    while done < 13:
        sizes.append(loop.call_size(done, 13, train, 8))
        done += sizes[-1]
    assert sizes == [4, 2, 2, 4, 1]  # to 4 (log), 6 (checkpoint), 8, 12 (both), 13 (the end)


def test_steps_per_call_chosen_from_the_cadence_compile_one_call_size():
    mib = 2**20
    # gcd(400, 50, 200) = 50: the largest divisor <= 8 is 5; gcd(20000, 100, 2000, 1000) = 100 -> 5 as well.
    assert setup.auto_steps_per_call([50, 0, 200], 400, mib) == 5
    assert setup.auto_steps_per_call([100, 2000, 1000], 20000, mib) == 5
    assert setup.auto_steps_per_call([8, 0, 64], 4096, mib) == 8
    assert setup.auto_steps_per_call([4, 0, 6], 12, mib) == 2
    assert setup.auto_steps_per_call([7, 0, 7], 49, mib) == 7
    assert setup.auto_steps_per_call([50, 0, 200], 401, mib) == 1  # a stage length prime to the cadence
    # K stacked batches must stay within the per-call input budget (a ViT-B clip batch is hundreds of MiB).
    assert setup.auto_steps_per_call([8, 0, 64], 4096, 100 * mib) == 2
    assert setup.auto_steps_per_call([8, 0, 64], 4096, 300 * mib) == 1
    assert setup.auto_steps_per_call([8, 0, 64], 4096, mib, max_steps=4) == 4
    # Every call of a stage has that size: no point falls inside a call, so the step compiles once.
    train = vk.config.default_config("vicokd").train
    k = setup.auto_steps_per_call([train.log_every, train.eval_every, train.checkpoint_every], train.steps, mib)
    done, sizes = 0, set()
    while done < train.steps:
        sizes.add(loop.call_size(done, train.steps, train, k))
        done += k
    assert sizes == {k}


def test_the_default_config_chooses_steps_per_call_and_an_explicit_value_wins():
    cfg = _cfg(SKELETON_ONLY)
    mesh = parallel.make_mesh(-1, 1)
    assert cfg.train.steps_per_call == 0  # the default: chosen
    t = cfg.train
    expected = setup.auto_steps_per_call([t.log_every, t.eval_every, t.checkpoint_every], t.steps, 1)
    assert setup.call_plan(cfg, "teacher", t.steps, mesh) == (expected, False) and expected > 1
    cfg.train.steps_per_call = 1
    assert setup.call_plan(cfg, "teacher", t.steps, mesh) == (1, False)
    # A stage with a transformer (the smoke teacher sees skeleton + RGB) gets its steps unrolled, at most 4.
    assert setup.call_plan(_cfg(), "teacher", 6, mesh) == (3, True)
    assert setup.call_plan(_cfg(), "teacher", 8, mesh) == (1, False)  # gcd(8, 3, 3) = 1
    assert setup.call_plan(_cfg(SKELETON_ONLY), "teacher", 6, mesh) == (3, False)  # the ST-GCN alone: a loop
    # An explicit K: kept, unrolled or not by the same rule.
    assert setup.call_plan(_cfg(SKELETON_ONLY, "train.steps_per_call=2"), "student", 6, mesh) == (2, True)
    assert setup.call_plan(_cfg(SKELETON_ONLY, "train.steps_per_call=2"), "teacher", 6, mesh) == (2, False)
    with pytest.raises(ValueError, match="train.steps_per_call=-1"):
        vk.config.validate(_cfg(SKELETON_ONLY, "train.steps_per_call=-1"))


@pytest.mark.slow
def test_a_stage_trained_with_several_steps_per_call_logs_and_saves_the_same(tmp_path):
    # Points at steps 2, 3, 4, 6: the calls of up to 4 steps are 2, 1, 1 and 2 steps long.
    runs = {}
    for per_call in (1, 4):
        cfg = _cfg(SKELETON_ONLY, "train.log_every=2", f"train.steps_per_call={per_call}")
        result = loop.train_stage("teacher", cfg, tmp_path / str(per_call)).metrics
        records = [json.loads(x) for x in (tmp_path / str(per_call) / "teacher" / "metrics.jsonl").read_text()
                   .splitlines()]
        saved = sorted(int(p.name) for p in (tmp_path / str(per_call) / "teacher" / "checkpoints").iterdir())
        runs[per_call] = result, {r["step"]: r for r in records if "loss/total" in r}, saved
    (one, logs1, saved1), (four, logs4, saved4) = runs[1], runs[4]
    assert sorted(logs4) == sorted(logs1) == [2, 4, 6] and saved4 == saved1
    for step in logs1:
        assert logs4[step]["loss/total"] == pytest.approx(logs1[step]["loss/total"], rel=1e-4), step
    assert four["top1"] == pytest.approx(one["top1"]) and four["steps"] == 6


def test_first_nonfinite_step_inside_a_multi_step_call():
    ok = {"nonfinite": jnp.zeros(3, jnp.int32), "loss/total": jnp.ones(3)}
    bad = {"nonfinite": jnp.asarray([0, 1, 1], jnp.int32), "loss/total": jnp.asarray([1.0, jnp.nan, 2.0])}
    record = nonfinite.record_first(None, ok, 3)  # steps 1-3
    assert int(record["step"]) == -1
    record = nonfinite.record_first(record, bad, 6)  # steps 4-6: step 5 is the first bad one
    record = nonfinite.record_first(record, bad, 9)  # a later bad step does not replace it
    assert int(record["step"]) == 5 and np.isnan(float(record["metrics"]["loss/total"]))


@pytest.mark.slow
def test_no_recompilation_and_exact_resume_from_a_checkpoint(tmp_path):
    cfg = _cfg(SKELETON_ONLY)
    mesh = parallel.make_mesh(-1, 1)
    state, shardings, step, batches = _teacher_setup(cfg, mesh)
    for _ in range(2):
        state, _ = step(state, parallel.global_batch(next(batches), mesh))
    checkpoints = ckpt.StageCheckpointer(tmp_path / "ck")
    checkpoints.save(2, state, batches, {"step": 2})
    checkpoints.wait()
    for _ in range(2):
        state, _ = step(state, parallel.global_batch(next(batches), mesh))
    assert step._cache_size() == 1  # one compilation for every step
    fresh, shardings2, step2, batches2 = _teacher_setup(cfg, mesh)
    restored, meta = checkpoints.restore(abstract_with_shardings(jax.eval_shape(lambda: fresh), shardings2),
                                         batches2)
    checkpoints.close()
    assert meta["step"] == 2 and int(restored.step) == 2
    for _ in range(2):
        restored, _ = step2(restored, parallel.global_batch(next(batches2), mesh))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), state, restored)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    return vk.launch.run(_cfg(), workdir), workdir


@pytest.mark.slow
def test_smoke_run_end_to_end_through_the_python_api(smoke_run):
    summary, workdir = smoke_run
    for stage in ("teacher", "student"):
        assert 0.0 <= summary[stage]["top1"] <= 100.0 and summary[stage]["steps"] == 6
        assert (workdir / stage / "metrics.jsonl").exists() and (workdir / stage / "final_variables").exists()
    on_disk = json.loads((workdir / "summary.json").read_text())
    assert on_disk["student"]["top1"] == summary["student"]["top1"]
    # The evaluator gets the method's thresholds: pseudo-label diagnostics (method.pl.threshold) are reported.
    assert "pl_keep_rate" in on_disk["student"] and "pl_keep_rate" not in on_disk["teacher"]
    assert (workdir / "export" / "predictor.jaxexport").exists()
    records = [json.loads(x) for x in (workdir / "student" / "metrics.jsonl").read_text().splitlines()]
    assert {"loss/sup", "loss/kd", "loss/feat", "loss/vc"} <= set(records[0])  # the ViCoKD terms, logged per term


@pytest.mark.slow
def test_export_evaluates_to_the_runs_own_numbers(smoke_run):
    from vicokd_jax.evaluate import evaluate_export

    summary, workdir = smoke_run
    metrics = evaluate_export(workdir / "export")
    for key in ("top1", "top5", "per_view_top1", "mean_view_top1"):
        np.testing.assert_allclose(metrics[key], summary["student"][key], atol=1e-6, err_msg=key)


@pytest.mark.slow
def test_a_finished_stage_evaluates_to_the_runs_own_numbers(smoke_run):
    from vicokd_jax.evaluate import evaluate_stage

    summary, workdir = smoke_run
    for stage in ("teacher", "student"):
        metrics = evaluate_stage(workdir, stage)
        for key in ("top1", "top5", "per_view_top1", "mean_view_top1_visible", "confusion"):
            np.testing.assert_allclose(metrics[key], summary[stage][key], atol=1e-6, err_msg=f"{stage} {key}")
    with pytest.raises(FileNotFoundError, match="no finished teacher"):
        evaluate_stage(workdir / "export", "teacher")


@pytest.mark.slow
def test_rerun_of_a_finished_run_changes_nothing(smoke_run):
    summary, workdir = smoke_run
    before = (workdir / "export" / "variables.msgpack").read_bytes()
    again = vk.launch.run(_cfg(), workdir)
    assert again["student"]["top1"] == summary["student"]["top1"]
    assert (workdir / "export" / "variables.msgpack").read_bytes() == before


@pytest.mark.slow
def test_preempted_run_resumes_to_the_same_export(smoke_run, tmp_path, preempt_first_call):
    """SIGTERM during the first call (steps 1-3 of 6, chosen 3 per call) saves step 3, which is no checkpoint
    point here (checkpoints every 6); the resumed run ends with the reference run's exact export."""
    _, reference = smoke_run
    disarm = preempt_first_call()
    first = vk.launch.run(_cfg("train.checkpoint_every=6"), tmp_path)
    assert first.get("preempted") and first["teacher"]["step"] == 3
    disarm()
    second = vk.launch.run(_cfg("train.checkpoint_every=6"), tmp_path)
    assert not second.get("preempted")
    assert (tmp_path / "export" / "variables.msgpack").read_bytes() == \
        (reference / "export" / "variables.msgpack").read_bytes()


@pytest.mark.slow
def test_sigterm_during_setup_stops_before_the_first_step(tmp_path, monkeypatch):
    """A SIGTERM that arrives while a stage sets up must not wait for the step to compile and run."""
    original, steps_run = setup.build_stage, []

    def build_then_preempt(*args, **kwargs):
        stage = original(*args, **kwargs)
        preemption.PREEMPTED.set()  # as the SIGTERM handler would, between setup and the first step
        step = stage.train_step
        stage.train_step = lambda *a: steps_run.append(1) or step(*a)
        return stage

    monkeypatch.setattr(setup, "build_stage", build_then_preempt)
    try:
        stage = loop.train_stage("teacher", _cfg(SKELETON_ONLY), tmp_path)
    finally:
        preemption.PREEMPTED.clear()
    assert stage.metrics == {"preempted": True, "step": 0, "checkpoint": str(tmp_path / "teacher" / "checkpoints")}
    assert steps_run == [] and not (tmp_path / "teacher" / "result.json").exists()


@pytest.mark.slow
def test_cli(tmp_path):
    cmd = [sys.executable, "-m", "vicokd_jax.launch", "--config", SMOKE, "--workdir", str(tmp_path)] + \
          [f"--config.{o}" for o in FAST] + ["--config.train.steps=3", "--config.teacher.steps=3"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout[out.stdout.index("{"):])
    assert "top1" in report["teacher"] and "top1" in report["student"] and report["export"]
    evaluated = subprocess.run([sys.executable, "-m", "vicokd_jax.evaluate", "--export", report["export"]],
                               cwd=REPO, capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout.strip().splitlines()[-1])["top1"] == pytest.approx(report["student"]["top1"])


def test_config_errors_name_the_key():
    with pytest.raises(KeyError, match="unknown key 'train.stepz'"):
        _cfg("train.stepz=3")
    with pytest.raises(TypeError, match="train.steps is a int"):
        _cfg("train.steps='many'")
    with pytest.raises(ValueError, match="config.data.labeled_fraction=1.5"):
        _cfg("data.labeled_fraction=1.5")
    with pytest.raises(ValueError, match="set config.teacher.checkpoint"):
        _cfg("stages=('student',)")


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "experiments").glob("*.py")
                                        if "def get_config" in p.read_text()))
def test_every_experiment_loads_and_has_a_smoke_variant(name):
    path = REPO / "experiments" / f"{name}.py"
    full, smoke = vk.config.from_file(str(path)), vk.config.from_file(f"{path}:smoke")
    assert smoke.name.endswith("_smoke") and smoke.train.steps <= 20 and smoke.data.name == "synth_mv"
    assert full.train.steps > smoke.train.steps


def test_teacher_loss_adds_the_visibility_weighted_view_term():
    rng = np.random.default_rng(0)
    out = {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in
           (("logits", (2, 5)), ("view_logits", (2, 3, 5)), ("frame_logits", (2, 3, 4, 5)))}
    score = np.zeros((2, 3, 8), np.float32)
    score[0, 0], score[1, 2, :2] = 0.9, 0.9  # sample 0 seen by view 0 throughout; sample 1 by view 2 in 2 frames
    batch = dict(label=jnp.array([1, 4]), view_mask=jnp.ones((2, 3), bool), human_score=jnp.asarray(score),
                 frame_labels=jnp.full((2, 8), -1))
    base, m0 = step_lib.teacher_loss(out, batch, 0.5)
    total, m1 = step_lib.teacher_loss(out, batch, 0.5, view_weight=2.0)
    ce = lambda z, y: float(jax.nn.logsumexp(z) - z[y])  # noqa: E731
    expected_view = (1.0 * ce(out["view_logits"][0, 0], 1) + 0.25 * ce(out["view_logits"][1, 2], 4)) / 1.25
    assert "loss/view" not in m0 and float(m1["loss/view"]) == pytest.approx(expected_view, rel=1e-5)
    assert float(total) == pytest.approx(float(base) + 2.0 * expected_view, rel=1e-5)


def test_sigterm_before_a_stage_starts_stops_it_without_compiling(tmp_path, monkeypatch):
    monkeypatch.setattr(setup, "build_stage", lambda *a, **k: pytest.fail("the stage was set up after SIGTERM"))
    preemption.PREEMPTED.set()
    try:
        stage = loop.train_stage("teacher", _cfg(SKELETON_ONLY), tmp_path)
    finally:
        preemption.PREEMPTED.clear()
    assert stage.metrics == {"preempted": True, "step": 0, "checkpoint": str(tmp_path / "teacher" / "checkpoints")}
