"""The shared view operations (views.py) against hand-computed small examples; numpy (host metrics) and jax
(eager and jitted, as in the train step) give the same values."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vicokd_jax import views


def all_modules(fn, *arrays, **kwargs):
    """fn on numpy inputs, on jax inputs, and jitted on jax inputs -> three numpy results (module checked)."""
    host = fn(*arrays, **kwargs)
    assert isinstance(host, np.ndarray), type(host)
    device = fn(*map(jnp.asarray, arrays), **kwargs)
    assert isinstance(device, jax.Array), type(device)
    jitted = jax.jit(lambda *a: fn(*a, **kwargs))(*map(jnp.asarray, arrays))
    return host, np.asarray(device), np.asarray(jitted)


def assert_all_equal(results, expected):
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_array_module_follows_the_inputs():
    assert views.array_module(np.ones(2)) is np
    assert views.array_module(np.ones(2), jnp.ones(2)) is jnp
    jax.jit(lambda x: (assert_is_jnp(views.array_module(x)), x)[1])(jnp.ones(2))


def assert_is_jnp(module):
    assert module is jnp  # a tracer counts as a jax array


# ---------------------------------------------------------------------------------------- nearest frames
def test_nearest_indices_hand_values():
    # centre of output frame l in input frames is (l + 0.5)·T/L: T=8, L=4 -> 1, 3, 5, 7 (ties to the later frame)
    np.testing.assert_array_equal(views.nearest_indices(8, 4), [1, 3, 5, 7])
    np.testing.assert_array_equal(views.nearest_indices(2, 4), [0, 0, 1, 1])  # centres .25 .75 1.25 1.75
    np.testing.assert_array_equal(views.nearest_indices(3, 2), [0, 2])  # centres .75, 2.25
    np.testing.assert_array_equal(views.nearest_indices(5, 5), np.arange(5))
    with pytest.raises(ValueError, match="T=0"):
        views.nearest_indices(0, 4)


def test_resample_nearest_frame_labels_and_multi_hot_along_axis_1():
    labels = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [-1, -1, 2, 2, 3, 3, -1, 0]])
    assert_all_equal(all_modules(views.resample_nearest, labels, length=4), [[1, 3, 5, 7], [-1, 2, 3, 0]])
    multi_hot = np.eye(3, dtype=np.float32)[[[0, 1, 2]]]  # [1, T=3, C=3]
    assert_all_equal(all_modules(views.resample_nearest, multi_hot, length=2), multi_hot[:, [0, 2]])
    assert views.resample_nearest(labels, 8) is labels  # T == length: the input itself


def test_resample_nearest_exact_ties_go_to_the_later_frame_under_jit():
    # T=2, L=41: output frame 20's centre is 20.5·2/41 = 1.0 exactly -> frame 1. The float32 form
    # int((l + 0.5)·T/L) gives frame 0 here under jit (XLA divides by the constant L through its reciprocal).
    labels = np.array([[10, 11]])
    expected = np.where(np.arange(41) >= 20, 11, 10)[None]
    assert_all_equal(all_modules(views.resample_nearest, labels, length=41), expected)


# ---------------------------------------------------------------------------------------------- fusion
def test_fuse_frame_logits_max_over_present_views():
    frame_logits = np.array([
        [[[1., 5.], [2., 0.]], [[3., 4.], [-7., -1.]], [[9., 9.], [9., 9.]]],   # views 0, 1 present, 2 absent
        [[[0., 0.], [0., 0.]], [[2., 2.], [2., 2.]], [[-3., 1.], [4., -2.]]],   # only view 2
        [[[8., 8.], [8., 8.]]] * 3,                                             # no view present
    ], np.float32)  # [B=3, V=3, L=2, C=2]
    view_mask = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]], bool)
    expected = np.array([[[3., 5.], [2., 0.]], [[-3., 1.], [4., -2.]], [[-1e9, -1e9], [-1e9, -1e9]]], np.float32)
    results = all_modules(views.fuse_frame_logits, frame_logits, view_mask)
    assert_all_equal(results, expected)
    assert all(r.dtype == np.float32 for r in results)


# ---------------------------------------------------------------------------------------------- visibility
SCORE = np.array([[[.9, .9, 0., 0.], [.5, .5, .5, .49], [1., 1., 1., 1.]],
                  [[0., .6, .6, .6], [.2, .2, .2, .2], [.7, 0., .7, 0.]]], np.float32)  # [B=2, V=3, T=4]
MASK = np.array([[1, 1, 0], [1, 1, 1]], bool)


def test_visible_fraction_hand_values():
    # ≥ threshold is inclusive; absent views are 0 whatever their scores
    expected = [[2 / 4, 3 / 4, 0.], [3 / 4, 0., 2 / 4]]
    assert_all_equal(all_modules(views.visible_fraction, SCORE, MASK, score_threshold=0.5), expected)
    assert_all_equal(all_modules(views.visible_fraction, SCORE, MASK, score_threshold=0.65),
                     [[2 / 4, 0., 0.], [0., 0., 2 / 4]])


def pairs(*ij, v=3):
    out = np.zeros((v, v), bool)
    for i, j in ij:
        out[i, j] = True
    return out


def test_view_pairs_are_the_present_pairs_i_below_j():
    assert_all_equal(all_modules(views.view_pairs, MASK), [pairs((0, 1)), pairs((0, 1), (0, 2), (1, 2))])


def test_covisible_pairs_hand_values():
    # at 0.5 detected: s0 v0 {0,1}, v1 {0,1,2}, (v2 absent); s1 v0 {1,2,3}, v1 {}, v2 {0,2}
    # common frames: s0 (0,1) 2; s1 (0,1) 0, (0,2) 1 (frame 2), (1,2) 0
    assert_all_equal(all_modules(views.covisible_pairs, SCORE, MASK, score_threshold=0.5, min_frames=1),
                     [pairs((0, 1)), pairs((0, 2))])
    assert_all_equal(all_modules(views.covisible_pairs, SCORE, MASK, score_threshold=0.5, min_frames=2),
                     [pairs((0, 1)), pairs()])
    # at 0.65: s0 v0 {0,1}, v1 {}; s1 v0 {}, v2 {0,2} -> no pair
    assert_all_equal(all_modules(views.covisible_pairs, SCORE, MASK, score_threshold=0.65, min_frames=1),
                     [pairs(), pairs()])


# ---------------------------------------------------------------------------------------- score resampling
def test_resample_scores_chunk_means_and_interpolation():
    s = np.arange(8, dtype=np.float32).reshape(1, 1, 8)
    assert_all_equal(all_modules(views.resample_scores, s, length=4), [[[0.5, 2.5, 4.5, 6.5]]])
    assert_all_equal(all_modules(views.resample_scores, s, length=1), [[[3.5]]])
    assert views.resample_scores(s, 8) is s
    # not a multiple: linear resize (a jax array for either input), the same values for both
    host, device = views.resample_scores(s, 3), views.resample_scores(jnp.asarray(s), 3)
    assert host.shape == (1, 1, 3)
    np.testing.assert_array_equal(np.asarray(host), np.asarray(device))
    np.testing.assert_allclose(np.asarray(host)[0, 0], np.asarray(jax.image.resize(s[0, 0], (3,), "linear")))
