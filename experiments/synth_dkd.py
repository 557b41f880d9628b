"""SynthMV, method `dkd` (METHOD.md presets): a skeleton+RGB teacher, then the RGB student on 10% of the labels.

    python -m vicokd_jax.launch --config experiments/synth_dkd.py --workdir runs/synth_dkd
    python -m vicokd_jax.launch --config experiments/synth_dkd.py:smoke --workdir runs/smoke_dkd
"""
from vicokd_jax import config


def get_config(arg=None):
    cfg = config.default_config("dkd")
    return config.smoke(cfg) if arg == "smoke" else cfg
