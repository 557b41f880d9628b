"""SynthMV, method `student_only` (METHOD.md presets): the RGB student alone on 10% of the labels (no teacher).

    python -m vicokd_jax.launch --config experiments/synth_student_only.py --workdir runs/synth_student_only
    python -m vicokd_jax.launch --config experiments/synth_student_only.py:smoke --workdir runs/smoke_student_only
"""
from vicokd_jax import config


def get_config(arg=None):
    cfg = config.default_config("student_only")
    return config.smoke(cfg) if arg == "smoke" else cfg
