"""ViCoKD on MultiSensor-Home-1 as the paper runs it: an RGB+audio teacher (5 views, 16 classes, multi-label,
sequence and frame-level labels) distilled into an RGB-only student that sees sequence-level labels only.

Each view's soundtrack is one log-mel window per sampled frame (2.5 fps: 40 x 128, the builder's default); the
audio stream is the reference code's per-segment encoder (`model.audio_encoder=multitsf`; `ast_base` for the AST).
Results: class-wise and sample-wise mAP, per-view tables (`summary.json`, `report.md`), and the exported student.

Prepare your copy once (README, "MultiSensor-Home"):
    python -m tools.prepare_data multisensor_home --config home1 --manual_dir /data/MultiSensor-Home1 \
        --data_dir /data/tfds
Train, evaluate and export:
    python -m vicokd_jax.launch --config experiments/msh1_vicokd.py --workdir runs/msh1 \
        --config.data.data_dir=/data/tfds
The same path on SynthMV with sound (no download, ~1 minute on 2 CPU cores):
    python -m vicokd_jax.launch --config experiments/msh1_vicokd.py:smoke --workdir runs/smoke_msh1
"""
from vicokd_jax import config


def get_config(arg=None):
    cfg = config.default_config("vicokd")
    cfg.name = "msh1_vicokd"
    cfg.data.name, cfg.data.tfds_config = "multisensor_home", "home1"
    cfg.data.num_views, cfg.data.num_classes, cfg.data.multi_label = 5, 16, True
    cfg.data.num_frames, cfg.data.image_size = 16, 112
    cfg.data.audio, cfg.data.audio_frames, cfg.data.audio_mel_bins = True, 40, 128
    cfg.model.teacher_modalities = ("rgb", "audio")
    cfg.model.audio_encoder = "multitsf"
    cfg.model.preset, cfg.model.dtype = "vit_s16", "bfloat16"
    if arg == "smoke":
        cfg.data.name, cfg.data.tfds_config = "synth_mv", ""
        cfg.data.num_classes, cfg.data.image_size = 12, 32
        cfg.data.audio_frames, cfg.data.audio_mel_bins = 16, 32
        cfg.model.dtype = "float32"
        config.smoke(cfg)
    return cfg
