"""TFDS builders (ArrayRecord, read with `tfds.data_source`; no TensorFlow needed).

`BUILDERS` maps a dataset name to the module defining its builder class and `missing_files(manual_dir, config)`;
modules are imported on demand (each pulls in its own parsers). `build` writes a dataset's ArrayRecord files,
`open_source` reads them.
"""
from __future__ import annotations

import importlib

BUILDERS = {
    "synth_mv": ("vicokd_jax.data.builders.synth_mv", "SynthMv"),
    "ntu_rgbd": ("vicokd_jax.data.builders.ntu_rgbd", "NtuRgbd"),
    "multisensor_home": ("vicokd_jax.data.builders.multisensor_home", "MultisensorHome"),
    "pyskl": ("vicokd_jax.data.builders.pyskl", "Pyskl"),
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


def build(name: str, config: str, data_dir, manual_dir=None):
    """Build dataset `name`/`config` as ArrayRecord files in `data_dir` (TFDS skips a finished one); -> the builder.

    `manual_dir`: where the raw files are (NTU, MultiSensor-Home); check them first with the module's
    `missing_files(manual_dir, config)`, which lists what is missing (this function does not).
    """
    import tensorflow_datasets as tfds

    builder_cls, _ = get_builder(name)
    configs = [c.name for c in builder_cls.BUILDER_CONFIGS]
    if config not in configs:
        raise ValueError(f"{name} has no builder config {config!r}; choose one of {sorted(configs)}")
    builder = builder_cls(config=config, data_dir=str(data_dir), file_format="array_record")
    download_config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
    builder.download_and_prepare(download_config=download_config)
    return builder


def _lazy():
    from vicokd_jax import lazy_submodules

    return lazy_submodules(__name__, globals())


__getattr__, __dir__ = _lazy()  # vk.data.builders.synth_mv etc. on first access
