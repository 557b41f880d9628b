"""Import pretrained PyTorch weights: ST-GCN (original st-gcn and pyskl keys), HF video transformers and HF AST.

The converters are imported here; every other submodule is imported on first access.
"""
from vicokd_jax import lazy_submodules
from vicokd_jax.convert.stgcn import infer_model, stgcn_from_torch, stgcn_to_torch
from vicokd_jax.convert.hf_video import video_transformer_from_hf
from vicokd_jax.convert.hf_audio import audio_transformer_from_hf

__getattr__, __dir__ = lazy_submodules(__name__, globals())
del lazy_submodules  # keep the namespace to submodules and public names
