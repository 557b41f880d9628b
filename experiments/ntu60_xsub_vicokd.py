"""ViCoKD on NTU RGB+D 60 cross-subject, for your own copy of NTU.

Prepare the data once (see README, "Data"):
    python -m tools.prepare_data ntu_rgbd --config ntu60_xsub_skeleton_rgb --manual_dir /data/ntu --data_dir /data/tfds
Then:
    python -m vicokd_jax.launch --config experiments/ntu60_xsub_vicokd.py --workdir runs/ntu60_xsub \
        --config.data.data_dir=/data/tfds
`:smoke` runs the same configuration on SynthMV at smoke size (no NTU files needed):
    python -m vicokd_jax.launch --config experiments/ntu60_xsub_vicokd.py:smoke --workdir runs/smoke_ntu60_xsub
"""
from ntu60_common import ntu60_vicokd


def get_config(arg=None):
    return ntu60_vicokd("xsub", arg)
