"""Video transformer encoder (ViViT / TimeSformer / VideoMAE family), channels-last, Flax Linen.

Input ``x`` is a float clip ``[N,T,H,W,3]`` already normalised by the caller. A tubelet embedding (a Conv
with kernel = stride = ``(t,ph,pw)``, computed as one product by ``models.patch_embed``) turns it into a token
grid ``[N,T',S,D]`` with ``T' = T/t`` and ``S = (H/ph)·(W/pw)``; the grid is the carry of every block, with
an optional CLS token ``[N,1,D]`` beside it.

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

This module is the model: tubelet embedding, position embeddings, the attention modes' wiring, pooling and the
head. The blocks and the encoder are in :mod:`vicokd_jax.models.video_transformer_blocks`, the parameter-layout
helpers in :mod:`vicokd_jax.models.video_transformer_params`; every name is importable from here.
"""
from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vicokd_jax.models.patch_embed import PatchEmbed
from vicokd_jax.models.video_transformer_blocks import ACTIVATIONS, Attention, Block, Encoder, Mlp, join_cls, split_cls
from vicokd_jax.models.video_transformer_params import count_params, stack_block_params, unstack_block_params

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
                                     ("activation", self.activation, tuple(ACTIVATIONS))):
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
        x, cls = split_cls(norm(join_cls(x, cls)), cls is not None, t, s)
        clip = cls[:, 0] if cls is not None else x[:, 0, 0]
        return jnp.mean(x.astype(jnp.float32), axis=2), clip

    # ---------------------------------------------------------------- forward

    def _embed(self, x: Array) -> Array:
        """Tubelet embedding ``[N,T,H,W,3] -> [N,T',S,D]`` (a Conv with kernel = stride = tubelet, as a product)."""
        y = PatchEmbed(self.hidden_size, tuple(self.tubelet), dtype=self.dtype, param_dtype=self.param_dtype,
                       name="patch_embed")(x)
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

    def _encode_visible(self, tokens: Array, visible: Array, train: bool) -> dict[str, Array]:
        """Masked encoding (VideoMAE): only the patch positions ``visible [N,K]`` of every time step (tube
        masking) enter the encoder, carrying their position embeddings; the rest are dropped, not zeroed."""
        if self.attention == "factorised":
            raise ValueError("VideoTransformer(attention='factorised') pools each time step to one token and "
                             "cannot encode a subset of patches; masked encoding needs 'joint' or 'divided'")
        n, _, s, _ = tokens.shape
        chex.assert_shape(visible, (n, None))
        cls = self._cls("cls_token", n)
        x, cls = self._add_posemb(tokens, cls)
        x = jnp.take_along_axis(x, visible[:, None, :, None].astype(jnp.int32), axis=2)  # [N,T',K,D]
        x, _ = self._encoder(self.depth, self.attention, "encoder")(x, cls, train)
        return {"patch_tokens": x.astype(jnp.float32)}

    @nn.compact
    def __call__(self, x: Array, train: bool = False, visible: Array | None = None) -> dict[str, Array | None]:
        """Encode a clip.

        Args:
          x: ``[N,T,H,W,3]`` float, normalised; T, H, W divisible by ``tubelet``.
          train: enables dropout / stochastic depth (``"dropout"`` rng needed when their rates are > 0).
          visible: optional ``[N,K]`` int indices into the ``S`` patch positions of a time step: masked
            encoding (VideoMAE tube masking), where only those positions of every step are encoded.
        Returns:
          ``{"frame_tokens": [N,T',D], "clip": [N,D], "logits": [N,num_classes] or None}``, float32,
          ``T' = T / tubelet[0]``. ``frame_tokens`` are per-step tokens (spatial mean of the final patch
          tokens; factorised: the temporal encoder's step tokens); ``clip`` is what the head sees.
          With ``visible``: ``{"patch_tokens": [N,T',K,D]}``, the encoder's output for the visible patches
          (before any readout norm); the parameters are the same as without it.
        """
        self._check_config()
        self._check_input(x)
        tokens = self._embed(x.astype(self.dtype))
        if visible is not None:
            return self._encode_visible(tokens, visible, train)
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

__all__ = [
    "VIDEO_TRANSFORMER_PRESETS", "VideoTransformer", "Encoder", "Block", "Attention", "Mlp", "sinusoid_table",
    "stack_block_params", "unstack_block_params", "count_params",
]
