"""Data: SynthMV (generated), NTU RGB+D and MultiSensor-Home parsers, TFDS builders, grain pipelines.

Submodules are imported on first access (`vk.data.synthetic.SynthMV`, `vk.data.ntu.read_skeleton`).
"""
from vicokd_jax import lazy_submodules

__getattr__, __dir__ = lazy_submodules(__name__, globals())
del lazy_submodules  # keep the namespace to submodules and public names
