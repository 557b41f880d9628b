"""Reliability: damaged checkpoints, non-finite losses, resharding on restore, kill -9 and SIGTERM.

The subprocess tests run the CLI on the smoke experiment at tiny sizes and are marked `slow`.
"""
import hashlib
import json
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vicokd_jax as vk
from vicokd_jax import parallel
from vicokd_jax.models import presets
from vicokd_jax.train import checkpoint as ckpt
from vicokd_jax.train import loop, nonfinite, setup
from vicokd_jax.train import step as step_lib
from vicokd_jax.train.state import abstract_with_shardings, create_state, make_optimizer, state_shardings

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "experiments" / "synth_vicokd.py") + ":smoke"
SKELETON_TEACHER = ["stages=('teacher',)", "model.teacher_modalities=('skeleton',)", "data.num_train=32",
                    "data.num_test=16"]


# ------------------------------------------------------------------------------------------------------------
# Damaged / incomplete checkpoints
# ------------------------------------------------------------------------------------------------------------
def _state(value: float) -> dict:
    return {"w": jnp.full((4, 3), value, jnp.float32), "step": jnp.asarray(int(value), jnp.int32)}


def _iterator():
    return grain.MapDataset.range(1000).batch(4).to_iter_dataset().__iter__()


def _tree_digest(path: pathlib.Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _two_checkpoints(directory):
    """Steps 2 and 4 of a tiny state and a grain iterator (advanced 2 and 4 batches)."""
    manager = ckpt.StageCheckpointer(directory, keep=3)
    it = _iterator()
    for step in (2, 4):
        for _ in range(2):
            next(it)
        manager.save(step, _state(step), it, {"step": step})
    manager.close()


def _damage_state_chunks(step_dir):  # truncate every array data file of the state
    for f in (step_dir / "state").rglob("d/*"):
        f.write_bytes(f.read_bytes()[:7])


def _damage_state_manifest(step_dir):  # the OCDBT manifest is gone
    (step_dir / "state" / "manifest.ocdbt").unlink()


def _damage_state_metadata(step_dir):  # the tree metadata is half written
    f = step_dir / "state" / "_METADATA"
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])


def _damage_iterator_state(step_dir):  # the grain iterator state is half a JSON file
    f = next((step_dir / "data").glob("process_*.json"))
    f.write_bytes(f.read_bytes()[:5])


def _damage_meta(step_dir):  # the metadata item's file is missing
    (step_dir / "meta" / "metadata").unlink()


@pytest.mark.parametrize("damage", [_damage_state_chunks, _damage_state_manifest, _damage_state_metadata,
                                    _damage_iterator_state, _damage_meta], ids=lambda f: f.__name__.removeprefix("_damage_"))
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    directory = tmp_path / "checkpoints"
    _two_checkpoints(directory)
    intact = _tree_digest(directory / "2")
    damage(directory / "4")
    manager = ckpt.StageCheckpointer(directory, keep=3)
    it = _iterator()
    with pytest.warns(ckpt.CheckpointFallbackWarning) as caught:
        state, meta = manager.restore(jax.eval_shape(lambda: _state(0.0)), it)
    message = str(caught[0].message)
    assert f"step 4 ({directory / '4'}" in message and f"step 2 ({directory / '2'})" in message, message
    assert meta == {"step": 2} and float(state["w"][0, 0]) == 2.0 and int(state["step"]) == 2
    assert next(it).tolist() == [8, 9, 10, 11]  # the iterator is where step 2 left it (2 batches in)
    assert _tree_digest(directory / "2") == intact  # the complete checkpoint is untouched
    moved = list((tmp_path / "corrupt_checkpoints").iterdir())  # the damaged one is kept aside, not deleted
    assert len(moved) == 1 and moved[0].name.startswith("4-") and (moved[0] / "state").exists()
    # Training goes on: step 4 can be written again and is the newest.
    manager.save(4, _state(44.0), it, {"step": 4})
    manager.wait()
    state, meta = manager.restore(jax.eval_shape(lambda: _state(0.0)), _iterator())
    manager.close()
    assert meta == {"step": 4} and float(state["w"][0, 0]) == 44.0


def test_incomplete_checkpoint_of_a_killed_save_is_ignored(tmp_path):
    """A save cut short leaves orbax's temporary folder: not listed, not restored, not deleted."""
    directory = tmp_path / "checkpoints"
    _two_checkpoints(directory)
    partial = directory / "6.orbax-checkpoint-tmp-1234567890"
    shutil.copytree(directory / "4", partial)
    shutil.rmtree(partial / "state")
    (partial / "commit_success.txt").unlink(missing_ok=True)
    manager = ckpt.StageCheckpointer(directory, keep=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ckpt.CheckpointFallbackWarning)
        state, meta = manager.restore(jax.eval_shape(lambda: _state(0.0)), _iterator())
    manager.close()
    assert meta == {"step": 4} and float(state["w"][0, 0]) == 4.0
    assert partial.exists() and (directory / "2").exists()


def test_every_checkpoint_damaged_raises_naming_each_and_deletes_nothing(tmp_path):
    directory = tmp_path / "checkpoints"
    _two_checkpoints(directory)
    for step in (2, 4):
        _damage_state_manifest(directory / str(step))
    before = _tree_digest(directory)
    manager = ckpt.StageCheckpointer(directory, keep=3)
    with pytest.raises(ckpt.CorruptCheckpointError) as info:
        manager.restore(jax.eval_shape(lambda: _state(0.0)), _iterator())
    manager.close()
    message = str(info.value)
    assert f"step 4 ({directory / '4'})" in message and f"step 2 ({directory / '2'})" in message, message
    assert _tree_digest(directory) == before


# ------------------------------------------------------------------------------------------------------------
# Resharding on restore
# ------------------------------------------------------------------------------------------------------------
def test_fsdp8_checkpoint_restores_onto_a_4_device_data_parallel_mesh(tmp_path):
    cfg = vk.config.from_file(SMOKE, SKELETON_TEACHER)
    model = presets.teacher_from_config(cfg)
    tx, _ = make_optimizer(cfg.train, 10, 1e-3)
    init = setup.model_init(model, cfg, "teacher")
    fsdp8 = parallel.make_mesh(1, 8)
    state, _ = create_state(init, tx, 0, fsdp8, fsdp_min_size=1)
    sharded = [x for x in jax.tree.leaves(state.params) if "fsdp" in tuple(x.sharding.spec)]
    assert sharded, "nothing was FSDP-sharded: the test would prove nothing"
    state = state.replace(params=jax.tree.map(lambda x: x + 0.5, state.params))  # not the init values
    manager = ckpt.StageCheckpointer(tmp_path / "checkpoints")
    manager.save(3, state, _iterator(), {"step": 3})
    manager.close()

    dp4 = parallel.make_mesh(4, 1, devices=jax.devices()[:4])
    abstract = jax.eval_shape(lambda: state)
    target = abstract_with_shardings(abstract, state_shardings(abstract, dp4))
    restored, _ = ckpt.StageCheckpointer(tmp_path / "checkpoints").restore(target, _iterator())
    for leaf in jax.tree.leaves(restored):
        assert leaf.sharding.mesh.devices.size == 4 and leaf.sharding.is_fully_replicated
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), state, restored)


# ------------------------------------------------------------------------------------------------------------
# Non-finite losses
# ------------------------------------------------------------------------------------------------------------
def _poison_step(monkeypatch, bad_call: int):
    """Make the teacher's frame loss (only) NaN at the `bad_call`-th step, with one or several steps per call.

    Every batch gains a `poison` row vector (0, or NaN at the bad step; same structure: no recompilation) that the
    wrapped `teacher_loss` adds to the frame logits: `loss/frame` goes NaN, `loss/sequence` stays finite.
    """
    calls = {"n": 0}
    original_batch, original_batches = parallel.global_batch, parallel.global_batches
    original_loss = step_lib.teacher_loss

    def poison(batch):
        calls["n"] += 1
        return dict(batch, poison=np.full(len(batch["label"]), np.nan if calls["n"] == bad_call else 0.0,
                                          np.float32))

    def poisoned_loss(out, batch, *args):
        if "poison" in batch:  # not in the ahead-of-time compile, which traces the config's batch
            out = dict(out, frame_logits=out["frame_logits"] + jnp.mean(batch["poison"]))
        return original_loss(out, batch, *args)

    monkeypatch.setattr(parallel, "global_batch", lambda batch, mesh: original_batch(poison(batch), mesh))
    monkeypatch.setattr(parallel, "global_batches",
                        lambda batches, mesh: original_batches([poison(b) for b in batches], mesh))
    monkeypatch.setattr(step_lib, "teacher_loss", poisoned_loss)


NONFINITE = SKELETON_TEACHER + ["teacher.steps=6", "train.log_every=3", "train.checkpoint_every=3"]


@pytest.mark.slow  # trains a smoke teacher (about a minute); keeps the default suite under 10 minutes
def test_nonfinite_loss_raises_naming_the_exact_step_and_term(tmp_path, monkeypatch):
    cfg = vk.config.from_file(SMOKE, NONFINITE)
    _poison_step(monkeypatch, bad_call=5)  # step 5; the next log point is step 6
    with pytest.raises(nonfinite.NonFiniteLossError) as info:
        loop.train_stage("teacher", cfg, tmp_path)
    message = str(info.value)
    assert "non-finite loss at step 5: loss/frame went non-finite" in message, message
    assert "loss/sequence" not in message  # the term that stayed finite is not blamed
    checkpoints = tmp_path / "teacher" / "checkpoints"
    assert f"the last checkpoint, step 3 ({checkpoints / '3'}), is intact" in message, message
    assert sorted(p.name for p in checkpoints.iterdir()) == ["3"]  # nothing saved past the bad step
    assert not (tmp_path / "teacher" / "result.json").exists()
    # The last good checkpoint restores.
    assert ckpt.StageCheckpointer(checkpoints).latest_step() == 3


@pytest.mark.slow  # trains a smoke teacher (about a minute); keeps the default suite under 10 minutes
def test_nonfinite_loss_skip_skips_the_update_and_counts_it(tmp_path, monkeypatch):
    cfg = vk.config.from_file(SMOKE, NONFINITE + ["train.on_nonfinite=skip"])
    _poison_step(monkeypatch, bad_call=2)
    result = loop.train_stage("teacher", cfg, tmp_path).metrics
    records = [json.loads(x) for x in (tmp_path / "teacher" / "metrics.jsonl").read_text().splitlines()]
    train = {r["step"]: r for r in records if "loss/total" in r}
    assert train[3]["skipped"] == 1.0 and train[6]["skipped"] == 1.0 and result["final_train"]["skipped"] == 1.0
    assert np.isfinite(train[6]["loss/total"]) and 0.0 <= result["top1"] <= 100.0


# ------------------------------------------------------------------------------------------------------------
# Processes that die: kill -9 and SIGTERM (subprocess runs of the CLI)
# ------------------------------------------------------------------------------------------------------------
RUN = ["data.num_train=32", "data.num_test=16", "teacher.steps=4", "train.steps=4", "train.checkpoint_every=2",
       "train.log_every=2"]
KILL_SEED = 9  # the kill moment is random.Random(KILL_SEED).uniform(0.05, 0.9) of the reference run's time from its
               # first checkpoint to its end: reproducible, and anywhere in teacher, student, evaluation or export


def _command(workdir):
    return [sys.executable, "-m", "vicokd_jax.launch", "--config", SMOKE, "--workdir", str(workdir)] + \
        [f"--config.{o}" for o in RUN]


def _run_to_completion(workdir, timeout=900):
    out = subprocess.run(_command(workdir), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def _has_checkpoint(workdir) -> bool:
    """The teacher's first checkpoint is committed (its step folder exists under its final name)."""
    return bool(ckpt.committed_steps(workdir / "teacher" / "checkpoints"))


def _wait_for_first_checkpoint(proc, workdir, timeout=600) -> float:
    """Poll until the first checkpoint is committed; returns the time it was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _has_checkpoint(workdir):
            return time.monotonic()
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before its first checkpoint")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no checkpoint within the timeout")


def _outcome(workdir) -> dict:
    """What an interrupted run must reproduce: the export's bytes and every stage's final numbers."""
    summary = json.loads((workdir / "summary.json").read_text())
    export = pathlib.Path(summary["export"])
    metrics = {stage: {k: v for k, v in summary[stage].items() if k not in ("seconds", "plots", "checkpoint")}
               for stage in ("teacher", "student")}
    history = {stage: (workdir / stage / "metrics.jsonl").read_text() for stage in ("teacher", "student")}
    return {"variables": (export / "variables.msgpack").read_bytes(), "metrics": metrics, "history": history}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted CLI run: its outcome, and the seconds from its first checkpoint to its end."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    proc = subprocess.Popen(_command(workdir), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen = _wait_for_first_checkpoint(proc, workdir)
        stderr = proc.communicate(timeout=900)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-4000:]
    return {**_outcome(workdir), "window": time.monotonic() - seen}


def _assert_same_outcome(workdir, reference):
    got = _outcome(workdir)
    assert got["variables"] == reference["variables"], "the export differs from the uninterrupted run's (bitwise)"
    assert got["metrics"] == reference["metrics"]
    assert got["history"] == reference["history"]  # metrics.jsonl: no duplicated or missing steps


@pytest.mark.slow
def test_kill_9_after_the_first_checkpoint_then_rerun_gives_the_uninterrupted_result(tmp_path, reference):
    delay = random.Random(KILL_SEED).uniform(0.05, 0.9) * reference["window"]
    for attempt in range(3):  # a faster machine may finish first: kill earlier (in a fresh workdir)
        workdir = tmp_path / f"attempt{attempt}"
        proc = subprocess.Popen(_command(workdir), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_first_checkpoint(proc, workdir)
            time.sleep(delay)
            alive = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        if alive:
            break
        delay /= 2
    else:
        pytest.fail("every run finished before it could be killed")
    assert proc.returncode == -signal.SIGKILL and not (workdir / "summary.json").exists()
    _run_to_completion(workdir)  # resumes from the newest complete checkpoint (or reuses finished stages)
    _assert_same_outcome(workdir, reference)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_0_and_the_rerun_resumes(tmp_path, reference):
    proc = subprocess.Popen(_command(tmp_path), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_first_checkpoint(proc, tmp_path)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-4000:]
    report = json.loads(stdout[stdout.index("{"):])
    assert report["preempted"] is True
    stage = "teacher" if "[teacher] preempted" in stderr else "student"
    if "preempted before its first step" in stderr:  # the signal came while a stage set up: nothing to save
        assert stage == "student" and "[teacher] test metrics" in stderr
        assert not any((tmp_path / "student" / "checkpoints").glob("[0-9]*"))
        rerun = _run_to_completion(tmp_path)
        assert "[teacher] test metrics" not in rerun.stderr and "[student] resumed" not in rerun.stderr
    else:
        assert "preempted: saved step" in stderr, stderr[-4000:]
        saved = int(stderr.split("preempted: saved step ")[1].split(";")[0])
        assert (tmp_path / stage / "checkpoints" / str(saved)).is_dir()
        rerun = _run_to_completion(tmp_path)
        assert f"[{stage}] resumed from step {saved}" in rerun.stderr
    _assert_same_outcome(tmp_path, reference)
