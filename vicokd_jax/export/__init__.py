"""Student exports: the file names, manifest and input checks (`files`: numpy only), the jax.export predictor
(`format`: writer, reader, `Predictor`; no model or training code), the ONNX files (`onnx_convert`, and
`onnx_predictor` to run them with ONNX Runtime and no JAX) and exporting a trained student (`student`, which
needs the model code). Every name is imported on first use, so that `vicokd_jax.export.onnx_predictor` loads
without JAX.

    vk.export.export(workdir, out_dir=None)      # a finished run's student -> WORKDIR/export
    predict = vk.export.load(out_dir)            # jax.export predictor; no training code, no optimizer state
    predict = vk.export.load_onnx(out_dir)       # ONNX Runtime (int8=True: the quantised model); no JAX
"""
import importlib

_FROM = {
    **dict.fromkeys(("BATCH_DIM", "CONFIG_FILE", "FORMAT", "MANIFEST_FILE", "ONNX_FILE", "ONNX_INT8_FILE",
                     "OUTPUT_KEYS", "PREDICTOR_FILE", "VARIABLES_FILE", "CorruptExportError"), "files"),
    **dict.fromkeys(("DEFAULT_PLATFORMS", "KNOWN_PLATFORMS", "VARIABLE_COLLECTIONS", "Predictor",
                     "export_predictor", "load"), "format"),
    **dict.fromkeys(("OnnxPredictor", "load_onnx"), "onnx_predictor"),
    **dict.fromkeys(("export", "export_student"), "student"),
}
_SUBMODULES = ("files", "format", "onnx_convert", "onnx_predictor", "student")
__all__ = sorted(_FROM)


def __getattr__(name):
    if name in _FROM:
        return getattr(importlib.import_module(f"vicokd_jax.export.{_FROM[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"vicokd_jax.export.{name}")
    raise AttributeError(f"module 'vicokd_jax.export' has no attribute {name!r}")


def __dir__():
    return sorted([*_FROM, *_SUBMODULES])
