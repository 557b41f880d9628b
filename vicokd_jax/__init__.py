"""vicokd_jax: multi-view action recognition with cross-modal knowledge distillation, in JAX/Flax.

Public entry points (see README.md), imported on first use so that e.g. loading an export needs no model code:
    vk.config       experiment configs: default_config, from_file
    vk.launch       run(config, workdir) -> Summary; the CLI
    vk.models       STGCN, VideoTransformer, CrossModalAttention, Teacher, Student, presets
    vk.convert      stgcn_from_torch (original st-gcn / pyskl), video_transformer_from_hf (VideoMAE, ...)
    vk.losses       every objective of METHOD.md, masked and normalised
    vk.methods      method presets and total_loss(student_out, teacher_out, batch, method_cfg)
    vk.data         SynthMV, NTU RGB+D, MultiSensor-Home, TFDS builders, grain pipelines
    vk.export       export(workdir, out_dir) / load(out_dir) -> predictor
"""
import importlib

__version__ = "0.1.0"
__all__ = ["config", "convert", "data", "export", "launch", "losses", "methods", "models", "parallel"]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"vicokd_jax.{name}")
    raise AttributeError(f"module 'vicokd_jax' has no attribute {name!r}")
