"""Run an export's ONNX model with ONNX Runtime: numpy and onnxruntime only, no JAX (what an edge device has).

    predict = load_onnx("runs/demo/export")              # model.onnx; int8=True: model_int8.onnx
    out = predict({"rgb": rgb, "view_mask": view_mask})  # rgb uint8 [B,V,T,H,W,3], view_mask bool [B,V]
    out["logits"], out["view_logits"]                    # numpy float32 [B,C], [B,V,C]

The model file is checked against the export's MANIFEST.json like every file `vicokd_jax.export.load` reads,
and inputs are checked against `input_spec` with the same messages.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Mapping

from vicokd_jax.export.files import (ONNX_FILE, ONNX_INT8_FILE, OUTPUT_KEYS, check_batch, normalise_input_spec,
                                     read_config, read_verified)


class OnnxPredictor:
    """`predict(batch) -> {"logits": [B, C], "view_logits": [B, V, C]}` (numpy float32) from an ONNX model.

    Attributes: config (config.json), input_spec (per-example shapes/dtypes, in input order), session (the
    `onnxruntime.InferenceSession`), path (the model file).
    """

    def __init__(self, model_bytes: bytes, config: dict, path: str = "", threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.path = path
        self.config = config
        self.input_spec = normalise_input_spec(config["input_spec"])
        self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        names = [i.name for i in self.session.get_inputs()]
        if names != list(self.input_spec):
            raise ValueError(f"{path}: the ONNX model's inputs {names} are not the export's {list(self.input_spec)}")

    def __call__(self, batch: Mapping) -> dict:
        args = check_batch(self.input_spec, batch)
        outputs = self.session.run(list(OUTPUT_KEYS), dict(zip(self.input_spec, args)))
        return dict(zip(OUTPUT_KEYS, outputs))

    def __repr__(self) -> str:
        return f"OnnxPredictor({self.path}, inputs={self.input_spec}, outputs={list(OUTPUT_KEYS)})"


def load_onnx(out_dir, *, int8: bool = False, threads: int | None = None) -> OnnxPredictor:
    """The ONNX model of the export `out_dir` (`model_int8.onnx` when `int8`), verified against MANIFEST.json.

    Raises `ImportError` naming the extra when onnxruntime is absent, `FileNotFoundError` naming the file when
    the export has no ONNX model (exported without the edge extra: config.json `export_info.onnx` says why).
    """
    if importlib.util.find_spec("onnxruntime") is None:
        raise ImportError("running an export's ONNX model needs onnxruntime: pip install -r requirements-edge.txt "
                          "(or onnxruntime alone on a device)")
    directory, manifest, config = read_config(out_dir)
    name = ONNX_INT8_FILE if int8 else ONNX_FILE
    if name not in manifest["files"] and not (directory / name).exists():
        why = config.get("export_info", {}).get("onnx", {}).get("skipped", "not written")
        raise FileNotFoundError(f"export {directory} has no {name} ({why}); re-export with the edge extra: "
                                f"python -c \"import vicokd_jax as vk; vk.export.export('RUN_DIR')\"")
    return OnnxPredictor(read_verified(directory, name, manifest), config, str(directory / name), threads)
