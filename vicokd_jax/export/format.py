"""Self-contained student exports: weights, config and a `jax.export`-serialised predictor.

An export directory holds

    variables.msgpack     the student's variables only ("params", plus "batch_stats" if any), numpy arrays,
                          `flax.serialization.msgpack_serialize`
    predictor.jaxexport   `jax.export` serialisation of
                              (variables, rgb [b,V,T,H,W,3] uint8, view_mask [b,V] bool)
                                  -> {"logits": [b,C] float32, "view_logits": [b,V,C] float32}
                          with a symbolic batch dimension "b"; the weights are arguments, not constants, and
                          the arguments after `variables` follow the order of `input_spec`
    config.json           the run's config + model description, plus "input_spec" (per-example shapes and
                          dtypes), "class_names" (when the config has them) and "export_info" (versions,
                          creation time, platforms lowered for, argument/output names)
    model.onnx            the same predictor as an ONNX graph (weights baked in as initialisers): inputs
                          `rgb` uint8 [B,V,T,H,W,3] and `view_mask` bool [B,V], outputs `logits` and
                          `view_logits`, symbolic batch "B"; runs with ONNX Runtime, no JAX (`onnx_predictor`)
    model_int8.onnx       its post-training int8 quantisation (dynamic: int8 weights, activations quantised
                          per call) for CPUs and edge devices
    MANIFEST.json         every other file with its size and sha256

The two ONNX files are written when the edge extra (requirements-edge.txt) is installed; config.json
`export_info.onnx` records the converter's versions and the ONNX-vs-JAX differences measured at export time, or
why the files are absent.

Writing (`export_predictor`) and loading (`load`) need only jax, numpy and `flax.serialization` (plus the edge
extra for the ONNX files): this module imports no model or training code and opens no dataset. Exporting a
trained student from a run is `vicokd_jax.export.student`.

    path = export_predictor("runs/demo/export", student.apply, variables, config, input_spec)
    predict = load(path)
    out = predict(batch)        # batch: dict with at least the input_spec keys; extra keys are ignored
    out["logits"]               # [B, C]
"""
from __future__ import annotations

import datetime
import importlib.metadata
import inspect
import json
import os
import pathlib
import platform as _platform
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import serialization

from vicokd_jax.export import onnx_convert
from vicokd_jax.export.files import (BATCH_DIM, CONFIG_FILE, FORMAT, MANIFEST_FILE, ONNX_FILE, ONNX_INT8_FILE,
                                     OUTPUT_KEYS, PREDICTOR_FILE, VARIABLES_FILE, check_batch, normalise_input_spec,
                                     read_config, read_verified, write, write_manifest)

VARIABLE_COLLECTIONS = ("params", "batch_stats")  # what a student needs at inference
# CPU always; CUDA so the same export runs on GPU hosts (lowering needs no GPU).
DEFAULT_PLATFORMS = ("cpu", "cuda")
KNOWN_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # jax.export does not reject unknown names itself


# ----------------------------------------------------------------------------------------------------------
# Writing.
# ----------------------------------------------------------------------------------------------------------


def _to_numpy(x) -> np.ndarray:
    """A (possibly sharded, possibly multi-host) array -> a host numpy array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        # NOTE: only multi-host shards need a collective; every process must call export_predictor then.
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def _inference_variables(variables: Mapping) -> dict:
    """The collections a student needs at inference (`params`, `batch_stats`) as plain dicts of numpy arrays.

    Optimizer state, teacher variables or other collections passed by mistake are left out on purpose: the
    export holds the student's weights only.
    """
    state = serialization.to_state_dict(variables)
    if "params" not in state:
        raise ValueError(f"variables must hold a 'params' collection; got collections {sorted(state)}")
    kept = {k: state[k] for k in VARIABLE_COLLECTIONS if k in state}
    return jax.tree.map(_to_numpy, kept)


def _accepts_train(apply_fn: Callable) -> bool:
    """Whether `apply_fn` takes a `train` keyword (`Module.apply` does, through **kwargs)."""
    try:
        params = inspect.signature(apply_fn).parameters.values()
    except (TypeError, ValueError):  # builtins / C callables without a signature
        return False
    return any(p.name == "train" or p.kind is p.VAR_KEYWORD for p in params)


def _predictor_fn(apply_fn: Callable, input_keys: Sequence[str]) -> Callable:
    """`(variables, *inputs in input_spec order) -> {"logits", "view_logits"}` (float32), calling
    `apply_fn(variables, *inputs, train=False)`, or without `train` when apply_fn has no such argument."""
    kwargs = {"train": False} if _accepts_train(apply_fn) else {}

    def predictor(variables, *inputs):
        out = apply_fn(variables, *inputs, **kwargs)
        missing = [k for k in OUTPUT_KEYS if k not in out]
        if missing:
            raise KeyError(f"apply_fn output lacks {missing}; it returned keys {sorted(out)}")
        return {k: out[k].astype(np.float32) for k in OUTPUT_KEYS}

    predictor.__name__ = f"vicokd_predictor_{'_'.join(input_keys)}"
    return predictor


def _input_avals(input_spec: dict[str, dict]) -> list[jax.ShapeDtypeStruct]:
    """Per-example specs -> `ShapeDtypeStruct`s `[b, *shape]` sharing ONE symbolic batch dimension."""
    (batch,) = jax.export.symbolic_shape(BATCH_DIM)
    return [jax.ShapeDtypeStruct((batch, *spec["shape"]), np.dtype(spec["dtype"])) for spec in input_spec.values()]


def _lower(fn: Callable, args: Sequence[Any], platforms: Sequence[str]) -> tuple[jax.export.Exported, dict]:
    """`jax.export` for all `platforms` at once; if that fails, for each platform that lowers on its own.

    Returns (exported, notes) where notes maps each dropped platform to the reason. Raises the original error
    when no platform lowers (e.g. `fn` itself is broken).
    """
    try:
        return jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*args), {}
    except Exception as joint_error:  # noqa: BLE001 -- retried per platform below, re-raised if all fail
        notes, ok = {}, []
        for p in platforms:
            try:
                jax.export.export(jax.jit(fn), platforms=(p,))(*args)
                ok.append(p)
            except Exception as e:  # noqa: BLE001
                notes[p] = f"{type(e).__name__}: {e}"[:500]
        if not ok:
            raise joint_error
        return jax.export.export(jax.jit(fn), platforms=tuple(ok))(*args), notes


def _versions() -> dict[str, str]:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    # NOTE: vicokd_jax's version comes from package metadata, not `import vicokd_jax` (which imports models).
    return {"jax": jax.__version__, "jaxlib": version("jaxlib"), "flax": version("flax"),
            "numpy": np.__version__, "vicokd_jax": version("vicokd_jax"), "python": _platform.python_version()}


def _jsonable(value: Any, path: str = "config") -> Any:
    """`value` with tuples -> lists, numpy scalars/arrays -> Python, paths -> str; raises naming the key
    path for anything else that JSON cannot hold."""
    if hasattr(value, "to_dict") and not isinstance(value, Mapping):  # ml_collections.ConfigDict
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{path} = {value!r} ({type(value).__name__}) cannot be stored in {CONFIG_FILE}")


def _find_class_names(config: dict) -> list | None:
    """`class_names` at the top level of the config, or under `data` / `model`."""
    for section in (config, config.get("data"), config.get("model")):
        if isinstance(section, dict) and section.get("class_names") is not None:
            return list(section["class_names"])
    return None


def _config_json(config: Mapping, input_spec: dict, exported: jax.export.Exported, notes: dict,
                 requested: Sequence[str]) -> dict:
    """The contents of config.json: the given config plus `input_spec`, `class_names` and `export_info`."""
    doc = _jsonable(config)
    for reserved in ("input_spec", "export_info"):
        if reserved in doc:
            raise ValueError(f"config already has a top-level {reserved!r} key; export_predictor writes it")
    doc["input_spec"] = input_spec
    class_names = _find_class_names(doc)
    if class_names is not None:
        doc["class_names"] = class_names
    doc["export_info"] = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "platforms": list(exported.platforms),
        "platforms_requested": list(requested),
        # Why a platform is missing (e.g. "cuda" could not be lowered on this host); empty when none is.
        "platform_notes": notes,
        "calling_convention_version": exported.calling_convention_version,
        "arguments": ["variables", *input_spec],
        "outputs": list(OUTPUT_KEYS),
        "batch_dim": BATCH_DIM,
        "files": {"variables": VARIABLES_FILE, "predictor": PREDICTOR_FILE},
    }
    return doc


def _check_replaceable(out_dir: pathlib.Path) -> None:
    """Refuse to replace anything but an earlier export (or an empty folder): nothing else may be lost."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise FileExistsError(f"export target {out_dir} exists and is not a directory; not replacing it")
    if any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).exists():
        raise FileExistsError(f"export target {out_dir} is a non-empty directory without {MANIFEST_FILE} "
                              "(not an export); refusing to replace it")


def _swap_into_place(new_dir: pathlib.Path, out_dir: pathlib.Path) -> None:
    """Move the complete `new_dir` to `out_dir`, replacing an existing export.

    NOTE: POSIX has no portable atomic directory swap; the old export is first renamed aside (a crash between
    the two renames leaves it, complete, in `.NAME.old-*`) and deleted only once the new one is in place.
    """
    if not out_dir.exists():
        os.replace(new_dir, out_dir)
        return
    old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.replace(out_dir, old / "export")
    try:
        os.replace(new_dir, out_dir)
    except BaseException:
        os.replace(old / "export", out_dir)  # put the previous export back
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def export_predictor(out_dir, apply_fn: Callable, variables: Mapping, config: Mapping,
                     input_spec: Mapping[str, Mapping[str, Any]], *,
                     platforms: Sequence[str] = DEFAULT_PLATFORMS, onnx: bool | None = None) -> pathlib.Path:
    """Writes a self-contained export of a student to `out_dir` and returns its path.

    Args:
        out_dir: target directory. An existing export there is replaced only once the new one is complete; on
            any failure it is left intact. A non-export, non-empty directory is never replaced.
        apply_fn: `apply_fn(variables, *inputs[, train=False]) -> dict` with at least "logits" [B,C] and
            "view_logits" [B,V,C]; inputs in `input_spec` order, e.g. `Student.apply` (called as
            `Student.apply(variables, rgb, view_mask, train=False)`); `train=False` is passed only when
            apply_fn accepts a `train` keyword.
        variables: the student's variables; only "params" and "batch_stats" are kept.
        config: JSON-able dict (or ConfigDict) of the run's config + model description.
        input_spec: per-example shapes and dtypes, batch excluded, e.g. `{"rgb": {"shape": [V,T,H,W,3],
            "dtype": "uint8"}, "view_mask": {"shape": [V], "dtype": "bool"}}`.
        platforms: platforms to lower for; those that cannot be lowered here are dropped (at least one must
            remain) and the reason is recorded in config.json `export_info.platform_notes`.
        onnx: also write `model.onnx` and its int8 quantisation `model_int8.onnx` (`onnx_convert`): True
            requires the edge extra (requirements-edge.txt), False skips them, None (default) writes them when
            the extra is installed and records why not in `export_info.onnx` otherwise.
    """
    out_dir = pathlib.Path(out_dir)
    spec = normalise_input_spec(input_spec)
    unknown = [p for p in platforms if p not in KNOWN_PLATFORMS]
    if unknown or not platforms:
        raise ValueError(f"platforms {list(platforms)}: expected a non-empty subset of {list(KNOWN_PLATFORMS)}")
    missing = onnx_convert.missing_extra()
    if onnx and missing:
        raise ImportError(f"onnx=True: {missing}")
    _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Built in a sibling temp dir (same filesystem, so the final rename is cheap and never half-copies).
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _build(tmp, apply_fn, variables, config, spec, platforms, onnx=onnx is not False and not missing,
               onnx_required=bool(onnx))
        _swap_into_place(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a no-op once tmp has been renamed into place
    return out_dir


def _build(directory: pathlib.Path, apply_fn: Callable, variables: Mapping, config: Mapping, spec: dict,
           platforms: Sequence[str], *, onnx: bool, onnx_required: bool) -> None:
    """Writes all export files into the (empty) `directory`. An ONNX conversion that fails is an error when
    `onnx_required`, else recorded in `export_info.onnx` (with a warning) and the export written without it."""
    var_bytes = serialization.msgpack_serialize(_inference_variables(variables))
    # Trace against the round-tripped variables so the exported in_tree is exactly what `load` will pass.
    restored = serialization.msgpack_restore(var_bytes)
    var_avals = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), restored)
    predictor = _predictor_fn(apply_fn, list(spec))
    exported, notes = _lower(predictor, [var_avals, *_input_avals(spec)], platforms)
    doc = _config_json(config, spec, exported, notes, platforms)
    names = [VARIABLES_FILE, PREDICTOR_FILE, CONFIG_FILE]
    if onnx:
        try:
            doc["export_info"]["onnx"] = onnx_convert.write_models(
                directory, lambda *inputs: predictor(restored, *inputs), spec, OUTPUT_KEYS)
            names += [ONNX_FILE, ONNX_INT8_FILE]
        except Exception as e:  # noqa: BLE001 -- the converter raises many types; the jax export stands alone
            if onnx_required:
                raise
            reason = f"the ONNX conversion failed: {type(e).__name__}: {e}"[:2000]
            warnings.warn(f"export {directory.name}: {reason}; writing the jax.export predictor only",
                          stacklevel=3)
            for name in (ONNX_FILE, ONNX_INT8_FILE):
                (directory / name).unlink(missing_ok=True)
            doc["export_info"]["onnx"] = {"skipped": reason}
    else:
        doc["export_info"]["onnx"] = {"skipped": onnx_convert.missing_extra() or "onnx=False"}
    write(directory / VARIABLES_FILE, var_bytes)
    write(directory / PREDICTOR_FILE, bytes(exported.serialize()))
    write(directory / CONFIG_FILE, json.dumps(doc, indent=2).encode())
    write_manifest(directory, names)


# ----------------------------------------------------------------------------------------------------------
# Reading.
# ----------------------------------------------------------------------------------------------------------


def _run_device(exported_platforms: Sequence[str]) -> jax.Device:
    """The first local device of a platform the predictor was lowered for, preferring this process's default
    (so a CPU-only export loaded on a GPU host runs on its CPU)."""
    preferred = [jax.export.default_export_platform(), *exported_platforms]
    for platform in dict.fromkeys(p for p in preferred if p in exported_platforms):
        try:
            devices = jax.local_devices(backend=platform)
        except (RuntimeError, ValueError):  # backend not present in this process
            continue
        if devices:
            return devices[0]
    raise RuntimeError(f"predictor was exported for {list(exported_platforms)} but this process has none of "
                       f"those devices (default backend {jax.default_backend()!r})")


class Predictor:
    """`predict(batch) -> {"logits": [B, C], "view_logits": [B, V, C]}` (jax arrays, float32).

    `batch` is a dict holding at least the keys of `input_spec` with shapes `[B, *input_spec[k]["shape"]]` and
    the exact dtypes recorded; extra keys are ignored. Any batch size B >= 1 works (symbolic batch).

    Attributes:
        variables: the student's variables (on the device the predictor runs on).
        config: the contents of config.json (run config, "input_spec", "class_names", "export_info").
        input_spec: per-example shapes/dtypes of the inputs, in argument order.
        exported: the deserialised `jax.export.Exported`.
    """

    def __init__(self, exported: jax.export.Exported, variables: dict, config: dict):
        self.exported = exported
        self.config = config
        self.input_spec: dict[str, dict] = normalise_input_spec(config["input_spec"])
        self.device = _run_device([p.lower() for p in exported.platforms])
        self.variables = jax.device_put(variables, self.device)  # once, not per call
        self._call = jax.jit(exported.call)  # cached per batch size

    def check_batch(self, batch: Mapping) -> list:
        """The input arrays in argument order; raises naming the key, expected and actual shape/dtype."""
        return check_batch(self.input_spec, batch)

    def __call__(self, batch: Mapping) -> dict:
        args = jax.device_put(self.check_batch(batch), self.device)
        return self._call(self.variables, *args)

    def __repr__(self) -> str:
        return (f"Predictor(inputs={self.input_spec}, outputs={list(OUTPUT_KEYS)}, "
                f"platforms={list(self.exported.platforms)}, device={self.device})")


def load(out_dir) -> Predictor:
    """Loads an export written by `export_predictor`, verifying every file against MANIFEST.json.

    Needs no model or training code. Raises `FileNotFoundError` naming a missing file and
    `CorruptExportError` naming a file whose sha256 does not match.
    """
    directory, manifest, config = read_config(out_dir)
    variables = serialization.msgpack_restore(read_verified(directory, VARIABLES_FILE, manifest))
    exported = jax.export.deserialize(bytearray(read_verified(directory, PREDICTOR_FILE, manifest)))
    return Predictor(exported, variables, config)
