"""Every objective of METHOD.md, written once: masked, normalised by what contributes, stable from logits.

Conventions:
* Inputs are logits (never probabilities); distributions come from `log_softmax`, so saturated logits give
  finite values and gradients.
* Masks are explicit boolean arguments. A masked objective is `sum(mask * value) / max(sum(mask), 1)`: it is
  normalised by the count of what contributes (never by the batch size) and is exactly 0, not NaN, when nothing
  does.
* The teacher side of every distillation term is wrapped in `stop_gradient` here, so callers cannot forget it.
* Masked objectives return `(loss, aux)`; `aux` holds diagnostics (counts, keep rates, precisions) as scalars.
  Pure divergences (`kd_kl`, `js_divergence`, ...) return per-example values `[...]`.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax

from vicokd_jax import views

sg = jax.lax.stop_gradient
LN2 = 0.6931471805599453


def masked_mean(values, mask=None):
    """`(Σ m·v / Σ m, Σ m)`; 0 when Σ m = 0. `mask` (bool, or non-negative float weights) broadcasts against
    `values`; where it is 0 a value never contributes, even a NaN."""
    values = jnp.asarray(values, jnp.float32)
    if mask is None:
        return values.mean(), jnp.asarray(values.size, jnp.float32)
    mask = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), values.shape)
    count = mask.sum()
    return jnp.sum(jnp.where(mask > 0, mask * values, 0.0)) / jnp.where(count > 0, count, 1.0), count


def _kl_from_logits(target_logits, logits, temperature=1.0):
    """KL(softmax(target/τ) ‖ softmax(logits/τ)) over the last axis, per example."""
    return optax.losses.kl_divergence_with_log_targets(jax.nn.log_softmax(logits / temperature),
                                                       jax.nn.log_softmax(target_logits / temperature))


# ------------------------------------------------------------------------------------------------------------
# Supervised
# ------------------------------------------------------------------------------------------------------------
def cross_entropy(logits, labels, mask=None):
    """Softmax CE of `logits [..., C]` against integer `labels [...]`, masked mean -> (loss, aux)."""
    chex.assert_equal(logits.shape[:-1], labels.shape)
    per_example = optax.losses.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    loss, count = masked_mean(per_example, mask)
    return loss, {"count": count}


def sigmoid_bce(logits, targets, mask=None):
    """Multi-label BCE: `logits, targets [..., C]` (multi-hot), mean over classes, masked mean over examples."""
    chex.assert_equal_shape([logits, targets])
    per_example = optax.losses.sigmoid_binary_cross_entropy(logits.astype(jnp.float32),
                                                            targets.astype(jnp.float32)).mean(-1)
    loss, count = masked_mean(per_example, mask)
    return loss, {"count": count}


# The weight of a view's own supervision (a view that never sees the action has none); defined in views.py,
# where the metrics share it, and named here too because README documents `losses.visible_fraction`.
visible_fraction = views.visible_fraction


def view_supervision(view_logits, target, weights):
    """Per-view supervision: every view's logits `[B,V,C]` against the sequence target (integer `[B]` -> CE, or
    multi-hot `[B,C]` -> BCE), weighted by `weights [B,V]` (visible fraction × labeled) -> (loss, {"count": Σ w}).

    The view-fusion loss alone reaches a view's encoder only through fusion; with the action visible in one of V
    views that signal is too weak for an RGB encoder to start learning (on SynthMV the RGB student stayed at
    chance without this term). This term gives each view that sees the person its own gradient."""
    chex.assert_rank(view_logits, 3)
    chex.assert_equal(view_logits.shape[:2], weights.shape)
    if target.ndim == 1:
        return cross_entropy(view_logits, jnp.broadcast_to(target[:, None], weights.shape), weights)
    return sigmoid_bce(view_logits, jnp.broadcast_to(target[:, None, :], view_logits.shape), weights)


# ------------------------------------------------------------------------------------------------------------
# Logit distillation
# ------------------------------------------------------------------------------------------------------------
def kd_kl(student_logits, teacher_logits, temperature=1.0):
    """Hinton KD per example: `τ² · KL(softmax(t/τ) ‖ softmax(s/τ))`, teacher stop-gradiented. `[..., C] -> [...]`."""
    chex.assert_equal_shape([student_logits, teacher_logits])
    return temperature**2 * _kl_from_logits(sg(teacher_logits), student_logits, temperature)


def binary_kd(student_logits, teacher_logits, temperature=1.0):
    """Multi-label KD: per-class Bernoulli KL(σ(t/τ) ‖ σ(s/τ)), mean over classes, times τ². `[..., C] -> [...]`."""
    chex.assert_equal_shape([student_logits, teacher_logits])
    t, s = sg(teacher_logits) / temperature, student_logits / temperature
    # log σ(x) = -softplus(-x), log(1 - σ(x)) = -softplus(x): stable for saturated logits.
    p_t = jax.nn.sigmoid(t)
    kl = p_t * (jax.nn.softplus(-s) - jax.nn.softplus(-t)) + (1 - p_t) * (jax.nn.softplus(s) - jax.nn.softplus(t))
    return temperature**2 * kl.mean(-1)


def dkd(student_logits, teacher_logits, target, alpha=1.0, beta=8.0, temperature=1.0):
    """Decoupled KD (Zhao et al., CVPR 2022) per example: `τ²(α·TCKD + β·NCKD)` -> (loss [...], aux).

    TCKD is the KL between the binary (target, rest) distributions; NCKD the KL between the distributions over
    the non-target classes. Identity at τ=1: KL(t‖s) = TCKD + (1 − p_target^teacher) · NCKD.
    """
    chex.assert_equal_shape([student_logits, teacher_logits])
    chex.assert_equal(student_logits.shape[:-1], target.shape)
    t, s = sg(teacher_logits) / temperature, student_logits / temperature
    is_target = jax.nn.one_hot(target, t.shape[-1], dtype=bool)
    log_p_t, log_p_s = jax.nn.log_softmax(t), jax.nn.log_softmax(s)

    def binary(log_p):  # (log p_target, log(1 - p_target))
        return (jnp.sum(jnp.where(is_target, log_p, 0.0), -1),
                jax.nn.logsumexp(jnp.where(is_target, -jnp.inf, log_p), axis=-1))

    (t_in, t_out), (s_in, s_out) = binary(log_p_t), binary(log_p_s)
    tckd = jnp.exp(t_in) * (t_in - s_in) + jnp.exp(t_out) * (t_out - s_out)

    # Distributions over non-target classes; the target entry is excluded (set to 0 before any product).
    non_target_t = jnp.where(is_target, 0.0, jax.nn.log_softmax(jnp.where(is_target, -jnp.inf, t)))
    non_target_s = jnp.where(is_target, 0.0, jax.nn.log_softmax(jnp.where(is_target, -jnp.inf, s)))
    nckd = jnp.sum(jnp.where(is_target, 0.0, jnp.exp(non_target_t) * (non_target_t - non_target_s)), -1)
    loss = temperature**2 * (alpha * tckd + beta * nckd)
    return loss, {"tckd": tckd, "nckd": nckd}


# ------------------------------------------------------------------------------------------------------------
# Features
# ------------------------------------------------------------------------------------------------------------
def feature_alignment(student_tokens, teacher_tokens, mask=None):
    """Adapter alignment `1 − cos(a, sg(f))` per token `[..., D]`, masked mean over positions -> (loss, aux)."""
    chex.assert_equal_shape([student_tokens, teacher_tokens])
    distance = optax.losses.cosine_distance(student_tokens.astype(jnp.float32),
                                            sg(teacher_tokens).astype(jnp.float32), epsilon=1e-8)
    loss, count = masked_mean(distance, mask)
    return loss, {"count": count}


def fitnet_hint(student_tokens, teacher_tokens, mask=None):
    """FitNets hint: mean squared error to `sg(teacher)` per token (mean over D), masked mean -> (loss, aux)."""
    chex.assert_equal_shape([student_tokens, teacher_tokens])
    per_token = jnp.mean((student_tokens.astype(jnp.float32) - sg(teacher_tokens).astype(jnp.float32)) ** 2, -1)
    loss, count = masked_mean(per_token, mask)
    return loss, {"count": count}


# ------------------------------------------------------------------------------------------------------------
# Pseudo-labels (MSKD)
# ------------------------------------------------------------------------------------------------------------
def pseudo_label(student_logits, teacher_logits, threshold=0.9, mask=None, labels=None):
    """CE to the teacher's confident argmax on `mask`ed (unlabeled) samples -> (loss, aux).

    `ŷ = argmax q`, `q = softmax(teacher)`, kept where `max q ≥ threshold`; the loss is the mean CE over kept
    samples. aux: `keep_rate` (kept / masked), `kept`, and with true `labels`, `precision` (correct / kept).
    """
    chex.assert_equal_shape([student_logits, teacher_logits])
    q = jax.nn.softmax(sg(teacher_logits).astype(jnp.float32))
    pseudo = jnp.argmax(q, -1)
    eligible = jnp.ones(pseudo.shape, bool) if mask is None else jnp.asarray(mask, bool)
    keep = eligible & (q.max(-1) >= threshold)
    ce = optax.losses.softmax_cross_entropy_with_integer_labels(student_logits.astype(jnp.float32), pseudo)
    loss, kept = masked_mean(ce, keep)
    aux = {"kept": kept, "keep_rate": kept / jnp.maximum(eligible.sum(), 1)}
    if labels is not None:
        aux["precision"] = jnp.sum(keep & (pseudo == labels)) / jnp.maximum(kept, 1.0)
    return loss, aux


# ------------------------------------------------------------------------------------------------------------
# View-aware consistency (ViCoKD)
# ------------------------------------------------------------------------------------------------------------
def js_divergence(p_logits, q_logits):
    """Jensen–Shannon divergence of softmax(p), softmax(q), in bits (÷ ln 2, so in [0, 1]). `[..., C] -> [...]`.

    Computed through the log of the mixture (`logaddexp`), so disjoint one-hots give ≈1 with finite gradients.
    """
    chex.assert_equal_shape([p_logits, q_logits])
    log_p = jax.nn.log_softmax(p_logits.astype(jnp.float32))
    log_q = jax.nn.log_softmax(q_logits.astype(jnp.float32))
    log_m = jnp.logaddexp(log_p, log_q) - LN2
    kl_pm = optax.losses.kl_divergence_with_log_targets(log_m, log_p)
    kl_qm = optax.losses.kl_divergence_with_log_targets(log_m, log_q)
    return jnp.clip(0.5 * (kl_pm + kl_qm) / LN2, 0.0, 1.0)


def symmetric_kl(p_logits, q_logits):
    """½(KL(p‖q) + KL(q‖p)) of the softmaxes, per example: the "KL instead of JS" ablation of L_vc."""
    return 0.5 * (_kl_from_logits(p_logits, q_logits) + _kl_from_logits(q_logits, p_logits))


def _pair_divergence(logits, divergence: str):
    """`[B, V, ..., C]` -> `[B, V, V, ...]` divergence between every ordered pair of views."""
    a, b = logits[:, :, None], logits[:, None, :]
    a, b = jnp.broadcast_arrays(a, b)
    if divergence == "js":
        return js_divergence(a, b)
    if divergence == "kl":
        return symmetric_kl(a, b)
    raise ValueError(f"view consistency divergence must be 'js' or 'kl', got {divergence!r}")


def _weighted_pairs(logits, pair_mask, temperature, confidence_weight, divergence, eps):
    """Σ c·w·D / (Σ c·w + ε) over pairs, and diagnostics. `logits [B, V, ..., C]`, `pair_mask [B, V, V, ...]`."""
    z = logits.astype(jnp.float32) / temperature
    div = _pair_divergence(z, divergence)
    if confidence_weight:
        kappa = jax.nn.softmax(z).max(-1)  # [B, V, ...]
        weight = sg(kappa[:, :, None] * kappa[:, None, :])
    else:
        weight = jnp.ones(div.shape, jnp.float32)
    cw = pair_mask.astype(jnp.float32) * weight
    loss = jnp.sum(cw * div) / (jnp.sum(cw) + eps)
    pairs = pair_mask.astype(jnp.float32).sum()
    return loss, {"pairs": pairs, "pairs_per_sample": pairs / logits.shape[0],
                  "mean_weight": jnp.sum(cw) / jnp.maximum(pairs, 1.0)}


def view_consistency(view_logits, human_score, view_mask, *, temperature=1.0, score_threshold=0.5,
                     min_covisible_frames=1, use_detection_mask=True, confidence_weight=True, divergence="js",
                     eps=1e-8):
    """ViCoKD's L_vc over view pairs -> (loss, aux).

    Args:
        view_logits [B, V, C] (view head), human_score [B, V, T] in [0, 1], view_mask [B, V] bool.
    Pairs i < j count when both views exist and, with `use_detection_mask`, the person is detected
    (`score ≥ score_threshold`) in both on at least `min_covisible_frames` frames. Each pair's divergence
    (JS in bits, or symmetric KL) is weighted by `sg(κ_i κ_j)`, κ = max softmax (or 1), and the sum is
    normalised by Σ c·w + ε. aux: pairs, pairs_per_sample, mean_weight.
    """
    b, v, _ = view_logits.shape
    chex.assert_shape(human_score, (b, v, None))
    chex.assert_shape(view_mask, (b, v))
    if use_detection_mask:
        both = views.covisible_pairs(human_score, view_mask, score_threshold, min_covisible_frames)
    else:
        both = views.view_pairs(view_mask)
    return _weighted_pairs(view_logits, both, temperature, confidence_weight, divergence, eps)


def frame_view_consistency(frame_logits, human_score, view_mask, *, temperature=1.0, score_threshold=0.5,
                           use_detection_mask=True, confidence_weight=True, divergence="js", eps=1e-8):
    """Per-frame L_vc: `frame_logits [B, V, T, C]`, `human_score [B, V, T]` on the same frames -> (loss, aux).

    A pair (i, j) counts at frame t when both views exist and, with `use_detection_mask`, both detect the person
    at t (c_{ij,t}).
    """
    b, v, t, _ = frame_logits.shape
    chex.assert_shape(human_score, (b, v, t))
    chex.assert_shape(view_mask, (b, v))
    both = views.view_pairs(view_mask)[..., None]  # [B, V, V, 1]
    both = jnp.broadcast_to(both, (b, v, v, t))
    if use_detection_mask:
        detected = human_score >= score_threshold
        both = both & detected[:, :, None] & detected[:, None, :]
    return _weighted_pairs(frame_logits, both, temperature, confidence_weight, divergence, eps)


# ------------------------------------------------------------------------------------------------------------
# Cross-view consistency (MSKD)
# ------------------------------------------------------------------------------------------------------------
def cross_view_kl(view_logits, view_mask, temperature=1.0):
    """MSKD's L_mv: mean over ordered pairs i ≠ j of present views of KL(sg(p_j) ‖ p_i) -> (loss, aux).

    Each unordered pair contributes both directions, each with its target stop-gradiented (mutual learning).
    """
    b, v, _ = view_logits.shape
    chex.assert_shape(view_mask, (b, v))
    z = view_logits.astype(jnp.float32) / temperature
    kl = _kl_from_logits(sg(z[:, None, :]), z[:, :, None])  # [B, i, j]: KL(sg(p_j) ‖ p_i)
    pairs = view_mask[:, :, None] & view_mask[:, None, :] & ~jnp.eye(v, dtype=bool)
    loss, count = masked_mean(temperature**2 * kl, pairs)
    return loss, {"pairs": count}


def cross_view_infonce(view_embeddings, view_mask, temperature=0.1):
    """MSKD's L_con: InfoNCE between views of the same sample (positives) against views of other samples.

    `view_embeddings [B, V, D]` are L2-normalised here. For each anchor view and each positive (another present
    view of the same sample): `-log(e^{s_ap} / (e^{s_ap} + Σ_{n ∈ other samples} e^{s_an}))`, s = cos / τ;
    averaged over (anchor, positive) pairs -> (loss, aux).
    """
    b, v, d = view_embeddings.shape
    chex.assert_shape(view_mask, (b, v))
    x = view_embeddings.astype(jnp.float32)
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-8)
    flat, valid = x.reshape(b * v, d), view_mask.reshape(b * v)
    sim = flat @ flat.T / temperature  # [BV, BV]
    sample = jnp.repeat(jnp.arange(b), v)
    same = sample[:, None] == sample[None, :]
    both = valid[:, None] & valid[None, :]
    positive = same & both & ~jnp.eye(b * v, dtype=bool)
    negative = ~same & both
    # NOTE: a finite fill, not -inf: a row without negatives would otherwise give a NaN gradient. |sim| <= 1/τ,
    # so exp(-1e4) vanishes exactly in float32 and the value is unchanged.
    neg_lse = jax.nn.logsumexp(jnp.where(negative, sim, -1e4), axis=-1, keepdims=True)
    loss_pairs = jnp.logaddexp(sim, neg_lse) - sim  # -log softmax of the positive against the negatives
    loss, count = masked_mean(jnp.where(positive, loss_pairs, 0.0), positive)
    return loss, {"pairs": count}
