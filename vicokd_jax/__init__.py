"""vicokd_jax: multi-view action recognition with cross-modal knowledge distillation, in JAX/Flax.

Public entry points (see README.md):
    vk.models.STGCN                 ST-GCN skeleton encoder (channels-last)
    vk.models.graph.Graph           skeleton layouts and the K=3 spatial partition
    vk.convert.stgcn_from_torch     import original st-gcn or pyskl PyTorch weights
"""
from vicokd_jax import convert, models

__all__ = ["convert", "models"]
__version__ = "0.1.0"
