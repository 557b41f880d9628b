"""Training: stage setup, state, the jitted train step, the loop, checkpoints and evaluation.

Submodules are imported on first access (`vk.train.loop`, `vk.train.checkpoint`).
"""
from vicokd_jax import lazy_submodules

__getattr__, __dir__ = lazy_submodules(__name__, globals())
del lazy_submodules  # keep the namespace to submodules and public names
