"""Import HuggingFace video-transformer classifiers into :class:`vicokd_jax.models.VideoTransformer`.

Supported (transformers 5.x key names, plus the older names real Hub checkpoints still carry):

* ``VideoMAEForVideoClassification`` — joint attention, tubelet ``(tubelet_size, p, p)``, VideoMAE's fixed
  sinusoid position table (not in the state dict), query/value biases but no key bias, mean pooling +
  ``fc_norm`` (torch's default eps 1e-5) when ``use_mean_pooling`` else final LayerNorm + first token,
  LayerNorm eps 1e-12 by default. Old ``attention.attention.q_bias`` / ``v_bias`` keys are accepted.
* ``TimesformerForVideoClassification`` — per-frame Conv2d patches (tubelet ``(1, p, p)``), CLS, learned
  spatial position table over ``[CLS] + S`` plus learned time table, divided space-time attention with
  ``temporal_dense`` (``attention_type="divided_space_time"``) or joint (``"joint_space_time"``), fused qkv.
* ``VivitForVideoClassification`` — Conv3d tubelets ``tubelet_size = (t, ph, pw)``, CLS prepended before one
  learned position table, joint attention, activation as configured (default ``gelu_fast`` = tanh-GELU),
  final LayerNorm, CLS -> classifier. Old ``encoder.layer.N.attention.attention.query`` keys are accepted.

``video_transformer_from_hf(state_dict, hf_config) -> (module, variables)`` with
``module.apply(variables, x [N,T,H,W,3], train=False)["logits"]`` equal to HF's logits on
``pixel_values = x.transpose(0,1,4,2,3)``. Clips must have the checkpoint's frame count and image size
(HF's optional position-embedding interpolation is not reproduced).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vicokd_jax.models.video_transformer import VideoTransformer, stack_block_params

# Module options a caller may change on import (they do not change the parameter set's shapes).
_RUNTIME_OPTIONS = ("dtype", "param_dtype", "remat", "scan", "dropout_rate", "drop_path_rate")

# HF activation names -> VideoTransformer.activation.
_ACTIVATIONS = {
    "gelu": "gelu", "gelu_python": "gelu",
    "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh", "quick_gelu": "quick_gelu", "relu": "relu",
}


class CheckpointMismatchError(ValueError):
    """The state dict does not fit the model its config describes (names the keys and shapes)."""


# --------------------------------------------------------------------------------------------------------
# Model families
# --------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Family:
    """How one HF architecture maps onto VideoTransformer.

    ``layer``: format of a block's key prefix; ``block``: our block sub-module -> HF sub-module, or
    ``(fused_qkv_module, part)`` for a slice of a fused qkv projection; ``top``: our top-level module or
    param -> HF name; ``legacy``: regex renames from older key names to current ones.
    """

    name: str
    architecture: str
    layer: str
    block: Mapping[str, str | tuple[str, int]]
    top: Mapping[str, str]
    defaults: Mapping[str, Any]
    build: Callable[[dict], dict]
    legacy: tuple[tuple[str, str], ...] = ()
    conv2d: bool = False  # patches from a per-frame Conv2d (TimeSformer) rather than a Conv3d


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _activation(cfg: dict) -> str:
    act = cfg["hidden_act"]
    if act not in _ACTIVATIONS:
        raise ValueError(f"hidden_act={act!r} is not supported; known: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[act]


def _common(cfg: dict) -> dict:
    """Module kwargs shared by the three families."""
    if int(cfg.get("num_channels", 3)) != 3:
        raise ValueError(f"num_channels={cfg['num_channels']}: VideoTransformer takes RGB clips [N,T,H,W,3]")
    kwargs = dict(hidden_size=int(cfg["hidden_size"]), depth=int(cfg["num_hidden_layers"]),
                  num_heads=int(cfg["num_attention_heads"]), mlp_dim=int(cfg["intermediate_size"]),
                  activation=_activation(cfg), layer_norm_eps=float(cfg["layer_norm_eps"]),
                  num_classes=_num_labels(cfg))
    if cfg.get("head_dim"):
        kwargs["head_dim"] = int(cfg["head_dim"])
    return kwargs


def _num_labels(cfg: dict) -> int:
    if cfg.get("id2label"):
        return len(cfg["id2label"])
    return int(cfg.get("num_labels", 2))  # PretrainedConfig's default


def _build_videomae(cfg: dict) -> dict:
    qv_bias = cfg["qv_bias"] if "qv_bias" in cfg else cfg.get("qkv_bias", True)  # old configs: qkv_bias
    return dict(_common(cfg), tubelet=(int(cfg["tubelet_size"]), *_pair(cfg["patch_size"])), attention="joint",
                posemb="sincos", pooling="mean" if cfg["use_mean_pooling"] else "first",
                qkv_bias="qv" if qv_bias else "none",
                pool_norm_eps=1e-5)  # NOTE: fc_norm is nn.LayerNorm(hidden) with torch's default eps


def _build_timesformer(cfg: dict) -> dict:
    modes = {"divided_space_time": "divided", "joint_space_time": "joint"}
    if cfg["attention_type"] not in modes:
        # NOTE: HF's "space_only" classifies each frame separately (logits [N·T,C]); not a clip model.
        raise NotImplementedError(f"TimeSformer attention_type={cfg['attention_type']!r} is not supported; "
                                  f"use one of {sorted(modes)}")
    return dict(_common(cfg), tubelet=(1, *_pair(cfg["patch_size"])), attention=modes[cfg["attention_type"]],
                posemb="separable", pooling="cls", qkv_bias="qkv" if cfg["qkv_bias"] else "none")


def _build_vivit(cfg: dict) -> dict:
    t, ph, pw = (int(v) for v in cfg["tubelet_size"])
    return dict(_common(cfg), tubelet=(t, ph, pw), attention="joint", posemb="learned", pooling="cls",
                qkv_bias="qkv" if cfg["qkv_bias"] else "none")


_VIT_BLOCK = {"norm1": "layernorm_before", "norm2": "layernorm_after",
              "mlp/fc1": "intermediate.dense", "mlp/fc2": "output.dense"}

_FAMILIES: dict[str, _Family] = {
    "videomae": _Family(
        name="videomae", architecture="VideoMAEForVideoClassification",
        layer="videomae.encoder.layer.{i}.",
        block={**_VIT_BLOCK, "attn/query": "attention.attention.query", "attn/key": "attention.attention.key",
               "attn/value": "attention.attention.value", "attn/out": "attention.output.dense"},
        top={"patch_embed": "videomae.embeddings.patch_embeddings.projection", "fc_norm": "fc_norm",
             "encoder_norm": "videomae.layernorm", "head": "classifier"},
        # Defaults of transformers' VideoMAEConfig, for hand-written config dicts.
        defaults=dict(image_size=224, patch_size=16, num_frames=16, tubelet_size=2, hidden_size=768,
                      num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                      layer_norm_eps=1e-12, use_mean_pooling=True),
        build=_build_videomae,
        legacy=((r"attention\.attention\.q_bias$", "attention.attention.query.bias"),
                (r"attention\.attention\.v_bias$", "attention.attention.value.bias"))),
    "timesformer": _Family(
        name="timesformer", architecture="TimesformerForVideoClassification",
        layer="timesformer.encoder.layer.{i}.",
        block={**_VIT_BLOCK, "attn/query": ("attention.attention.qkv", 0), "attn/key": ("attention.attention.qkv", 1),
               "attn/value": ("attention.attention.qkv", 2), "attn/out": "attention.output.dense",
               "temporal_norm": "temporal_layernorm",
               "temporal_attn/query": ("temporal_attention.attention.qkv", 0),
               "temporal_attn/key": ("temporal_attention.attention.qkv", 1),
               "temporal_attn/value": ("temporal_attention.attention.qkv", 2),
               "temporal_attn/out": "temporal_attention.output.dense", "temporal_dense": "temporal_dense"},
        top={"patch_embed": "timesformer.embeddings.patch_embeddings.projection",
             "cls_token": "timesformer.embeddings.cls_token",
             "pos_embedding": "timesformer.embeddings.position_embeddings",
             "time_embedding": "timesformer.embeddings.time_embeddings",
             "encoder_norm": "timesformer.layernorm", "head": "classifier"},
        defaults=dict(image_size=224, patch_size=16, num_frames=8, hidden_size=768, num_hidden_layers=12,
                      num_attention_heads=12, intermediate_size=3072, hidden_act="gelu", layer_norm_eps=1e-6,
                      qkv_bias=True, attention_type="divided_space_time"),
        build=_build_timesformer, conv2d=True),
    "vivit": _Family(
        name="vivit", architecture="VivitForVideoClassification",
        layer="vivit.layers.{i}.",
        block={"norm1": "layernorm_before", "norm2": "layernorm_after", "attn/query": "attention.q_proj",
               "attn/key": "attention.k_proj", "attn/value": "attention.v_proj", "attn/out": "attention.o_proj",
               "mlp/fc1": "mlp.fc1", "mlp/fc2": "mlp.fc2"},
        top={"patch_embed": "vivit.embeddings.patch_embeddings.projection",
             "cls_token": "vivit.embeddings.cls_token", "pos_embedding": "vivit.embeddings.position_embeddings",
             "encoder_norm": "vivit.layernorm", "head": "classifier"},
        defaults=dict(image_size=224, num_frames=32, tubelet_size=(2, 16, 16), hidden_size=768,
                      num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                      hidden_act="gelu_fast", layer_norm_eps=1e-6, qkv_bias=True),
        build=_build_vivit,
        # transformers < 5 names (ViT-style) -> current names; order matters (specific before general).
        legacy=((r"^vivit\.encoder\.layer\.", "vivit.layers."),
                (r"\.attention\.attention\.query\.", ".attention.q_proj."),
                (r"\.attention\.attention\.key\.", ".attention.k_proj."),
                (r"\.attention\.attention\.value\.", ".attention.v_proj."),
                (r"\.attention\.output\.dense\.", ".attention.o_proj."),
                (r"\.intermediate\.dense\.", ".mlp.fc1."),
                (r"(\.layers\.\d+)\.output\.dense\.", r"\1.mlp.fc2."))),
}


def _detect_family(cfg: dict, keys: list[str]) -> _Family:
    """From ``model_type``, else ``architectures``, else the state dict's key prefixes."""
    if cfg.get("model_type") in _FAMILIES:
        return _FAMILIES[cfg["model_type"]]
    for arch in cfg.get("architectures") or ():
        for family in _FAMILIES.values():
            if arch.lower().startswith(family.name):
                return family
    prefixes = {k.split(".", 1)[0] for k in keys}
    found = [f for f in _FAMILIES.values() if f.name in prefixes]
    if len(found) == 1:
        return found[0]
    raise ValueError(f"cannot tell the model family: hf_config model_type={cfg.get('model_type')!r}, "
                     f"architectures={cfg.get('architectures')!r}, key prefixes={sorted(prefixes)[:8]}; "
                     f"supported: {[f.architecture for f in _FAMILIES.values()]}")


# --------------------------------------------------------------------------------------------------------
# Leaf conversion: (our module kind, leaf) -> expected HF shape and the array transform
# --------------------------------------------------------------------------------------------------------


def _kind(module_path: tuple[str, ...]) -> str:
    """The layer type of one of our sub-modules, from its name."""
    last = module_path[-1]
    if last.endswith("norm"):
        return "ln"
    if last in ("query", "key", "value"):
        return "heads_in"
    if last == "out":
        return "heads_out"
    if last == "patch_embed":
        return "conv"
    return "dense"  # fc1, fc2, temporal_dense, head


@dataclasses.dataclass(frozen=True)
class _Rule:
    """One target leaf: the HF key it comes from, the HF shape expected, the numpy transform."""

    key: str
    hf_shape: tuple[int, ...]
    convert: Callable[[np.ndarray], np.ndarray]


def _leaf_rule(kind: str, leaf: str, shape: tuple[int, ...], key: str, part: int | None,
               conv2d: bool = False) -> _Rule:
    """The rule for one leaf of our tree (``shape`` is its target shape)."""
    if kind in ("param", "ln"):  # embedding tables; LayerNorm scale <- weight, bias <- bias
        return _Rule(key, shape, lambda a: a)
    if kind == "conv" and leaf == "kernel":  # ours [t,ph,pw,C,D]; torch Conv3d [D,C,t,ph,pw] / Conv2d [D,C,ph,pw]
        t, ph, pw, c, d = shape
        if conv2d:
            return _Rule(key, (d, c, ph, pw), lambda a: a.transpose(2, 3, 1, 0)[None])
        return _Rule(key, (d, c, t, ph, pw), lambda a: a.transpose(2, 3, 4, 1, 0))
    if kind == "heads_in":  # ours kernel [D,H,hd], bias [H,hd]; torch Linear weight [H·hd, D]
        rows = int(np.prod(shape[-2:]))
        take = (lambda a: a) if part is None else (lambda a: a[part * rows:(part + 1) * rows])
        fused = rows * (1 if part is None else 3)
        if leaf == "kernel":
            return _Rule(key, (fused, shape[0]), lambda a: take(a).T.reshape(shape))
        return _Rule(key, (fused,), lambda a: take(a).reshape(shape))
    if kind == "heads_out" and leaf == "kernel":  # ours [H,hd,D]; torch [D, H·hd]
        return _Rule(key, (shape[-1], shape[0] * shape[1]), lambda a: a.T.reshape(shape))
    if leaf == "kernel":  # Dense: ours [in,out]; torch [out,in]
        return _Rule(key, shape[::-1], lambda a: a.T)
    return _Rule(key, shape, lambda a: a)  # biases


def _hf_name(family: _Family, module_path: tuple[str, ...]) -> tuple[str, int | None]:
    """Our module path (``encoder/block_3/attn/query``) -> (HF module name, fused-qkv part or None)."""
    if module_path[0] == "encoder":
        i = int(module_path[1].removeprefix("block_"))
        sub = "/".join(module_path[2:])
        if sub not in family.block:
            raise KeyError(f"{family.name}: no HF counterpart for block sub-module {sub!r}")
        name = family.block[sub]
        name, part = (name, None) if isinstance(name, str) else name
        return family.layer.format(i=i) + name, part
    if module_path[0] not in family.top:
        raise KeyError(f"{family.name}: no HF counterpart for {'/'.join(module_path)!r}")
    return family.top[module_path[0]], None


def _rules(family: _Family, target: dict) -> dict[tuple[str, ...], _Rule]:
    """One rule per leaf of our (non-scan) param tree ``target`` (leaves: ShapeDtypeStructs)."""
    rules = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(target)[0]:
        names = tuple(p.key for p in path)
        if len(names) == 1:  # a top-level param (cls_token, pos_embedding, time_embedding)
            rules[names] = _leaf_rule("param", names[0], leaf.shape, family.top[names[0]], None)
            continue
        module_path, param = names[:-1], names[-1]
        hf_module, part = _hf_name(family, module_path)
        hf_param = "weight" if param in ("kernel", "scale") else "bias"
        rules[names] = _leaf_rule(_kind(module_path), param, leaf.shape, f"{hf_module}.{hf_param}", part,
                                  conv2d=family.conv2d)
    return rules


# --------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------


def to_numpy(value: Any) -> np.ndarray:
    """numpy array from a numpy array or a torch tensor (without importing torch)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        value = value.float() if value.is_floating_point() else value
        return value.numpy()
    return np.asarray(value)


def _normalise_keys(family: _Family, state_dict: Mapping[str, Any]) -> tuple[dict, dict]:
    """Apply the family's legacy renames. Returns (arrays by current key, current key -> original key)."""
    arrays, origin = {}, {}
    for key, value in state_dict.items():
        new = key
        for pattern, repl in family.legacy:
            new = re.sub(pattern, repl, new)
        if new in arrays:
            raise CheckpointMismatchError(f"keys {origin[new]!r} and {key!r} both map to {new!r}")
        arrays[new], origin[new] = to_numpy(value), key
    return arrays, origin


def _input_shape(cfg: dict) -> tuple[int, ...]:
    """The clip shape ``[1,T,H,W,3]`` the checkpoint was built for."""
    h, w = _pair(cfg["image_size"])
    return (1, int(cfg["num_frames"]), h, w, 3)


def _convert(family: _Family, target: dict, arrays: dict, origin: dict, strict: bool) -> dict:
    """Fill ``target``'s leaves from ``arrays``; one error naming every missing / misshaped / unused key."""
    missing, wrong, used, flat = [], [], set(), {}
    for names, rule in _rules(family, target).items():
        if rule.key not in arrays:
            missing.append(rule.key)
            continue
        used.add(rule.key)
        array = arrays[rule.key]
        if tuple(array.shape) != tuple(rule.hf_shape):
            wrong.append(f"{origin[rule.key]}: expected shape {tuple(rule.hf_shape)}, got {tuple(array.shape)}")
            continue
        flat[names] = rule.convert(array)
    unexpected = sorted(origin[k] for k in set(arrays) - used) if strict else []
    raise_mismatch(family.architecture, missing, wrong, unexpected)
    return _unflatten(flat)


def raise_mismatch(architecture: str, missing, wrong, unexpected) -> None:
    """One CheckpointMismatchError listing every missing key, wrong shape and unexpected key (none: returns)."""
    if missing or wrong or unexpected:
        lines = [f"{architecture} state dict does not match the model its config describes:"]
        lines += [f"  missing key: {k}" for k in sorted(set(missing))]
        lines += [f"  wrong shape: {w}" for w in dict.fromkeys(wrong)]
        lines += [f"  unexpected key: {k}" for k in unexpected]
        raise CheckpointMismatchError("\n".join(lines))


def _unflatten(flat: dict[tuple[str, ...], np.ndarray]) -> dict:
    tree: dict = {}
    for names, value in flat.items():
        node = tree
        for name in names[:-1]:
            node = node.setdefault(name, {})
        node[names[-1]] = value
    return tree


def video_transformer_from_hf(state_dict: Mapping[str, Any], hf_config: Any, *, strict: bool = True,
                              **options: Any) -> tuple[VideoTransformer, dict]:
    """Build a :class:`VideoTransformer` and its variables from a HF video classifier.

    Args:
      state_dict: ``model.state_dict()`` of a VideoMAE / TimeSformer / ViViT ``...ForVideoClassification``,
        as numpy arrays (torch tensors are accepted too).
      hf_config: ``model.config.to_dict()`` (or the config object, or a ``config.json`` dict); missing fields
        take transformers' defaults.
      strict: raise on state-dict keys the model does not use (e.g. a pre-training decoder).
      **options: runtime options of the module: ``dtype``, ``param_dtype``, ``remat``, ``scan`` (params are
        then returned stacked, see ``stack_block_params``), ``dropout_rate``, ``drop_path_rate``.
    Returns:
      ``(module, {"params": ...})``; ``module.apply(variables, x [N,T,H,W,3], train=False)["logits"]``
      equals HF's logits for ``pixel_values = x.transpose(0,1,4,2,3)``.
    Raises:
      CheckpointMismatchError: naming each missing, wrong-shaped (expected vs actual) or unexpected key.
    """
    bad = sorted(set(options) - set(_RUNTIME_OPTIONS))
    if bad:
        raise TypeError(f"unsupported options {bad}; the architecture comes from hf_config. "
                        f"Allowed: {_RUNTIME_OPTIONS}")
    cfg = hf_config.to_dict() if hasattr(hf_config, "to_dict") else dict(hf_config)
    family = _detect_family(cfg, list(state_dict))
    cfg = {**family.defaults, **{k: v for k, v in cfg.items() if v is not None}}
    arrays, origin = _normalise_keys(family, state_dict)

    # Convert into the default (non-scan) layout, then restack if asked for scan.
    plain = VideoTransformer(**family.build(cfg))
    x = jax.ShapeDtypeStruct(_input_shape(cfg), jnp.float32)
    target = jax.eval_shape(plain.init, jax.random.key(0), x)["params"]
    params = _convert(family, target, arrays, origin, strict)
    module = plain.clone(**options)
    params = jax.tree.map(lambda a: jnp.asarray(a, module.param_dtype), params)
    if module.scan:
        params = stack_block_params(params)
    return module, {"params": params}


__all__ = ["CheckpointMismatchError", "raise_mismatch", "to_numpy", "video_transformer_from_hf"]
