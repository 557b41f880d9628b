"""ViCoKD on NTU RGB+D 60 cross-view (train on cameras 2, 3; test on camera 1), for your own copy of NTU.

Prepare the data once (see README, "Data"):
    python -m tools.prepare_data ntu_rgbd --config ntu60_xview_skeleton_rgb --manual_dir /data/ntu --data_dir /data/tfds
Then:
    python -m vicokd_jax.launch --config experiments/ntu60_xview_vicokd.py --workdir runs/ntu60_xview \
        --config.data.data_dir=/data/tfds
`:smoke` runs the same configuration on SynthMV at smoke size (no NTU files needed):
    python -m vicokd_jax.launch --config experiments/ntu60_xview_vicokd.py:smoke --workdir runs/smoke_ntu60_xview
"""
from ntu60_common import ntu60_vicokd


def get_config(arg=None):
    return ntu60_vicokd("xview", arg)
