"""ViCoKD on SynthMV: a skeleton+RGB teacher, then an RGB student on 10% of the labels (adapter + VC + KD).

    python -m vicokd_jax.launch --config experiments/synth_vicokd.py --workdir runs/synth_vicokd
    python -m vicokd_jax.launch --config experiments/synth_vicokd.py:smoke --workdir runs/smoke
"""
from vicokd_jax import config


def get_config(arg=None):
    cfg = config.default_config("vicokd")
    return config.smoke(cfg) if arg == "smoke" else cfg
