"""The SynthMV teacher alone (skeleton+RGB, fully supervised); students can reuse it via teacher.checkpoint.

    python -m vicokd_jax.launch --config experiments/synth_teacher.py --workdir runs/synth_teacher
    python -m vicokd_jax.launch --config experiments/synth_kd.py --workdir runs/kd \
        --config.stages="('student',)" --config.teacher.checkpoint=runs/synth_teacher
"""
from vicokd_jax import config


def get_config(arg=None):
    cfg = config.default_config("vicokd")
    cfg.name = "synth_teacher"
    cfg.stages = ("teacher",)
    return config.smoke(cfg) if arg == "smoke" else cfg
