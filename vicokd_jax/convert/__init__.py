"""Import pretrained PyTorch weights: ST-GCN (original st-gcn and pyskl keys) and HF video transformers."""
from vicokd_jax.convert.stgcn import infer_model, stgcn_from_torch, stgcn_to_torch
from vicokd_jax.convert.hf_video import video_transformer_from_hf
