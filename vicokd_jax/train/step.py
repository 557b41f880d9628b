"""THE train steps: one `jax.jit` function per stage, state donated, explicit shardings, all losses in one graph.

Teacher stage: the multi-modal teacher's forward and backward with the sequence loss and the frame loss (frame
logits max-pooled over present views, frames labelled -1 = background ignored).
Student stage: the frozen teacher's forward (no gradient) and the student's forward over all views, the method's
`total_loss` (METHOD.md), gradients, the optimizer update.
Pretrain stage: the masked autoencoder's reconstruction loss on every training clip (labels unused).
All return per-term losses and diagnostics as metrics (device arrays; fetched by the loop at log points only).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from vicokd_jax import losses, methods, parallel, views
from vicokd_jax.models import presets
from vicokd_jax.models.student import input_modality
from vicokd_jax.train.state import TrainState


def teacher_loss(out: dict, batch: dict, frame_weight: float, view_weight: float = 0.0,
                 score_threshold: float = 0.5) -> tuple[jax.Array, dict]:
    """Sequence loss (CE, or BCE for multi-hot `labels`) + frame_weight · frame loss + view_weight · view loss
    (each view's logits against the sequence label, weighted by the share of frames where the view sees the
    person: `losses.view_supervision`), on every sample."""
    multi = "labels" in batch
    valid = batch.get("valid")
    if multi:
        seq, _ = losses.sigmoid_bce(out["logits"], batch["labels"], valid)
    else:
        seq, _ = losses.cross_entropy(out["logits"], batch["label"], valid)
    metrics = {"loss/sequence": seq}
    total = seq
    if frame_weight and "frame_labels" in batch:
        fused = views.fuse_frame_logits(out["frame_logits"], batch["view_mask"])  # [B, L, C]
        labels = views.resample_nearest(batch["frame_labels"], fused.shape[1])
        if multi:
            frame, _ = losses.sigmoid_bce(fused, labels)
        else:
            frame, _ = losses.cross_entropy(fused, jnp.maximum(labels, 0), labels >= 0)  # background ignored
        metrics["loss/frame"] = frame
        total = total + frame_weight * frame
    if view_weight:
        weights = losses.visible_fraction(batch["human_score"], batch["view_mask"], score_threshold)
        if valid is not None:
            weights = weights * valid[:, None]
        view, _ = losses.view_supervision(out["view_logits"], batch["labels"] if multi else batch["label"], weights)
        metrics["loss/view"] = view
        total = total + view_weight * view
    metrics["loss/total"] = total
    if not multi:
        metrics["train/top1"] = jnp.mean(jnp.argmax(out["logits"], -1) == batch["label"]) * 100
    return total, metrics


def model_inputs(stage: str, cfg, batch: dict) -> tuple:
    """The positional inputs of the stage's model from a batch. Pretrain: `(rgb, view_mask)`. Teacher:
    `(skeleton, rgb, view_mask)` (None for a modality it does not use), then `(audio, audio_mask)` when it hears. Student: `(rgb, view_mask)`, or for an
    audio student `(audio, view_mask & audio_mask)` (a view without a soundtrack is absent to it)."""
    if stage == "pretrain":
        return batch["rgb"], batch["view_mask"]
    if stage == "teacher":
        modalities = tuple(cfg.model.teacher_modalities)
        inputs = tuple(batch[m] if m in modalities else None for m in ("skeleton", "rgb")) + (batch["view_mask"],)
        if "audio" in modalities:
            inputs += (batch["audio"], batch.get("audio_mask"))
        return inputs
    if input_modality(cfg.model.student_input) == "audio":
        mask = batch["view_mask"]
        return batch["audio"], mask & batch["audio_mask"] if "audio_mask" in batch else mask
    return batch["rgb"], batch["view_mask"]


def make_train_step(stage: str, model, tx: optax.GradientTransformation, schedule: optax.Schedule, cfg, mesh,
                    state_shardings: TrainState, teacher=None, teacher_shardings=None,
                    steps_per_call: int = 1, unroll: bool = False) -> Callable:
    """-> `step(state, batch[, teacher_variables]) -> (state, metrics)`, jit-compiled once per batch structure.

    `batch` holds global arrays (`parallel.global_batch`). Non-finite losses or gradients: the update is skipped
    (the state keeps its parameters; `skipped` counts it) and metrics["nonfinite"] is 1; the loop raises or goes
    on according to `train.on_nonfinite`.

    steps_per_call > 1: the function takes the batches of K steps stacked, `[K, B, ...]`
    (`parallel.global_batches`), makes K updates in one `lax.scan`, and returns every metric stacked `[K]`
    (K is the leading size of the batch, so a shorter call compiles once more); `unroll`: the K steps as
    straight-line code instead of a loop (`setup.call_plan` says when).
    """
    missing, own = presets.student_missing(cfg), input_modality(cfg.model.student_input)

    def forward_loss(params, state: TrainState, batch: dict, teacher_variables, dropout_key):
        variables = {"params": params, **state.model_state}
        mutable = list(state.model_state.keys())
        rngs = {"dropout": dropout_key}
        if stage == "pretrain":
            rngs["masking"] = jax.random.fold_in(dropout_key, 1)
            out, new_model_state = model.apply(variables, *model_inputs("pretrain", cfg, batch), train=True,
                                               rngs=rngs, mutable=mutable)
            loss = out["loss"]
            metrics = {"loss/reconstruction": loss, "loss/total": loss}
        elif stage == "teacher":
            out, new_model_state = model.apply(variables, *model_inputs("teacher", cfg, batch), train=True,
                                               rngs=rngs, mutable=mutable)
            loss, metrics = teacher_loss(out, batch, cfg.teacher.frame_loss_weight, cfg.teacher.view_loss_weight,
                                         cfg.teacher.view_score_threshold)
        else:
            teacher_out = {}  # an objective without a teacher term runs no teacher
            if teacher is not None:
                teacher_out = teacher.apply(teacher_variables, *model_inputs("teacher", cfg, batch), train=False)
                teacher_out = jax.lax.stop_gradient(teacher_out)
            out, new_model_state = model.apply(variables, *model_inputs("student", cfg, batch), train=True,
                                               rngs=rngs, mutable=mutable)
            loss, metrics = methods.total_loss(out, teacher_out, batch, cfg.method, missing, own)
            if "label" in batch:
                if teacher is not None:
                    metrics["train/teacher_top1"] = jnp.mean(
                        jnp.argmax(teacher_out["logits"], -1) == batch["label"]) * 100
                metrics["train/top1"] = jnp.mean(jnp.argmax(out["logits"], -1) == batch["label"]) * 100
        return loss, (metrics, dict(new_model_state))

    def step(state: TrainState, batch: dict, teacher_variables=None):
        key, dropout_key = jax.random.split(jax.random.wrap_key_data(state.rng))
        grad_fn = jax.value_and_grad(forward_loss, has_aux=True)
        (loss, (metrics, new_model_state)), grads = grad_fn(state.params, state, batch, teacher_variables,
                                                            dropout_key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        new_state = TrainState(step=state.step + 1, params=keep(params, state.params),
                               model_state=keep(new_model_state, state.model_state),
                               opt_state=keep(opt_state, state.opt_state), rng=jax.random.key_data(key),
                               skipped=state.skipped + (~finite).astype(jnp.int32))
        metrics = dict(metrics, grad_norm=grad_norm, lr=schedule(state.step), nonfinite=(~finite).astype(jnp.int32))
        return new_state, metrics

    def steps(state: TrainState, batches: dict, teacher_variables=None):
        # NOTE: K updates per executable: XLA:CPU maps a step's temporaries afresh at every call (page faults,
        # about 10% of an ST-GCN step on 2 cores); a scan pays that once per K steps (docs/PERFORMANCE.md).
        return jax.lax.scan(lambda s, b: step(s, b, teacher_variables), state, batches, unroll=unroll)

    if steps_per_call > 1:
        fn, batch_sh = steps, parallel.stacked_batch_sharding(mesh)
    else:
        fn, batch_sh = step, parallel.batch_sharding(mesh)
    rep = parallel.replicated(mesh)
    if teacher is None:  # the teacher stage, or a student whose objective uses no teacher
        return jax.jit(lambda s, b: fn(s, b), donate_argnums=(0,), in_shardings=(state_shardings, batch_sh),
                       out_shardings=(state_shardings, rep))
    return jax.jit(fn, donate_argnums=(0,), in_shardings=(state_shardings, batch_sh, teacher_shardings),
                   out_shardings=(state_shardings, rep))


def make_eval_step(stage: str, model, cfg, mesh, teacher=None) -> Callable:
    """-> `eval(variables, batch[, teacher_variables]) -> outputs` (logits, view_logits, frame_logits[, teacher]; the
    pretrain stage: its reconstruction `loss` and the `count` of patches it is the mean of)."""
    def evaluate(variables, batch, teacher_variables=None):
        if stage == "pretrain":  # the reconstruction loss under one fixed draw of masks, padding rows left out
            rgb, view_mask = model_inputs("pretrain", cfg, batch)
            if "valid" in batch:
                view_mask = view_mask & batch["valid"][:, None]
            out = model.apply(variables, rgb, view_mask, train=False, rngs={"masking": jax.random.key(0)})
            return {"loss": out["loss"], "count": out["count"]}
        if stage == "teacher":
            out = model.apply(variables, *model_inputs("teacher", cfg, batch), train=False)
        else:
            out = model.apply(variables, *model_inputs("student", cfg, batch), train=False)
        result = {k: out[k] for k in ("logits", "view_logits", "frame_logits")}
        if teacher is not None:
            result["teacher_logits"] = teacher.apply(teacher_variables, *model_inputs("teacher", cfg, batch),
                                                     train=False)["logits"]
        return result

    return jax.jit(evaluate, out_shardings=parallel.replicated(mesh))
