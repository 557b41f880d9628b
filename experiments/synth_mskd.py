"""SynthMV, method `mskd` (METHOD.md presets): a skeleton+RGB teacher, then the RGB student on 10% of the labels.

    python -m vicokd_jax.launch --config experiments/synth_mskd.py --workdir runs/synth_mskd
    python -m vicokd_jax.launch --config experiments/synth_mskd.py:smoke --workdir runs/smoke_mskd
"""
from vicokd_jax import config


def get_config(arg=None):
    cfg = config.default_config("mskd")
    return config.smoke(cfg) if arg == "smoke" else cfg
