"""PatchEmbed against the strided convolution it replaces: same parameters, same values, same gradients."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vicokd_jax.models.patch_embed import PatchEmbed


@pytest.mark.parametrize("patch, shape", [
    ((2, 8, 8), (3, 16, 32, 32, 3)),     # the micro preset's tubelet on SynthMV clips
    ((2, 4, 4), (2, 4, 12, 8, 3)),       # non-square grid
    ((8, 8), (2, 17, 35, 1)),            # AST's plane with a remainder on both axes (dropped, as VALID)
])
def test_matches_the_strided_convolution(patch, shape):
    x = jax.random.normal(jax.random.key(1), shape)
    embed = PatchEmbed(16, patch)
    conv = nn.Conv(16, patch, strides=patch, padding="VALID")
    variables = embed.init(jax.random.key(0), x)
    conv_variables = conv.init(jax.random.key(0), x)
    # Same tree, shapes and initial values: checkpoints and converters written for the convolution still fit.
    assert jax.tree.structure(variables) == jax.tree.structure(conv_variables)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(conv_variables)):
        np.testing.assert_array_equal(a, b)
    variables = jax.tree.map(lambda v: v + jax.random.normal(jax.random.key(2), v.shape), variables)  # bias != 0
    out, ref = embed.apply(variables, x), conv.apply(variables, x)
    assert out.shape == ref.shape == (shape[0], *[s // p for s, p in zip(shape[1:-1], patch)], 16)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)

    def loss(module):
        return lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))
    grads, ref_grads = jax.grad(loss(embed), (0, 1))(variables, x), jax.grad(loss(conv), (0, 1))(variables, x)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_token_order_is_the_convolutions_by_hand():
    """One hand-built token: a one-hot kernel picks pixel (t=1, h=2, w=3, c=0) of the first patch."""
    x = jnp.arange(2 * 4 * 8 * 3, dtype=jnp.float32).reshape(1, 2, 4, 8, 3)
    kernel = np.zeros((2, 4, 4, 3, 1), np.float32)
    kernel[1, 2, 3, 0, 0] = 1.0
    out = PatchEmbed(1, (2, 4, 4)).apply({"params": {"kernel": kernel, "bias": np.zeros(1, np.float32)}}, x)
    assert out.shape == (1, 1, 1, 2, 1)
    assert float(out[0, 0, 0, 0, 0]) == float(x[0, 1, 2, 3, 0])
    assert float(out[0, 0, 0, 1, 0]) == float(x[0, 1, 2, 7, 0])  # the second patch along W


def test_bfloat16_compute_and_too_small_input():
    x = jnp.ones((1, 2, 8, 8, 3))
    embed = PatchEmbed(4, (2, 8, 8), dtype=jnp.bfloat16)
    variables = embed.init(jax.random.key(0), x)
    assert variables["params"]["kernel"].dtype == jnp.float32
    assert embed.apply(variables, x).dtype == jnp.bfloat16
    with pytest.raises(ValueError, match=r"PatchEmbed input \(1, 2, 4, 8, 3\).*at least one patch"):
        embed.init(jax.random.key(0), jnp.ones((1, 2, 4, 8, 3)))
