"""Experiment configs (one file per experiment, loaded by path) and the study runner `experiments.sweep`."""
