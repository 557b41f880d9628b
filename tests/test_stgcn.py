"""ST-GCN shapes, properties and input errors (tiny widths; reference depth and strides)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vicokd_jax.models import STGCN

# Reference depth and strides at tiny widths (shape tests), and a 3-block model for property tests: identity
# residual, strided projection residual and no residual are all exercised; depth changes none of the properties.
TINY_DEEP = dict(channels=(8, 8, 8, 8, 16, 16, 16, 32, 32, 32))
TINY = dict(channels=(8, 8, 16), strides=(1, 1, 2))


def _init(model, x):
    return jax.jit(lambda x: model.init(jax.random.key(0), x, method="encode"))(x)


@pytest.fixture(scope="module")
def tiny_vars():
    """Variables of STGCN(7, **TINY), shared: dropout, dtype and a dropped head need no new variables."""
    return _init(STGCN(7, **TINY), _sample())


def _apply(model, variables, x, **kwargs):
    return jax.jit(lambda v, x: model.apply(v, x, **kwargs))(variables, x)


@pytest.mark.parametrize("frames,out_frames", [(100, 25), (150, 38), (300, 75)])
def test_output_frames_follow_the_two_stride_2_blocks(frames, out_frames):
    model = STGCN(5, **TINY_DEEP)
    x = jnp.zeros((1, 2, frames, 25, 3))
    out = jax.eval_shape(lambda: model.apply(model.init(jax.random.key(0), x), x, method="encode"))
    assert out["frame_tokens"].shape == (1, out_frames, 32)
    assert out["feature"].shape == (1, 32) and out["logits"].shape == (1, 5)


def test_reference_parameter_count_and_structure():
    model = STGCN(60, layout="ntu-rgb+d")
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 2, 8, 25, 3))))
    assert sum(np.prod(p.shape) for p in jax.tree.leaves(variables["params"])) == 3_098_832
    blocks = variables["params"]
    assert "residual_conv" not in blocks["block_0"] and "residual_conv" not in blocks["block_1"]
    assert [i for i in range(10) if "residual_conv" in blocks[f"block_{i}"]] == [4, 7]
    assert blocks["block_3"]["edge_importance"].shape == (3, 25, 25)


def _sample(seed=0, shape=(2, 2, 20, 25, 3)):
    return jax.random.normal(jax.random.key(seed), shape)


def test_person_order_does_not_change_the_prediction(tiny_vars):
    model = STGCN(7, **TINY)
    x = _sample()
    variables = tiny_vars
    a = _apply(model, variables, x)
    b = _apply(model, variables, x[:, ::-1])
    np.testing.assert_allclose(a, b, atol=1e-5)
    # ...but the content of a person does matter.
    c = _apply(model, variables, x.at[:, 1].set(0.0))
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3


def test_frame_tokens_average_to_the_feature(tiny_vars):
    model = STGCN(0, **TINY)
    x = _sample()
    out = _apply(model, tiny_vars, x, method="encode")
    assert "logits" not in out
    np.testing.assert_allclose(out["frame_tokens"].mean(axis=1), out["feature"], atol=1e-6)
    with pytest.raises(ValueError, match="num_classes=0"):
        model.apply(tiny_vars, x)


def test_train_mode_updates_batch_statistics_and_uses_batch_stats(tiny_vars):
    model = STGCN(7, dropout=0.5, **TINY)
    x = 3.0 + 2.0 * _sample()
    variables = tiny_vars
    logits, updates = _apply(model, variables, x, train=True, mutable=["batch_stats"],
                             rngs={"dropout": jax.random.key(1)})
    old = variables["batch_stats"]["data_bn"]["mean"]
    new = updates["batch_stats"]["data_bn"]["mean"]
    # Running mean moves 10% of the way to the batch mean (torch momentum 0.1).
    batch_mean = np.asarray(x).reshape(-1, 25 * 3).mean(axis=0)
    np.testing.assert_allclose(new, 0.9 * np.asarray(old) + 0.1 * batch_mean, rtol=1e-4, atol=1e-5)
    assert logits.shape == (2, 7)
    # Eval mode is deterministic and differs from the train-mode output (running vs batch statistics).
    eval_logits = _apply(model, variables, x)
    np.testing.assert_array_equal(eval_logits, _apply(model, variables, x))
    assert np.abs(np.asarray(eval_logits) - np.asarray(logits)).max() > 1e-3


def test_bf16_compute_keeps_f32_params_and_stays_close(tiny_vars):
    x = _sample()
    f32 = STGCN(7, **TINY)
    bf16 = STGCN(7, dtype=jnp.bfloat16, **TINY)
    variables = tiny_vars
    bf16_params = jax.eval_shape(lambda: bf16.init(jax.random.key(0), x))["params"]
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(bf16_params))
    low = _apply(bf16, variables, x)
    assert low.dtype == jnp.bfloat16
    ref = _apply(f32, variables, x)
    np.testing.assert_allclose(np.asarray(low, np.float32), ref, atol=0.05 * float(np.abs(ref).max()) + 0.05)


@pytest.mark.parametrize("shape,match", [
    ((2, 20, 25, 3), r"expects x of shape \[N, M, T, 25, 3\], got \(2, 20, 25, 3\)"),
    ((2, 2, 20, 20, 3), r"expects x of shape \[N, M, T, 25, 3\], got \(2, 2, 20, 20, 3\)"),
    ((2, 2, 20, 25, 2), r"got \(2, 2, 20, 25, 2\)"),
])
def test_wrong_input_shape_names_expected_and_actual(shape, match, tiny_vars):
    model = STGCN(7, **TINY)
    variables = tiny_vars
    with pytest.raises(ValueError, match=match):
        model.apply(variables, jnp.zeros(shape))


def test_mvc_data_bn_checks_the_person_count():
    model = STGCN(3, data_bn="MVC", num_persons=2, **TINY)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), _sample()))
    assert variables["params"]["data_bn"]["scale"].shape == (2 * 25 * 3,)
    with pytest.raises(ValueError, match="M=2 persons"):
        model.apply(variables, jnp.zeros((1, 1, 20, 25, 3)))


def test_bad_architecture_arguments_are_reported():
    with pytest.raises(ValueError, match="one stride per block"):
        jax.eval_shape(lambda: STGCN(3, channels=(8, 8), strides=(1,)).init(jax.random.key(0), _sample()))
    with pytest.raises(ValueError, match="data_bn must be"):
        jax.eval_shape(lambda: STGCN(3, data_bn="NVC", **TINY).init(jax.random.key(0), _sample()))


@pytest.mark.parametrize("layout,joints", [("nw-ucla", 20), ("coco", 17)])
def test_other_layouts_run(layout, joints):
    model = STGCN(4, layout=layout, **TINY)
    x = _sample(shape=(1, 1, 12, joints, 3))
    assert _apply(model, _init(model, x), x).shape == (1, 4)
