"""Import HF's ASTForAudioClassification (Audio Spectrogram Transformer) into `vk.models.AudioTransformer`.

    module, variables = vk.convert.audio_transformer_from_hf(hf.state_dict(), hf.config.to_dict())
    logits = module.apply(variables, x)["logits"]        # x [N, max_length, num_mel_bins]: HF's input_values

Older checkpoints name the attention layers ViT-style (`encoder.layer.N.attention.attention.query`, ...);
both layouts are accepted. Errors name every missing, wrong-shaped or unexpected key at once.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vicokd_jax.convert.hf_video import raise_mismatch, to_numpy
from vicokd_jax.models.audio_transformer import AudioTransformer

PREFIX = "audio_spectrogram_transformer."
# transformers < 5 (ViT-style) names -> current names; specific before general.
LEGACY = ((r"\.encoder\.layer\.", ".layers."),
          (r"\.attention\.attention\.query\.", ".attention.q_proj."),
          (r"\.attention\.attention\.key\.", ".attention.k_proj."),
          (r"\.attention\.attention\.value\.", ".attention.v_proj."),
          (r"\.attention\.output\.dense\.", ".attention.o_proj."),
          (r"\.intermediate\.dense\.", ".mlp.fc1."),
          (r"(\.layers\.\d+)\.output\.dense\.", r"\1.mlp.fc2."))
# ASTConfig's defaults, for configs that leave a field out.
DEFAULTS = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                hidden_act="gelu", layer_norm_eps=1e-12, patch_size=16, qkv_bias=True, frequency_stride=10,
                time_stride=10, max_length=1024, num_mel_bins=128)
BLOCK = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn/query": "attention.q_proj",
         "attn/key": "attention.k_proj", "attn/value": "attention.v_proj", "attn/out": "attention.o_proj",
         "mlp/fc1": "mlp.fc1", "mlp/fc2": "mlp.fc2"}
TOP = {"patch_embed": PREFIX + "embeddings.patch_embeddings.projection", "cls_token": PREFIX + "embeddings.cls_token",
       "dist_token": PREFIX + "embeddings.distillation_token",
       "pos_embedding": PREFIX + "embeddings.position_embeddings", "encoder_norm": PREFIX + "layernorm",
       "head_norm": "classifier.layernorm", "head": "classifier.dense"}


def module_from_hf_config(hf_config: Any, **options) -> AudioTransformer:
    """The `AudioTransformer` an ASTConfig (object or dict) describes; `options`: dtype, param_dtype, dropout."""
    cfg = hf_config.to_dict() if hasattr(hf_config, "to_dict") else dict(hf_config)
    cfg = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    num_labels = len(cfg["id2label"]) if cfg.get("id2label") else int(cfg.get("num_labels", 2))
    return AudioTransformer(
        num_classes=num_labels, hidden_size=int(cfg["hidden_size"]), depth=int(cfg["num_hidden_layers"]),
        num_heads=int(cfg["num_attention_heads"]), mlp_dim=int(cfg["intermediate_size"]),
        patch_size=int(cfg["patch_size"]), frequency_stride=int(cfg["frequency_stride"]),
        time_stride=int(cfg["time_stride"]), num_mel_bins=int(cfg["num_mel_bins"]),
        max_length=int(cfg["max_length"]), activation={"gelu_new": "gelu_tanh"}.get(cfg["hidden_act"],
                                                                                    cfg["hidden_act"]),
        layer_norm_eps=float(cfg["layer_norm_eps"]), qkv_bias=bool(cfg["qkv_bias"]), **options)


def hf_key(names: tuple[str, ...]) -> tuple[str, str]:
    """Our leaf path (`encoder/block_3/attn/query/kernel`) -> (HF key, the kind of transform)."""
    if len(names) == 1:
        return TOP[names[0]], "param"
    *module, leaf = names
    hf_leaf = "weight" if leaf in ("kernel", "scale") else "bias"
    if module[0] == "encoder":
        i, sub = int(module[1].removeprefix("block_")), "/".join(module[2:])
        name = f"{PREFIX}layers.{i}.{BLOCK[sub]}"
        kind = {"attn/query": "heads_in", "attn/key": "heads_in", "attn/value": "heads_in",
                "attn/out": "heads_out"}.get(sub, "ln" if sub.startswith("norm") else "dense")
    else:
        name, kind = TOP[module[0]], {"patch_embed": "conv"}.get(module[0], "ln" if module[0].endswith("norm")
                                                                   else "dense")
    return f"{name}.{hf_leaf}", kind if leaf == "kernel" else "param"


def from_hf_array(kind: str, array: np.ndarray, shape: tuple[int, ...]) -> tuple[tuple[int, ...], np.ndarray]:
    """(the HF shape expected for our leaf of `shape`, the converted array or None when the shape is wrong)."""
    if kind == "conv":  # ours [p, p, 1, D]; torch Conv2d [D, 1, p, p]
        expected = (shape[3], shape[2], shape[0], shape[1])
        convert = lambda a: a.transpose(2, 3, 1, 0)  # noqa: E731
    elif kind == "heads_in":  # ours [D, H, hd]; torch [H·hd, D]
        expected = (shape[1] * shape[2], shape[0])
        convert = lambda a: a.T.reshape(shape)  # noqa: E731
    elif kind == "heads_out":  # ours [H, hd, D]; torch [D, H·hd]
        expected = (shape[2], shape[0] * shape[1])
        convert = lambda a: a.T.reshape(shape)  # noqa: E731
    elif kind == "dense":  # ours [in, out]; torch [out, in]
        expected, convert = shape[::-1], (lambda a: a.T)
    else:  # tables, LayerNorm scales, biases (attention biases [H, hd] from [H·hd])
        expected = (int(np.prod(shape)),) if len(shape) == 2 and kind == "param" and array.ndim == 1 else shape
        convert = lambda a: a.reshape(shape)  # noqa: E731
    return expected, (convert(array) if tuple(array.shape) == tuple(expected) else None)


def audio_transformer_from_hf(state_dict: Mapping[str, Any], hf_config: Any, *, strict: bool = True,
                              **options) -> tuple[AudioTransformer, dict]:
    """Build an `AudioTransformer` and its `{"params"}` from HF ASTForAudioClassification weights.

    `state_dict`: numpy arrays or torch tensors; `hf_config`: `model.config.to_dict()` (or the object). The
    module's `apply(variables, x [N, max_length, num_mel_bins], train=False)["logits"]` equals HF's logits for
    `input_values = x`. `strict`: raise on keys the model does not use. Raises `CheckpointMismatchError`
    naming every missing, wrong-shaped (expected vs actual) or unexpected key."""
    module = module_from_hf_config(hf_config, **options)
    arrays, origin = {}, {}
    for key, value in state_dict.items():
        new = key
        for pattern, repl in LEGACY:
            new = re.sub(pattern, repl, new)
        arrays[new], origin[new] = to_numpy(value), key
    x = jax.ShapeDtypeStruct((1, module.max_length, module.num_mel_bins), jnp.float32)
    target = jax.eval_shape(module.init, jax.random.key(0), x)["params"]
    missing, wrong, used, params = [], [], set(), {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(target)[0]:
        names = tuple(p.key for p in path)
        key, kind = hf_key(names)
        if key not in arrays:
            missing.append(key)
            continue
        used.add(key)
        expected, converted = from_hf_array(kind, arrays[key], tuple(leaf.shape))
        if converted is None:
            wrong.append(f"{origin[key]}: expected shape {expected}, got {tuple(arrays[key].shape)}")
            continue
        node = params
        for name in names[:-1]:
            node = node.setdefault(name, {})
        node[names[-1]] = jnp.asarray(converted, module.param_dtype)
    unexpected = sorted(origin[k] for k in set(arrays) - used) if strict else []
    raise_mismatch("ASTForAudioClassification", missing, wrong, unexpected)
    return module, {"params": params}


__all__ = ["audio_transformer_from_hf", "module_from_hf_config"]
