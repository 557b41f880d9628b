"""Masked video autoencoding (VideoMAE, Tong et al. 2022): the `pretrain` stage's model.

    x = the student's input (normalised RGB, or its frame differences)      [N, T, H, W, 3], N = B·V
    visible = K of the S patch positions per view, the same at every time step (tube masking), K = S·(1 − ratio)
    z = Enc(x | visible)                                                     [N, T', K, D]   the student's encoder
    y = Dec(scatter(W·LN(z)) + mask token elsewhere + sin-cos positions)     [N, T', S, P]   P = t·ph·pw·3
    L = mean over masked patches of present views of ‖y − target‖² / P,  target = the patch's pixels,
        normalised per patch and channel (VideoMAE's `norm_pix_loss`) when `normalize_targets`

The encoder is a headless `VideoTransformer` under the name `rgb_encoder`, the student's own, so the student
stage starts from `params["rgb_encoder"]` of this model (`train/setup.py`). The decoder is dropped after
pretraining.
"""
from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from vicokd_jax.models.heads import IMAGENET_MEAN, IMAGENET_STD, check_views, frame_difference, normalize_rgb
from vicokd_jax.models.video_transformer import sinusoid_table
from vicokd_jax.models.video_transformer_blocks import Encoder

INPUT_MODES = ("rgb", "rgb_diff")


def patchify(x, tubelet: tuple[int, int, int]):
    """`[N, T, H, W, C] -> [N, T', S, t·ph·pw·C]`: the pixels of each tubelet, in the order of the tubelet
    embedding's kernel `[t, ph, pw, C, D]` and of its token grid (positions row-major over H/ph, W/pw)."""
    n, frames, height, width, c = x.shape
    t, ph, pw = tubelet
    x = x.reshape(n, frames // t, t, height // ph, ph, width // pw, pw, c)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)  # [N, T', H', W', t, ph, pw, C]
    return x.reshape(n, frames // t, (height // ph) * (width // pw), t * ph * pw * c)


def normalize_patches(patches, channels: int = 3, eps: float = 1e-6):
    """Each patch's pixels minus their mean over the patch, over their std, per channel (VideoMAE)."""
    shape = patches.shape
    x = patches.reshape(*shape[:-1], shape[-1] // channels, channels)
    mean = x.mean(-2, keepdims=True)
    var = x.var(-2, keepdims=True, ddof=1) if x.shape[-2] > 1 else jnp.zeros_like(mean)
    return ((x - mean) / jnp.sqrt(var + eps)).reshape(shape)


def tube_mask(key, num_clips: int, num_positions: int, mask_ratio: float) -> jax.Array:
    """`[N, K]` int32: K = max(1, round(S·(1 − mask_ratio))) distinct visible positions per clip, uniformly."""
    keep = max(1, round(num_positions * (1.0 - mask_ratio)))
    order = jnp.argsort(jax.random.uniform(key, (num_clips, num_positions)), axis=-1)
    return order[:, :keep].astype(jnp.int32)


def reconstruction_loss(predictions, targets, masked, weights) -> tuple[jax.Array, jax.Array]:
    """-> (mean over the masked positions of `weights`-bearing clips of the per-patch mean squared error, count).

    predictions, targets: `[N, T', S, P]`; masked: `[N, S]` bool (True = hidden from the encoder);
    weights: `[N]` (1 for a present view, 0 for an absent one)."""
    error = jnp.mean(jnp.square(predictions.astype(jnp.float32) - targets.astype(jnp.float32)), axis=-1)
    where = masked[:, None, :].astype(jnp.float32) * weights[:, None, None].astype(jnp.float32)
    where = jnp.broadcast_to(where, error.shape)
    count = where.sum()
    return jnp.sum(error * where) / jnp.maximum(count, 1.0), count


class MaskedVideoAutoencoder(nn.Module):
    """`apply(variables, rgb [B, V, T, H, W, 3] uint8, view_mask [B, V] bool, train=False, rngs={"masking": k})
    -> {"loss": [], "count": [], "predictions": [B·V, T', S, P], "masked": [B·V, S] bool}`.

    Attributes:
        rgb_encoder: a headless `VideoTransformer` ("joint" or "divided" attention), the student's encoder.
        input_mode: "rgb" or "rgb_diff", as the student that will start from this encoder.
        mask_ratio: share of the patch positions hidden from the encoder (VideoMAE: 0.9 at 14×14 positions).
        decoder_width, decoder_depth, decoder_heads: the lightweight decoder (dropped after pretraining).
        normalize_targets: reconstruct per-patch normalised pixels (VideoMAE's default) or the pixels themselves.
    """

    rgb_encoder: nn.Module
    input_mode: str = "rgb_diff"
    mask_ratio: float = 0.75
    decoder_width: int = 64
    decoder_depth: int = 1
    decoder_heads: int = 2
    normalize_targets: bool = True
    rgb_mean: tuple[float, ...] = IMAGENET_MEAN
    rgb_std: tuple[float, ...] = IMAGENET_STD
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, rgb, view_mask, train: bool = False) -> dict:
        if self.input_mode not in INPUT_MODES:
            raise ValueError(f"MaskedVideoAutoencoder.input_mode={self.input_mode!r}; expected one of {INPUT_MODES}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"MaskedVideoAutoencoder.mask_ratio={self.mask_ratio} must be in [0, 1)")
        check_views("rgb", rgb, 6, view_mask, trailing=(3,))
        b, v = rgb.shape[:2]
        pixels = normalize_rgb(rgb, self.rgb_mean, self.rgb_std, jnp.float32)
        if self.input_mode == "rgb_diff":
            pixels = frame_difference(pixels)
        pixels = pixels.reshape(b * v, *pixels.shape[2:])
        tubelet = tuple(self.rgb_encoder.tubelet)
        targets = patchify(pixels, tubelet)  # [N, T', S, P]
        n, steps, positions, patch = targets.shape
        if self.normalize_targets:
            targets = normalize_patches(targets)
        visible = tube_mask(self.make_rng("masking"), n, positions, self.mask_ratio)
        encoded = self.rgb_encoder(pixels.astype(self.dtype), train=train, visible=visible)["patch_tokens"]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        z = nn.LayerNorm(epsilon=1e-6, name="encoder_norm", **kw)(encoded)
        z = nn.Dense(self.decoder_width, name="encoder_to_decoder", **kw)(z)  # [N, T', K, Dd]
        # Scatter the visible tokens back to their positions with a one-hot product (no gather-scatter op).
        placement = jax.nn.one_hot(visible, positions, dtype=z.dtype)  # [N, K, S]
        is_visible = placement.sum(1)  # [N, S]
        mask_token = self.param("mask_token", nn.initializers.normal(0.02), (self.decoder_width,), self.param_dtype)
        grid = jnp.einsum("ntkd,nks->ntsd", z, placement)
        grid = grid + (1.0 - is_visible)[:, None, :, None] * mask_token.astype(z.dtype)
        grid = grid + jnp.asarray(sinusoid_table(steps * positions, self.decoder_width), z.dtype).reshape(
            1, steps, positions, self.decoder_width)
        grid, _ = Encoder(depth=self.decoder_depth, hidden_size=self.decoder_width, num_heads=self.decoder_heads,
                          head_dim=self.decoder_width // self.decoder_heads, mlp_dim=4 * self.decoder_width,
                          name="decoder", **kw)(grid, None, train)
        grid = nn.LayerNorm(epsilon=1e-6, name="decoder_norm", **kw)(grid)
        predictions = nn.Dense(patch, name="decoder_pred", **kw)(grid).astype(jnp.float32)
        chex.assert_equal_shape([predictions, targets])
        masked = is_visible < 0.5
        loss, count = reconstruction_loss(predictions, targets, masked, view_mask.reshape(n))
        return {"loss": loss, "count": count, "predictions": predictions, "masked": masked}
