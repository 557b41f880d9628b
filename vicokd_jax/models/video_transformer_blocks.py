"""The transformer blocks of the video transformer: attention, MLP, one block, and the encoder (a stack of blocks).

Every block works on the carry ``(x [N,T',S,D], cls [N,1,D] | None)``: the token grid of ``T'`` time steps of
``S`` patches and an optional CLS token beside it (see :mod:`vicokd_jax.models.video_transformer` for the model
around them and its parameter tree). ``attention="joint"`` attends over all ``T'·S`` (+CLS) tokens;
``"divided"`` is TimeSformer's temporal-then-spatial block.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Dtype = Any

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    # NOTE: a GELU whose backward keeps only x (custom_vjp or remat) saves 110 MiB of a ViT-S step, but made two
    # CPU processes (gloo) issue mismatched collectives in tests/test_multiprocess.py, before
    # parallel.match_cpu_collectives; not retried since (docs/PERFORMANCE.md).
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # erf form (torch nn.GELU())
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),  # tanh form (HF gelu_new / gelu_fast)
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
}

_dense_init = nn.initializers.xavier_uniform()


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def join_cls(x: Array, cls: Array | None) -> Array:
    """Tokens ``[N,T',S,D]`` (+ CLS ``[N,1,D]``) -> one sequence ``[N,(1)+T'·S,D]``, time-major."""
    n, t, s, d = x.shape
    seq = x.reshape(n, t * s, d)
    return seq if cls is None else jnp.concatenate([cls, seq], axis=1)


def split_cls(seq: Array, num_prefix: int | bool, t: int, s: int) -> tuple[Array, Array | None]:
    """Inverse of :func:`join_cls`: ``[N,P+T'·S,D]`` -> (``[N,T',S,D]``, the ``P`` prefix tokens ``[N,P,D]`` or
    None when P = 0). P is 1 (True) for a CLS token; the audio transformer has 2 (CLS and distillation)."""
    c = int(num_prefix)
    cls = seq[:, :c] if c else None
    return seq[:, c:].reshape(seq.shape[0], t, s, seq.shape[-1]), cls


def drop_path(x: Array, rate: Array | float, rng: Array) -> Array:
    """Stochastic depth: zero whole samples (axis 0) with probability ``rate``, rescale the survivors."""
    keep = 1.0 - rate
    mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype)  # keep the compute dtype (keep is f32)


# --------------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention ``[B,L,D] -> [B,L,D]`` through ``jax.nn.dot_product_attention``.

    Projections are ``DenseGeneral`` with a ``(heads, head_dim)`` output (flax's attention layout), so rules
    that shard on heads find an explicit axis. ``qkv_bias``: ``"qkv"``, ``"qv"`` (VideoMAE: no key bias) or
    ``"none"``; the output projection always has a bias.
    """

    num_heads: int
    head_dim: int
    qkv_bias: str = "qkv"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        def project(name: str, bias: bool) -> Array:
            return nn.DenseGeneral(
                (self.num_heads, self.head_dim), use_bias=bias, kernel_init=_dense_init, dtype=self.dtype,
                param_dtype=self.param_dtype, name=name)(x)

        q = project("query", self.qkv_bias in ("qkv", "qv"))
        k = project("key", self.qkv_bias == "qkv")
        v = project("value", self.qkv_bias in ("qkv", "qv"))
        # NOTE: implementation=None lets XLA pick a fused (cuDNN flash) kernel on GPU for bf16/f16 inputs.
        y = jax.nn.dot_product_attention(q, k, v)  # [B,L,Hh,hd], scale 1/sqrt(hd)
        return nn.DenseGeneral(x.shape[-1], axis=(-2, -1), kernel_init=_dense_init, dtype=self.dtype,
                               param_dtype=self.param_dtype, name="out")(y)


class Mlp(nn.Module):
    """Token-wise MLP ``[...,D] -> [...,D]``: fc1 (``mlp_dim``) -> activation -> dropout -> fc2."""

    mlp_dim: int
    activation: str = "gelu"
    dropout_rate: float = 0.0
    deterministic: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        dense = lambda n, name: nn.Dense(n, kernel_init=_dense_init, dtype=self.dtype,  # noqa: E731
                                         param_dtype=self.param_dtype, name=name)
        y = ACTIVATIONS[self.activation](dense(self.mlp_dim, "fc1")(x))
        y = nn.Dropout(self.dropout_rate)(y, deterministic=self.deterministic)
        return dense(x.shape[-1], "fc2")(y)


class Block(nn.Module):
    """One pre-norm transformer block on the carry ``(x [N,T',S,D], cls [N,1,D] | None)``.

    ``attention="joint"``: LN -> MHSA over all tokens -> residual; LN -> MLP -> residual.
    ``attention="divided"``: first the TimeSformer temporal branch
    ``x += temporal_dense(temporal_attn(temporal_norm(x)))`` with attention over ``T'`` per patch (CLS does
    not take part), then spatial MHSA over ``[CLS] + S`` per time step (CLS copied to each step, its
    update averaged over steps), then the MLP on all tokens.

    ``__call__(carry, drop_path_rate) -> (carry, None)``: the signature ``nn.scan`` expects; the per-block
    stochastic-depth rate is the scanned input.
    """

    hidden_size: int
    num_heads: int
    head_dim: int
    mlp_dim: int
    attention: str = "joint"
    qkv_bias: str = "qkv"
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    usedrop_path: bool = False
    deterministic: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self) -> None:
        ln = lambda: nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype,  # noqa: E731
                                  param_dtype=self.param_dtype)
        attn = lambda: Attention(self.num_heads, self.head_dim, self.qkv_bias, dtype=self.dtype,  # noqa: E731
                                 param_dtype=self.param_dtype)
        self.norm1, self.attn, self.norm2 = ln(), attn(), ln()
        self.mlp = Mlp(self.mlp_dim, self.activation, self.dropout_rate, self.deterministic,
                       dtype=self.dtype, param_dtype=self.param_dtype)
        if self.attention == "divided":
            self.temporal_norm, self.temporal_attn = ln(), attn()
            self.temporal_dense = nn.Dense(self.hidden_size, kernel_init=_dense_init, dtype=self.dtype,
                                           param_dtype=self.param_dtype)
        self.dropout = nn.Dropout(self.dropout_rate)

    def _branch(self, y: Array, rate: Array | float) -> Array:
        """Residual-branch regularisation: dropout, then stochastic depth per sample (axis 0)."""
        y = self.dropout(y, deterministic=self.deterministic)
        if self.usedrop_path and not self.deterministic:
            y = drop_path(y, rate, self.make_rng("dropout"))
        return y

    def _temporal(self, x: Array, rate: Array | float) -> Array:
        """TimeSformer temporal branch on ``x [N,T',S,D]``: attention over T' for each patch position."""
        n, t, s, d = x.shape
        xt = x.transpose(0, 2, 1, 3).reshape(n * s, t, d)
        y = self.temporal_attn(self.temporal_norm(xt))
        y = y.reshape(n, s, t, d).transpose(0, 2, 1, 3)
        return x + self.temporal_dense(self._branch(y, rate))

    def _spatial(self, x: Array, cls: Array | None, rate: Array | float) -> tuple[Array, Array | None]:
        """Divided spatial branch: attention over ``[CLS] + S`` within each time step."""
        n, t, s, d = x.shape
        xs = x.reshape(n * t, s, d)
        if cls is not None:  # one CLS copy per time step, as TimeSformer
            xs = jnp.concatenate([jnp.broadcast_to(cls[:, None], (n, t, 1, d)).reshape(n * t, 1, d), xs], 1)
        y = self._branch(self.attn(self.norm1(xs)).reshape(n, t, -1, d), rate)
        c = int(cls is not None)
        x = x + y[:, :, c:]
        if cls is not None:
            cls = cls + jnp.mean(y[:, :, :1], axis=1)  # average the per-step CLS updates -> [N,1,D]
        return x, cls

    def __call__(self, carry: tuple[Array, Array | None], rate: Array | float) -> tuple[Any, None]:
        x, cls = carry
        _, t, s, _ = x.shape
        if self.attention == "divided":
            x = self._temporal(x, rate)
            x, cls = self._spatial(x, cls, rate)
            seq = join_cls(x, cls)
        else:
            seq = join_cls(x, cls)
            seq = seq + self._branch(self.attn(self.norm1(seq)), rate)
        seq = seq + self._branch(self.mlp(self.norm2(seq)), rate)
        return split_cls(seq, 0 if cls is None else cls.shape[1], t, s), None


class Encoder(nn.Module):
    """``depth`` blocks on the carry ``(x [N,T',S,D], cls [N,1,D] | None)``, returned with the same shapes.

    ``remat`` wraps each block in ``nn.remat`` (activations recomputed in the backward pass); ``scan`` runs
    one ``nn.scan``-ed block with parameters stacked on a leading ``[depth]`` axis (``blocks/...``) instead
    of ``block_{i}/...`` (faster compiles for deep models; same maths). Stochastic depth grows linearly from
    0 to ``drop_path_rate`` over the blocks.
    """

    depth: int
    hidden_size: int
    num_heads: int
    head_dim: int
    mlp_dim: int
    attention: str = "joint"
    qkv_bias: str = "qkv"
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    remat: bool = False
    scan: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, cls: Array | None, train: bool = False) -> tuple[Array, Array | None]:
        kwargs = dict(
            hidden_size=self.hidden_size, num_heads=self.num_heads, head_dim=self.head_dim, mlp_dim=self.mlp_dim,
            attention=self.attention, qkv_bias=self.qkv_bias, activation=self.activation,
            layer_norm_eps=self.layer_norm_eps, dropout_rate=self.dropout_rate,
            usedrop_path=self.drop_path_rate > 0, deterministic=not train, dtype=self.dtype,
            param_dtype=self.param_dtype)
        block = nn.remat(Block, prevent_cse=not self.scan) if self.remat else Block
        rates = np.linspace(0.0, self.drop_path_rate, self.depth, dtype=np.float32)
        if self.scan:
            stack = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                            in_axes=0, length=self.depth)
            (x, cls), _ = stack(**kwargs, name="blocks")((x, cls), jnp.asarray(rates))
        else:
            for i in range(self.depth):
                (x, cls), _ = block(**kwargs, name=f"block_{i}")((x, cls), float(rates[i]))
        return x, cls


__all__ = ["ACTIVATIONS", "Attention", "Mlp", "Block", "Encoder", "join_cls", "split_cls", "drop_path"]
