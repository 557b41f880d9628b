"""vicokd_jax.export: a micro student exported, reloaded (here and in a model-free subprocess) and compared."""
import hashlib
import json
import pathlib
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from vicokd_jax import export as vke
from vicokd_jax.models import presets

VIEWS, CLASSES = 3, 5
# The jax.export predictor for the CPU only: what the tests of the export mechanics need (tests/test_onnx.py
# covers the ONNX files).
JAX_ONLY = dict(platforms=("cpu",), onnx=False)


def _input_spec() -> dict:
    shapes = presets.example_shapes("micro", 1, VIEWS)
    return {"rgb": {"shape": list(shapes["rgb"][1:]), "dtype": "uint8"},
            "view_mask": {"shape": list(shapes["view_mask"][1:]), "dtype": "bool"}}


def _batch(batch_size: int, seed: int = 0) -> dict:
    """A batch with one absent view and an extra key (`skeleton`) that the predictor must ignore."""
    rng = np.random.default_rng(seed)
    shapes = presets.example_shapes("micro", batch_size, VIEWS)
    mask = np.ones(shapes["view_mask"], bool)
    mask[0, -1] = False
    return {"rgb": rng.integers(0, 256, shapes["rgb"], dtype=np.uint8), "view_mask": mask,
            "skeleton": np.zeros(shapes["skeleton"], np.float32)}


def _tree_digest(directory: pathlib.Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def _random_variables(model, seed: int = 0):
    """Variables of the right structure from an abstract init (no init compile: keeps the test fast), filled
    with random values so that zero-initialised layers (the adapter's output projection) are exercised too."""
    b = _batch(1)
    abstract = jax.eval_shape(model.init, jax.random.key(0), b["rgb"], b["view_mask"])
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        base = 1.0 if "scale" in jax.tree_util.keystr(path) else 0.0  # LayerNorm scales near 1
        return (base + 0.05 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)


@pytest.fixture(scope="module")
def student():
    """(model, variables, jitted reference apply) of a micro student."""
    model = presets.build_student("micro", CLASSES)
    reference = jax.jit(lambda v, r, m: model.apply(v, r, m, train=False))
    return model, _random_variables(model), reference


@pytest.fixture(scope="module")
def reference_out(student):
    """Reference outputs of `Student.apply` on `_batch(3)` (examples are independent: slices serve B=1)."""
    _, variables, reference = student
    batch = _batch(3)
    return batch, jax.device_get(reference(variables, batch["rgb"], batch["view_mask"]))


@pytest.fixture(scope="module")
def exported(student, tmp_path_factory):
    model, variables, _ = student
    config = {"model": {"preset": "micro", "num_classes": CLASSES},
              "data": {"class_names": [f"action_{i}" for i in range(CLASSES)]}, "train": {"seed": 0}}
    return vke.export_predictor(tmp_path_factory.mktemp("exp") / "export", model.apply, variables, config,
                                _input_spec())


@pytest.fixture()
def export_copy(exported, tmp_path):
    """A private copy of the module's export that a test may damage."""
    return pathlib.Path(shutil.copytree(exported, tmp_path / "export"))


def test_layout_manifest_and_config(exported, student):
    onnx_files = [] if vke.onnx_convert.missing_extra() else [vke.ONNX_FILE, vke.ONNX_INT8_FILE]
    assert sorted(p.name for p in exported.iterdir()) == sorted(
        [vke.VARIABLES_FILE, vke.PREDICTOR_FILE, vke.CONFIG_FILE, vke.MANIFEST_FILE, *onnx_files])
    manifest = json.loads((exported / vke.MANIFEST_FILE).read_text())
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((exported / name).read_bytes()).hexdigest() == entry["sha256"]
    config = json.loads((exported / vke.CONFIG_FILE).read_text())
    assert config["model"] == {"preset": "micro", "num_classes": CLASSES}
    assert config["input_spec"] == _input_spec()
    assert config["class_names"] == [f"action_{i}" for i in range(CLASSES)]
    info = config["export_info"]
    assert "cpu" in info["platforms"] and info["versions"]["jax"] == jax.__version__
    # CUDA is lowered too (no GPU needed), or config.json says why not.
    assert "cuda" in info["platforms"] or "cuda" in info["platform_notes"]
    assert info["arguments"] == ["variables", "rgb", "view_mask"]
    # Weights are arguments of the serialised function, not baked-in constants.
    n_leaves = len(jax.tree.leaves(student[1]))
    predict = vke.load(exported)
    assert len(predict.exported.in_avals) == n_leaves + 2


@pytest.mark.parametrize("batch_size", [1, 3])
def test_predict_matches_apply(exported, student, reference_out, batch_size):
    full, ref = reference_out
    predict = vke.load(exported)
    batch = {k: v[:batch_size] for k, v in full.items()}
    out = predict(batch)
    assert set(out) == {"logits", "view_logits"}
    assert out["logits"].shape == (batch_size, CLASSES)
    assert out["view_logits"].shape == (batch_size, VIEWS, CLASSES)
    for key in out:
        np.testing.assert_allclose(np.asarray(out[key]), ref[key][:batch_size], rtol=1e-5, atol=1e-5)
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), b), predict.variables, student[1])
    assert all(jax.tree.leaves(same))
    assert predict.config["model"]["preset"] == "micro"


_SUBPROCESS = textwrap.dedent("""
    import importlib.abc, sys
    import numpy as np

    # The export's own modules (file names, manifest, jax.export reader, ONNX writer) and nothing else of the
    # package: any attempt to import models, training or data code fails loudly.
    ALLOWED = {"vicokd_jax", "vicokd_jax.export", "vicokd_jax.export.files", "vicokd_jax.export.format",
               "vicokd_jax.export.onnx_convert"}

    class OnlyExportCode(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.startswith("vicokd_jax") and name not in ALLOWED:
                raise ImportError(f"export loading imported {name}")
    sys.meta_path.insert(0, OnlyExportCode())

    from vicokd_jax.export import format as mod
    predict = mod.load(sys.argv[2])
    batch = dict(np.load(sys.argv[3]))
    out = predict(batch)
    assert "vicokd_jax.models" not in sys.modules
    assert not [m for m in sys.modules if m.startswith("vicokd_jax") and m not in ALLOWED]
    np.savez(sys.argv[4], **{k: np.asarray(v) for k, v in out.items()})
""")


def test_load_in_fresh_process_without_model_code(exported, reference_out, tmp_path):
    batch, ref = reference_out
    np.savez(tmp_path / "batch.npz", **batch)
    subprocess.run([sys.executable, "-c", _SUBPROCESS, "unused", str(exported), str(tmp_path / "batch.npz"),
                    str(tmp_path / "out.npz")], check=True, cwd=tmp_path, timeout=300)
    out = np.load(tmp_path / "out.npz")
    for key in ("logits", "view_logits"):
        np.testing.assert_allclose(out[key], ref[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [vke.PREDICTOR_FILE, vke.VARIABLES_FILE, vke.CONFIG_FILE, vke.MANIFEST_FILE])
def test_missing_file_is_named(export_copy, name):
    (export_copy / name).unlink()
    with pytest.raises(FileNotFoundError, match=name.replace(".", r"\.")):
        vke.load(export_copy)


def test_corrupt_variables_fail_sha_check(export_copy):
    data = bytearray((export_copy / vke.VARIABLES_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (export_copy / vke.VARIABLES_FILE).write_bytes(bytes(data))
    with pytest.raises(vke.CorruptExportError, match=r"variables\.msgpack.*sha256"):
        vke.load(export_copy)


def test_wrong_inputs_name_key_expected_and_actual(exported):
    predict = vke.load(exported)
    batch = _batch(2)
    bad_shape = {**batch, "rgb": batch["rgb"][:, :, :8]}
    with pytest.raises(ValueError, match=r"'rgb'.*\(2, 3, 8, 32, 32, 3\).*\('B', 3, 16, 32, 32, 3\)"):
        predict(bad_shape)
    with pytest.raises(TypeError, match=r"'view_mask'.*int64.*bool"):
        predict({**batch, "view_mask": batch["view_mask"].astype(np.int64)})
    with pytest.raises(KeyError, match="view_mask"):
        predict({"rgb": batch["rgb"]})
    with pytest.raises(ValueError, match="batch size"):
        predict({**batch, "view_mask": batch["view_mask"][:1]})


def test_reexport_replaces_and_failed_export_keeps_previous(student, tmp_path):
    model, variables, _ = student
    out = tmp_path / "export"
    def apply_without_train(v, rgb, view_mask):  # a plain function: no `train` keyword is passed to it
        return model.apply(v, rgb, view_mask, train=False)

    vke.export_predictor(out, apply_without_train, variables, {"run": 1}, _input_spec(), **JAX_ONLY)
    doubled = jax.tree.map(lambda x: x * 2, variables)
    vke.export_predictor(out, model.apply, doubled, {"run": 2}, _input_spec(), **JAX_ONLY)
    predict = vke.load(out)
    assert predict.config["run"] == 2
    leaf = jax.tree.leaves(predict.variables)[0]
    np.testing.assert_array_equal(np.asarray(leaf), np.asarray(jax.tree.leaves(doubled)[0]))
    before = _tree_digest(out)

    def broken_apply(*args, **kwargs):
        raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="model exploded"):
        vke.export_predictor(out, broken_apply, variables, {"run": 3}, _input_spec(), **JAX_ONLY)
    with pytest.raises(TypeError, match=r"config\.bad"):  # not JSON-able: fails before anything is replaced
        vke.export_predictor(out, model.apply, variables, {"bad": object()}, _input_spec(), **JAX_ONLY)
    assert _tree_digest(out) == before
    assert vke.load(out).config["run"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temp or backup dirs left behind


def test_refuses_to_replace_a_non_export_directory(student, tmp_path):
    model, variables, _ = student
    out = tmp_path / "not_an_export"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an export"):
        vke.export_predictor(out, model.apply, variables, {}, _input_spec(), **JAX_ONLY)
    assert (out / "notes.txt").read_text() == "keep me"


def test_platform_that_cannot_lower_is_dropped_with_a_note(student, tmp_path, monkeypatch):
    model, variables, _ = student
    real_export = jax.export.export

    def export_without_cuda(fn, *, platforms, **kw):
        if "cuda" in platforms:
            raise NotImplementedError("no cuda lowering here")
        return real_export(fn, platforms=platforms, **kw)

    monkeypatch.setattr(jax.export, "export", export_without_cuda)
    out = vke.export_predictor(tmp_path / "export", model.apply, variables, {}, _input_spec(), onnx=False)
    info = vke.load(out).config["export_info"]
    assert info["platforms"] == ["cpu"] and info["platforms_requested"] == ["cpu", "cuda"]
    assert "no cuda lowering here" in info["platform_notes"]["cuda"]
    with pytest.raises(ValueError, match="bogus"):
        vke.export_predictor(tmp_path / "other", model.apply, variables, {}, _input_spec(),
                             platforms=("cpu", "bogus"))
