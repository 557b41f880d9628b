"""Export a trained student: from its variables in memory (what `launch.run` does at the end of training) or
from a finished run directory. The file format is `vicokd_jax.export.format`."""
from __future__ import annotations

import json
import pathlib

import jax
import ml_collections

from vicokd_jax.data import datasets
from vicokd_jax.export.format import export_predictor
from vicokd_jax.models import presets
from vicokd_jax.models.student import input_modality
from vicokd_jax.train import checkpoint as ckpt
from vicokd_jax.train import setup


def input_spec(cfg) -> dict:
    """The predictor's per-example inputs, from the config: rgb [V,T,H,W,3] uint8 (or, for an audio student,
    audio [V,T,F,M] float32) and view_mask [V] bool."""
    specs = setup.input_specs(cfg, 1)
    keys = (input_modality(cfg.model.student_input), "view_mask")
    return {key: {"shape": list(specs[key].shape[1:]), "dtype": str(specs[key].dtype)} for key in keys}


_ONNX = {"auto": None, "always": True, "never": False}


def onnx_wanted(cfg) -> bool | None:
    """`export_predictor`'s `onnx` argument from `cfg.export.onnx` (a config.json from before the field: auto)."""
    return _ONNX[cfg.get("export", {}).get("onnx", "auto")]


def export_student(cfg, variables, out_dir) -> pathlib.Path:
    """Write the export of the student `cfg` describes, with `variables`, to `out_dir` (with its ONNX files
    as `cfg.export.onnx` says)."""
    # Per-view encoders one view at a time: the function the converter can trace (see `Student.views_in_loop`).
    student = presets.student_from_config(cfg).clone(views_in_loop=True)
    config = {"experiment": cfg.to_dict(), "class_names": datasets.class_names(cfg)}

    def apply_fn(variables, x, view_mask):
        out = student.apply(variables, x, view_mask, train=False)
        return {"logits": out["logits"], "view_logits": out["view_logits"]}

    return export_predictor(out_dir, apply_fn, jax.device_get(variables), config, input_spec(cfg),
                            onnx=onnx_wanted(cfg))


def export(workdir_or_checkpoint, out_dir=None) -> pathlib.Path:
    """Export the student of a finished run: `WORKDIR/config.json` + `WORKDIR/student/final_variables` ->
    `out_dir` (default `WORKDIR/export`)."""
    workdir = pathlib.Path(workdir_or_checkpoint).absolute()
    if workdir.name == "student":
        workdir = workdir.parent
    config_file = workdir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: {workdir} is not a vicokd_jax run directory")
    cfg = ml_collections.ConfigDict(json.loads(config_file.read_text()))
    student = presets.student_from_config(cfg)
    abstract = jax.eval_shape(setup.model_init(student, cfg, "student"), jax.random.key(0))
    variables = ckpt.load_variables(workdir / "student" / "final_variables", abstract,
                                    local=True)  # launch.run exports on process 0 only
    return export_student(cfg, variables, out_dir or workdir / "export")
