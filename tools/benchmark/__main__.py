"""The benchmark CLI: `python -m tools.benchmark [--json FILE] step|data|stgcn-vs-torch|videomae-vs-hf|scaling|deploy ...`.

Every mode prints a `machine:` line, then its measurements; `--json FILE` also writes the mode's results there.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys

import tools.benchmark
from tools.benchmark import common, data, deploy, scaling, step, stgcn_vs_torch, videomae_vs_hf

MODES = {"step": step, "data": data, "stgcn-vs-torch": stgcn_vs_torch, "videomae-vs-hf": videomae_vs_hf,
         "scaling": scaling, "deploy": deploy}


def make_parser() -> argparse.ArgumentParser:
    """The CLI's parser: one sub-command per mode in MODES, plus the internal `_scaling_child`."""
    parser = argparse.ArgumentParser(prog="python -m tools.benchmark", description=tools.benchmark.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the results to this JSON file")
    sub = parser.add_subparsers(dest="mode", required=True)
    for name, module in MODES.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP))
    scaling.add_child_arguments(sub.add_parser("_scaling_child"))  # internal: one mesh size per process
    return parser


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.mode == "_scaling_child":
        with contextlib.redirect_stdout(sys.stderr):
            result = scaling.run_child(args)
        print(json.dumps(result))
        return 0
    if args.mode == "data":
        error = data.check_args(args)
        if error:
            parser.error(error)
    print(f"machine: {common.machine()}", flush=True)
    result = MODES[args.mode].run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
