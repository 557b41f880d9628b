"""Shared settings of the NTU RGB+D 60 experiments (imported by ntu60_*.py; not an experiment itself)."""
from vicokd_jax import config


def ntu60_vicokd(benchmark: str, arg=None):
    """ViCoKD on NTU-60 `benchmark` ("xsub" | "xview"): skeleton+RGB teacher, RGB student, 3 Kinect views."""
    cfg = config.default_config("vicokd")
    cfg.name = f"ntu60_{benchmark}_vicokd"
    cfg.data.name, cfg.data.tfds_config = "ntu_rgbd", f"ntu60_{benchmark}_skeleton_rgb"
    cfg.data.num_views, cfg.data.num_classes = 3, 60
    cfg.data.num_frames, cfg.data.image_size = 16, 112
    cfg.model.preset, cfg.model.layout, cfg.model.dtype = "vit_s16", "nturgb+d", "bfloat16"
    cfg.train.steps, cfg.teacher.steps, cfg.train.batch_size, cfg.train.lr = 30000, 20000, 64, 5e-4
    cfg.train.log_every, cfg.train.eval_every, cfg.train.checkpoint_every = 100, 2000, 1000
    if arg == "smoke":  # the same settings on SynthMV, so the file is exercised without the dataset
        cfg.data.name, cfg.data.tfds_config = "synth_mv", ""
        cfg.data.num_classes, cfg.data.image_size = 12, 32
        config.smoke(cfg)
    return cfg
