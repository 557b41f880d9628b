"""Convert a PyTorch ST-GCN checkpoint (`.pth`, original st-gcn or pyskl/mmaction2) to an orbax checkpoint.

    python -m tools.convert_checkpoint --input stgcn_ntu60_xsub.pth --layout nturgb+d --output runs/stgcn_xsub
        [--onnx [--onnx-frames 300]]

Writes OUTPUT/variables (orbax: params + batch_stats) and OUTPUT/model.json (STGCN constructor arguments);
`vicokd_jax.convert.stgcn.load_stgcn(OUTPUT)` gives back `(module, variables)`. `--onnx` also writes
OUTPUT/model.onnx (input `skeleton` float32 [B, M, T, J, C], B symbolic, T = --onnx-frames; output `logits`),
which needs the edge extra (requirements-edge.txt). Needs torch (`pip install torch==2.13.0`). Refuses to write
into a non-empty OUTPUT, so nothing converted earlier is lost.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from vicokd_jax.convert import stgcn as stgcn_convert
from vicokd_jax.models.graph import LAYOUTS


def load_torch_state_dict(path: pathlib.Path) -> dict:
    """The state dict inside a `.pth` file: bare, or under 'state_dict' (mmcv/pyskl) or 'model'."""
    try:
        import torch
    except ImportError as err:
        raise SystemExit("reading .pth files needs torch: pip install torch==2.13.0") from err
    if not path.is_file():
        raise SystemExit(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise SystemExit(f"{path}: cannot be read as a PyTorch checkpoint ({type(err).__name__}: {err})") from err
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise SystemExit(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k: v.detach().cpu().numpy() for k, v in obj.items() if hasattr(v, "detach")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, type=pathlib.Path, help="PyTorch .pth checkpoint")
    parser.add_argument("--output", required=True, type=pathlib.Path, help="directory to create")
    parser.add_argument("--layout", required=True, choices=LAYOUTS,
                        help="graph the weights were trained with: ntu-rgb+d (original st-gcn), nturgb+d (pyskl)")
    parser.add_argument("--onnx", action="store_true", help="also write OUTPUT/model.onnx (the edge extra)")
    parser.add_argument("--onnx-frames", type=int, default=stgcn_convert.DEFAULT_ONNX_FRAMES,
                        help="the ONNX model's fixed clip length T (default %(default)s)")
    args = parser.parse_args(argv)
    if args.onnx:
        from vicokd_jax.export import onnx_convert
        missing = onnx_convert.missing_extra()
        if missing:  # before any work
            print(f"convert_checkpoint: --onnx: {missing}", file=sys.stderr)
            return 1

    state_dict = load_torch_state_dict(args.input)
    try:
        model = stgcn_convert.infer_model(state_dict, args.layout)
        variables = stgcn_convert.stgcn_from_torch(state_dict, args.layout, model=model)
        stgcn_convert.save_stgcn(args.output, model, variables, source=str(args.input))
        if args.onnx:
            stgcn_convert.write_onnx(args.output, model, variables, num_frames=args.onnx_frames)
    except (ValueError, FileExistsError) as err:
        print(f"convert_checkpoint: {args.input}: {err}", file=sys.stderr)
        return 1
    scheme = stgcn_convert.detect_scheme(state_dict)[0]
    print(f"converted {args.input} ({scheme} keys, {model.num_classes} classes, layout {args.layout}) "
          f"-> {args.output}{' (+ model.onnx, ' + str(args.onnx_frames) + ' frames)' if args.onnx else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
