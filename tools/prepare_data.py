"""Build a dataset's TFDS ArrayRecord files, after checking that everything it needs is present.

    python -m tools.prepare_data synth_mv --config partial --data_dir ~/tensorflow_datasets
    python -m tools.prepare_data ntu_rgbd --config ntu60_xsub_skeleton --manual_dir /data/ntu --data_dir /data/tfds
    python -m tools.prepare_data multisensor_home --config home1 --manual_dir /data/msh --data_dir /data/tfds
    python -m tools.prepare_data ntu_rgbd --list                   # the configs of a dataset

When something is missing from `--manual_dir`, nothing is built: the tool lists exactly what is missing and
where it should go, and exits with status 1 (`--allow_incomplete` builds a deliberate subset, with the list as
warnings). TFDS shows a progress bar while generating examples; a finished
dataset is not rebuilt.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from vicokd_jax.data.builders import BUILDERS, build, get_builder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(BUILDERS))
    parser.add_argument("--config", help="builder config (default: the dataset's default)")
    parser.add_argument("--data_dir", type=pathlib.Path, default=pathlib.Path("~/tensorflow_datasets").expanduser())
    parser.add_argument("--manual_dir", type=pathlib.Path, help="where the raw files are (NTU, MultiSensor-Home)")
    parser.add_argument("--allow_incomplete", action="store_true",
                        help="build from what is there, listing what is missing as warnings (a deliberate subset)")
    parser.add_argument("--list", action="store_true", help="list the dataset's configs and exit")
    args = parser.parse_args(argv)

    builder_cls, module = get_builder(args.dataset)
    configs = {c.name: c for c in builder_cls.BUILDER_CONFIGS}
    if args.list:
        for name, c in configs.items():
            print(f"{name:28s} {c.description or ''}")
        return 0
    config = args.config or getattr(builder_cls, "DEFAULT_CONFIG_NAME", None) or next(iter(configs))
    if config not in configs:
        print(f"prepare_data: {args.dataset} has no config {config!r}; choose one of {sorted(configs)}",
              file=sys.stderr)
        return 2
    needs_files = args.dataset != "synth_mv"
    if needs_files:
        if args.manual_dir is None:
            print(f"prepare_data: {args.dataset} is built from local files: pass --manual_dir\n"
                  f"{builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS}", file=sys.stderr)
            return 2
        missing = module.missing_files(args.manual_dir, config)
        if missing:
            verdict = "building a subset anyway" if args.allow_incomplete else "cannot be built"
            print(f"prepare_data: {args.dataset}/{config} from {args.manual_dir}: {verdict}; missing:",
                  file=sys.stderr)
            for line in missing:
                print(f"  - {line}", file=sys.stderr)
            if not args.allow_incomplete:
                print("(pass --allow_incomplete to build from the files that are there)", file=sys.stderr)
                return 1
    builder = build(args.dataset, config, args.data_dir, args.manual_dir)
    splits = {name: info.num_examples for name, info in builder.info.splits.items()}
    print(f"prepared {args.dataset}/{config} in {builder.data_dir}: {splits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
