"""Video transformer encoder (ViViT / TimeSformer / VideoMAE family), channels-last, Flax Linen.

Input ``x`` is a float clip ``[N,T,H,W,3]`` already normalised by the caller. A tubelet embedding (a Conv
with kernel = stride = ``(t,ph,pw)``) turns it into a token grid ``[N,T',S,D]`` with ``T' = T/t`` and
``S = (H/ph)·(W/pw)``; the grid is the carry of every block, with an optional CLS token ``[N,1,D]`` beside it.

Attention modes (``attention=``):

* ``"joint"``      — space-time attention over all ``T'·S`` (+CLS) tokens (ViViT model 1, VideoMAE).
* ``"divided"``    — TimeSformer: per block, temporal attention over ``T'`` for each patch position
  (pre-LN, then a ``temporal_dense`` projection, residual), then spatial attention over ``S`` (+CLS) for each
  time step (the CLS token is copied to every time step and its updates are averaged back), then the MLP.
* ``"factorised"`` — ViViT model 2: a spatial encoder (``depth`` blocks) per time step, pooled to one token
  per step, then a temporal encoder (``temporal_depth`` blocks) over the ``T'`` step tokens.

Position embeddings (``posemb=``): ``"learned"`` (one table over ``[CLS] + T'·S`` tokens, ViViT),
``"sincos"`` (VideoMAE's fixed sinusoid table over the ``T'·S`` patch tokens; CLS gets none),
``"separable"`` (TimeSformer: a learned spatial table over ``[CLS] + S`` shared by all time steps plus a
learned time table over ``T'`` added to patch tokens only). ``"factorised"`` supports learned and sincos.

Pooling (``pooling=``): ``"cls"`` (final LayerNorm ``encoder_norm`` over the sequence, then the CLS token),
``"mean"`` (mean of the patch tokens, then LayerNorm ``fc_norm``, as VideoMAE), or ``"first"`` (no CLS;
``encoder_norm`` then the first patch token — HF VideoMAE with ``use_mean_pooling=False``).

Parameter tree (default, ``scan=False``; ``[...]`` are shapes, ``D`` width, ``Hh`` heads, ``hd`` head dim)::

    patch_embed/{kernel [t,ph,pw,3,D], bias [D]}
    cls_token [1,1,D]                                  # pooling == "cls"
    pos_embedding [1,c+T'·S,D] | [1,c+S,D]             # learned | separable / factorised (c = 1 with CLS)
    time_embedding [1,T',D]                            # separable
    encoder/block_{i}/                                 # factorised: spatial_encoder/..., temporal_encoder/...
        norm1, norm2 (LayerNorm scale/bias [D])
        attn/{query,key,value}/{kernel [D,Hh,hd], bias [Hh,hd]}, attn/out/{kernel [Hh,hd,D], bias [D]}
        mlp/fc1/{kernel [D,M], bias [M]}, mlp/fc2/{kernel [M,D], bias [D]}
        temporal_norm, temporal_attn/..., temporal_dense/{kernel [D,D], bias [D]}     # divided only
    encoder_norm | fc_norm                             # cls, first | mean
    head/{kernel [D,C], bias [C]}                      # num_classes > 0
    # factorised adds: spatial_norm | spatial_fc_norm, temporal_cls_token [1,1,D],
    #                  temporal_pos_embedding [1,c+T',D] (learned)

With ``scan=True`` each encoder's ``block_{i}`` subtrees are replaced by one ``blocks`` subtree whose leaves
carry a leading ``[depth]`` axis (``encoder/blocks/attn/query/kernel [depth,D,Hh,hd]``);
:func:`stack_block_params` / :func:`unstack_block_params` convert between the two layouts.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Dtype = Any

ATTENTION_MODES = ("joint", "divided", "factorised")
POOLING_MODES = ("cls", "mean", "first")
POSEMB_MODES = ("learned", "sincos", "separable")
QKV_BIAS_MODES = ("qkv", "qv", "none")

# ViT-Ti/S/B/L widths, depths and heads (Dosovitskiy et al.; Touvron et al. for Ti/S); MLP is 4x the width.
VIDEO_TRANSFORMER_PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=192, depth=12, num_heads=3, mlp_dim=768),
    "small": dict(hidden_size=384, depth=12, num_heads=6, mlp_dim=1536),
    "base": dict(hidden_size=768, depth=12, num_heads=12, mlp_dim=3072),
    "large": dict(hidden_size=1024, depth=24, num_heads=16, mlp_dim=4096),
}

_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # erf form (torch nn.GELU())
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),  # tanh form (HF gelu_new / gelu_fast)
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
}

_dense_init = nn.initializers.xavier_uniform()
_posemb_init = nn.initializers.normal(stddev=0.02)


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def sinusoid_table(num_positions: int, dim: int) -> np.ndarray:
    """VideoMAE's fixed sin-cos table ``[num_positions, dim]`` float32.

    Entry ``(p, j)`` is ``sin`` (even ``j``) or ``cos`` (odd ``j``) of ``p / 10000**(2·(j//2)/dim)``; computed
    in float64 like the reference so that imported checkpoints see the same numbers.
    """
    pos = np.arange(num_positions, dtype=np.float64)[:, None]
    j = np.arange(dim)
    angles = pos / np.power(10000.0, 2 * (j // 2) / dim)
    table = np.where(j % 2 == 0, np.sin(angles), np.cos(angles))
    return table.astype(np.float32)


def _join_cls(x: Array, cls: Array | None) -> Array:
    """Tokens ``[N,T',S,D]`` (+ CLS ``[N,1,D]``) -> one sequence ``[N,(1)+T'·S,D]``, time-major."""
    n, t, s, d = x.shape
    seq = x.reshape(n, t * s, d)
    return seq if cls is None else jnp.concatenate([cls, seq], axis=1)


def _split_cls(seq: Array, has_cls: bool, t: int, s: int) -> tuple[Array, Array | None]:
    """Inverse of :func:`_join_cls`: ``[N,(1)+T'·S,D]`` -> (``[N,T',S,D]``, ``[N,1,D]`` or None)."""
    c = int(has_cls)
    cls = seq[:, :1] if has_cls else None
    return seq[:, c:].reshape(seq.shape[0], t, s, seq.shape[-1]), cls


def _drop_path(x: Array, rate: Array | float, rng: Array) -> Array:
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
        y = _ACTIVATIONS[self.activation](dense(self.mlp_dim, "fc1")(x))
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
    use_drop_path: bool = False
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
        if self.use_drop_path and not self.deterministic:
            y = _drop_path(y, rate, self.make_rng("dropout"))
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
            seq = _join_cls(x, cls)
        else:
            seq = _join_cls(x, cls)
            seq = seq + self._branch(self.attn(self.norm1(seq)), rate)
        seq = seq + self._branch(self.mlp(self.norm2(seq)), rate)
        return _split_cls(seq, cls is not None, t, s), None


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
            use_drop_path=self.drop_path_rate > 0, deterministic=not train, dtype=self.dtype,
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


# --------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------


class VideoTransformer(nn.Module):
    """Video transformer encoder + optional linear head. See the module docstring for modes and params.

    Attributes:
      num_classes: head size; 0 -> no head and ``"logits"`` is None in the output.
      hidden_size, depth, num_heads, mlp_dim (default 4·hidden_size), head_dim (default hidden/heads).
      tubelet: ``(t, ph, pw)`` kernel = stride of the tubelet embedding (TimeSformer: ``(1,16,16)``).
      attention: ``"joint"`` | ``"divided"`` | ``"factorised"``.
      temporal_depth: blocks of the temporal encoder in ``"factorised"`` (default ``max(1, depth // 3)``).
      pooling: ``"cls"`` | ``"mean"`` | ``"first"``.    posemb: ``"learned"`` | ``"sincos"`` | ``"separable"``.
      qkv_bias: ``"qkv"`` | ``"qv"`` | ``"none"``.      activation: ``"gelu"`` | ``"gelu_tanh"`` | ...
      layer_norm_eps: eps of every LayerNorm; pool_norm_eps: eps of ``fc_norm`` (default layer_norm_eps).
      dropout_rate, drop_path_rate: regularisation (need a ``"dropout"`` rng when ``train`` and > 0).
      remat, scan: memory / compile-time options (see :class:`Encoder`).
      dtype: compute dtype (e.g. bf16); param_dtype: parameter dtype (f32). Outputs are returned in f32.
    """

    num_classes: int = 0
    hidden_size: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_dim: int | None = None
    head_dim: int | None = None
    tubelet: tuple[int, int, int] = (2, 16, 16)
    attention: str = "joint"
    temporal_depth: int | None = None
    pooling: str = "cls"
    posemb: str = "learned"
    qkv_bias: str = "qkv"
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    pool_norm_eps: float | None = None
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    remat: bool = False
    scan: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> "VideoTransformer":
        """``VideoTransformer.from_preset("base", num_classes=400, attention="divided", ...)``."""
        if preset not in VIDEO_TRANSFORMER_PRESETS:
            raise ValueError(f"unknown video transformer preset {preset!r}; "
                             f"choose one of {sorted(VIDEO_TRANSFORMER_PRESETS)}")
        return cls(**{**VIDEO_TRANSFORMER_PRESETS[preset], **overrides})

    # ---------------------------------------------------------------- checks

    def _check_config(self) -> None:
        for name, value, allowed in (("attention", self.attention, ATTENTION_MODES),
                                     ("pooling", self.pooling, POOLING_MODES),
                                     ("posemb", self.posemb, POSEMB_MODES),
                                     ("qkv_bias", self.qkv_bias, QKV_BIAS_MODES),
                                     ("activation", self.activation, tuple(_ACTIVATIONS))):
            if value not in allowed:
                raise ValueError(f"VideoTransformer.{name}={value!r}; expected one of {allowed}")
        if self.attention == "factorised" and self.posemb == "separable":
            raise ValueError("posemb='separable' is for joint/divided attention; factorised attention has "
                             "its own spatial and temporal tables (use 'learned' or 'sincos')")
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")

    def _check_input(self, x: Array) -> None:
        """``x`` must be ``[N,T,H,W,3]`` with T, H, W divisible by the tubelet ``(t,ph,pw)``."""
        chex.assert_rank(x, 5)
        chex.assert_axis_dimension(x, 4, 3)
        t, ph, pw = self.tubelet
        _, frames, height, width, _ = x.shape
        if frames % t or height % ph or width % pw:
            raise ValueError(
                f"VideoTransformer input [N,T,H,W,3] = {tuple(x.shape)}: T, H, W must be divisible by the "
                f"tubelet (t,ph,pw) = {tuple(self.tubelet)}; got T%{t}={frames % t}, H%{ph}={height % ph}, "
                f"W%{pw}={width % pw}")

    # ---------------------------------------------------------------- pieces

    def _encoder(self, depth: int, attention: str, name: str) -> Encoder:
        d = self.hidden_size
        return Encoder(
            depth=depth, hidden_size=d, num_heads=self.num_heads, head_dim=self.head_dim or d // self.num_heads,
            mlp_dim=self.mlp_dim or 4 * d, attention=attention, qkv_bias=self.qkv_bias,
            activation=self.activation, layer_norm_eps=self.layer_norm_eps, dropout_rate=self.dropout_rate,
            drop_path_rate=self.drop_path_rate, remat=self.remat, scan=self.scan, dtype=self.dtype,
            param_dtype=self.param_dtype, name=name)

    def _table(self, name: str, shape: tuple[int, ...]) -> Array:
        """A learned embedding table; a clear error when a checkpoint's table does not fit the input grid."""
        if self.has_variable("params", name):
            have = self.get_variable("params", name).shape
            if tuple(have) != tuple(shape):
                raise ValueError(
                    f"VideoTransformer param {name!r} has shape {tuple(have)} but this input's token grid needs "
                    f"{tuple(shape)}: feed clips of the size the model was built for (tubelet {self.tubelet})")
        return self.param(name, _posemb_init, shape, self.param_dtype).astype(self.dtype)

    def _cls(self, name: str, n: int) -> Array | None:
        """CLS token ``[n,1,D]`` (zeros-initialised) when pooling is ``"cls"``, else None."""
        if self.pooling != "cls":
            return None
        tok = self.param(name, nn.initializers.zeros, (1, 1, self.hidden_size), self.param_dtype)
        return jnp.broadcast_to(tok.astype(self.dtype), (n, 1, self.hidden_size))

    def _add_posemb(self, x: Array, cls: Array | None, prefix: str = "") -> tuple[Array, Array | None]:
        """Add position embeddings to ``x [N,T',S,D]`` and ``cls [N,1,D]`` according to ``posemb``."""
        _, t, s, d = x.shape
        c = int(cls is not None)
        if self.posemb == "sincos":
            return x + jnp.asarray(sinusoid_table(t * s, d), self.dtype).reshape(1, t, s, d), cls
        if self.posemb == "learned":
            table = self._table(prefix + "pos_embedding", (1, c + t * s, d))
            pos = table[:, c:].reshape(1, t, s, d)
        else:  # separable: spatial table shared by all steps + time table (TimeSformer)
            table = self._table(prefix + "pos_embedding", (1, c + s, d))
            time = self._table(prefix + "time_embedding", (1, t, d))
            pos = table[:, None, c:] + time[:, :, None]
        return x + pos, (cls + table[:, :1] if c else None)

    def _readout(self, x: Array, cls: Array | None, prefix: str = "") -> tuple[Array, Array]:
        """Encoder output -> (per-step tokens ``[N,T',D]``, pooled clip embedding ``[N,D]``).

        ``cls``/``first``: LayerNorm ``encoder_norm`` over all tokens; per-step tokens are the spatial mean of
        the normalised patch tokens; the clip is the CLS (or first patch) token. ``mean``: per-step spatial
        means and their overall mean, both through LayerNorm ``fc_norm`` (VideoMAE's head).
        """
        n, t, s, d = x.shape
        if self.pooling == "mean":
            eps = self.layer_norm_eps if self.pool_norm_eps is None else self.pool_norm_eps
            norm = nn.LayerNorm(epsilon=eps, dtype=self.dtype, param_dtype=self.param_dtype, name=prefix + "fc_norm")
            steps = jnp.mean(x.astype(jnp.float32), axis=2)  # [N,T',D]; equal counts -> mean of means
            return norm(steps), norm(jnp.mean(steps, axis=1))
        norm = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype,
                            name=prefix + "encoder_norm")
        x, cls = _split_cls(norm(_join_cls(x, cls)), cls is not None, t, s)
        clip = cls[:, 0] if cls is not None else x[:, 0, 0]
        return jnp.mean(x.astype(jnp.float32), axis=2), clip

    # ---------------------------------------------------------------- forward

    def _embed(self, x: Array) -> Array:
        """Tubelet embedding ``[N,T,H,W,3] -> [N,T',S,D]`` (Conv, kernel = stride = tubelet)."""
        y = nn.Conv(self.hidden_size, kernel_size=self.tubelet, strides=self.tubelet, padding="VALID",
                    dtype=self.dtype, param_dtype=self.param_dtype, name="patch_embed")(x)
        n, t, h, w, d = y.shape
        return y.reshape(n, t, h * w, d)

    def _joint_or_divided(self, x: Array, train: bool) -> tuple[Array, Array]:
        cls = self._cls("cls_token", x.shape[0])
        x, cls = self._add_posemb(x, cls)
        x, cls = self._encoder(self.depth, self.attention, "encoder")(x, cls, train)
        return self._readout(x, cls)

    def _factorised(self, x: Array, train: bool) -> tuple[Array, Array]:
        """ViViT model 2: spatial encoder per step -> one token per step -> temporal encoder."""
        n, t, s, d = x.shape
        frames = x.reshape(n * t, 1, s, d)  # each time step is its own clip of one step
        cls = self._cls("cls_token", n * t)
        frames, cls = self._add_posemb(frames, cls)
        frames, cls = self._encoder(self.depth, "joint", "spatial_encoder")(frames, cls, train)
        _, step = self._readout(frames, cls, prefix="spatial_")  # [N·T',D]
        steps = step.astype(self.dtype).reshape(n, t, 1, d)
        tcls = self._cls("temporal_cls_token", n)
        steps, tcls = self._add_posemb(steps, tcls, prefix="temporal_")
        temporal_depth = self.temporal_depth or max(1, self.depth // 3)
        steps, tcls = self._encoder(temporal_depth, "joint", "temporal_encoder")(steps, tcls, train)
        return self._readout(steps, tcls)

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> dict[str, Array | None]:
        """Encode a clip.

        Args:
          x: ``[N,T,H,W,3]`` float, normalised; T, H, W divisible by ``tubelet``.
          train: enables dropout / stochastic depth (``"dropout"`` rng needed when their rates are > 0).
        Returns:
          ``{"frame_tokens": [N,T',D], "clip": [N,D], "logits": [N,num_classes] or None}``, float32,
          ``T' = T / tubelet[0]``. ``frame_tokens`` are per-step tokens (spatial mean of the final patch
          tokens; factorised: the temporal encoder's step tokens); ``clip`` is what the head sees.
        """
        self._check_config()
        self._check_input(x)
        tokens = self._embed(x.astype(self.dtype))
        if self.attention == "factorised":
            frame_tokens, clip = self._factorised(tokens, train)
        else:
            frame_tokens, clip = self._joint_or_divided(tokens, train)
        logits = None
        if self.num_classes:
            logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, dtype=self.dtype,
                              param_dtype=self.param_dtype, name="head")(clip).astype(jnp.float32)
        return {"frame_tokens": frame_tokens.astype(jnp.float32), "clip": clip.astype(jnp.float32),
                "logits": logits}


# --------------------------------------------------------------------------------------------------------
# Parameter layouts
# --------------------------------------------------------------------------------------------------------

_BLOCK_RE = re.compile(r"^block_(\d+)$")


def stack_block_params(params: Any) -> dict:
    """Non-scan layout -> ``scan=True`` layout: every ``{block_0, ..., block_{L-1}}`` group becomes
    ``blocks`` with leaves stacked on a new leading ``[L]`` axis. Other entries are copied unchanged."""
    if not isinstance(params, dict) and not hasattr(params, "items"):
        return params
    out, blocks = {}, {}
    for key, value in params.items():
        m = _BLOCK_RE.match(key)
        if m:
            blocks[int(m.group(1))] = value
        else:
            out[key] = stack_block_params(value)
    if blocks:
        if sorted(blocks) != list(range(len(blocks))):
            raise ValueError(f"block indices are not 0..L-1: {sorted(blocks)}")
        out["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *[blocks[i] for i in range(len(blocks))])
    return out


def unstack_block_params(params: Any) -> dict:
    """Inverse of :func:`stack_block_params`: ``blocks`` (leading ``[L]`` axis) -> ``block_0..block_{L-1}``."""
    if not isinstance(params, dict) and not hasattr(params, "items"):
        return params
    out = {}
    for key, value in params.items():
        if key == "blocks":
            depth = jax.tree.leaves(value)[0].shape[0]
            for i in range(depth):
                out[f"block_{i}"] = jax.tree.map(lambda a, i=i: a[i], value)
        else:
            out[key] = unstack_block_params(value)
    return out


def count_params(tree: Any) -> int:
    """Number of scalars in a pytree of arrays or ``jax.ShapeDtypeStruct``s."""
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


__all__ = [
    "VIDEO_TRANSFORMER_PRESETS", "VideoTransformer", "Encoder", "Block", "Attention", "Mlp", "sinusoid_table",
    "stack_block_params", "unstack_block_params", "count_params",
]
