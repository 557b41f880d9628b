"""Import (and export) ST-GCN weights between PyTorch state dicts and `vicokd_jax.models.STGCN` variables.

Two key schemes are understood, detected from the keys:

    original  yysijie/st-gcn `net/st_gcn.py`:  data_bn.*, st_gcn_networks.N.{gcn.conv, tcn.0, tcn.2, tcn.3,
              residual.0, residual.1}.*, edge_importance.N, fcn.*
    pyskl     pyskl / mmaction2 STGCN + GCNHead: backbone.data_bn.*, backbone.gcn.N.{gcn.conv, gcn.bn, gcn.PA,
              tcn.conv, tcn.bn, residual.conv, residual.bn}.*, cls_head.fc_cls.* (or fc_cls.*); the `backbone.`
              prefix may be absent (a bare backbone state dict)

Both compute the same function (see `vicokd_jax.models.stgcn`): the original's `tcn.0` BatchNorm is pyskl's
`gcn.bn`. One table of (torch key, flax path, layout transform) per scheme drives both directions.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp

from vicokd_jax.models.graph import LAYOUTS, get_graph
from vicokd_jax.models.stgcn import DEFAULT_STRIDES, STGCN

SCHEMES = ("original", "pyskl")

# Buffers that carry no learned value; the graph buffers are checked against the layout instead.
_IGNORED_SUFFIXES = ("num_batches_tracked",)


@dataclasses.dataclass(frozen=True)
class _Entry:
    torch_key: str
    collection: str  # "params" | "batch_stats"
    path: tuple[str, ...]
    kind: str  # "conv1x1" | "tconv" | "linear" | "copy"


def _to_flax(kind: str, w: np.ndarray) -> np.ndarray:
    if kind == "conv1x1":  # [O, I, 1, 1] -> Dense kernel [I, O]
        return w[:, :, 0, 0].T
    if kind == "tconv":  # [O, I, kt, 1] -> Conv kernel [kt, 1, I, O]
        return w.transpose(2, 3, 1, 0)
    if kind == "linear":  # [O, I] -> [I, O]
        return w.T
    return w


def _to_torch(kind: str, w: np.ndarray) -> np.ndarray:
    if kind == "conv1x1":
        return w.T[:, :, None, None]
    if kind == "tconv":
        return w.transpose(3, 2, 0, 1)
    if kind == "linear":
        return w.T
    return w


def _torch_shape(kind: str, flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    return _to_torch(kind, np.empty(flax_shape, dtype=np.uint8)).shape


def _module_names(scheme: str, block: int, backbone_prefix: str) -> dict[str, str]:
    """Flax submodule name -> torch module prefix within block `block`."""
    if scheme == "original":
        b = f"st_gcn_networks.{block}."
        return {"gcn_conv": b + "gcn.conv", "gcn_bn": b + "tcn.0", "tcn_conv": b + "tcn.2",
                "tcn_bn": b + "tcn.3", "residual_conv": b + "residual.0", "residual_bn": b + "residual.1",
                "edge_importance": f"edge_importance.{block}"}
    b = f"{backbone_prefix}gcn.{block}."
    return {"gcn_conv": b + "gcn.conv", "gcn_bn": b + "gcn.bn", "tcn_conv": b + "tcn.conv", "tcn_bn": b + "tcn.bn",
            "residual_conv": b + "residual.conv", "residual_bn": b + "residual.bn",
            "edge_importance": b + "gcn.PA"}


_LEAF_NAMES = {"kernel": "weight", "bias": "bias", "scale": "weight", "mean": "running_mean",
               "var": "running_var"}


def _entries(expected: Mapping[str, Any], scheme: str, backbone_prefix: str, head_prefix: str) -> list[_Entry]:
    """One entry per leaf of the model's variables, in a stable order."""
    entries = []
    for collection in ("params", "batch_stats"):
        for path, _ in jax.tree_util.tree_flatten_with_path(expected.get(collection, {}))[0]:
            names = tuple(p.key for p in path)
            module, leaf = names[0], names[-1]
            if module == "data_bn":
                prefix, kind = ("data_bn" if scheme == "original" else backbone_prefix + "data_bn"), "copy"
            elif module == "fc":
                prefix, kind = head_prefix, ("conv1x1" if scheme == "original" else "linear")
            else:
                block = int(module.split("_")[1])
                sub = names[1]
                prefix = _module_names(scheme, block, backbone_prefix)[sub]
                kind = {"gcn_conv": "conv1x1", "residual_conv": "conv1x1", "tcn_conv": "tconv"}.get(sub, "copy")
                if sub == "edge_importance":
                    entries.append(_Entry(prefix, collection, names, "copy"))
                    continue
            if kind != "copy" and leaf == "bias":
                kind = "copy"
            entries.append(_Entry(f"{prefix}.{_LEAF_NAMES[leaf]}", collection, names, kind))
    return entries


def _as_numpy(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Accepts numpy arrays or torch tensors; strips a DataParallel `module.` prefix."""
    out = {}
    for key, value in state_dict.items():
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        out[key.removeprefix("module.")] = np.asarray(value)
    return out


def detect_scheme(state_dict: Mapping[str, Any]) -> tuple[str, str, str]:
    """-> (scheme, backbone_prefix, head_prefix); head_prefix is "" when the dict has no classifier."""
    keys = set(state_dict)
    if any(k.startswith("st_gcn_networks.") for k in keys):
        return "original", "", "fcn" if "fcn.weight" in keys else ""
    for backbone in ("backbone.", ""):
        if any(k.startswith(f"{backbone}gcn.") for k in keys):
            head = next((h for h in ("cls_head.fc_cls", "fc_cls") if f"{h}.weight" in keys), "")
            return "pyskl", backbone, head
    sample = sorted(keys)[:5]
    raise ValueError("not an ST-GCN state dict: expected keys 'st_gcn_networks.N.*' (original st-gcn) or "
                     f"'backbone.gcn.N.*' (pyskl/mmaction2); first keys are {sample}")


def infer_model(state_dict: Mapping[str, Any], layout: str) -> STGCN:
    """The `STGCN` whose variables match a state dict: classes, widths, input channels and data_bn type."""
    sd = _as_numpy(state_dict)
    scheme, backbone, head = detect_scheme(sd)
    names = lambda i: _module_names(scheme, i, backbone)  # noqa: E731
    channels, i = [], 0
    while f"{names(i)['tcn_conv']}.weight" in sd:
        channels.append(int(sd[f"{names(i)['tcn_conv']}.weight"].shape[0]))
        i += 1
    if not channels:
        raise ValueError(f"ST-GCN state dict ({scheme} scheme) has no block 0: missing key "
                         f"{names(0)['tcn_conv']}.weight")
    if len(channels) != len(DEFAULT_STRIDES):
        raise ValueError(f"ST-GCN state dict has {len(channels)} blocks; temporal strides cannot be read from "
                         "weights: build the matching STGCN(...) and pass it as model=")
    in_channels = int(sd[f"{names(0)['gcn_conv']}.weight"].shape[1])
    joints = get_graph(layout).num_joints
    bn_key = ("data_bn" if scheme == "original" else backbone + "data_bn") + ".weight"
    data_bn, num_persons = "none", 2
    if bn_key in sd:
        width = sd[bn_key].shape[0]
        data_bn = "VC" if width == joints * in_channels else "MVC"
        if data_bn == "MVC":
            num_persons = width // (joints * in_channels)
    num_classes = int(sd[f"{head}.weight"].shape[0]) if head else 0
    return STGCN(num_classes=num_classes, layout=layout, in_channels=in_channels, channels=tuple(channels),
                 data_bn=data_bn, num_persons=num_persons,
                 edge_importance=f"{names(0)['edge_importance']}" in sd)


def _expected_variables(model: STGCN) -> dict:
    x = jax.ShapeDtypeStruct((1, model.num_persons, 4, get_graph(model.layout).num_joints, model.in_channels),
                             np.float32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros(x.shape, x.dtype), method="encode"))


def _check_graph_buffers(sd: dict[str, np.ndarray], scheme: str, backbone: str, layout: str) -> None:
    """Checkpoints store the graph they were trained with: refuse a layout that differs from it."""
    ours = get_graph(layout).A
    keys = ["A"] if scheme == "original" else sorted(k for k in sd if k.startswith(f"{backbone}gcn.")
                                                      and k.endswith(".gcn.A"))
    for key in keys:
        if key in sd and (sd[key].shape != ours.shape or not np.allclose(sd[key], ours, atol=1e-6)):
            match = [name for name in LAYOUTS if get_graph(name).A.shape == sd[key].shape
                     and np.allclose(get_graph(name).A, sd[key], atol=1e-6)]
            hint = f"; it matches layout {match[0]!r}" if match else ""
            raise ValueError(f"graph buffer {key!r} of the checkpoint differs from layout {layout!r}{hint}")


def stgcn_from_torch(state_dict: Mapping[str, Any], layout: str, *, model: STGCN | None = None) -> dict:
    """PyTorch ST-GCN state dict (original or pyskl keys) -> `{"params", "batch_stats"}` for `STGCN`.

    Args:
        state_dict: key -> array (numpy or torch). A `module.` prefix is stripped.
        layout: the graph the weights were trained with ("ntu-rgb+d" for the original st-gcn NTU models,
            "nturgb+d" for pyskl/mmaction2); checked against graph buffers stored in the dict.
        model: the target module; default: inferred (`infer_model`), reference depth and strides.
    Raises:
        ValueError naming every missing, unexpected and wrongly shaped key.
    """
    sd = _as_numpy(state_dict)
    scheme, backbone, head = detect_scheme(sd)
    model = model if model is not None else infer_model(sd, layout)
    if model.layout != layout:
        raise ValueError(f"model.layout={model.layout!r} but layout={layout!r}")
    _check_graph_buffers(sd, scheme, backbone, layout)
    expected = _expected_variables(model)
    if model.num_classes and not head:
        raise ValueError(f"STGCN(num_classes={model.num_classes}) needs a classifier, but the state dict has "
                         "none (expected 'fcn.weight', 'cls_head.fc_cls.weight' or 'fc_cls.weight')")
    entries = _entries(expected, scheme, backbone, head)

    variables: dict = {}
    missing, wrong_shape, used = [], [], set()
    for e in entries:
        want = _torch_shape(e.kind, _get(expected, (e.collection,) + e.path).shape)
        if e.torch_key not in sd:
            missing.append(f"{e.torch_key} {want}")
            continue
        used.add(e.torch_key)
        got = sd[e.torch_key]
        if got.shape != want:
            wrong_shape.append(f"{e.torch_key}: expected {want}, got {got.shape}")
            continue
        _set(variables, (e.collection,) + e.path, _to_flax(e.kind, got).astype(np.float32))
    graph_keys = {k for k in sd if k == "A" or k.endswith(".gcn.A")}
    unexpected = sorted(k for k in sd if k not in used and k not in graph_keys
                        and not k.endswith(_IGNORED_SUFFIXES))
    if missing or wrong_shape or unexpected:
        lines = [f"cannot convert ST-GCN state dict ({scheme} scheme) to {_describe(model)}:"]
        lines += [f"  missing key: {m}" for m in missing]
        lines += [f"  wrong shape: {w}" for w in wrong_shape]
        lines += [f"  unexpected key: {u}" for u in unexpected]
        raise ValueError("\n".join(lines))
    return variables


def stgcn_to_torch(variables: Mapping[str, Any], model: STGCN, scheme: str = "pyskl") -> dict[str, np.ndarray]:
    """`STGCN` variables -> a PyTorch state dict of numpy arrays in `scheme` ("original" or "pyskl").

    Graph buffers are included (as the references store them); `num_batches_tracked` is not.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    backbone = "backbone." if scheme == "pyskl" else ""
    head = ("fcn" if scheme == "original" else "cls_head.fc_cls") if model.num_classes else ""
    out = {}
    graph = get_graph(model.layout).A
    if scheme == "original":
        out["A"] = graph.copy()
    for e in _entries(_expected_variables(model), scheme, backbone, head):
        out[e.torch_key] = np.asarray(_to_torch(e.kind, np.asarray(_get(variables, (e.collection,) + e.path))))
    if scheme == "pyskl":
        for i in range(len(model.channels)):
            out[f"{backbone}gcn.{i}.gcn.A"] = graph.copy()
    return out


def _describe(model: STGCN) -> str:
    return (f"STGCN(num_classes={model.num_classes}, layout={model.layout!r}, channels={tuple(model.channels)}, "
            f"data_bn={model.data_bn!r})")


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _set(tree, path, value):
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


# ----------------------------------------------------------------------------------------------------------------
# Converted checkpoints on disk: an orbax checkpoint of the variables plus the module's constructor arguments.
# ----------------------------------------------------------------------------------------------------------------
_MODEL_FILE = "model.json"
_VARIABLES_DIR = "variables"
ONNX_FILE = "model.onnx"
DEFAULT_ONNX_FRAMES = 300  # the original st-gcn's window on NTU RGB+D (pyskl's configs use 100)


def model_kwargs(model: STGCN) -> dict:
    """JSON-able constructor arguments that rebuild `model` (float32 dtypes)."""
    return dict(num_classes=model.num_classes, layout=model.layout, in_channels=model.in_channels,
                channels=list(model.channels), strides=list(model.strides), temporal_kernel=model.temporal_kernel,
                edge_importance=model.edge_importance, data_bn=model.data_bn, num_persons=model.num_persons)


def save_stgcn(directory, model: STGCN, variables: Mapping[str, Any], source: str = "") -> None:
    """Write `directory/model.json` and the orbax checkpoint `directory/variables`; refuses an existing one."""
    directory = pathlib.Path(directory).absolute()
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} exists and is not empty: refusing to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory / _VARIABLES_DIR, jax.tree.map(np.asarray, dict(variables)))
    checkpointer.wait_until_finished()
    # model.json last: its presence marks a complete conversion.
    meta = {"architecture": "stgcn", "model": model_kwargs(model), "source": source}
    (directory / _MODEL_FILE).write_text(json.dumps(meta, indent=1))


def load_stgcn(directory) -> tuple[STGCN, dict]:
    """Read what `save_stgcn` wrote: `(STGCN module, {"params", "batch_stats"})`."""
    directory = pathlib.Path(directory).absolute()
    meta_path = directory / _MODEL_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: not a converted ST-GCN checkpoint (or an incomplete one)")
    meta = json.loads(meta_path.read_text())
    if meta.get("architecture") != "stgcn":
        raise ValueError(f"{meta_path}: architecture is {meta.get('architecture')!r}, expected 'stgcn'")
    kwargs = dict(meta["model"])
    kwargs["channels"], kwargs["strides"] = tuple(kwargs["channels"]), tuple(kwargs["strides"])
    model = STGCN(**kwargs)
    expected = _expected_variables(model)
    target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), expected)
    variables = ocp.StandardCheckpointer().restore(directory / _VARIABLES_DIR, target)
    return model, variables


def write_onnx(directory, model: STGCN, variables: Mapping[str, Any], *, num_frames: int = DEFAULT_ONNX_FRAMES,
               num_persons: int | None = None) -> pathlib.Path:
    """`directory/model.onnx`: the ST-GCN's inference as an ONNX graph (jax2onnx; the edge extra).

    Input `skeleton` float32 [B, M, T, J, C] with a symbolic batch B and fixed M (`num_persons`, default the
    model's) and T (`num_frames`: the strided temporal convolutions need a static length); output `logits`
    [B, classes]. Refuses to replace an existing file.
    """
    from vicokd_jax.export import onnx_convert

    missing = onnx_convert.missing_extra()
    if missing:
        raise ImportError(f"writing {ONNX_FILE}: {missing}")
    path = pathlib.Path(directory) / ONNX_FILE
    if path.exists():
        raise FileExistsError(f"{path} exists: refusing to overwrite it")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    spec = {"skeleton": {"shape": [num_persons or model.num_persons, num_frames, get_graph(model.layout).num_joints,
                                   model.in_channels], "dtype": "float32"}}
    variables = jax.tree.map(np.asarray, dict(variables))
    return onnx_convert.convert(lambda x: {"logits": model.apply(variables, x, train=False)}, spec, ("logits",),
                                path)
