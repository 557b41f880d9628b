"""Student exports: the file format (`format`: writer, reader, `Predictor`; no model or training code) and
exporting a trained student (`student`: imported on first use, since it needs the model code).

    vk.export.export(workdir, out_dir=None)    # a finished run's student -> WORKDIR/export
    predict = vk.export.load(out_dir)          # no training code, no optimizer state
"""
import importlib

from vicokd_jax.export.format import (BATCH_DIM, CONFIG_FILE, DEFAULT_PLATFORMS, FORMAT, KNOWN_PLATFORMS,
                                      MANIFEST_FILE, OUTPUT_KEYS, PREDICTOR_FILE, VARIABLE_COLLECTIONS,
                                      VARIABLES_FILE, CorruptExportError, Predictor, export_predictor, load)

__all__ = ["BATCH_DIM", "CONFIG_FILE", "DEFAULT_PLATFORMS", "FORMAT", "KNOWN_PLATFORMS", "MANIFEST_FILE", "OUTPUT_KEYS",
           "PREDICTOR_FILE", "VARIABLE_COLLECTIONS", "VARIABLES_FILE", "CorruptExportError", "Predictor",
           "export_predictor", "load", "export", "export_student"]
_FROM_STUDENT = ("export", "export_student")


def __getattr__(name):
    if name in _FROM_STUDENT:
        return getattr(importlib.import_module("vicokd_jax.export.student"), name)
    if name in ("format", "student"):
        return importlib.import_module(f"vicokd_jax.export.{name}")
    raise AttributeError(f"module 'vicokd_jax.export' has no attribute {name!r}")
