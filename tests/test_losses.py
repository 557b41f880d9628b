"""Every objective of METHOD.md against hand-computed values, and the mask / gradient properties that make
ViCoKD differ from plain KD (a wrong mask or normalisation must fail here)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vicokd_jax import losses as L


def np_softmax(z, axis=-1):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def np_kl(p, q):
    return np.sum(p * (np.log(p) - np.log(q)), -1)


def np_js_bits(p, q):
    m = 0.5 * (p + q)
    return 0.5 * (np_kl(p, m) + np_kl(q, m)) / np.log(2)


RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------------------------------- basics
def test_masked_mean_normalises_by_count_and_is_zero_when_empty():
    v = jnp.array([1.0, 2.0, 3.0, 10.0])
    assert float(L.masked_mean(v, jnp.array([1, 1, 1, 0], bool))[0]) == pytest.approx(2.0)
    loss, count = L.masked_mean(v, jnp.zeros(4, bool))
    assert float(loss) == 0.0 and float(count) == 0.0


def test_cross_entropy_hand_value_and_labeled_normalisation():
    logits = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    labels = jnp.array([2, 0, 1])
    mask = jnp.array([True, True, False])
    expected = np.mean([np.log(np.e + np.e**2 + np.e**3) - 3, np.log(3)])  # mean over the 2 labeled, not 3
    loss, aux = L.cross_entropy(logits, labels, mask)
    assert float(loss) == pytest.approx(expected, rel=1e-6) and float(aux["count"]) == 2
    assert float(L.cross_entropy(logits, labels, jnp.zeros(3, bool))[0]) == 0.0


def test_sigmoid_bce_hand_value():
    logits, targets = jnp.array([[0.0, 2.0]]), jnp.array([[1.0, 0.0]])
    expected = np.mean([np.log(2), np.log(1 + np.e**2)])
    assert float(L.sigmoid_bce(logits, targets)[0]) == pytest.approx(expected, rel=1e-6)


def test_visible_fraction_counts_detected_frames_and_zeroes_absent_views():
    score = jnp.array([[[0.9, 0.1, 0.5, 0.2], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]])
    frac = L.visible_fraction(score, jnp.array([[True, True, False]]), score_threshold=0.5)
    np.testing.assert_allclose(frac, [[0.5, 0.0, 0.0]])  # 0.5 counts as seen; view 2 is absent


def test_view_supervision_is_the_visibility_weighted_mean_of_per_view_ce():
    logits = jnp.array([[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 9.0, 0.0]]])  # [B=1, V=3, C=3]
    weights = jnp.array([[1.0, 0.25, 0.0]])                                 # view 2 never sees the person
    ce = [np.log(np.e**2 + 2) - 2, np.log(3)]
    loss, aux = L.view_supervision(logits, jnp.array([0]), weights)
    assert float(loss) == pytest.approx((1.0 * ce[0] + 0.25 * ce[1]) / 1.25, rel=1e-6)
    assert float(aux["count"]) == pytest.approx(1.25)
    grads = jax.grad(lambda z: L.view_supervision(z, jnp.array([0]), weights)[0])(logits)
    assert not np.any(np.asarray(grads[0, 2])) and np.all(np.isfinite(np.asarray(grads)))
    # Multi-hot targets: BCE, mean over classes, same weighting; no weight at all gives exactly 0.
    bce = L.view_supervision(logits, jnp.array([[1.0, 0.0, 0.0]]), weights)[0]
    expected = [np.mean([np.log1p(np.exp(-2.0)), np.log(2), np.log(2)]), np.log(2)]
    assert float(bce) == pytest.approx((expected[0] + 0.25 * expected[1]) / 1.25, rel=1e-6)
    assert float(L.view_supervision(logits, jnp.array([0]), jnp.zeros((1, 3)))[0]) == 0.0


# ---------------------------------------------------------------------------------------------------- KD
@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_kd_kl_is_tau2_kl_teacher_student(tau):
    s, t = RNG.standard_normal((5, 7)), 3 * RNG.standard_normal((5, 7))
    expected = tau**2 * np_kl(np_softmax(t / tau), np_softmax(s / tau))
    np.testing.assert_allclose(L.kd_kl(jnp.asarray(s), jnp.asarray(t), tau), expected, rtol=1e-5)
    grad_t = jax.grad(lambda t: L.kd_kl(jnp.asarray(s), t, tau).sum())(jnp.asarray(t))
    assert not np.any(np.asarray(grad_t))  # the teacher is stop-gradiented


def test_binary_kd_hand_value():
    s, t = jnp.array([[0.0, 1.0]]), jnp.array([[2.0, 1.0]])
    pt, ps = 1 / (1 + np.exp(-np.array([2.0, 1.0]))), 1 / (1 + np.exp(-np.array([0.0, 1.0])))
    kl = pt * np.log(pt / ps) + (1 - pt) * np.log((1 - pt) / (1 - ps))
    assert float(L.binary_kd(s, t)[0]) == pytest.approx(kl.mean(), rel=1e-5)
    assert float(L.binary_kd(t, t)[0]) == pytest.approx(0.0, abs=1e-7)


def test_dkd_decomposition_identity_at_tau_1():
    """KD = TCKD + (1 − p_target^teacher) · NCKD (Zhao et al. 2022, Eq. 7)."""
    s, t = RNG.standard_normal((16, 10)), 2 * RNG.standard_normal((16, 10))
    target = RNG.integers(0, 10, 16)
    _, aux = L.dkd(jnp.asarray(s), jnp.asarray(t), jnp.asarray(target), temperature=1.0)
    p_t_target = np_softmax(t)[np.arange(16), target]
    kd = np_kl(np_softmax(t), np_softmax(s))
    np.testing.assert_allclose(aux["tckd"] + (1 - p_t_target) * aux["nckd"], kd, rtol=1e-4, atol=1e-6)


def test_dkd_hand_value_and_weights():
    s, t, target = np.array([[1.0, 0.0, -1.0]]), np.array([[3.0, 1.0, 0.0]]), np.array([0])
    ps, pt = np_softmax(s)[0], np_softmax(t)[0]
    tckd = np_kl(np.array([pt[0], 1 - pt[0]]), np.array([ps[0], 1 - ps[0]]))
    nckd = np_kl(pt[1:] / pt[1:].sum(), ps[1:] / ps[1:].sum())
    loss, _ = L.dkd(jnp.asarray(s), jnp.asarray(t), jnp.asarray(target), alpha=1.0, beta=8.0, temperature=1.0)
    assert float(loss[0]) == pytest.approx(tckd + 8 * nckd, rel=1e-5)
    loss4, _ = L.dkd(jnp.asarray(s), jnp.asarray(t), jnp.asarray(target), alpha=2.0, beta=0.5, temperature=4.0)
    ps4, pt4 = np_softmax(s / 4)[0], np_softmax(t / 4)[0]
    expected4 = 16 * (2 * np_kl(np.array([pt4[0], 1 - pt4[0]]), np.array([ps4[0], 1 - ps4[0]]))
                      + 0.5 * np_kl(pt4[1:] / pt4[1:].sum(), ps4[1:] / ps4[1:].sum()))
    assert float(loss4[0]) == pytest.approx(expected4, rel=1e-5)


def test_dkd_finite_gradient_at_saturated_logits():
    s = jnp.array([[60.0, -60.0, 0.0], [-80.0, 80.0, 1.0]])
    t = jnp.array([[-70.0, 70.0, 0.0], [90.0, -90.0, 0.0]])
    grads = jax.grad(lambda s: L.dkd(s, t, jnp.array([0, 1]))[0].sum())(s)
    assert np.isfinite(np.asarray(grads)).all()


# ---------------------------------------------------------------------------------------------------- JS
def test_js_symmetric_bounded_and_hand_value():
    p, q = RNG.standard_normal((50, 6)) * 3, RNG.standard_normal((50, 6)) * 3
    js_pq, js_qp = L.js_divergence(jnp.asarray(p), jnp.asarray(q)), L.js_divergence(jnp.asarray(q), jnp.asarray(p))
    np.testing.assert_allclose(js_pq, js_qp, atol=1e-6)
    assert np.all((np.asarray(js_pq) >= 0) & (np.asarray(js_pq) <= 1))
    np.testing.assert_allclose(js_pq, np_js_bits(np_softmax(p), np_softmax(q)), rtol=1e-4, atol=1e-6)
    # p = (1/2, 1/2), q ≈ (1, 0): JS = 0.311278 bits.
    assert float(L.js_divergence(jnp.array([0.0, 0.0]), jnp.array([40.0, -40.0]))) == pytest.approx(0.311278,
                                                                                                  abs=1e-5)
    np.testing.assert_allclose(L.js_divergence(jnp.asarray(p), jnp.asarray(p)), 0.0, atol=1e-6)


def test_js_of_disjoint_one_hots_is_one_with_finite_gradients():
    p, q = jnp.array([[1e4, 0.0, 0.0]]), jnp.array([[0.0, 1e4, 0.0]])
    assert float(L.js_divergence(p, q)[0]) == pytest.approx(1.0, abs=1e-5)
    gp, gq = jax.grad(lambda p, q: L.js_divergence(p, q).sum(), argnums=(0, 1))(p, q)
    assert np.isfinite(np.asarray(gp)).all() and np.isfinite(np.asarray(gq)).all()


# ---------------------------------------------------------------------------------------------------- features
def test_feature_alignment_hand_values_mask_and_stop_gradient():
    s = jnp.array([[1.0, 0.0], [1.0, 1.0], [3.0, -1.0]])
    t = jnp.array([[0.0, 1.0], [2.0, 2.0], [-3.0, 1.0]])
    loss, aux = L.feature_alignment(s, t, jnp.array([True, True, False]))
    assert float(loss) == pytest.approx((1.0 + 0.0) / 2, abs=1e-6) and float(aux["count"]) == 2
    assert float(L.feature_alignment(s, t)[0]) == pytest.approx((1 + 0 + 2) / 3, abs=1e-6)
    g = jax.grad(lambda t: L.feature_alignment(s, t)[0])(t)
    assert not np.any(np.asarray(g))


def test_fitnet_hint_hand_value():
    s, t = jnp.array([[1.0, 2.0], [0.0, 0.0]]), jnp.array([[0.0, 0.0], [1.0, 1.0]])
    assert float(L.fitnet_hint(s, t)[0]) == pytest.approx((2.5 + 1.0) / 2)
    assert float(L.fitnet_hint(s, t, jnp.array([False, True]))[0]) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------- pseudo-labels
def test_pseudo_label_is_mean_ce_over_confident_unlabeled_only():
    s = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    t = jnp.array([[10.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 9.0], [9.0, 0.0, 0.0]])
    unlabeled = jnp.array([True, True, True, False])  # sample 3 is confident but labeled: excluded
    labels = jnp.array([0, 1, 1, 0])
    loss, aux = L.pseudo_label(s, t, 0.9, unlabeled, labels)
    ce = lambda z, y: np.log(np.exp(np.asarray(z)).sum()) - float(z[y])  # noqa: E731
    assert float(loss) == pytest.approx((ce(s[0], 0) + ce(s[2], 2)) / 2, rel=1e-6)
    assert float(aux["keep_rate"]) == pytest.approx(2 / 3) and float(aux["kept"]) == 2
    assert float(aux["precision"]) == pytest.approx(0.5)  # ŷ=0 right, ŷ=2 wrong


def test_pseudo_label_with_none_confident_is_zero_without_nan():
    s, t = jnp.asarray(RNG.standard_normal((4, 5))), jnp.zeros((4, 5))
    loss, aux = L.pseudo_label(s, t, 0.9)
    grad = jax.grad(lambda s: L.pseudo_label(s, t, 0.9)[0])(s)
    assert float(loss) == 0.0 and float(aux["keep_rate"]) == 0.0
    assert np.isfinite(np.asarray(grad)).all() and not np.any(np.asarray(grad))


# ---------------------------------------------------------------------------------------------------- view consistency
def _vc_data():
    """One sample, 3 views: views 0 and 1 see the person on frames 0-3, view 2 only on frames 4-7."""
    logits = jnp.asarray(RNG.standard_normal((1, 3, 5)) * 2, jnp.float32)
    score = np.zeros((1, 3, 8), np.float32)
    score[0, 0, :4] = score[0, 1, :4] = 0.9
    score[0, 2, 4:] = 0.9
    return logits, jnp.asarray(score), jnp.ones((1, 3), bool)


def test_vc_single_covisible_pair_equals_its_js():
    logits, score, mask = _vc_data()
    loss, aux = L.view_consistency(logits, score, mask)
    assert float(loss) == pytest.approx(float(L.js_divergence(logits[0, 0], logits[0, 1])), rel=1e-5)
    assert float(aux["pairs"]) == 1


def test_vc_never_covisible_view_contributes_nothing_and_gets_zero_gradient():
    logits, score, mask = _vc_data()
    grad = jax.grad(lambda z: L.view_consistency(z, score, mask)[0])(logits)
    assert not np.any(np.asarray(grad[0, 2]))
    assert np.abs(np.asarray(grad[0, :2])).max() > 1e-4
    changed = logits.at[0, 2].set(jnp.array([9.0, -9.0, 0.0, 1.0, 2.0]))
    assert float(L.view_consistency(changed, score, mask)[0]) == pytest.approx(
        float(L.view_consistency(logits, score, mask)[0]), abs=1e-7)
    # Without the detection mask (ablation) the view does take part.
    no_mask = jax.grad(lambda z: L.view_consistency(z, score, mask, use_detection_mask=False)[0])(logits)
    assert np.abs(np.asarray(no_mask[0, 2])).max() > 1e-4


def test_vc_absent_view_contributes_nothing():
    logits, _, _ = _vc_data()
    score = jnp.full((1, 3, 8), 0.9)  # everyone co-visible
    mask = jnp.array([[True, False, True]])
    loss, aux = L.view_consistency(logits, score, mask)
    assert float(aux["pairs"]) == 1
    assert float(loss) == pytest.approx(float(L.js_divergence(logits[0, 0], logits[0, 2])), rel=1e-5)
    grad = jax.grad(lambda z: L.view_consistency(z, score, mask)[0])(logits)
    assert not np.any(np.asarray(grad[0, 1]))


def test_vc_agreeing_views_give_zero():
    same = jnp.tile(jnp.asarray(RNG.standard_normal((2, 1, 6))), (1, 4, 1))
    loss, aux = L.view_consistency(same, jnp.ones((2, 4, 8)), jnp.ones((2, 4), bool))
    assert float(loss) == pytest.approx(0.0, abs=1e-6) and float(aux["pairs"]) == 12


def test_vc_confidence_weighted_average_by_hand_and_weights_carry_no_gradient():
    logits = jnp.asarray([[[4.0, 0.0, 0.0], [0.0, 1.0, 0.0], [3.0, 0.5, 0.0]]])
    score, mask = jnp.ones((1, 3, 4)), jnp.ones((1, 3), bool)
    p = np_softmax(np.asarray(logits[0]))
    kappa = p.max(-1)
    pairs = [(0, 1), (0, 2), (1, 2)]
    w = np.array([kappa[i] * kappa[j] for i, j in pairs])
    js = np.array([np_js_bits(p[i], p[j]) for i, j in pairs])
    loss, aux = L.view_consistency(logits, score, mask)
    assert float(loss) == pytest.approx(np.sum(w * js) / np.sum(w), rel=1e-4)
    assert float(aux["mean_weight"]) == pytest.approx(w.mean(), rel=1e-5)
    # Gradient equals that of the same expression with the weights frozen as constants.
    w_const = jnp.asarray(w, jnp.float32)
    idx_i, idx_j = jnp.array([0, 0, 1]), jnp.array([1, 2, 2])

    def frozen(z):
        return jnp.sum(w_const * L.js_divergence(z[0, idx_i], z[0, idx_j])) / (jnp.sum(w_const) + 1e-8)

    np.testing.assert_allclose(jax.grad(lambda z: L.view_consistency(z, score, mask)[0])(logits),
                               jax.grad(frozen)(logits), rtol=1e-4, atol=1e-7)
    # Without confidence weights it is the plain mean of the pairs' JS.
    assert float(L.view_consistency(logits, score, mask, confidence_weight=False)[0]) == pytest.approx(
        js.mean(), rel=1e-4)


def test_vc_normalises_by_contributing_pairs_not_batch_size():
    logits, score, mask = _vc_data()
    # A second sample with nobody visible: no pairs, so it must not dilute the loss.
    logits2 = jnp.concatenate([logits, jnp.asarray(RNG.standard_normal((1, 3, 5)), jnp.float32)])
    score2 = jnp.concatenate([score, jnp.zeros((1, 3, 8))])
    mask2 = jnp.ones((2, 3), bool)
    assert float(L.view_consistency(logits2, score2, mask2)[0]) == pytest.approx(
        float(L.view_consistency(logits, score, mask)[0]), rel=1e-6)


def test_vc_with_no_pairs_is_zero_with_finite_gradient_and_min_frames():
    logits, score, mask = _vc_data()
    zero_score = jnp.zeros_like(score)
    loss = L.view_consistency(logits, zero_score, mask)[0]
    grad = jax.grad(lambda z: L.view_consistency(z, zero_score, mask)[0])(logits)
    assert float(loss) == 0.0 and not np.any(np.asarray(grad))
    assert float(L.view_consistency(logits, score, mask, min_covisible_frames=4)[1]["pairs"]) == 1
    assert float(L.view_consistency(logits, score, mask, min_covisible_frames=5)[1]["pairs"]) == 0


def test_vc_kl_ablation_is_symmetric_kl():
    logits, score, mask = _vc_data()
    p0, p1 = np_softmax(np.asarray(logits[0, 0])), np_softmax(np.asarray(logits[0, 1]))
    expected = 0.5 * (np_kl(p0, p1) + np_kl(p1, p0))
    assert float(L.view_consistency(logits, score, mask, divergence="kl")[0]) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="'js' or 'kl'"):
        L.view_consistency(logits, score, mask, divergence="l2")


def test_frame_level_vc_uses_per_frame_covisibility():
    frame_logits = jnp.asarray(RNG.standard_normal((1, 2, 3, 4)), jnp.float32)
    score = jnp.asarray([[[0.9, 0.9, 0.1], [0.9, 0.1, 0.9]]])  # co-visible on frame 0 only
    loss, aux = L.frame_view_consistency(frame_logits, score, jnp.ones((1, 2), bool), confidence_weight=False)
    assert float(aux["pairs"]) == 1
    assert float(loss) == pytest.approx(float(L.js_divergence(frame_logits[0, 0, 0], frame_logits[0, 1, 0])),
                                        rel=1e-5)


# ---------------------------------------------------------------------------------------------------- cross-view
def test_cross_view_kl_hand_value_mask_and_stop_gradient():
    z = jnp.asarray(RNG.standard_normal((1, 3, 4)), jnp.float32)
    mask = jnp.array([[True, True, False]])
    p = np_softmax(np.asarray(z[0]))
    expected = 0.5 * (np_kl(p[1], p[0]) + np_kl(p[0], p[1]))
    loss, aux = L.cross_view_kl(z, mask)
    assert float(loss) == pytest.approx(expected, rel=1e-5) and float(aux["pairs"]) == 2
    # Gradient: each view is pulled towards the other as a constant target.
    p_const = jnp.asarray(p, jnp.float32)

    def frozen(z):
        logp = jax.nn.log_softmax(z[0])
        return 0.5 * (jnp.sum(p_const[1] * (jnp.log(p_const[1]) - logp[0]))
                      + jnp.sum(p_const[0] * (jnp.log(p_const[0]) - logp[1])))

    np.testing.assert_allclose(jax.grad(lambda z: L.cross_view_kl(z, mask)[0])(z), jax.grad(frozen)(z),
                               rtol=1e-4, atol=1e-7)


def _np_infonce(x, mask, tau):
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    b, v, _ = x.shape
    terms = []
    for bi in range(b):
        for i in range(v):
            for j in range(v):
                if i == j or not (mask[bi, i] and mask[bi, j]):
                    continue
                pos = np.exp(x[bi, i] @ x[bi, j] / tau)
                neg = sum(np.exp(x[bi, i] @ x[bk, k] / tau) for bk in range(b) if bk != bi
                          for k in range(v) if mask[bk, k])
                terms.append(-np.log(pos / (pos + neg)))
    return np.mean(terms) if terms else 0.0


def test_infonce_matches_brute_force_and_masks_views():
    x = RNG.standard_normal((3, 3, 8)).astype(np.float32)
    mask = np.array([[True, True, True], [True, False, True], [True, True, False]])
    loss, aux = L.cross_view_infonce(jnp.asarray(x), jnp.asarray(mask), 0.1)
    assert float(loss) == pytest.approx(_np_infonce(x, mask, 0.1), rel=1e-4)
    assert float(aux["pairs"]) == 6 + 2 + 2
    # Aligned views of the same sample and orthogonal samples: near-zero loss.
    aligned = np.repeat(np.eye(3, 8, dtype=np.float32)[:, None], 2, axis=1)
    assert float(L.cross_view_infonce(jnp.asarray(aligned), jnp.ones((3, 2), bool), 0.1)[0]) < 1e-3


def test_infonce_single_sample_is_zero_with_finite_gradient():
    x = jnp.asarray(RNG.standard_normal((1, 2, 4)), jnp.float32)
    loss = L.cross_view_infonce(x, jnp.ones((1, 2), bool))[0]
    grad = jax.grad(lambda x: L.cross_view_infonce(x, jnp.ones((1, 2), bool))[0])(x)
    assert float(loss) == pytest.approx(0.0, abs=1e-6) and np.isfinite(np.asarray(grad)).all()


def test_jit_equals_eager():
    logits, score, mask = _vc_data()
    for fn in (lambda z: L.view_consistency(z, score, mask)[0], lambda z: L.cross_view_kl(z, mask)[0],
               lambda z: L.cross_view_infonce(z, mask)[0], lambda z: L.js_divergence(z[0, 0], z[0, 1]),
               lambda z: L.kd_kl(z[0], z[0, ::-1], 4.0).sum(),
               lambda z: L.dkd(z[0], z[0, ::-1], jnp.array([0, 1, 2]))[0].sum()):
        assert float(jax.jit(fn)(logits)) == pytest.approx(float(fn(logits)), rel=1e-5, abs=1e-7)
