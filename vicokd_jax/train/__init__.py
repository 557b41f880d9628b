"""Training: state, the jitted train step, the loop, checkpoints and evaluation."""
