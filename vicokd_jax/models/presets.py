"""Named teacher/student model presets, from unit-test size to ViT-L pods.

A preset fixes the encoders, the fused width D, the token length L and the clip size the student expects:

    micro     unit tests and smoke runs on 2 CPU cores       ViT 64-wide x2 blocks, 16 x 32^2 clips
    micro_fine  micro with 4x4 patches (the demo's student)
    synth     SynthMV default (16 frames of 32^2)            ViT 128-wide x4 blocks, tubelet 2x4x4
    vit_s16   ViT-S/16, 16 x 224^2 (VideoMAE-S layout)       joint attention, tubelet 2x16x16, mean pooling
    vit_b16   ViT-B/16, 16 x 224^2 (VideoMAE-B layout)       ~86 M encoder parameters
    vit_l16   ViT-L/16, 16 x 224^2 (VideoMAE-L layout)

The teacher's skeleton stream is the reference ST-GCN (64..256 channels) except in `micro` and `synth`, whose
ST-GCNs are narrower. Any field can be overridden: `build_student("synth", 12, width=96)`.

The audio stream (a teacher with "audio", or an audio student) is one of `AUDIO_ENCODERS`, the preset's unless
`config.model.audio_encoder` names another; its input windows are `[F, M]` = (`data.audio_frames`,
`data.audio_mel_bins`):

    ast_micro   a 2-block, 64-wide AST with 8x8 patches (tests, smoke runs: 8 patches of SynthMV's 16 x 32 windows)
    ast_small   a 4-block, 128-wide AST with 8x8 patches (the `synth` preset's)
    ast_base    AST-Base as HF's MIT/ast-finetuned-audioset-10-10-0.4593: 16x16 patches, strides 10, 12 x 768
    multitsf    the MultiSensor-Home reference code's per-segment MLP (F·M -> 512 -> 256 -> 128 -> 384)
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from vicokd_jax.models.audio_segment import SegmentAudioEncoder
from vicokd_jax.models.audio_transformer import AudioTransformer
from vicokd_jax.models.masked_autoencoder import MaskedVideoAutoencoder
from vicokd_jax.models.stgcn import DEFAULT_CHANNELS, DEFAULT_STRIDES, STGCN
from vicokd_jax.models.student import Student, input_modality
from vicokd_jax.models.teacher import Teacher
from vicokd_jax.models.video_transformer import VIDEO_TRANSFORMER_PRESETS, VideoTransformer

AUDIO_ENCODERS: dict[str, dict] = {
    "ast_micro": dict(hidden_size=64, depth=2, num_heads=2, mlp_dim=128, patch_size=8, frequency_stride=8,
                      time_stride=8),
    "ast_small": dict(hidden_size=128, depth=4, num_heads=4, mlp_dim=512, patch_size=8, frequency_stride=8,
                      time_stride=8),
    "ast_base": dict(hidden_size=768, depth=12, num_heads=12, mlp_dim=3072, patch_size=16, frequency_stride=10,
                     time_stride=10),
    "multitsf": dict(kind="segment", hidden=(512, 256, 128), features=384),
}

_VIDEOMAE_STYLE = dict(tubelet=(2, 16, 16), attention="joint", pooling="mean", posemb="sincos", qkv_bias="qv")


@dataclasses.dataclass(frozen=True)
class ModelPreset:
    encoder: dict  # VideoTransformer fields (num_classes=0 is added)
    stgcn_channels: tuple[int, ...]
    stgcn_strides: tuple[int, ...]
    width: int  # D of the fused streams
    token_frames: int  # L
    num_heads: int
    frames: int  # clip length T the encoder is sized for
    image_size: int  # H = W
    audio: str = "ast_micro"  # the audio encoder (AUDIO_ENCODERS)


PRESETS: dict[str, ModelPreset] = {
    "micro": ModelPreset(
        encoder=dict(hidden_size=64, depth=2, num_heads=2, mlp_dim=128, tubelet=(2, 8, 8), pooling="mean",
                     posemb="sincos"),
        stgcn_channels=(16, 32, 32), stgcn_strides=(1, 2, 2), width=64, token_frames=8, num_heads=2,
        frames=16, image_size=32),
    "micro_fine": ModelPreset(  # micro with 4x4 patches: small actors in 32^2 frames span several tokens
        encoder=dict(hidden_size=64, depth=2, num_heads=2, mlp_dim=128, tubelet=(2, 4, 4), pooling="mean",
                     posemb="sincos"),
        stgcn_channels=(16, 32, 32), stgcn_strides=(1, 2, 2), width=64, token_frames=8, num_heads=2,
        frames=16, image_size=32),
    "synth": ModelPreset(
        encoder=dict(hidden_size=128, depth=4, num_heads=4, mlp_dim=512, tubelet=(2, 4, 4), pooling="mean",
                     posemb="sincos"),
        stgcn_channels=(32, 32, 64, 64, 128, 128), stgcn_strides=(1, 1, 2, 1, 2, 1), width=128, token_frames=8,
        num_heads=4, frames=16, image_size=32, audio="ast_small"),
    "vit_s16": ModelPreset(
        encoder=dict(**VIDEO_TRANSFORMER_PRESETS["small"], **_VIDEOMAE_STYLE),
        stgcn_channels=DEFAULT_CHANNELS, stgcn_strides=DEFAULT_STRIDES, width=256, token_frames=8, num_heads=4,
        frames=16, image_size=224, audio="ast_base"),
    "vit_b16": ModelPreset(
        encoder=dict(**VIDEO_TRANSFORMER_PRESETS["base"], **_VIDEOMAE_STYLE),
        stgcn_channels=DEFAULT_CHANNELS, stgcn_strides=DEFAULT_STRIDES, width=256, token_frames=8, num_heads=8,
        frames=16, image_size=224, audio="ast_base"),
    "vit_l16": ModelPreset(
        encoder=dict(**VIDEO_TRANSFORMER_PRESETS["large"], **_VIDEOMAE_STYLE),
        stgcn_channels=DEFAULT_CHANNELS, stgcn_strides=DEFAULT_STRIDES, width=256, token_frames=8, num_heads=8,
        frames=16, image_size=224, audio="ast_base"),
}


def get_preset(name: str) -> ModelPreset:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]


def build_encoder(name: str, dtype: Any = jnp.float32, **overrides) -> VideoTransformer:
    """The headless RGB encoder of a preset."""
    return VideoTransformer(num_classes=0, dtype=dtype, **{**get_preset(name).encoder, **overrides})


def build_audio_encoder(name: str, windows: tuple[int, int], dtype: Any = jnp.float32):
    """The headless audio encoder `name` (AUDIO_ENCODERS) for log-mel windows `(F, M)`."""
    if name not in AUDIO_ENCODERS:
        raise ValueError(f"unknown audio encoder {name!r}; expected one of {sorted(AUDIO_ENCODERS)}")
    fields = dict(AUDIO_ENCODERS[name])
    frames, mel_bins = windows
    if fields.pop("kind", "ast") == "segment":
        return SegmentAudioEncoder(max_length=frames, num_mel_bins=mel_bins, dtype=dtype, **fields)
    if min(frames, mel_bins) < fields["patch_size"]:
        raise ValueError(f"audio encoder {name!r} has {fields['patch_size']}x{fields['patch_size']} patches: log-mel "
                         f"windows of {frames} frames x {mel_bins} mel bins (data.audio_frames, "
                         "data.audio_mel_bins) are smaller than one patch")
    return AudioTransformer(0, max_length=frames, num_mel_bins=mel_bins, dtype=dtype, **fields)


def build_teacher(name: str, num_classes: int, modalities=("skeleton", "rgb"), layout: str = "nturgb+d",
                  dtype: Any = jnp.float32, audio_windows: tuple[int, int] = (16, 32), audio_encoder: str = "",
                  **overrides) -> Teacher:
    """A `Teacher` of preset `name`; `overrides` replace Teacher fields (e.g. width, fusion_layers). With
    "audio": the preset's audio encoder (or `audio_encoder`) for windows `audio_windows = (F, M)`."""
    p = get_preset(name)
    skeleton = (STGCN(0, layout=layout, channels=p.stgcn_channels, strides=p.stgcn_strides, dtype=dtype)
                if "skeleton" in modalities else None)
    rgb = build_encoder(name, dtype) if "rgb" in modalities else None
    audio = (build_audio_encoder(audio_encoder or p.audio, audio_windows, dtype) if "audio" in modalities
             else None)
    fields = dict(width=p.width, token_frames=p.token_frames, num_heads=p.num_heads, dtype=dtype)
    return Teacher(num_classes, skeleton, rgb, modalities=tuple(modalities), audio_encoder=audio,
                   **{**fields, **overrides})


def build_student(name: str, num_classes: int, dtype: Any = jnp.float32, audio_windows: tuple[int, int] = (16, 32),
                  audio_encoder: str = "", **overrides) -> Student:
    """A `Student` of preset `name`; `overrides` replace Student fields (per_view_weights, num_views, adapter,
    input_mode...). An audio student (`input_mode="audio"`) gets the preset's audio encoder (or `audio_encoder`)."""
    p = get_preset(name)
    fields = dict(width=p.width, token_frames=p.token_frames, num_heads=p.num_heads, teacher_width=p.width,
                  dtype=dtype)
    if input_modality(overrides.get("input_mode", "rgb")) == "audio":
        return Student(num_classes, audio_encoder=build_audio_encoder(audio_encoder or p.audio, audio_windows, dtype),
                       **{**fields, **overrides})
    return Student(num_classes, build_encoder(name, dtype), **{**fields, **overrides})


def example_shapes(name: str, batch: int, views: int, persons: int = 2, skeleton_frames: int | None = None,
                   joints: int = 25) -> dict:
    """Input shapes a preset is sized for: rgb [B,V,T,H,W,3], skeleton [B,V,M,T,J,3], view_mask [B,V]."""
    p = get_preset(name)
    t = p.frames
    return {"rgb": (batch, views, t, p.image_size, p.image_size, 3),
            "skeleton": (batch, views, persons, skeleton_frames or t, joints, 3),
            "view_mask": (batch, views)}


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def teacher_from_config(cfg) -> Teacher:
    """The teacher an experiment config describes (`cfg.model`, `cfg.data`)."""
    m = cfg.model
    return build_teacher(m.preset, cfg.data.num_classes, modalities=tuple(m.teacher_modalities), layout=m.layout,
                         dtype=_DTYPES[m.dtype], audio_windows=audio_windows(cfg), audio_encoder=m.audio_encoder,
                         fusion_layers=m.fusion_layers, dropout=m.dropout, rgb_input=m.teacher_rgb_input)


def audio_windows(cfg) -> tuple[int, int]:
    """(F, M) of the config's log-mel windows."""
    return cfg.data.audio_frames, cfg.data.audio_mel_bins


def student_missing(cfg) -> tuple[str, ...]:
    """The teacher's modalities the config's student lacks: the streams its adapter stands in for."""
    own = input_modality(cfg.model.student_input)
    return tuple(m for m in cfg.model.teacher_modalities if m != own)


def student_from_config(cfg) -> Student:
    """The student an experiment config describes, with the method's architecture switches (`cfg.method.student`)."""
    m, s = cfg.model, cfg.method.student
    # NOTE: the student's aligned tokens and frame logits are compared position by position with the teacher's,
    # so their width D and length L are the teacher preset's, whatever the student's own encoder is.
    teacher = get_preset(m.preset)
    return build_student(m.student_preset or m.preset, cfg.data.num_classes, dtype=_DTYPES[m.dtype],
                         adapter=s.adapter, hint=s.hint, per_view_weights=s.per_view_weights,
                         num_views=cfg.data.num_views, memory_tokens=m.memory_tokens, fusion_layers=m.fusion_layers,
                         dropout=m.dropout, input_mode=m.student_input, teacher_width=teacher.width,
                         token_frames=teacher.token_frames, missing=student_missing(cfg),
                         audio_windows=audio_windows(cfg), audio_encoder=m.audio_encoder)


def pretrainer_from_config(cfg) -> MaskedVideoAutoencoder:
    """The pretrain stage's masked autoencoder around the encoder the config's student is built with."""
    m, p = cfg.model, cfg.pretrain
    dtype = _DTYPES[m.dtype]
    return MaskedVideoAutoencoder(build_encoder(m.student_preset or m.preset, dtype), input_mode=m.student_input,
                                  mask_ratio=p.mask_ratio, decoder_width=p.decoder_width,
                                  decoder_depth=p.decoder_depth, decoder_heads=p.decoder_heads,
                                  normalize_targets=p.normalize_targets, dtype=dtype)
