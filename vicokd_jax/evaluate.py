"""Evaluate an exported student, or a finished stage of a run, on a split; prints the metrics as one JSON object.

    python -m vicokd_jax.evaluate --export runs/demo/export [--backend jax|onnx|onnx-int8] [--split test]
    python -m vicokd_jax.evaluate --workdir runs/demo --stage teacher [--split test] [--without audio]

Only the export is needed (its predictor and variables); the data come from the configuration stored in it
(SynthMV is regenerated, other datasets are read from their prepared TFDS files). The numbers equal the run's own
evaluation of the student (same split, same deterministic pipeline). `--workdir`: a stage's saved
`final_variables` with the run's `config.json` (a teacher has no export), e.g. to compute a metric added after the
run; the student stage so evaluated has no teacher beside it, so no agreement or pseudo-label figures.
`--backend onnx` / `onnx-int8` run the export's `model.onnx` / `model_int8.onnx` with ONNX Runtime instead of
the jax.export predictor (the data pipeline still needs the package's JAX install). `--without M ...`: the
teacher with modalities withheld at test time (`withhold`), e.g. a teacher that heard in training, deployed
where there is no sound.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


BACKENDS = ("jax", "onnx", "onnx-int8")


def evaluate_export(export_dir, split: str | None = None, batch_size: int = 32, backend: str = "jax") -> dict:
    """The metrics of an exported student on `split`, run by `backend` (one of BACKENDS)."""
    import ml_collections

    from vicokd_jax import export as export_lib
    from vicokd_jax.data import datasets, pipeline
    from vicokd_jax.train import metrics, step

    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {BACKENDS}")
    predict = (export_lib.load(export_dir) if backend == "jax"
               else export_lib.load_onnx(export_dir, int8=backend == "onnx-int8"))
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


WITHHOLDABLE = ("skeleton", "rgb", "audio")


def withhold(batch: dict, modalities) -> dict:
    """`batch` with the teacher's `modalities` withheld: audio is silent in every view (audio 0, audio_mask False:
    the teacher's own form of a view without a soundtrack); skeleton or rgb are all zeros (a sensor that
    delivers nothing; the teacher has no mask for them)."""
    out = dict(batch)
    for m in modalities:
        if m not in WITHHOLDABLE:
            raise ValueError(f"cannot withhold {m!r}: expected some of {WITHHOLDABLE}")
        if m not in batch:
            raise ValueError(f"cannot withhold {m!r}: the batch has no {m} (keys {sorted(batch)})")
        out[m] = np.zeros_like(batch[m])
        if m == "audio":
            out["audio_mask"] = np.zeros(np.shape(batch["view_mask"]), bool)
    return out


def evaluate_stage(workdir, stage: str = "teacher", split: str | None = None, batch_size: int = 32,
                   without: tuple[str, ...] = ()) -> dict:
    """The metrics of the finished `stage` ("teacher" | "student") of the run in `workdir` on `split`; a
    teacher can have modalities it was trained with `without` (withheld at test time, `withhold`)."""
    import pathlib

    import jax
    import ml_collections

    from vicokd_jax.data import datasets, pipeline
    from vicokd_jax.models import presets
    from vicokd_jax.train import checkpoint, metrics, setup

    workdir = pathlib.Path(workdir)
    if stage not in ("teacher", "student"):
        raise ValueError(f"--stage {stage!r}: expected teacher or student")
    variables_path = workdir / stage / "final_variables"
    if not (workdir / "config.json").is_file() or not variables_path.exists():
        raise FileNotFoundError(f"{workdir}: no finished {stage} stage (needs config.json and {variables_path})")
    cfg = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
    if without:
        modalities = tuple(cfg.model.teacher_modalities)
        if stage != "teacher" or not set(without) < set(modalities):
            has = f"the teacher has {list(modalities)}" if stage == "teacher" else "this is the student stage"
            raise ValueError(f"--without {' '.join(without)}: only a teacher's modalities can be withheld, and not "
                             f"all of them ({workdir}: {has})")
    model = presets.teacher_from_config(cfg) if stage == "teacher" else presets.student_from_config(cfg)
    abstract = jax.eval_shape(setup.model_init(model, cfg, stage), jax.random.key(0))
    variables = checkpoint.load_variables(variables_path, abstract, local=True)
    apply = jax.jit(lambda v, *inputs: model.apply(v, *inputs, train=False))
    source = datasets.make_source(cfg, split or cfg.data.test_split)
    acc = metrics.EvalAccumulator.from_config(cfg, stage, class_names=getattr(source, "class_names", None))
    for batch in pipeline.make_dataset(source, datasets.pipeline_config(cfg, False, batch_size)):
        out = apply(variables, *setup.model_inputs(stage, cfg, withhold(batch, without)))
        acc.add({k: np.asarray(out[k]) for k in ("logits", "view_logits", "frame_logits")}, batch)
    return acc.result()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--export", help="an export directory (vk.export.export)")
    which.add_argument("--workdir", help="a run's workdir: evaluate its finished --stage from final_variables")
    parser.add_argument("--stage", default="teacher", choices=("teacher", "student"), help="with --workdir")
    parser.add_argument("--split", default=None, help="default: the run's test split")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--backend", default="jax", choices=BACKENDS,
                        help="with --export: the jax.export predictor, or its ONNX model (fp32 or int8)")
    parser.add_argument("--without", nargs="+", default=(), choices=WITHHOLDABLE,
                        help="with --stage teacher: withhold these modalities at test time")
    args = parser.parse_args(argv)
    if args.without and args.export:
        parser.error("--without: only with --workdir --stage teacher")
    if args.export:
        print(json.dumps(evaluate_export(args.export, args.split, args.batch_size, args.backend)))
    else:
        print(json.dumps(evaluate_stage(args.workdir, args.stage, args.split, args.batch_size, tuple(args.without))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
