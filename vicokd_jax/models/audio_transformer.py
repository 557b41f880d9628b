"""AST, the Audio Spectrogram Transformer (Gong et al., 2021), as a pure Flax module.

    x [N, max_length, num_mel_bins] log-mel (vicokd_jax.data.audio.log_mel)
      -> patches: Conv 16x16 over the (frequency, time) plane with strides (frequency_stride, time_stride)
         [N, F'·T', D], frequency-major (as HF's Conv2d over [N, 1, F, T] then flatten)
      -> [CLS, DIST] + patches + learned positions -> pre-norm blocks (joint attention) -> LayerNorm
      -> clip = (CLS + DIST) / 2; frame_tokens = patch tokens averaged over frequency [N, T', D]; logits

Parameter tree: `patch_embed`, `cls_token`, `dist_token`, `pos_embedding`, `encoder/block_{i}` (the video
transformer's blocks: `norm1`, `attn/{query,key,value,out}`, `norm2`, `mlp/{fc1,fc2}`), `encoder_norm`, and with
classes `head_norm`, `head`. `vk.convert.audio_transformer_from_hf` fills it from HF's ASTForAudioClassification.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vicokd_jax.models.patch_embed import PatchEmbed
from vicokd_jax.models.video_transformer_blocks import Encoder

Dtype = Any


def check_windows(encoder: str, x, max_length: int, num_mel_bins: int) -> None:
    """ValueError naming the shapes unless `x` is `[N, max_length, num_mel_bins]` (config `data.audio_frames`,
    `data.audio_mel_bins`)."""
    if x.ndim != 3 or tuple(x.shape[1:]) != (max_length, num_mel_bins):
        raise ValueError(f"{encoder}: expected log-mel windows [N, {max_length}, {num_mel_bins}] (frames x mel bins: "
                         f"config data.audio_frames x data.audio_mel_bins), got shape {tuple(x.shape)}")


class AudioTransformer(nn.Module):
    """`apply(variables, x [N, max_length, num_mel_bins], train=False) -> {"tokens" [N, 2+F'·T', D],
    "frame_tokens" [N, T', D], "clip" [N, D], "logits" [N, C] | None}`; `num_classes=0` is headless."""

    num_classes: int = 0
    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    patch_size: int = 16
    frequency_stride: int = 10
    time_stride: int = 10
    num_mel_bins: int = 128
    max_length: int = 1024
    activation: str = "gelu"
    layer_norm_eps: float = 1e-12
    qkv_bias: bool = True
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def grid(self) -> tuple[int, int]:
        """(F', T'): patch rows along frequency and columns along time."""
        return ((self.num_mel_bins - self.patch_size) // self.frequency_stride + 1,
                (self.max_length - self.patch_size) // self.time_stride + 1)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict:
        check_windows("AudioTransformer", x, self.max_length, self.num_mel_bins)
        n, d = x.shape[0], self.hidden_size
        f, t = self.grid()
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        plane = jnp.swapaxes(x, 1, 2)[..., None].astype(self.dtype)  # [N, F, T, 1]
        size, strides = (self.patch_size, self.patch_size), (self.frequency_stride, self.time_stride)
        if strides == size:  # non-overlapping patches (ast_micro, ast_small): the same maths as one product
            patches = PatchEmbed(d, size, name="patch_embed", **kw)(plane)  # [N, F', T', D]
        else:
            patches = nn.Conv(d, size, strides=strides, padding="VALID", name="patch_embed", **kw)(plane)
        seq = patches.reshape(n, f * t, d)
        init = nn.initializers.truncated_normal(0.02)
        prefix = jnp.concatenate([self.param("cls_token", init, (1, 1, d), self.param_dtype),
                                  self.param("dist_token", init, (1, 1, d), self.param_dtype)], axis=1)
        pos = self.param("pos_embedding", init, (1, f * t + 2, d), self.param_dtype)
        prefix = jnp.broadcast_to((prefix + pos[:, :2]).astype(self.dtype), (n, 2, d))
        seq = nn.Dropout(self.dropout_rate)(seq + pos[:, 2:].astype(self.dtype), deterministic=not train)
        grid_tokens, prefix = Encoder(
            depth=self.depth, hidden_size=d, num_heads=self.num_heads, head_dim=d // self.num_heads,
            mlp_dim=self.mlp_dim, attention="joint", qkv_bias="qkv" if self.qkv_bias else "none",
            activation=self.activation, layer_norm_eps=self.layer_norm_eps, dropout_rate=self.dropout_rate,
            name="encoder", **kw)(seq[:, None], prefix, train)
        tokens = jnp.concatenate([prefix, grid_tokens[:, 0]], axis=1)
        tokens = nn.LayerNorm(epsilon=self.layer_norm_eps, name="encoder_norm", **kw)(tokens)
        clip = (tokens[:, 0] + tokens[:, 1]) / 2
        frame_tokens = tokens[:, 2:].reshape(n, f, t, d).mean(axis=1)  # [N, T', D]
        logits = None
        if self.num_classes:
            head = nn.LayerNorm(epsilon=self.layer_norm_eps, name="head_norm", **kw)(clip)
            logits = nn.Dense(self.num_classes, name="head", **kw)(head).astype(jnp.float32)
        return {"tokens": tokens.astype(jnp.float32), "frame_tokens": frame_tokens.astype(jnp.float32),
                "clip": clip.astype(jnp.float32), "logits": logits}
