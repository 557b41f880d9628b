"""Non-overlapping patch embedding as one matrix product.

``PatchEmbed(D, patch)`` computes what ``nn.Conv(D, patch, strides=patch, padding="VALID")`` computes, with the
same parameters (``kernel [*patch, C, D]``, ``bias [D]``), the same initialisers (LeCun normal, zeros) and so the
same values from the same rng: checkpoints, converters and sharding rules written for the convolution apply
unchanged. It exists for speed: XLA:CPU runs a strided convolution's kernel gradient about 4x slower than the
equivalent product (the micro student encoder's gradient: 136 -> 112 ms on 2 cores, docs/PERFORMANCE.md).
"""
from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


class PatchEmbed(nn.Module):
    """``[N, *sizes, C] -> [N, *grid, D]``, ``grid = sizes // patch`` (a remainder is dropped, as VALID padding).

    Each output token is the product of its flattened patch (patch axes in order, then channels) with the
    kernel reshaped to ``[prod(patch) * C, D]``, plus the bias.
    """

    features: int
    patch: tuple[int, ...]
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = len(self.patch)
        chex.assert_rank(x, k + 2)
        n, *sizes, c = x.shape
        grid = [size // p for size, p in zip(sizes, self.patch)]
        if not all(grid):
            raise ValueError(f"PatchEmbed input {tuple(x.shape)}: every axis must hold at least one patch "
                             f"{tuple(self.patch)}")
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (*self.patch, c, self.features),
                            self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        x = x[(slice(None),) + tuple(slice(0, g * p) for g, p in zip(grid, self.patch))]
        # [N, g1, p1, g2, p2, ..., C] -> [N, g1, g2, ..., p1, p2, ..., C] -> [N·prod(grid), prod(patch)·C]. A 2-D
        # product: the rank-5 one's sharded step, loaded from the persistent compilation cache on several CPU
        # devices, deadlocked in XLA's all-reduce rendezvous (docs/PERFORMANCE.md).
        split = x.reshape(n, *[v for g, p in zip(grid, self.patch) for v in (g, p)], c)
        order = (0, *range(1, 2 * k, 2), *range(2, 2 * k + 1, 2), 2 * k + 1)
        patches = split.transpose(order).reshape(-1, kernel.size // self.features)
        return (patches @ kernel.reshape(-1, self.features) + bias).reshape(n, *grid, self.features)


__all__ = ["PatchEmbed"]
