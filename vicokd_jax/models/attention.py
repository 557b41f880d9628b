"""Cross-modal attention: one stream queries another (METHOD.md, "Cross-modal attention").

    out = query + W_o · MHA(LN_q(query), LN_kv(context), key_mask)

Pre-LayerNorm on both streams, multi-head attention through `jax.nn.dot_product_attention` (fused kernels on GPU),
and a zero-initialised output projection added residually, so the block is exactly the identity on the query
stream at initialisation: a new modality can be attached to a trained stream without disturbing it.
"""
from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp


class CrossModalAttention(nn.Module):
    """`(query [B, Lq, Dq], context [B, Lk, Dk], context_mask [B, Lk] bool) -> [B, Lq, Dq]`.

    Attributes:
        num_heads: attention heads; `qkv_features` (default Dq) must divide by it.
        qkv_features: width of queries, keys and values.
        dropout: attention-output dropout in training.
    A query whose context has no valid key receives no update (the output equals the query).
    """

    num_heads: int
    qkv_features: int | None = None
    dropout: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, query, context, context_mask=None, train: bool = False):
        chex.assert_rank([query, context], 3)
        chex.assert_equal(query.shape[0], context.shape[0])
        batch, q_len, q_dim = query.shape
        k_len = context.shape[1]
        features = self.qkv_features or q_dim
        if features % self.num_heads:
            raise ValueError(f"CrossModalAttention: qkv_features={features} is not divisible by "
                             f"num_heads={self.num_heads}")
        head_dim = features // self.num_heads
        dense = lambda n, name, **kw: nn.DenseGeneral(  # noqa: E731
            n, dtype=self.dtype, param_dtype=self.param_dtype, name=name, **kw)

        q_in = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm_query")(query)
        kv_in = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm_context")(context)
        q = dense((self.num_heads, head_dim), "query")(q_in)  # [B, Lq, H, hd]
        k = dense((self.num_heads, head_dim), "key")(kv_in)
        v = dense((self.num_heads, head_dim), "value")(kv_in)

        if context_mask is None:
            context_mask = jnp.ones((batch, k_len), bool)
        chex.assert_shape(context_mask, (batch, k_len))
        mask = context_mask[:, None, None, :]  # [B, 1 head, 1 query, Lk]
        attended = jax.nn.dot_product_attention(q, k, v, mask=mask)  # [B, Lq, H, hd]
        update = dense(q_dim, "out", axis=(-2, -1), kernel_init=nn.initializers.zeros,
                       bias_init=nn.initializers.zeros)(attended)
        update = nn.Dropout(self.dropout, deterministic=not train)(update)
        # NOTE: softmax over an all-masked row is uniform over padding; such queries must get no update.
        has_context = context_mask.any(axis=-1)[:, None, None]
        return query + jnp.where(has_context, update, 0).astype(query.dtype)
