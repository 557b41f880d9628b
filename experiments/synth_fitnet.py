"""SynthMV, method `fitnet` (METHOD.md presets): a skeleton+RGB teacher, then the RGB student on 10% of the labels.

    python -m vicokd_jax.launch --config experiments/synth_fitnet.py --workdir runs/synth_fitnet
    python -m vicokd_jax.launch --config experiments/synth_fitnet.py:smoke --workdir runs/smoke_fitnet
"""
from vicokd_jax import config


def get_config(arg=None):
    cfg = config.default_config("fitnet")
    return config.smoke(cfg) if arg == "smoke" else cfg
