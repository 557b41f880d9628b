"""Data: SynthMV (generated), NTU RGB+D and MultiSensor-Home parsers, TFDS builders, grain pipelines."""
