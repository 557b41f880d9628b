"""`videomae-vs-hf` mode: our video-transformer train step against HF transformers' PyTorch
`VideoMAEForVideoClassification` with the same weights (imported with `vk.convert.video_transformer_from_hf`), each
in its own process, alternated (`processes.alternate`).

Default: ViT-S/16 (12 layers, 384 wide, 6 heads), 8 frames of 112², tubelet 2, batch 4, AdamW, cross-entropy;
the same batch every step. Both start from the same weights, so their first losses agree (printed). Ours runs
at the default settings: the steps per compiled call that `train.steps_per_call=0` chooses on CPU for the RGB
student stage of experiments/ntu60_xsub_vicokd.py (4, unrolled), timed per step.
"""
from __future__ import annotations

import json
import pathlib
import tempfile
import time

import numpy as np

HELP = "video-transformer train step: ours vs HF VideoMAE (PyTorch), separate processes"


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3, help="processes per framework, alternated")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per process")
    parser.add_argument("--other-python", default="",
                        help="also time our worker under this interpreter (e.g. a virtualenv with other jax pins)")
    parser.add_argument("--steps-per-call", type=int, default=0,
                        help="our steps per compiled call, unrolled, as train.steps_per_call (0: what the "
                             "default config chooses on CPU for the NTU-60 student stage)")


def hf_config(args) -> dict:
    return dict(hidden_size=args.hidden, num_hidden_layers=args.depth, num_attention_heads=args.heads,
                intermediate_size=4 * args.hidden, image_size=args.size, num_frames=args.frames, patch_size=16,
                tubelet_size=2, num_labels=args.classes, use_mean_pooling=True, attn_implementation="sdpa")


def batch(args) -> tuple[np.ndarray, np.ndarray]:
    """x [B, T, H, W, 3] float32 (normalised pixels), y [B] int32."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.frames, args.size, args.size, 3), dtype=np.float32)
    return x, rng.integers(0, args.classes, args.batch).astype(np.int32)


def call_plan(args) -> tuple[int, bool]:
    """(steps per call, unrolled): --steps-per-call (unrolled, as `setup.call_plan` runs a student stage's steps on
    CPU), or (0) what `train.steps_per_call=0` chooses on CPU for experiments/ntu60_xsub_vicokd.py's student
    stage with this batch."""
    if args.steps_per_call > 0:
        return args.steps_per_call, args.steps_per_call > 1
    from tools.benchmark.common import experiment_call_plan

    x_bytes = args.batch * args.frames * args.size * args.size * 3 * 4
    return experiment_call_plan("ntu60_xsub_vicokd.py", "student", x_bytes + 4 * args.batch)


def write_weights(args, directory: pathlib.Path) -> pathlib.Path:
    """An HF VideoMAE classifier initialised from seed 0: its state dict (npz) and config (json) in `directory`."""
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(**hf_config(args)))
    np.savez(directory / "videomae.npz", **{k: v.detach().numpy() for k, v in model.state_dict().items()})
    (directory / "videomae.json").write_text(json.dumps(hf_config(args)))
    return directory / "videomae.npz"


def jax_step(args, weights: pathlib.Path):
    """-> (run() returning the loss, compile seconds): our VideoTransformer with the HF weights, AdamW, CE."""
    import jax
    import optax

    import vicokd_jax as vk
    from tools.benchmark.common import repeat_step

    config = json.loads(weights.with_suffix(".json").read_text())
    module, variables = vk.convert.video_transformer_from_hf(dict(np.load(weights)), config)
    tx = optax.adamw(1e-4, weight_decay=0.05)
    x, y = (jax.numpy.asarray(a) for a in batch(args))

    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits = module.apply({"params": p}, x, train=True)["logits"]
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    carry = [variables["params"], tx.init(variables["params"])]
    start = time.perf_counter()
    stepper = repeat_step(step, args.steps_per_call, 2, unroll=args.unroll)
    compiled = jax.jit(stepper, donate_argnums=(0, 1)).lower(*carry, x, y).compile()
    compile_s = time.perf_counter() - start

    def run():
        *new, loss = compiled(*carry, x, y)
        carry[:] = new
        return float(loss)

    return run, compile_s


def torch_step(args, weights: pathlib.Path, threads: int):
    """-> (run() returning the loss, 0.0): HF's VideoMAEForVideoClassification, AdamW (torch), CE."""
    import torch
    import transformers

    torch.set_num_threads(threads)
    config = transformers.VideoMAEConfig(**json.loads(weights.with_suffix(".json").read_text()))
    model = transformers.VideoMAEForVideoClassification(config).train()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in np.load(weights).items()})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    x, y = batch(args)
    pixels, labels = torch.from_numpy(x.transpose(0, 1, 4, 2, 3).copy()), torch.from_numpy(y).long()

    def run():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(pixel_values=pixels).logits, labels)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return run, 0.0


def worker_argv(args, framework: str, weights: pathlib.Path, per_call: int = 1, unroll: bool = False) -> list[str]:
    return [f"videomae-{framework}", "--steps-per-call", str(per_call), *(["--unroll"] if unroll else []),
            "--weights", str(weights), "--batch", str(args.batch), "--frames",
            str(args.frames), "--size", str(args.size), "--hidden", str(args.hidden), "--depth", str(args.depth),
            "--heads", str(args.heads), "--classes", str(args.classes), "--warmup", str(args.warmup), "--steps",
            str(args.steps)]


def run(args) -> dict:
    from tools.benchmark.processes import compare

    per_call, unroll = call_plan(args)
    calls = f"; ours {per_call} steps per compiled call{' (unrolled)' if unroll else ''}" if per_call > 1 else ""
    with tempfile.TemporaryDirectory() as tmp:
        weights = write_weights(args, pathlib.Path(tmp))
        print(f"videomae-vs-hf: ViT {args.hidden}x{args.depth} ({args.heads} heads), {args.frames}x{args.size}^2, "
              f"tubelet 2, batch {args.batch}, AdamW, CE; {args.rounds} processes each, alternated, "
              f"{args.warmup} warm-up + {args.steps} timed steps per process{calls}", flush=True)
        return compare("videomae-vs-hf", {"jax": worker_argv(args, "jax", weights, per_call, unroll),
                                          "hf": worker_argv(args, "hf", weights)}, args.rounds, args.batch,
                       args.other_python)
