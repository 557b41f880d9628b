"""TFDS builders (ArrayRecord, read with `tfds.data_source`; no TensorFlow needed).

`BUILDERS` maps a dataset name to the module defining its builder class and `missing_files(manual_dir, config)`;
modules are imported on demand (each pulls in its own parsers).
"""
from __future__ import annotations

import importlib

BUILDERS = {
    "synth_mv": ("vicokd_jax.data.builders.synth_mv", "SynthMv"),
    "ntu_rgbd": ("vicokd_jax.data.builders.ntu_rgbd", "NtuRgbd"),
    "multisensor_home": ("vicokd_jax.data.builders.multisensor_home", "MultisensorHome"),
}


def get_builder(name: str):
    """-> (builder class, module) of dataset `name`."""
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(BUILDERS)}")
    module_name, class_name = BUILDERS[name]
    module = importlib.import_module(module_name)
    return getattr(module, class_name), module


def open_source(name: str, config: str, split: str, data_dir: str):
    """A random-access source (len, [i]) of a prepared dataset: `tfds.data_source` on its ArrayRecord files."""
    import tensorflow_datasets as tfds

    get_builder(name)  # registers the builder class with TFDS
    return tfds.data_source(f"{name}/{config}", split=split, data_dir=data_dir)
