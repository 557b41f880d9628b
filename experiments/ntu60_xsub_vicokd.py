"""ViCoKD on NTU RGB+D 60 cross-subject (3 Kinect views; skeleton+RGB teacher, RGB student), for your own copy.

Prepare the data once (see README, "Data"):
    python -m tools.prepare_data ntu_rgbd --config ntu60_xsub_skeleton_rgb --manual_dir /data/ntu --data_dir /data/tfds
Then:
    python -m vicokd_jax.launch --config experiments/ntu60_xsub_vicokd.py --workdir runs/ntu60_xsub \
        --config.data.data_dir=/data/tfds
`:smoke` runs the same configuration on SynthMV at smoke size (no NTU files needed).
"""
from vicokd_jax import config


def get_config(arg=None):
    cfg = config.default_config("vicokd")
    cfg.name = "ntu60_xsub_vicokd"
    cfg.data.name, cfg.data.tfds_config = "ntu_rgbd", "ntu60_xsub_skeleton_rgb"
    cfg.data.num_views, cfg.data.num_classes = 3, 60
    cfg.data.num_frames, cfg.data.image_size = 16, 112
    cfg.model.preset, cfg.model.layout, cfg.model.dtype = "vit_s16", "nturgb+d", "bfloat16"
    cfg.train.steps, cfg.train.batch_size, cfg.train.lr = 30000, 64, 5e-4
    cfg.train.log_every, cfg.train.eval_every, cfg.train.checkpoint_every = 100, 2000, 1000
    if arg == "smoke":  # the same settings on SynthMV, so the file is exercised without the dataset
        cfg.data.name, cfg.data.tfds_config = "synth_mv", ""
        cfg.data.num_classes, cfg.data.image_size = 12, 32
        config.smoke(cfg)
    return cfg
