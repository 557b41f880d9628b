"""Cross-modal attention: identity at init, key masking, and that it learns."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vicokd_jax.models.attention import CrossModalAttention

B, LQ, LK, D = 2, 5, 7, 16


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    query = jnp.asarray(rng.standard_normal((B, LQ, D)), jnp.float32)
    context = jnp.asarray(rng.standard_normal((B, LK, 24)), jnp.float32)
    block = CrossModalAttention(num_heads=4)
    variables = block.init(jax.random.key(0), query, context)
    # A trained-looking block: non-zero output projection.
    trained = jax.tree_util.tree_map_with_path(
        lambda path, x: (jax.random.normal(jax.random.key(len(path)), x.shape) * 0.3
                         if any(getattr(p, "key", None) == "out" for p in path) else x), variables)
    return block, variables, trained, query, context


def test_identity_on_the_query_stream_at_init(setup):
    block, variables, _, query, context = setup
    np.testing.assert_array_equal(block.apply(variables, query, context), query)
    assert not np.any(np.asarray(variables["params"]["out"]["kernel"]))


def test_gradient_reaches_the_zero_initialised_projection(setup):
    block, variables, _, query, context = setup
    grads = jax.grad(lambda v: jnp.sum(block.apply(v, query, context) ** 2))(variables)
    assert np.abs(np.asarray(grads["params"]["out"]["kernel"])).max() > 1e-4


def test_masked_keys_cannot_influence_the_output(setup):
    block, _, trained, query, context = setup
    mask = jnp.array([[True] * 4 + [False] * 3, [True] * 7])
    out = block.apply(trained, query, context, mask)
    assert np.abs(np.asarray(out - query)).max() > 1e-3  # the trained block does something
    changed = context.at[0, 4:].set(100.0)  # only masked keys of sample 0 change
    np.testing.assert_allclose(block.apply(trained, query, changed, mask), out, atol=1e-6)
    # Unmasked content does matter.
    assert np.abs(np.asarray(block.apply(trained, query, context.at[0, 0].set(5.0), mask) - out)).max() > 1e-4


def test_no_valid_key_means_no_update(setup):
    block, _, trained, query, context = setup
    mask = jnp.array([[False] * LK, [True] * LK])
    out = block.apply(trained, query, context, mask)
    np.testing.assert_array_equal(out[0], query[0])
    assert np.isfinite(np.asarray(out)).all()


def test_errors_name_the_problem(setup):
    _, _, _, query, context = setup
    with pytest.raises(ValueError, match="qkv_features=16 is not divisible by num_heads=3"):
        CrossModalAttention(num_heads=3).init(jax.random.key(0), query, context)
    with pytest.raises(AssertionError):
        CrossModalAttention(num_heads=4).init(jax.random.key(0), query, context, jnp.ones((B, LK + 1), bool))
