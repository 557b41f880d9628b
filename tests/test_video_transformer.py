"""VideoTransformer: shapes per attention mode, layouts (scan / remat), dtypes, input checks, sizes."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vicokd_jax.models.video_transformer import (
    VideoTransformer, count_params, sinusoid_table, stack_block_params, unstack_block_params)

MODES = ("joint", "divided", "factorised")
# Small enough to compile in about a second on CPU; every mode and option is still exercised.
SMALL = dict(num_classes=5, hidden_size=32, depth=2, num_heads=4, mlp_dim=64, tubelet=(2, 8, 8))


def _clip(n=2, t=4, size=16, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, t, size, size, 3), jnp.float32)


# Modules are hashable: cache variables and compiled functions so that tests share compilations.
@functools.lru_cache(maxsize=None)
def _init(module: VideoTransformer, shape=(2, 4, 16, 16, 3)):
    return jax.jit(module.init)(jax.random.key(1), jnp.zeros(shape, jnp.float32))


@functools.lru_cache(maxsize=None)
def _jitted_apply(module: VideoTransformer):
    return jax.jit(module.apply)


def _apply(module, variables, x):
    return _jitted_apply(module)(variables, x)


def _assert_outputs_close(a, b, atol):
    for key in ("frame_tokens", "clip", "logits"):
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), atol=atol, rtol=0, err_msg=key)


# ------------------------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize("attention", MODES)
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_tiny_preset_output_shapes(attention, pooling):
    """ViT-Ti widths: frame_tokens [N,T/t,D], clip [N,D], logits [N,C]; shapes only (no compute)."""
    module = VideoTransformer.from_preset("tiny", num_classes=10, attention=attention, pooling=pooling)
    x = jax.ShapeDtypeStruct((2, 8, 64, 64, 3), jnp.float32)
    out, _ = jax.eval_shape(lambda x: module.init_with_output(jax.random.key(0), x), x)
    assert out["frame_tokens"].shape == (2, 4, 192)
    assert out["clip"].shape == (2, 192)
    assert out["logits"].shape == (2, 10)
    assert all(v.dtype == jnp.float32 for v in out.values())


@pytest.mark.parametrize("tubelet_t", [1, 2, 4])
def test_frame_tokens_follow_tubelet_time(tubelet_t):
    module = VideoTransformer.from_preset("tiny", tubelet=(tubelet_t, 16, 16), attention="divided")
    x = jax.ShapeDtypeStruct((1, 8, 32, 32, 3), jnp.float32)
    out, _ = jax.eval_shape(lambda x: module.init_with_output(jax.random.key(0), x), x)
    assert out["frame_tokens"].shape == (1, 8 // tubelet_t, 192)
    assert out["logits"] is None  # num_classes=0: no head


def test_no_head_has_no_head_params():
    variables = jax.eval_shape(VideoTransformer(**{**SMALL, "num_classes": 0}).init, jax.random.key(0), _clip())
    assert "head" not in variables["params"]


@pytest.mark.parametrize("attention", MODES)
def test_all_modes_mix_time(attention):
    """Changing only the last frames changes the first step's token: every mode attends across time."""
    module = VideoTransformer(**SMALL, attention=attention)
    variables = _init(module)
    x = _clip()
    y = x.at[:, -2:].add(1.0)
    a, b = _apply(module, variables, x), _apply(module, variables, y)
    assert np.abs(np.asarray(a["frame_tokens"][:, 0] - b["frame_tokens"][:, 0])).max() > 1e-3
    assert np.isfinite(np.asarray(a["clip"])).all()


# ------------------------------------------------------------------------------------------------ layouts


@pytest.mark.parametrize("attention", MODES)
def test_scan_and_remat_match_plain_loop(attention):
    """scan (stacked params, here with remat inside) computes what the plain block loop computes."""
    plain = VideoTransformer(**SMALL, attention=attention)
    variables = _init(plain)
    x = _clip()
    ref = _apply(plain, variables, x)

    scanned = plain.clone(scan=True, remat=True)
    stacked = {"params": stack_block_params(variables["params"])}
    scan_shapes = jax.eval_shape(scanned.init, jax.random.key(0), x)
    assert jax.tree.map(lambda a: a.shape, stacked) == jax.tree.map(lambda a: a.shape, scan_shapes)
    assert count_params(stacked) == count_params(variables)
    _assert_outputs_close(_apply(scanned, stacked, x), ref, atol=1e-5)

    roundtrip = unstack_block_params(stacked["params"])
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), roundtrip, variables["params"]))


def test_scan_param_layout_is_documented_one():
    variables = jax.eval_shape(VideoTransformer(**SMALL, scan=True).init, jax.random.key(0), _clip())
    kernel = variables["params"]["encoder"]["blocks"]["attn"]["query"]["kernel"]
    assert kernel.shape == (2, 32, 4, 8)  # [depth, D, heads, head_dim]


def test_remat_gives_identical_values_and_gradients():
    module = VideoTransformer(**SMALL)
    variables = _init(module)
    x = _clip()

    def loss(params, m):
        return jnp.sum(m.apply({"params": params}, x)["clip"] ** 2)

    grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    (v0, g0), (v1, g1) = grad(variables["params"], module), grad(variables["params"], module.clone(remat=True))
    assert v0 == v1
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5), g0, g1)


# ------------------------------------------------------------------------------------------------ dtypes, train


def test_bf16_compute_keeps_f32_params():
    module = VideoTransformer(**SMALL, dtype=jnp.bfloat16)
    shapes = jax.eval_shape(module.init, jax.random.key(0), _clip())
    assert {leaf.dtype for leaf in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
    plain = module.clone(dtype=jnp.float32)
    variables = _init(plain)  # same parameter tree: dtype only changes the computation
    x = _clip()
    low = _apply(module, variables, x)
    high = _apply(plain, variables, x)
    assert low["clip"].dtype == jnp.float32  # outputs are returned in f32
    diff = np.abs(np.asarray(low["clip"] - high["clip"])).max()
    assert 0 < diff < 0.1  # bf16 really was used, and it stays close to f32


def test_train_mode_noise_comes_from_the_dropout_rng():
    module = VideoTransformer(**SMALL, dropout_rate=0.2, drop_path_rate=0.5)
    variables = _init(module.clone(dropout_rate=0.0, drop_path_rate=0.0))  # same parameter tree
    x = _clip()
    run = jax.jit(lambda v, x, k: module.apply(v, x, train=True, rngs={"dropout": k}))
    a, b = run(variables, x, jax.random.key(2)), run(variables, x, jax.random.key(3))
    assert np.abs(np.asarray(a["clip"] - b["clip"])).max() > 1e-4
    _assert_outputs_close(a, run(variables, x, jax.random.key(2)), atol=0)


# ------------------------------------------------------------------------------------------------ checks


@pytest.mark.parametrize("shape, words", [
    ((2, 4, 16, 16), "rank"),
    ((2, 4, 16, 16, 4), "3"),
    ((2, 5, 16, 16, 3), "divisible"),
    ((2, 4, 16, 12, 3), "(2, 4, 16, 12, 3)"),
])
def test_bad_input_shape_errors_name_the_shape(shape, words):
    module = VideoTransformer(**SMALL)
    with pytest.raises((ValueError, AssertionError), match=None) as info:
        jax.eval_shape(module.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))
    assert words in str(info.value)


def test_learned_table_rejects_other_grid():
    module = VideoTransformer(**SMALL)
    variables = _init(module)
    with pytest.raises(ValueError, match="pos_embedding"):
        module.apply(variables, _clip(size=32))


def test_unknown_option_is_rejected():
    with pytest.raises(ValueError, match="attention"):
        jax.eval_shape(VideoTransformer(**SMALL, attention="axial").init, jax.random.key(0), _clip())
    with pytest.raises(ValueError, match="preset"):
        VideoTransformer.from_preset("huge")


# ------------------------------------------------------------------------------------------------ sizes


def test_sinusoid_table_formula():
    """Entry (p, j) = sin / cos of p / 10000^(2 floor(j/2) / d) for even / odd j."""
    table = sinusoid_table(7, 6)
    assert table.shape == (7, 6) and table.dtype == np.float32
    p, j = 5, 3
    np.testing.assert_allclose(table[p, j], np.cos(p / 10000 ** (2 * (j // 2) / 6)), rtol=1e-6)
    np.testing.assert_allclose(table[p, j - 1], np.sin(p / 10000 ** (2 * (j // 2) / 6)), rtol=1e-6)
    np.testing.assert_array_equal(table[0], np.tile([0.0, 1.0], 3))


def test_vit_b_videomae_like_param_count():
    """ViT-B/16, 16 frames at 224², tubelet 2x16x16, 400 classes (VideoMAE-B layout): ~86.5 M params."""
    module = VideoTransformer.from_preset("base", num_classes=400, tubelet=(2, 16, 16), attention="joint",
                                          posemb="sincos", pooling="mean", qkv_bias="qv")
    x = jax.ShapeDtypeStruct((1, 16, 224, 224, 3), jnp.float32)
    n = count_params(jax.eval_shape(module.init, jax.random.key(0), x))
    assert 86e6 <= n <= 87e6, n
    # Per block: 4 D² attention + 3 biases (no key bias) + 2 LN + MLP (8 D² + 5 D).
    d = 768
    block = 4 * d * d + 3 * d + 4 * d + 8 * d * d + 5 * d
    assert n == 2 * 16 * 16 * 3 * d + d + 12 * block + 2 * d + d * 400 + 400
