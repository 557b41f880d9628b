"""tools/benchmark/: every mode runs at tiny sizes and reports numbers that mean what they say.

These are smoke tests of the measurement, not performance claims (those come from the tool's output).
"""
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tools.benchmark import common, scaling, stgcn_vs_torch, train_steps
from tools.benchmark.__main__ import main


def test_interleaved_medians_alternates_calls_and_takes_medians():
    calls = []
    med = common.interleaved_medians({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=3,
                                     warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up, then strictly alternating
    assert set(med) == {"a", "b"} and all(v >= 0 for v in med.values())


def test_interleaved_medians_settles_after_each_switch():
    calls = []
    common.interleaved_medians({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=2,
                               warmup=0, settle=1)
    assert calls == ["a", "a", "b", "b"] * 2  # an untimed call, then the timed one, per turn


def test_collectives_counted_in_sharded_hlo():
    from vicokd_jax import parallel

    mesh = parallel.make_mesh(data=-1)
    x = jax.ShapeDtypeStruct((8, 16), jnp.float32, sharding=parallel.batch_sharding(mesh))
    hlo = jax.jit(lambda a: a.sum(), out_shardings=parallel.replicated(mesh)).lower(x).compile().as_text()
    counts = scaling.count_collectives(hlo)
    assert counts["all-reduce"] >= 1 and counts["all-gather"] == 0
    assert scaling.count_collectives("%r = f32[2] add(%a, %b)") == dict.fromkeys(scaling.COLLECTIVES, 0)


def test_per_device_bytes_follows_shard_shapes():
    from jax.sharding import NamedSharding, PartitionSpec as P

    from vicokd_jax import parallel

    mesh = parallel.make_mesh(data=1, fsdp=-1)  # 8 fake devices on the fsdp axis
    tree = {"w": jax.ShapeDtypeStruct((64, 32), jnp.float32), "b": jax.ShapeDtypeStruct((32,), jnp.bfloat16)}
    shardings = {"w": NamedSharding(mesh, P("fsdp", None)), "b": NamedSharding(mesh, P())}
    assert scaling.per_device_bytes(tree, shardings) == 64 * 32 * 4 // 8 + 32 * 2


@pytest.mark.parametrize("multi_label", [False, True])
def test_synthetic_batch_has_the_pipeline_shapes_and_labels_in_range(multi_label):
    from vicokd_jax.train import setup

    cfg = train_steps.stage_config("micro", 8, 2, 8, "float32", "vicokd")
    cfg.data.multi_label = multi_label
    batch = train_steps.synthetic_batch(cfg, 8)
    specs = setup.input_specs(cfg, 8)
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {k: (s.shape, np.dtype(s.dtype))
                                                                 for k, s in specs.items()}
    assert batch["view_mask"].all() and batch["labeled"].all() and batch["rgb"].std() > 50
    if multi_label:
        assert set(np.unique(batch["labels"])) == {0.0, 1.0}
        assert (batch["frame_labels"] == batch["labels"][:, None]).all()
    else:
        assert 0 <= batch["label"].min() and batch["label"].max() < cfg.data.num_classes
        assert len(np.unique(batch["label"])) > 1 and (batch["frame_labels"] == batch["label"][:, None]).all()


@pytest.mark.slow
def test_step_mode_compiles_the_teacher_and_student_stage_steps(tmp_path):
    out = tmp_path / "step.json"
    assert main(["--json", str(out), "step", "--preset", "micro", "--batch", "8", "--frames", "8", "--views", "2",
                 "--which", "teacher", "stage", "--compile-only"]) == 0
    teacher, stage = json.loads(out.read_text())
    assert (teacher["kind"], stage["kind"]) == ("teacher", "stage") and "step_s" not in teacher
    assert teacher["flops"] > 1e6 and stage["flops"] > 1e6 and stage["memory"]["argument"] > 0


def test_step_mode_reports_throughput_flops_and_memory(tmp_path):
    out = tmp_path / "step.json"
    assert main(["--json", str(out), "step", "--preset", "micro", "--batch", "8", "--frames", "8",
                "--which", "student", "--steps", "1", "--peak-tflops", "1"]) == 0
    (r,) = json.loads(out.read_text())
    assert r["kind"] == "student" and r["devices"] == 8
    assert r["clips_per_s"] > 0 and r["compile_s"] > 0
    assert r["flops"] > 1e6  # a forward + backward of a real model, per device
    assert 0 < r["mfu"] < 1 and r["memory"]["peak"] >= r["memory"]["argument"] > 0


def test_data_mode_measures_the_pipeline(tmp_path):
    out = tmp_path / "data.json"
    # Batch 1 keeps the warm-up past grain's 16-thread read-ahead cheap (~50 clips rendered per pass, ~1.5 s).
    assert main(["--json", str(out), "data", "--no-step", "--workers", "0", "--examples", "16",
                "--batch", "1", "--cached", "--warmup-batches", "17"]) == 0
    r = json.loads(out.read_text())
    assert r["generate"] > 0 and r["pipeline_0"] > 0
    assert r["pipeline_cached_0"] > r["pipeline_0"]  # the cached pass renders nothing


def test_data_mode_refuses_a_warmup_inside_the_read_ahead(capsys):
    # A warm-up shorter than grain's read-ahead times buffered batches: CI once saw 19319 examples/s from a
    # pipeline that renders 46/s, and the cached pass "slower" than rendering.
    with pytest.raises(SystemExit):
        main(["data", "--no-step", "--workers", "0", "--warmup-batches", "2"])
    assert "--warmup-batches 2 must exceed grain's read-ahead of 16" in capsys.readouterr().err


TINY_STGCN = ["--batch", "2", "--persons", "1", "--frames", "8", "--reps", "1", "--threads", "1",
              "--channels", "8", "16", "--strides", "1", "2"]


@pytest.mark.slow
def test_stgcn_vs_torch_in_one_process_runs_both_and_prints_the_ratio(capsys):
    pytest.importorskip("torch")
    assert main(["stgcn-vs-torch", *TINY_STGCN, "--in-process"]) == 0
    text = capsys.readouterr().out
    assert "speed-up jax/torch = " in text and "GFLOP/step" in text


@pytest.mark.slow
def test_stgcn_vs_torch_in_separate_processes_starts_both_from_the_same_weights(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "stgcn.json"
    assert main(["--json", str(out), "stgcn-vs-torch", *TINY_STGCN, "--rounds", "2", "--warmup", "1",
                 "--other-python", sys.executable]) == 0
    result = json.loads(out.read_text())
    # --other-python: our worker also runs under that interpreter, alternated with the two others.
    assert [r["kind"] for r in result["jax@other"]["reports"]] == ["stgcn-jax"] * 2
    assert result["jax@other"]["reports"][0]["jax"] == jax.__version__ and result["other_over_ours"] > 0
    for name in ("jax", "torch"):
        reports = result[name]["reports"]
        assert [r["kind"] for r in reports] == [f"stgcn-{name}"] * 2  # one process per round
        assert result[name]["timed_steps"] == 2 and len(result[name]["spread_s"]) == 4
        assert result[name]["peak_rss_mib"] > 50
    # Ours at the default settings: the steps per call that train.steps_per_call=0 makes of the NTU-60 teacher
    # stage's cadence (log 100, eval 2000, checkpoint 1000 of 20000 steps: 5), each call timed per step.
    assert [r["steps_per_call"] for r in result["jax"]["reports"]] == [5, 5]
    assert [r["steps_per_call"] for r in result["torch"]["reports"]] == [1, 1]
    # Same weights, batch and loss: the two processes compute the same first step.
    assert result["jax"]["first_loss"] == pytest.approx(result["torch"]["first_loss"], rel=1e-4)
    assert "speed-up jax/torch = " in capsys.readouterr().out


@pytest.mark.slow
def test_videomae_vs_hf_starts_both_from_the_same_weights(tmp_path, capsys):
    pytest.importorskip("transformers")
    out = tmp_path / "videomae.json"
    assert main(["--json", str(out), "videomae-vs-hf", "--batch", "1", "--frames", "4", "--size", "32",
                "--hidden", "32", "--depth", "1", "--heads", "2", "--classes", "5", "--rounds", "1",
                "--warmup", "1", "--steps", "1"]) == 0
    result = json.loads(out.read_text())
    # The NTU-60 student stage's default on CPU: 4 steps per call (divides the cadence of 100), unrolled.
    assert (result["jax"]["reports"][0]["steps_per_call"], result["jax"]["reports"][0]["unroll"]) == (4, True)
    assert result["jax"]["first_loss"] == pytest.approx(result["hf"]["first_loss"], rel=1e-4)
    assert result["hf"]["reports"][0]["kind"] == "videomae-hf" and result["jax"]["compile_s"] > 0
    text = capsys.readouterr().out
    assert "speed-up jax/hf = " in text and "peak RSS jax/hf" in text


def test_stgcn_steps_per_call_makes_that_many_updates():
    # The scan of K steps must be K real SGD updates (the tool divides its time by K).
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 8, 25, 3), dtype=np.float32)
    y = rng.integers(0, 5, 2).astype(np.int32)
    hyper = (5, 0.1, 0.9, 1e-4, [8, 8], [1, 2])
    one = stgcn_vs_torch.jax_stgcn_step(x, y, *hyper)[0]
    losses = [one() for _ in range(4)]
    three = stgcn_vs_torch.jax_stgcn_step(x, y, *hyper, steps_per_call=3)[0]
    # A call reports its first step's loss: step 1, then step 4 after three updates.
    assert three() == pytest.approx(losses[0], rel=1e-4)
    assert three() == pytest.approx(losses[3], rel=1e-4) and losses[3] != pytest.approx(losses[0], rel=1e-4)


@pytest.mark.slow
def test_scaling_mode_fsdp_shards_state_and_adds_collectives(tmp_path):
    """A subprocess with 8 fake devices compiles the micro student stage for DP and FSDP (nothing runs)."""
    out = tmp_path / "scaling.json"
    assert main(["--json", str(out), "scaling", "--presets", "micro", "--devices", "8", "--views", "2",
                "--frames", "8", "--fsdp-min-size", "1024", "--dtype", "float32"]) == 0
    dp, fsdp = json.loads(out.read_text())
    assert (dp["layout"], fsdp["layout"], dp["devices"]) == ("dp", "fsdp", 8)
    assert (dp["params_bytes"], dp["opt_bytes"]) == (dp["params_full_bytes"], dp["opt_full_bytes"])  # replicated
    assert fsdp["params_bytes"] + fsdp["opt_bytes"] < 0.5 * (dp["params_bytes"] + dp["opt_bytes"])
    assert dp["collectives"]["all-reduce"] >= 1  # gradient reduction
    assert fsdp["collectives"]["all-gather"] >= 1  # parameters gathered for the forward
    np.testing.assert_array_less(0, [dp["compile_s"], fsdp["compile_s"]])


def test_stgcn_flops_count_the_chunked_kernel_gradient_in_full(monkeypatch):
    # XLA's cost analysis counts a while loop's body once; the tool must report the same FLOPs however many batch
    # chunks the kernel gradient loops over (and a chunked compile alone would report fewer).
    from vicokd_jax.models import stgcn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 12, 25, 3), dtype=np.float32)
    y = rng.integers(0, 5, 4).astype(np.int32)
    flops = {}
    for chunks in (1, 4):
        monkeypatch.setattr(stgcn, "KERNEL_GRAD_CHUNKS", chunks)
        flops[chunks] = stgcn_vs_torch.jax_stgcn_step(x, y, 5, 0.1, 0.9, 1e-4, [8, 8], [1, 2])[2]
    assert flops[1] > 0 and flops[4] == flops[1]

    monkeypatch.setattr(stgcn, "KERNEL_GRAD_CHUNKS", 4)
    kernel = jnp.zeros((9, 1, 8, 8))
    grad = jax.jit(lambda a: jax.grad(lambda w: stgcn.temporal_conv(a, w, 1).sum())(kernel))
    chunked = common.cost_flops(grad.lower(jnp.ones((4, 12, 25, 8))).compile())
    monkeypatch.setattr(stgcn, "KERNEL_GRAD_CHUNKS", 1)
    grad = jax.jit(lambda a: jax.grad(lambda w: stgcn.temporal_conv(a, w, 1).sum())(kernel))
    assert common.cost_flops(grad.lower(jnp.ones((4, 12, 25, 8))).compile()) > chunked


def test_deploy_mode_times_the_three_predictors_of_an_export(default_student_export, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the edge extra (requirements-edge.txt) is not installed")
    _, export = default_student_export
    out = tmp_path / "deploy.json"
    assert main(["--json", str(out), "deploy", "--export", str(export), "--batches", "2", "--rounds", "1",
                 "--steps", "2"]) == 0
    text = capsys.readouterr().out
    assert "deploy: batch  2 speed-up over jax.export: onnx fp32 " in text
    result = json.loads(out.read_text())
    row = result["batches"]["2"]
    assert set(row) == {"jax.export", "onnx fp32", "onnx int8"}
    for r in row.values():
        assert r["ms_per_clip"] == pytest.approx(r["ms_per_call"] / 2)
        assert r["clips_per_s"] == pytest.approx(1e3 / r["ms_per_clip"])
    assert result["sizes_bytes"]["onnx int8"] < result["sizes_bytes"]["onnx fp32"]
