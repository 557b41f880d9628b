"""Evaluate an exported student on a split; prints the metrics as one JSON object.

    python -m vicokd_jax.evaluate --export runs/demo/export [--split test] [--batch_size 32]

Only the export is needed (its predictor and variables); the data come from the configuration stored in it
(SynthMV is regenerated, other datasets are read from their prepared TFDS files). The numbers equal the run's own
evaluation of the student (same split, same deterministic pipeline).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def evaluate_export(export_dir, split: str | None = None, batch_size: int = 32) -> dict:
    import ml_collections

    from vicokd_jax import export as export_lib
    from vicokd_jax.data import datasets, pipeline
    from vicokd_jax.train import metrics, step

    predict = export_lib.load(export_dir)
    cfg = ml_collections.ConfigDict(predict.config["experiment"])
    split = split or cfg.data.test_split
    source = datasets.make_source(cfg, split)
    # The run's own thresholds (visibility, co-visible pairs); an export has no teacher, so no pseudo-label figures.
    acc = metrics.EvalAccumulator.from_config(cfg, "student", class_names=predict.config.get("class_names") or None)
    for batch in pipeline.make_dataset(source, datasets.pipeline_config(cfg, False, batch_size)):
        # The student's inputs as in training (an audio student does not see a view without a soundtrack).
        outputs = predict(dict(zip(predict.input_spec, step.model_inputs("student", cfg, batch))))
        acc.add({k: np.asarray(v) for k, v in outputs.items()}, batch)
    return acc.result()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, help="an export directory (vk.export.export)")
    parser.add_argument("--split", default=None, help="default: the run's test split")
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args(argv)
    print(json.dumps(evaluate_export(args.export, args.split, args.batch_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
