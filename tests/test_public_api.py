"""The documented `import vicokd_jax as vk; vk.<package>.<module>.<name>` paths work in a fresh interpreter.

Every check runs in its own `python -c` subprocess: inside pytest, earlier tests have already imported most
submodules, which would hide a submodule that is reachable only after an explicit import.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

_REPO = pathlib.Path(__file__).resolve().parents[1]


def run_fresh(code: str) -> dict:
    """Run `code` in a new interpreter (repository root on the path); it prints one JSON object as its last line."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
        [str(_REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=_REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"subprocess failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_synthmv_by_attribute():
    out = run_fresh("""
        import json
        import vicokd_jax as vk
        ex = vk.data.synthetic.SynthMV("train", 2, seed=0)[0]
        print(json.dumps({k: list(v.shape) for k, v in ex.items() if hasattr(v, "shape")}))
    """)
    assert out["rgb"] == [4, 16, 32, 32, 3]
    assert out["skeleton"] == [4, 1, 16, 25, 3]
    assert out["human_score"] == [4, 16] and out["view_mask"] == [4] and out["frame_labels"] == [16]


def test_read_skeleton_by_attribute(fixtures):
    path = fixtures / "ntu_skeleton" / "S001C003P008R002A058.skeleton"  # two bodies (handshake), 70 frames
    if not path.is_file():
        pytest.skip(f"{path} not found (see shared/fixtures/README.md)")
    out = run_fresh(f"""
        import json
        import vicokd_jax as vk
        s = vk.data.ntu.read_skeleton({str(path)!r})
        print(json.dumps({{"joints": list(s["joints"].shape), "dtype": str(s["joints"].dtype),
                          "num_frames": s["num_frames"], "bodies": len(s["body_ids"])}}))
    """)
    assert out == {"joints": [2, 70, 25, 3], "dtype": "float32", "num_frames": 70, "bodies": 2}


# Documented module paths and a name each must hold; each is resolved attribute by attribute from `vk`.
DOCUMENTED = [
    "data.ntu.published_missing",
    "data.multisensor_home.MultisensorHomeSource",
    "data.schema.check_example",
    "data.pipeline",
    "data.builders.get_builder",
    "models.presets",
    "models.STGCN",
    "convert.stgcn.stgcn_from_torch",
    "convert.hf_video.video_transformer_from_hf",
    "losses.kd_kl",
    "train.loop",
    "train.checkpoint",
    "export.load",
    "export.load_onnx",
    "export.onnx_convert",
    "data.pyskl.PysklSource",
    "data.builders.pyskl.Pyskl",
    "predict.main",
]


@pytest.mark.parametrize("dotted", DOCUMENTED)
def test_documented_path_by_attribute(dotted):
    out = run_fresh(f"""
        import json
        import vicokd_jax as vk
        obj = vk
        for part in {dotted!r}.split("."):
            obj = getattr(obj, part)
        print(json.dumps({{"name": obj.__name__}}))
    """)
    assert out["name"].split(".")[-1] == dotted.split(".")[-1], out


def test_unknown_submodule_is_a_clear_attribute_error():
    out = run_fresh("""
        import json
        import vicokd_jax as vk
        try:
            vk.data.no_such_module
        except AttributeError as e:
            message = str(e)
        else:
            message = None
        print(json.dumps({"message": message, "hasattr": hasattr(vk.train, "no_such_module"),
                          "dotted": hasattr(vk, "data.ntu"), "listed": "synthetic" in dir(vk.data)}))
    """)
    assert out["message"] is not None and "vicokd_jax.data" in out["message"] and "no_such_module" in out["message"]
    assert out["hasattr"] is False and out["dotted"] is False
    assert out["listed"] is True


def test_imports_stay_light():
    """Importing the package or the export loader pulls in no model / training code."""
    out = run_fresh("""
        import json, sys
        import vicokd_jax as vk
        import vicokd_jax.export
        vk.data  # a subpackage by attribute imports that subpackage, none of its submodules
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("vicokd_jax"))))
    """)
    assert "vicokd_jax.data" in out and "vicokd_jax.export" in out
    heavy = ("vicokd_jax.models", "vicokd_jax.train", "vicokd_jax.losses", "vicokd_jax.methods", "vicokd_jax.launch",
             "vicokd_jax.data.")
    assert not [m for m in out if m.startswith(heavy)], out
