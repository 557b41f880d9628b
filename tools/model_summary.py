"""Parameter counts and FLOPs per forward pass of the teacher and student presets.

    python -m tools.model_summary                                   # micro, synth, vit_b16 at B=1, V=4
    python -m tools.model_summary --presets vit_b16 vit_l16 --views 4 --batch 1

Parameters are counted from `jax.eval_shape` (nothing is materialised). FLOPs come from XLA's cost analysis of
the lowered forward (`jit(...).lower(...).cost_analysis()`), for the whole batch, so a ViT-L summary runs on a
laptop. The "encoder" column is the RGB video transformer alone (one copy, as in a shared-weights student).
"""
from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

from vicokd_jax.models import presets
from vicokd_jax.models.video_transformer import count_params


def _flops(fn, *shapes) -> float:
    lowered = jax.jit(fn).lower(*shapes)
    cost = lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax returned one dict per device
        cost = cost[0]
    return float((cost or {}).get("flops", float("nan")))


def summarize(name: str, batch: int, views: int, num_classes: int) -> list[dict]:
    """One row per model (teacher skeleton-only, teacher skeleton+RGB, student) of preset `name`."""
    shapes = presets.example_shapes(name, batch, views)
    rgb = jax.ShapeDtypeStruct(shapes["rgb"], jnp.uint8)
    skel = jax.ShapeDtypeStruct(shapes["skeleton"], jnp.float32)
    mask = jax.ShapeDtypeStruct(shapes["view_mask"], jnp.bool_)
    key = jax.random.key(0)
    encoder = presets.build_encoder(name)
    encoder_params = count_params(jax.eval_shape(
        lambda: encoder.init(key, jnp.zeros(shapes["rgb"][2:], jnp.float32)[None]))["params"])
    rows = []
    for label, modalities in (("teacher (skeleton)", ("skeleton",)), ("teacher (skeleton+rgb)", ("skeleton", "rgb"))):
        model = presets.build_teacher(name, num_classes, modalities=modalities)
        variables = jax.eval_shape(model.init, key, skel, rgb, mask)
        flops = _flops(lambda v, s, r, m, model=model: model.apply(v, s, r, m), variables, skel, rgb, mask)
        rows.append(dict(preset=name, model=label, params=count_params(variables["params"]),
                         encoder=encoder_params if "rgb" in modalities else 0, gflops=flops / 1e9))
    for label, fields in (("student (shared)", {}), ("student (per-view)", dict(per_view_weights=True,
                                                                                num_views=views))):
        model = presets.build_student(name, num_classes, **fields)
        variables = jax.eval_shape(model.init, key, rgb, mask)
        flops = _flops(lambda v, r, m, model=model: model.apply(v, r, m), variables, rgb, mask)
        rows.append(dict(preset=name, model=label, params=count_params(variables["params"]),
                         encoder=encoder_params, gflops=flops / 1e9))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["micro", "synth", "vit_b16"], choices=sorted(presets.PRESETS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--classes", type=int, default=60)
    args = parser.parse_args(argv)
    print(f"batch {args.batch}, {args.views} views, {args.classes} classes; GFLOPs per forward of the whole batch")
    print(f"{'preset':9} {'model':24} {'params':>14} {'RGB encoder':>14} {'GFLOPs':>12}  input")
    for name in args.presets:
        shapes = presets.example_shapes(name, args.batch, args.views)
        for row in summarize(name, args.batch, args.views, args.classes):
            print(f"{row['preset']:9} {row['model']:24} {row['params']:>14,} {row['encoder']:>14,} "
                  f"{row['gflops']:>12,.2f}  rgb {list(shapes['rgb'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
