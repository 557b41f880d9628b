"""ONNX: the student's export and a converted ST-GCN, run by ONNX Runtime, against the JAX models on real clips."""
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

pytest.importorskip("jax2onnx", reason="the edge extra (requirements-edge.txt) is not installed")
pytest.importorskip("onnxruntime", reason="the edge extra (requirements-edge.txt) is not installed")

import golden_stgcn  # noqa: E402
import vicokd_jax as vk  # noqa: E402
from trained_like import trained_like  # noqa: E402
from vicokd_jax import config as vc  # noqa: E402
from vicokd_jax.data import datasets  # noqa: E402
from vicokd_jax.data.frames import centre_box, crop_and_resize, frame_indices  # noqa: E402
from vicokd_jax.data.video import decode_video  # noqa: E402
from vicokd_jax.export import onnx_convert  # noqa: E402
from vicokd_jax.models import STGCN, presets  # noqa: E402
from vicokd_jax.models.stgcn import graph_conv  # noqa: E402
from vicokd_jax.models.student import input_modality  # noqa: E402
from vicokd_jax.train import setup  # noqa: E402

PARITY = 1e-4  # ONNX Runtime vs JAX, max abs difference of logits


@pytest.fixture(scope="module")
def student_export(default_student_export):
    return default_student_export


def _synth_clips(cfg, modality="rgb") -> dict:
    """The first SynthMV test clips, with the last view of the first clip marked absent."""
    source = datasets.make_source(cfg, cfg.data.test_split)
    examples = [source[i] for i in range(len(source))]
    view_mask = np.stack([e["view_mask"] for e in examples])
    view_mask[0, -1] = False
    return {modality: np.stack([e[modality] for e in examples]), "view_mask": view_mask}


def _fixture_clips(fixtures, shape) -> dict:
    """One clip whose views are the fixtures' real videos (NTU RGB+D, mmaction2's test videos), sampled and
    cropped as the evaluation pipeline does; views without a video are absent."""
    views, frames, size = shape[0], shape[1], shape[2]
    paths = sorted((fixtures / "video").glob("*")) + sorted((fixtures / "ntu_rgb").glob("*.avi"))
    rgb, view_mask = np.zeros((1, *shape), np.uint8), np.zeros((1, views), bool)
    for view, path in enumerate(paths[:views]):
        clip = decode_video(path, fps=None)
        clip = clip[frame_indices(len(clip), frames, "uniform", None)]
        rgb[0, view] = crop_and_resize(clip, centre_box(*clip.shape[1:3]), size)
        view_mask[0, view] = True
    assert 1 <= view_mask.sum() < views or views == len(paths)
    return {"rgb": rgb, "view_mask": view_mask}


def _max_diff(a: dict, b: dict) -> dict:
    return {k: float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in ("logits", "view_logits")}


def test_the_export_holds_both_onnx_models_listed_in_its_manifest(student_export):
    cfg, out = student_export
    manifest = json.loads((out / vk.export.MANIFEST_FILE).read_text())
    assert {vk.export.ONNX_FILE, vk.export.ONNX_INT8_FILE} <= set(manifest["files"])
    info = json.loads((out / vk.export.CONFIG_FILE).read_text())["export_info"]["onnx"]
    assert info["inputs"] == ["rgb", "view_mask"] and info["outputs"] == ["logits", "view_logits"]
    assert max(info["max_abs_diff_random_batch"]["fp32"].values()) <= PARITY
    # Every dense layer's weights are int8 (MatMulInteger); the patch embedding, the first product, stays float32.
    import onnx

    fp32, int8 = onnx.load(out / vk.export.ONNX_FILE), onnx.load(out / vk.export.ONNX_INT8_FILE)
    fp32_ops, int8_ops = [n.op_type for n in fp32.graph.node], [n.op_type for n in int8.graph.node]
    first = onnx_convert.first_products(fp32)
    dense = [n for n in fp32.graph.node if n.op_type == "Gemm" and n.name not in first]
    assert int8_ops.count("MatMulInteger") == len(dense) > 0
    assert "ConvInteger" not in int8_ops
    assert onnx_convert.first_products(int8) == first != []  # still float ops
    encoder = presets.PRESETS[cfg.model.preset].encoder
    kernel_shape = [*encoder["tubelet"], 3, encoder["hidden_size"]]
    float_weights = [list(i.dims) for i in int8.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    assert kernel_shape in float_weights


def test_first_products_are_those_with_no_product_upstream():
    import onnx
    from onnx import helper

    tensor = lambda name, *shape: helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)  # noqa: E731
    nodes = [helper.make_node("Einsum", ["x", "w1"], ["a"], name="embed", equation="ij,jk->ik"),
             helper.make_node("Relu", ["a"], ["b"], name="relu"),
             helper.make_node("MatMul", ["b", "w2"], ["c"], name="dense"),
             helper.make_node("MatMul", ["y", "w3"], ["d"], name="other_input"),
             helper.make_node("Add", ["c", "d"], ["e"], name="add"),
             helper.make_node("Gemm", ["e", "w4"], ["out"], name="head")]
    weights = [onnx.numpy_helper.from_array(np.ones((2, 2), np.float32), w) for w in ("w1", "w2", "w3", "w4")]
    graph = helper.make_graph(nodes, "g", [tensor("x", 1, 2), tensor("y", 1, 2)], [tensor("out", 1, 2)], weights)
    assert onnx_convert.first_products(helper.make_model(graph)) == ["embed", "other_input"]


@pytest.mark.xfail(strict=True, reason="int8 file is 0.53x the fp32 file (376841 / 707335 bytes), not under 0.5x: "
                                       "the patch embedding stays float32 (onnx_convert.QUANTIZED_OPS)")
def test_the_int8_model_is_under_half_the_fp32_size(student_export):
    _, out = student_export
    manifest = json.loads((out / vk.export.MANIFEST_FILE).read_text())
    fp32, int8 = (manifest["files"][f]["bytes"] for f in (vk.export.ONNX_FILE, vk.export.ONNX_INT8_FILE))
    assert int8 < 0.5 * fp32


@pytest.mark.parametrize("clips", ["synth_mv", "fixture_videos"])
def test_onnx_runtime_equals_the_jax_predictor_on_real_clips(student_export, fixtures, clips):
    cfg, out = student_export
    jax_predict, onnx_predict = vk.export.load(out), vk.export.load_onnx(out)
    batch = (_synth_clips(cfg) if clips == "synth_mv"
             else _fixture_clips(fixtures, jax_predict.input_spec["rgb"]["shape"]))
    assert len(np.unique(batch["rgb"])) > 50  # real pixels, not a constant frame
    for size in sorted({1, len(batch["rgb"])}):  # the batch dimension is symbolic
        part = {k: v[:size] for k, v in batch.items()}
        diff = _max_diff(onnx_predict(part), jax_predict(part))
        assert max(diff.values()) <= PARITY, diff


# Students other than the default: one encoder per view (MSKD: the encoders vmapped over views in training,
# one view after another in the export), and a student that hears instead of sees.
OTHER_STUDENTS = {"per_view_encoders": ("experiments/synth_mskd.py", {}),
                  "audio_input": ("experiments/synth_audio_vicokd.py", {"student_input": "audio"})}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OTHER_STUDENTS))
def test_other_students_convert_and_equal_the_jax_predictor(name, tmp_path):
    path, model_overrides = OTHER_STUDENTS[name]
    cfg = vc.from_file(path)
    cfg.data.num_test = 4
    cfg.model.update(model_overrides)
    cfg.export.onnx = "always"
    student = presets.student_from_config(cfg)
    variables = trained_like(setup.model_init(student, cfg, "student")(jax.random.key(0)))
    out = vk.export.export_student(cfg, variables, tmp_path / "export")
    modality = input_modality(cfg.model.student_input)
    batch = _synth_clips(cfg, modality)
    jax_predict, onnx_predict = vk.export.load(out), vk.export.load_onnx(out)
    assert list(onnx_predict.input_spec) == [modality, "view_mask"]
    for size in (1, len(batch[modality])):
        part = {k: v[:size] for k, v in batch.items()}
        diff = _max_diff(onnx_predict(part), jax_predict(part))
        assert max(diff.values()) <= PARITY, diff
    # The export computes the training-time student: its vmapped (per-view) or plain apply, on the same batch.
    trained = student.apply(variables, batch[modality], batch["view_mask"])
    assert max(_max_diff(jax_predict(batch), trained).values()) <= PARITY


def test_the_int8_model_stays_close_to_fp32(student_export):
    cfg, out = student_export
    batch = _synth_clips(cfg)
    fp32, int8 = vk.export.load_onnx(out)(batch), vk.export.load_onnx(out, int8=True)(batch)
    diff = _max_diff(int8, fp32)
    spread = float(np.ptp(fp32["logits"]))
    # Quantisation noise, not a different function: within a few percent of the logits' range, and nonzero.
    assert 0 < diff["logits"] <= 0.05 * spread, (diff, spread)


def test_onnx_predictor_checks_inputs_and_files(student_export, tmp_path):
    import shutil

    _, out = student_export
    predict = vk.export.load_onnx(out)
    shape = predict.input_spec["rgb"]["shape"]
    with pytest.raises(ValueError, match=r"batch\['rgb'\] has shape"):
        predict({"rgb": np.zeros((1, *shape[1:]), np.uint8), "view_mask": np.ones((1, shape[0]), bool)})
    with pytest.raises(TypeError, match=r"batch\['rgb'\] has dtype float32; expected uint8"):
        predict({"rgb": np.zeros((1, *shape), np.float32), "view_mask": np.ones((1, shape[0]), bool)})
    damaged = pathlib.Path(shutil.copytree(out, tmp_path / "export"))
    model = damaged / vk.export.ONNX_INT8_FILE
    model.write_bytes(model.read_bytes()[:-8])
    with pytest.raises(vk.export.CorruptExportError, match=r"model_int8\.onnx in export .* is corrupt"):
        vk.export.load_onnx(damaged, int8=True)
    vk.export.load_onnx(damaged)  # the fp32 model is intact


def _linear_apply(variables, rgb, view_mask):
    """A linear 'student' (no model code: quick to export)."""
    x = rgb.astype(np.float32).mean((2, 3, 4)) @ variables["params"]["w"]
    return {"logits": x.sum(1), "view_logits": x}


TINY_SPEC = {"rgb": {"shape": [2, 2, 4, 4, 3], "dtype": "uint8"}, "view_mask": {"shape": [2], "dtype": "bool"}}
TINY_VARIABLES = {"params": {"w": np.ones((3, 4), np.float32)}}


def test_an_export_without_onnx_files_says_why(tmp_path):
    out = vk.export.export_predictor(tmp_path / "e", _linear_apply, TINY_VARIABLES, {}, TINY_SPEC,
                                     platforms=("cpu",), onnx=False)
    with pytest.raises(FileNotFoundError, match=r"has no model\.onnx \(onnx=False\)"):
        vk.export.load_onnx(out)


def test_a_failed_conversion_keeps_the_jax_export_unless_onnx_is_required(tmp_path, monkeypatch):
    def failing_converter(*args, **kwargs):
        raise NotImplementedError("no ONNX rule for this op")

    monkeypatch.setattr(onnx_convert, "write_models", failing_converter)
    with pytest.warns(UserWarning, match="the ONNX conversion failed: NotImplementedError: no ONNX rule"):
        out = vk.export.export_predictor(tmp_path / "auto", _linear_apply, TINY_VARIABLES, {}, TINY_SPEC,
                                         platforms=("cpu",))
    assert not (out / vk.export.ONNX_FILE).exists() and vk.export.load(out) is not None
    with pytest.raises(FileNotFoundError, match="the ONNX conversion failed"):
        vk.export.load_onnx(out)
    with pytest.raises(NotImplementedError):
        vk.export.export_predictor(tmp_path / "required", _linear_apply, TINY_VARIABLES, {}, TINY_SPEC,
                                   platforms=("cpu",), onnx=True)
    assert not (tmp_path / "required").exists()


def test_loading_and_running_the_onnx_model_imports_no_jax(student_export, tmp_path):
    cfg, out = student_export
    np.savez(tmp_path / "batch.npz", **_synth_clips(cfg))
    code = ("import sys, numpy as np\n"
            "from vicokd_jax.export import load_onnx\n"
            f"out = load_onnx({str(out)!r}, int8=True)(dict(np.load({str(tmp_path / 'batch.npz')!r})))\n"
            "assert out['logits'].shape[0] == 6\n"
            "jax_modules = [m for m in sys.modules if m == 'jax' or m.startswith(('jax.', 'jaxlib', 'flax'))]\n"
            "assert not jax_modules, jax_modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


# ----------------------------------------------------------------------------------------------------------------
# ST-GCN
# ----------------------------------------------------------------------------------------------------------------


def test_graph_conv_with_a_symbolic_batch_equals_the_concrete_one():
    """The matmul form (taken when the batch is symbolic, as in ONNX conversion) is the same function."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5, 25, 4)).astype(np.float32)
    adjacency = rng.random((3, 25, 25)).astype(np.float32)
    kernel = rng.standard_normal((4, 3 * 8)).astype(np.float32)
    bias = rng.standard_normal(3 * 8).astype(np.float32)
    (b,) = jax.export.symbolic_shape("b")
    exported = jax.export.export(jax.jit(graph_conv))(jax.ShapeDtypeStruct((b, 5, 25, 4), np.float32),
                                                      adjacency, kernel, bias)
    np.testing.assert_allclose(exported.call(x, adjacency, kernel, bias), graph_conv(x, adjacency, kernel, bias),
                               rtol=1e-5, atol=1e-5)


def test_stgcn_onnx_equals_jax_on_real_ntu_skeletons(fixtures, tmp_path):
    """The reference ST-GCN (the fixture's golden weights) on the fixture's real NTU RGB+D clip."""
    parity = fixtures / "stgcn_parity"
    model = STGCN(60, layout="ntu-rgb+d")
    variables = vk.convert.stgcn_from_torch(golden_stgcn.golden_state_dict(parity), "ntu-rgb+d", model=model)
    x = np.load(parity / "input_NMTVC.npy").astype(np.float32)
    path = vk.convert.stgcn.write_onnx(tmp_path, model, variables, num_frames=x.shape[2])
    reference = np.asarray(jax.jit(model.apply)(variables, x))
    for size in (1, 2):
        logits = onnx_convert.run(path, {"skeleton": x[:size]})["logits"]
        assert np.max(np.abs(logits - reference[:size])) <= PARITY
    with pytest.raises(FileExistsError, match="model.onnx exists"):
        vk.convert.stgcn.write_onnx(tmp_path, model, variables, num_frames=x.shape[2])


@pytest.mark.torch
def test_convert_checkpoint_writes_an_onnx_model(tmp_path):
    torch = pytest.importorskip("torch")
    from tools import convert_checkpoint
    from tools.torch_stgcn import TorchSTGCN, randomize_

    reference = randomize_(TorchSTGCN(4, channels=(8, 8, 8, 8, 16, 16, 16, 32, 32, 32)), seed=2).eval()
    pth = tmp_path / "stgcn.pth"
    torch.save({"state_dict": reference.state_dict()}, pth)
    out = tmp_path / "converted"
    assert convert_checkpoint.main(["--input", str(pth), "--output", str(out), "--layout", "nturgb+d", "--onnx",
                                    "--onnx-frames", "24"]) == 0
    x = np.random.default_rng(1).standard_normal((2, 2, 24, 25, 3)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    logits = onnx_convert.run(out / "model.onnx", {"skeleton": x})["logits"]
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_int8_changes_the_trained_students_test_top1_by_at_most_one_point(tmp_path):
    """A student trained on SynthMV (every label, 800 steps), scored on the 400-clip test split by the jax
    predictor and by the int8 ONNX model."""
    from vicokd_jax import evaluate

    cfg = vc.from_file("experiments/synth_student_only.py", ["data.labeled_fraction=1.0", "train.steps=800",
                                                             "export.onnx=always"])
    summary = vk.launch.run(cfg, tmp_path / "run")
    scores = {b: evaluate.evaluate_export(summary["export"], backend=b)["top1"] for b in evaluate.BACKENDS}
    assert scores["jax"] > 30, scores  # trained: chance is 8.3
    assert scores["onnx"] == scores["jax"], scores
    assert abs(scores["onnx-int8"] - scores["jax"]) <= 1.0, scores
