"""The ST-GCN compute kernels equal their straightforward definitions, values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from vicokd_jax.models import stgcn
from vicokd_jax.models.graph import get_graph


def _reference_conv(x, kernel, stride):
    pad = (kernel.shape[0] - 1) // 2
    return lax.conv_general_dilated(x, kernel, (stride, 1), ((pad, pad), (0, 0)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("channels", [8, 32])
@pytest.mark.parametrize("stride,frames", [(1, 12), (2, 12), (2, 11), (3, 13), (3, 14)])
def test_temporal_conv_custom_vjp_equals_autodiff(channels, stride, frames):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, frames, 5, channels)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((9, 1, channels, 16)) / np.sqrt(9 * channels), jnp.float32)
    dy = jnp.asarray(rng.standard_normal(_reference_conv(x, kernel, stride).shape), jnp.float32)
    ours, vjp = jax.vjp(lambda a, w: stgcn.temporal_conv(a, w, stride), x, kernel)
    ref, ref_vjp = jax.vjp(lambda a, w: _reference_conv(a, w, stride), x, kernel)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    for got, want, name in zip(vjp(dy), ref_vjp(dy), ("dx", "dkernel")):
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("batch,chunks", [(1, 4), (4, 4), (6, 4), (5, 2), (8, 1)])
@pytest.mark.parametrize("stride", [1, 2])
def test_kernel_grad_in_batch_chunks_equals_autodiff(batch, chunks, stride):
    # chunks that do not divide the batch fall back to the largest divisor below them (6 -> 3, 5 -> 1).
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((batch, 11, 5, 8)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((9, 1, 8, 16)) / np.sqrt(72), jnp.float32)
    dy = jnp.asarray(rng.standard_normal(_reference_conv(x, kernel, stride).shape), jnp.float32)
    want = jax.vjp(lambda w: _reference_conv(x, w, stride), kernel)[1](dy)[0]
    got = stgcn.kernel_grad(x, dy, 9, stride, chunks=chunks)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


def test_kernel_grad_on_a_sharded_batch_loops_locally():
    # 32 rows over the tests' 8 devices: 4 chunks of one row per device. The strided split keeps every chunk
    # sharded like the batch, so the only collective is the all-reduce of the gradient; contiguous chunks made XLA
    # all-gather x and dy (a whole batch per device).
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    assert jax.device_count() == 8  # tests/conftest.py
    rows = NamedSharding(Mesh(jax.devices(), ("data",)), PartitionSpec("data"))
    rng = np.random.default_rng(2)
    x = jax.device_put(jnp.asarray(rng.standard_normal((32, 11, 5, 8)), jnp.float32), rows)
    dy = jax.device_put(jnp.asarray(rng.standard_normal((32, 11, 5, 16)), jnp.float32), rows)
    grad = jax.jit(lambda a, b: stgcn.kernel_grad(a, b, 9, 1))
    hlo = grad.lower(x, dy).compile().as_text()
    assert "all-gather" not in hlo and "all-reduce" in hlo
    assert "while" in hlo  # it did chunk
    want = stgcn.kernel_grad_im2col(np.asarray(x), np.asarray(dy), 9, 1)
    np.testing.assert_allclose(grad(x, dy), want, atol=2e-4, rtol=1e-4)


def test_graph_conv_equals_conv_then_aggregate():
    rng = np.random.default_rng(1)
    adjacency = jnp.asarray(get_graph("nturgb+d").A * rng.uniform(0.5, 1.5, (3, 25, 25)), jnp.float32)
    x = jnp.asarray(rng.standard_normal((2, 4, 25, 6)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((6, 3 * 10)), jnp.float32)
    bias = jnp.asarray(rng.standard_normal(3 * 10), jnp.float32)

    def reference(x, kernel, bias, adjacency):
        y = (x @ kernel + bias).reshape(2, 4, 25, 3, 10)
        return jnp.einsum("btvkc,kvw->btwc", y, adjacency)

    np.testing.assert_allclose(stgcn.graph_conv(x, adjacency, kernel, bias), reference(x, kernel, bias, adjacency),
                               atol=1e-5)
    loss = lambda f: lambda *a: (f(*a) ** 2).sum()  # noqa: E731
    ours = jax.grad(loss(lambda x, k, b, a: stgcn.graph_conv(x, a, k, b)), argnums=(0, 1, 2, 3))(
        x, kernel, bias, adjacency)
    ref = jax.grad(loss(reference), argnums=(0, 1, 2, 3))(x, kernel, bias, adjacency)
    for got, want in zip(ours, ref):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
