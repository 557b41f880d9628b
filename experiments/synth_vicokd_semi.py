"""SynthMV, method `vicokd_semi` (METHOD.md presets): a skeleton+RGB teacher, then the RGB student on 10% of the labels.

    python -m vicokd_jax.launch --config experiments/synth_vicokd_semi.py --workdir runs/synth_vicokd_semi
    python -m vicokd_jax.launch --config experiments/synth_vicokd_semi.py:smoke --workdir runs/smoke_vicokd_semi
"""
from vicokd_jax import config


def get_config(arg=None):
    cfg = config.default_config("vicokd_semi")
    return config.smoke(cfg) if arg == "smoke" else cfg
