"""The train steps the benchmark measures (teacher stage, student alone, student stage), assembled from the config.

    cfg = stage_config("micro", batch=16, views=4, frames=None, dtype="float32", method="vicokd")
    built = build_step("stage", cfg, mesh, materialize=False)   # every argument a sharded ShapeDtypeStruct
    result = measure_step("stage", cfg, mesh, steps=10, compile_only=False, peak_tflops=None)

Models are initialised on the config's input shapes (`vicokd_jax.train.setup.model_init`); batches have the
shapes and dtypes the pipeline delivers (`setup.input_specs`), so nothing is decoded or rendered.
"""
from __future__ import annotations

import time

from tools.benchmark.common import cost_flops, memory, unchunked_kernel_grads

KINDS = ("teacher", "student", "stage")


def stage_config(preset: str, batch: int, views: int, frames: int | None, dtype: str, method: str,
                 mesh_fsdp: int = 1):
    """The default config of `method` at the preset's clip size (or `frames`), global batch `batch`, a mesh of
    every device on `data` except `mesh_fsdp` of them on `fsdp`."""
    from vicokd_jax.config import default_config
    from vicokd_jax.models import presets

    p = presets.get_preset(preset)
    cfg = default_config(method)
    cfg.model.preset, cfg.model.dtype = preset, dtype
    cfg.data.num_views, cfg.data.num_frames, cfg.data.image_size = views, frames or p.frames, p.image_size
    cfg.train.batch_size = batch
    cfg.mesh.data, cfg.mesh.fsdp = -1, mesh_fsdp
    return cfg


def synthetic_batch(cfg, batch_size: int, seed: int = 0) -> dict:
    """A host batch of `setup.input_specs(cfg, batch_size)`: random pixels and skeletons, every view visible and
    every clip labelled, labels in range. Step time does not depend on the content; its values only keep the
    losses finite."""
    import numpy as np

    from vicokd_jax.train import setup

    rng = np.random.default_rng(seed)
    specs = setup.input_specs(cfg, batch_size)
    b, c = batch_size, cfg.data.num_classes
    label = rng.integers(0, c, b)
    labels = (rng.random((b, c)) < 0.3).astype(np.float32)
    t = cfg.data.num_frames
    content = {
        "rgb": lambda s: rng.integers(0, 256, s.shape),
        "skeleton": lambda s: 0.5 * rng.standard_normal(s.shape),
        "human_score": lambda s: np.ones(s.shape),
        "view_mask": lambda s: np.ones(s.shape),
        "labeled": lambda s: np.ones(s.shape),
        "index": lambda s: np.arange(s.shape[0]),
        "label": lambda s: label,
        "labels": lambda s: labels,
        "frame_labels": lambda s: np.repeat(labels[:, None], t, 1) if len(s.shape) == 3 else np.repeat(
            label[:, None], t, 1),
    }
    unknown = sorted(set(specs) - set(content))
    if unknown:
        raise KeyError(f"synthetic_batch: no content for the batch keys {unknown} of setup.input_specs")
    return {k: np.asarray(content[k](s), dtype=s.dtype).reshape(s.shape) for k, s in specs.items()}


def build_step(kind: str, cfg, mesh, materialize: bool = True, steps_per_call: int = 1,
               unroll: bool = False) -> dict:
    """One jit step of `kind` ("teacher" | "student" | "stage") with its arguments (abstract or concrete).

    teacher: the teacher-stage step of `vicokd_jax.train.step`; stage: the student-stage step (frozen teacher
    forward + student forward/backward/update; the teacher's variables random, sharded as in training); student: the
    student alone (cross-entropy on the labels). The batch is `synthetic_batch(cfg, cfg.train.batch_size)`.
    materialize=False: every argument is a ShapeDtypeStruct with its sharding (for `fn.lower(*args).compile()`
    without allocating anything). steps_per_call K > 1: the step makes K updates in one call over the batch
    stacked K times `[K, B, ...]`, as the training loop does with `train.steps_per_call` (`unroll`: as
    straight-line code, not a loop). Returns dict(fn, args,
    state_shardings, abstract_state).
    """
    import jax
    import jax.numpy as jnp
    import optax

    from vicokd_jax import parallel
    from vicokd_jax.models import presets
    from vicokd_jax.train import setup, state as state_lib, step as step_lib

    if kind not in KINDS:
        raise ValueError(f"step kind {kind!r}; expected one of {KINDS}")
    n = cfg.train.batch_size
    setup.per_host_batch(n, mesh)  # the global batch must divide over the mesh's devices
    tx, schedule = state_lib.make_optimizer(cfg.train, 1000, cfg.train.lr)
    teacher = presets.teacher_from_config(cfg)
    model = teacher if kind == "teacher" else presets.student_from_config(cfg)
    init = state_lib.init_state_fn(setup.model_init(model, cfg, "teacher" if kind == "teacher" else "student"), tx)
    seed = jnp.asarray(cfg.train.seed, jnp.uint32)
    abstract_state = jax.eval_shape(init, seed)
    shardings = state_lib.state_shardings(abstract_state, mesh, cfg.mesh.fsdp_min_size, rules=cfg.mesh.rules)
    k = steps_per_call
    if materialize:
        state = jax.jit(init, out_shardings=shardings)(seed)
        host = synthetic_batch(cfg, n)
        batch = parallel.global_batches([host] * k, mesh) if k > 1 else parallel.global_batch(host, mesh)
    else:
        state = state_lib.abstract_with_shardings(abstract_state, shardings)
        sharding = parallel.stacked_batch_sharding(mesh) if k > 1 else parallel.batch_sharding(mesh)
        batch = {key: jax.ShapeDtypeStruct(((k,) if k > 1 else ()) + s.shape, s.dtype, sharding=sharding)
                 for key, s in setup.input_specs(cfg, n).items()}
    built = dict(abstract_state=abstract_state, state_shardings=shardings)

    if kind == "teacher":
        fn = step_lib.make_train_step("teacher", model, tx, schedule, cfg, mesh, shardings, steps_per_call=k,
                                      unroll=unroll)
        return dict(fn=fn, args=(state, batch), **built)

    if kind == "stage":
        teacher_init = setup.model_init(teacher, cfg, "teacher")
        abstract_teacher = jax.eval_shape(teacher_init, jax.random.key(0))
        # Sharded like training shards it (setup.load_teacher): by mesh.rules, then the size fallback.
        teacher_shardings = parallel.variable_shardings(mesh, abstract_teacher, cfg.mesh.rules, cfg.mesh.fsdp_min_size)
        teacher_vars = (jax.jit(teacher_init, out_shardings=teacher_shardings)(jax.random.key(1)) if materialize
                        else state_lib.abstract_with_shardings(abstract_teacher, teacher_shardings))
        fn = step_lib.make_train_step("student", model, tx, schedule, cfg, mesh, shardings, teacher,
                                      teacher_shardings, steps_per_call=k, unroll=unroll)
        return dict(fn=fn, args=(state, batch, teacher_vars), **built)

    def student_step(state, batch):  # the student's own cost: no teacher, plain cross-entropy
        def loss_fn(params):
            out, new_ms = model.apply({"params": params, **state.model_state}, batch["rgb"], batch["view_mask"],
                                      train=True, mutable=list(state.model_state.keys()),
                                      rngs={"dropout": jax.random.wrap_key_data(state.rng)})
            loss = optax.softmax_cross_entropy_with_integer_labels(out["logits"].astype(jnp.float32),
                                                                   batch["label"]).mean()
            return loss, dict(new_ms)
        (loss, new_ms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                             model_state=new_ms, opt_state=opt_state), {"loss/total": loss}

    def student_steps(state, batches):
        return jax.lax.scan(student_step, state, batches, unroll=unroll)

    batch_sharding = parallel.stacked_batch_sharding(mesh) if k > 1 else parallel.batch_sharding(mesh)
    fn = jax.jit(student_steps if k > 1 else student_step, donate_argnums=(0,),
                 in_shardings=(shardings, batch_sharding), out_shardings=(shardings, parallel.replicated(mesh)))
    return dict(fn=fn, args=(state, batch), **built)


def measure_step(kind: str, cfg, mesh, steps: int, compile_only: bool, peak_tflops: float | None,
                 steps_per_call: int = 1, unroll: bool = False) -> dict:
    """Compile time, FLOPs, memory and (unless compile_only) clips/s of one step kind; with K steps per call,
    `steps` calls are timed, times per step (FLOPs: of one step)."""
    import jax

    built = build_step(kind, cfg, mesh, materialize=not compile_only, steps_per_call=steps_per_call, unroll=unroll)
    start = time.perf_counter()
    compiled = built["fn"].lower(*built["args"]).compile()
    result = dict(kind=kind, compile_s=time.perf_counter() - start, flops=cost_flops(compiled),
                  memory=memory(compiled), devices=mesh.devices.size)
    if kind == "teacher" or steps_per_call > 1:
        # XLA's cost analysis counts a loop body once: the ST-GCN's chunked kernel gradient (the only step that
        # differentiates it) in full, and one step rather than a call's scan of K.
        with unchunked_kernel_grads():
            unchunked = build_step(kind, cfg, mesh, materialize=False)
            result["flops"] = cost_flops(unchunked["fn"].lower(*unchunked["args"]).compile())
    if compile_only:
        return result
    state, rest = built["args"][0], built["args"][1:]
    for _ in range(2):  # warm-up (first calls allocate)
        state, metrics = compiled(state, *rest)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):  # no host sync inside: dispatch runs ahead, as in the training loop
        state, metrics = compiled(state, *rest)
    jax.block_until_ready((state, metrics))
    seconds = (time.perf_counter() - start) / (steps * steps_per_call)
    result.update(steps_per_call=steps_per_call, unroll=unroll, step_s=seconds,
                  clips_per_s=cfg.train.batch_size / seconds)
    if peak_tflops:
        result["mfu"] = result["flops"] / seconds / (peak_tflops * 1e12)  # per-device FLOPs vs per-device peak
    return result
