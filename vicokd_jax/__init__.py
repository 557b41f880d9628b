"""vicokd_jax: multi-view action recognition with cross-modal knowledge distillation, in JAX/Flax.

Public entry points (see README.md):
    vk.models       STGCN, VideoTransformer, CrossModalAttention, Teacher, Student, presets
    vk.convert      stgcn_from_torch (original st-gcn / pyskl), video_transformer_from_hf (VideoMAE, ...)
    vk.losses       every objective of METHOD.md, masked and normalised
    vk.methods      method presets and total_loss(student_out, teacher_out, batch, method_cfg)
"""
from vicokd_jax import convert, losses, methods, models

__all__ = ["convert", "losses", "methods", "models"]
__version__ = "0.1.0"
