"""MultiSensor-Home-1 data configuration (5 views, 16 classes, multi-label) for your own copy.

LIMITATION: MultiSensor-Home has no skeletons and our Teacher needs the skeleton stream, so the RGB-only teacher
of METHOD.md is not available yet; this file exercises the data path and the multi-label metrics. `:smoke` runs
the same pipeline on SynthMV.

Prepare the data once (see README, "Data"):
    python -m tools.prepare_data multisensor_home --config home1 --manual_dir /data/msh --data_dir /data/tfds
Then (the full config is refused by `config.validate` until a teacher without skeletons exists, see above):
    python -m vicokd_jax.launch --config experiments/msh1_vicokd.py --workdir runs/msh1 \
        --config.data.data_dir=/data/tfds
    python -m vicokd_jax.launch --config experiments/msh1_vicokd.py:smoke --workdir runs/smoke_msh1
"""
from vicokd_jax import config


def get_config(arg=None):
    cfg = config.default_config("vicokd")
    cfg.name = "msh1_vicokd"
    cfg.data.name, cfg.data.tfds_config = "multisensor_home", "home1"
    cfg.data.num_views, cfg.data.num_classes, cfg.data.multi_label = 5, 16, True
    cfg.data.num_frames, cfg.data.image_size = 16, 112
    cfg.model.preset, cfg.model.dtype = "vit_s16", "bfloat16"
    if arg == "smoke":
        cfg.data.name, cfg.data.tfds_config = "synth_mv", ""
        cfg.data.num_classes, cfg.data.image_size = 12, 32
        config.smoke(cfg)
    return cfg
