"""Experiment configs: one file per experiment defining `get_config(arg)`, loaded by path (`--config
experiments/<name>.py[:smoke]`); `ntu60_common.py` holds the NTU-60 experiments' shared settings."""
