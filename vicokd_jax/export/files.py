"""The export directory's files, with numpy and the standard library only (no JAX): names, the manifest and its
sha256 checks, and the predictor's input checks. Shared by the jax.export predictor (`format`) and the ONNX
Runtime one (`onnx_predictor`), so that a deployment without JAX reads and checks an export the same way."""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

VARIABLES_FILE = "variables.msgpack"
PREDICTOR_FILE = "predictor.jaxexport"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "MANIFEST.json"
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model_int8.onnx"
FORMAT = "vicokd_jax.export/1"

OUTPUT_KEYS = ("logits", "view_logits")
BATCH_DIM = "b"


class CorruptExportError(ValueError):
    """An export file exists but does not match the sha256 recorded in MANIFEST.json."""


def sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def normalise_input_spec(input_spec: Mapping[str, Mapping[str, Any]]) -> dict[str, dict]:
    """`{"rgb": {"shape": [V,T,H,W,3], "dtype": "uint8"}, ...}` -> same, with int lists and canonical dtype
    names; raises naming the key on a malformed entry."""
    if not input_spec:
        raise ValueError("input_spec is empty: it must name at least one input, e.g. {'rgb': {...}}")
    out = {}
    for key, spec in input_spec.items():
        if not isinstance(spec, Mapping) or "shape" not in spec or "dtype" not in spec:
            raise ValueError(f"input_spec[{key!r}] must be a dict with 'shape' and 'dtype', got {spec!r}")
        shape = [int(d) for d in spec["shape"]]
        if any(d < 0 for d in shape):
            raise ValueError(f"input_spec[{key!r}]['shape'] must be non-negative ints, got {spec['shape']!r}")
        out[str(key)] = {"shape": shape, "dtype": np.dtype(spec["dtype"]).name}
    return out


def check_batch(input_spec: dict[str, dict], batch: Mapping) -> list:
    """The input arrays of `batch` in `input_spec` order; raises naming the key, expected and actual
    shape/dtype, or the disagreeing batch sizes."""
    args, sizes = [], {}
    for key, spec in input_spec.items():
        if key not in batch:
            raise KeyError(f"batch lacks input {key!r} (has keys {sorted(batch)}); the predictor needs "
                           f"{list(input_spec)}")
        x = batch[key]
        shape, dtype = tuple(np.shape(x)), np.dtype(getattr(x, "dtype", np.asarray(x).dtype))
        expected = ("B", *spec["shape"])
        if len(shape) != len(expected) or list(shape[1:]) != spec["shape"] or shape[0] < 1:
            raise ValueError(f"batch[{key!r}] has shape {shape}; expected {expected} (B >= 1)")
        if dtype != np.dtype(spec["dtype"]):
            raise TypeError(f"batch[{key!r}] has dtype {dtype}; expected {spec['dtype']} (shape {expected})")
        sizes[key] = shape[0]
        args.append(x)
    if len(set(sizes.values())) > 1:
        raise ValueError(f"inputs disagree on the batch size B: {sizes}")
    return args


def write(path: pathlib.Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_manifest(directory: pathlib.Path, names: Sequence[str]) -> None:
    files = {n: {"sha256": sha256(directory / n), "bytes": (directory / n).stat().st_size} for n in names}
    write(directory / MANIFEST_FILE, json.dumps({"format": FORMAT, "files": files}, indent=2).encode())


def read_manifest(directory: pathlib.Path) -> dict:
    """MANIFEST.json of the export `directory`; raises naming the directory when it is missing or unreadable."""
    if not directory.is_dir():
        raise FileNotFoundError(f"export directory {directory} does not exist")
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"export {directory} is missing {MANIFEST_FILE} (expected at {path})")
    try:
        manifest = json.loads(path.read_text())
        manifest["files"]  # noqa: B018 -- presence check
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptExportError(f"{MANIFEST_FILE} of export {directory} is unreadable: {e}") from e
    return manifest


def read_verified(directory: pathlib.Path, name: str, manifest: dict) -> bytes:
    """The bytes of `directory/name`, checked against the sha256 recorded in the manifest."""
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(f"export {directory} is missing {name} (expected at {path})")
    entry = manifest["files"].get(name)
    if entry is None:
        raise CorruptExportError(f"{MANIFEST_FILE} of export {directory} does not list {name}")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry["sha256"]:
        raise CorruptExportError(f"{name} in export {directory} is corrupt: sha256 {actual} does not match "
                                 f"{entry['sha256']} recorded in {MANIFEST_FILE}")
    return data


def read_config(directory) -> tuple[pathlib.Path, dict, dict]:
    """`(directory, manifest, config.json contents)` of an export, both files verified."""
    directory = pathlib.Path(directory)
    manifest = read_manifest(directory)
    return directory, manifest, json.loads(read_verified(directory, CONFIG_FILE, manifest))
