"""The train state, the optimizer, and creating the state directly with its shardings.

    TrainState: step, params (trained), model_state (e.g. BatchNorm `batch_stats`; {} when none), opt_state,
                rng (dropout), skipped (non-finite updates skipped so far)

The frozen teacher of the student stage is not part of the state: it is a separate (not donated) argument of the
student step, loaded once, never re-saved in the student's checkpoints.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from vicokd_jax import parallel


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array  # raw uint32 key data (checkpoints store plain arrays): jax.random.wrap_key_data to use
    skipped: jax.Array


def learning_rate_schedule(lr: float, steps: int, warmup_steps: int) -> optax.Schedule:
    """Linear warmup to `lr`, then cosine decay to 1% of it at `steps`."""
    warmup = max(0, min(warmup_steps, steps - 1))
    return optax.warmup_cosine_decay_schedule(0.0 if warmup else lr, lr, warmup, max(steps, warmup + 1),
                                              end_value=0.01 * lr)


def make_optimizer(train_cfg, steps: int, lr: float) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """adamw or sgd (momentum) with warmup + cosine and optional global-norm clipping."""
    schedule = learning_rate_schedule(lr, steps, train_cfg.warmup_steps)
    if train_cfg.optimizer == "adamw":
        opt = optax.adamw(schedule, weight_decay=train_cfg.weight_decay)
    else:
        opt = optax.chain(optax.add_decayed_weights(train_cfg.weight_decay),
                          optax.sgd(schedule, momentum=train_cfg.momentum, nesterov=True))
    if train_cfg.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(train_cfg.grad_clip), opt)
    return opt, schedule


def init_state_fn(init_variables: Callable[[jax.Array], dict], tx: optax.GradientTransformation
                  ) -> Callable[[jax.Array], TrainState]:
    """`seed (uint32 scalar) -> TrainState`: the model's variables from `init_variables(key)`, the optimizer
    state, a dropout key. Pure: `jax.eval_shape` of it is the abstract state, `jax.jit` of it with out_shardings
    creates the state already sharded."""

    def init(seed_array):
        key = jax.random.key(seed_array)
        init_key, dropout_key = jax.random.split(key)
        variables = dict(init_variables(init_key))
        params = variables.pop("params")
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                          opt_state=tx.init(params), rng=jax.random.key_data(dropout_key),
                          skipped=jnp.zeros((), jnp.int32))

    return init


def create_state(init_variables: Callable[[jax.Array], dict], tx: optax.GradientTransformation, seed: int, mesh,
                 fsdp_min_size: int = 2**16, *, rules=()) -> tuple[TrainState, Any]:
    """Create the state already sharded: `jax.jit(init, out_shardings=...)`; returns (state, its shardings).

    `init_variables(rng) -> {"params": ..., other collections}` (a model's `init` with example inputs); `rules`
    as `config.mesh.rules` (see `state_shardings`).
    """

    init = init_state_fn(init_variables, tx)
    seed_array = jnp.asarray(seed, jnp.uint32)
    abstract = jax.eval_shape(init, seed_array)
    shardings = state_shardings(abstract, mesh, fsdp_min_size, rules=rules)
    return jax.jit(init, out_shardings=shardings)(seed_array), shardings


def state_shardings(abstract_state: TrainState, mesh, fsdp_min_size: int = 2**16, *, rules=()) -> TrainState:
    """Parameters and model state by `rules` on their paths (`parallel.variable_shardings`: the first matching
    rule, else the size heuristic); optimizer state as the parameters it mirrors (`parallel.mirrored_shardings`);
    step, rng, counters replicated."""
    rep = parallel.replicated(mesh)
    params = parallel.variable_shardings(mesh, abstract_state.params, rules, fsdp_min_size)
    return TrainState(
        step=rep, rng=rep, skipped=rep, params=params,
        model_state=parallel.variable_shardings(mesh, abstract_state.model_state, rules, fsdp_min_size),
        opt_state=parallel.mirrored_shardings(mesh, abstract_state.opt_state, abstract_state.params, params,
                                              fsdp_min_size))


def abstract_with_shardings(abstract, shardings):
    """ShapeDtypeStructs carrying shardings: the restore target that puts a checkpoint onto this mesh."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)
