"""The MultiSensor-Home setting on embedded data: SynthMV with sound (every camera has a microphone that hears
what its camera may not see), an RGB+audio teacher (no skeleton anywhere), then an RGB-only student on 10% of
the labels, whose adapter stands in for the missing audio stream (L_feat to the teacher's audio tokens).

    python -m vicokd_jax.launch --config experiments/synth_audio_vicokd.py --workdir runs/synth_audio_vicokd
    python -m vicokd_jax.launch --config experiments/synth_audio_vicokd.py:smoke --workdir runs/smoke_audio
"""
from vicokd_jax import config


def get_config(arg=None):
    cfg = config.default_config("vicokd")
    cfg.name = "synth_audio_vicokd"
    cfg.data.audio = True
    cfg.model.teacher_modalities = ("rgb", "audio")
    return config.smoke(cfg) if arg == "smoke" else cfg
