"""SynthMV, method `kd` (METHOD.md presets): a skeleton+RGB teacher, then the RGB student on 10% of the labels.

    python -m vicokd_jax.launch --config experiments/synth_kd.py --workdir runs/synth_kd
    python -m vicokd_jax.launch --config experiments/synth_kd.py:smoke --workdir runs/smoke_kd
"""
from vicokd_jax import config


def get_config(arg=None):
    cfg = config.default_config("kd")
    return config.smoke(cfg) if arg == "smoke" else cfg
