"""The small per-segment audio encoder of the MultiSensor-Home reference code (MultiTSF's `SimpleASTModel`).

    x [N, F, M] one log-mel window per sampled frame -> flatten [N, F·M] -> Dense 512 -> ReLU -> Dense 256 -> ReLU
      -> Dense 128 -> ReLU -> Dense features  = clip [N, features]

Despite its name in that code it has no attention: a multilayer perceptron on each flattened window, cheap on CPU
(the reference runs it on 1024 x 128 windows with 384 output features). It is the alternative to the AST
(`AudioTransformer`) as a teacher's or student's audio stream, selected by `config.model.audio_encoder`.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vicokd_jax.models.audio_transformer import check_windows


class SegmentAudioEncoder(nn.Module):
    """`apply(variables, x [N, max_length, num_mel_bins], train=False) -> {"clip" [N, features]}`."""

    max_length: int
    num_mel_bins: int
    hidden: tuple[int, ...] = (512, 256, 128)
    features: int = 384
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict:
        del train  # no dropout or normalisation statistics
        check_windows("SegmentAudioEncoder", x, self.max_length, self.num_mel_bins)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = x.reshape(x.shape[0], -1).astype(self.dtype)
        for i, width in enumerate(self.hidden):
            h = nn.relu(nn.Dense(width, name=f"fc{i + 1}", **kw)(h))
        return {"clip": nn.Dense(self.features, name="output", **kw)(h).astype(jnp.float32)}
