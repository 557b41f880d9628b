"""`stgcn-vs-torch` mode: our ST-GCN train step against a PyTorch ST-GCN with pyskl's layout (tools/torch_stgcn.py).

By default each framework runs in its own process, alternated (`processes.alternate`), from the same weights (the
torch model's seed-0 initialisation, imported with `vk.convert.stgcn_from_torch`), at our default settings: the
steps per compiled call that the default `train.steps_per_call=0` chooses on CPU for an ST-GCN teacher stage of
experiments/ntu60_xsub_vicokd.py (`model.teacher_modalities=('skeleton',)`; from its log / eval / checkpoint
cadence: 5, in a scan loop), timed per step.
`--in-process` times both in one process, interleaved.
"""
from __future__ import annotations

import os
import time

from tools.benchmark.common import (cost_flops, experiment_call_plan, interleaved_medians, repeat_step,
                                    unchunked_kernel_grads)

HELP = "ST-GCN train step: ours vs PyTorch, separate processes (or --in-process)"


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--persons", type=int, default=2)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--reps", type=int, default=10, help="timed steps (per process without --in-process)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per framework, alternated")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (per process)")
    parser.add_argument("--in-process", action="store_true", help="both frameworks in this process, interleaved")
    parser.add_argument("--other-python", default="",
                        help="also time our worker under this interpreter (e.g. a virtualenv with other jax pins)")
    parser.add_argument("--steps-per-call", type=int, default=0,
                        help="our steps per compiled call (lax.scan), as train.steps_per_call; times are per step "
                             "(0: what the default config chooses for the NTU-60 teacher stage)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads (= cores)")
    parser.add_argument("--channels", type=int, nargs="+", default=None,
                        help="block widths (default: the reference ST-GCN)")
    parser.add_argument("--strides", type=int, nargs="+", default=None)


REFERENCE_CHANNELS = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
REFERENCE_STRIDES = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)


def batch(args):
    """x [B, M, T, 25, 3] float32, y [B] int32 (seed 0)."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.persons, args.frames, 25, 3), dtype=np.float32)
    return x, rng.integers(0, args.classes, args.batch).astype(np.int32)


def steps_per_call(args) -> int:
    """--steps-per-call, or (0) what `train.steps_per_call=0` chooses on CPU for an ST-GCN teacher stage of
    experiments/ntu60_xsub_vicokd.py with this batch (a scan loop: `setup.call_plan`)."""
    if args.steps_per_call > 0:
        return args.steps_per_call
    x_bytes = args.batch * args.persons * args.frames * 25 * 3 * 4
    k, unroll = experiment_call_plan("ntu60_xsub_vicokd.py", "teacher", x_bytes + 4 * args.batch,
                                     ["model.teacher_modalities=('skeleton',)"])
    assert not unroll, "an ST-GCN-only stage runs its steps in a loop"
    return k


def hyper(args) -> dict:
    return dict(num_classes=args.classes, lr=0.01, momentum=0.9, weight_decay=5e-4,
                channels=tuple(args.channels or REFERENCE_CHANNELS), strides=tuple(args.strides or REFERENCE_STRIDES))


def write_weights(args, directory) -> str:
    """The torch ST-GCN's seed-0 state dict as numpy arrays in `directory`/stgcn.npz (both workers start there)."""
    import numpy as np
    import torch

    from tools.torch_stgcn import TorchSTGCN

    h = hyper(args)
    torch.manual_seed(0)
    model = TorchSTGCN(h["num_classes"], channels=h["channels"], strides=h["strides"])
    path = f"{directory}/stgcn.npz"
    np.savez(path, **{k: v.detach().numpy() for k, v in model.state_dict().items()})
    return path


def jax_stgcn_step(x, y, num_classes: int, lr: float, momentum: float, weight_decay: float, channels, strides,
                   steps_per_call: int = 1, torch_state_dict=None, unroll: bool = False):
    """Our ST-GCN SGD train step (forward, backward, update, BN statistics), compiled; -> (run() closure returning
    the loss, compile seconds, FLOPs of one step from XLA's cost analysis with the kernel gradient unchunked).

    steps_per_call > 1: one call makes that many steps in a `lax.scan` (on the same batch), as the training loop
    does with `train.steps_per_call` (`unroll`: unrolled); run() then returns after all of them.
    torch_state_dict: start from these
    weights (pyskl keys, as `torch_stgcn_step` writes them) instead of a fresh initialisation."""
    import jax
    import jax.numpy as jnp
    import optax

    from vicokd_jax.models.stgcn import STGCN

    model = STGCN(num_classes, channels=tuple(channels), strides=tuple(strides))
    if torch_state_dict is None:
        variables = model.init(jax.random.key(0), x[:1])
    else:
        from vicokd_jax.convert import stgcn_from_torch

        variables = stgcn_from_torch(torch_state_dict, "nturgb+d", model=model)
    # Same update as torch.optim.SGD(momentum, nesterov=True, weight_decay): decay added to the gradient.
    tx = optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum=momentum, nesterov=True))

    def step(params, batch_stats, opt_state, x, y):
        def loss_fn(p):
            logits, new = model.apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                      mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new["batch_stats"]
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    carry = [variables["params"], variables["batch_stats"], tx.init(variables["params"])]
    x, y = jnp.asarray(x), jnp.asarray(y)
    start = time.perf_counter()
    stepper = repeat_step(step, steps_per_call, 3, unroll)
    compiled = jax.jit(stepper, donate_argnums=(0, 1, 2)).lower(*carry, x, y).compile()
    compile_s = time.perf_counter() - start

    with unchunked_kernel_grads():  # a fresh trace of the same step, for its FLOPs
        flops = cost_flops(jax.jit(lambda *a: step(*a)).lower(*carry, x, y).compile())

    def run():
        *new, loss = compiled(*carry, x, y)
        carry[:] = new
        loss.block_until_ready()
        return float(loss)

    return run, compile_s, flops


def torch_stgcn_step(x, y, num_classes: int, lr: float, momentum: float, weight_decay: float, channels, strides,
                     threads: int, state_dict=None):
    """A PyTorch ST-GCN SGD train step with the same hyper-parameters (tools/torch_stgcn.py), on `threads`
    intra-op threads, from `state_dict` (numpy arrays) when given; -> run() closure returning the loss."""
    import torch

    from tools.torch_stgcn import TorchSTGCN

    torch.set_num_threads(threads)
    model = TorchSTGCN(num_classes, channels=tuple(channels), strides=tuple(strides)).train()
    if state_dict is not None:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()

    def run():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return run


def run(args) -> dict:
    return run_in_process(args) if args.in_process else run_processes(args)


def worker_argv(args, framework: str, weights: str, per_call: int = 1) -> list[str]:
    h = hyper(args)
    return [f"stgcn-{framework}", "--weights", weights, "--batch", str(args.batch), "--persons", str(args.persons),
            "--frames", str(args.frames), "--classes", str(args.classes), "--warmup", str(args.warmup),
            "--steps", str(args.reps), "--threads", str(args.threads), "--steps-per-call", str(per_call),
            "--channels", *map(str, h["channels"]), "--strides", *map(str, h["strides"])]


def run_processes(args) -> dict:
    import tempfile

    from tools.benchmark.processes import compare

    per_call = steps_per_call(args)
    calls = f", ours {per_call} steps per compiled call" if per_call > 1 else ""
    with tempfile.TemporaryDirectory() as tmp:
        weights = write_weights(args, tmp)
        print(f"stgcn-vs-torch: B={args.batch}, M={args.persons}, T={args.frames}, 25 joints, SGD{calls}; "
              f"{args.rounds} processes each, alternated, {args.warmup} warm-up + {args.reps} timed steps per "
              f"process; torch {args.threads} threads", flush=True)
        return compare("stgcn-vs-torch", {"jax": worker_argv(args, "jax", weights, per_call),
                                          "torch": worker_argv(args, "torch", weights)}, args.rounds, args.batch,
                       args.other_python)


def run_in_process(args) -> dict:
    x, y = batch(args)
    h = hyper(args)
    per_call = steps_per_call(args)
    jax_run, compile_s, flops = jax_stgcn_step(x, y, **h, steps_per_call=per_call)
    torch_run = torch_stgcn_step(x, y, threads=args.threads, **h)
    calls = f", {per_call} steps per call" if per_call > 1 else ""
    print(f"stgcn-vs-torch: B={args.batch}, M={args.persons}, T={args.frames}, 25 joints, SGD; jax compile "
          f"{compile_s:.1f} s, {flops / 1e9:.1f} GFLOP/step (XLA cost analysis){calls}; torch {args.threads} "
          "threads (one process, interleaved)", flush=True)
    med = interleaved_medians({"jax": jax_run, "torch": torch_run}, args.reps, warmup=2, settle=1)
    med["jax"] /= per_call  # time per step
    ratio = med["torch"] / med["jax"]
    print(f"stgcn-vs-torch: jax {med['jax'] * 1e3:.0f} ms/step ({args.batch / med['jax']:.1f} clips/s), torch "
          f"{med['torch'] * 1e3:.0f} ms/step ({args.batch / med['torch']:.1f} clips/s); speed-up jax/torch = "
          f"{ratio:.2f}x (medians of {args.reps}, interleaved, each timed step the second of a pair)", flush=True)
    return dict(jax_s=med["jax"], torch_s=med["torch"], speedup=ratio, compile_s=compile_s, steps_per_call=per_call)
