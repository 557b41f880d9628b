"""Rebuild the reference ST-GCN state dict of `shared/fixtures/stgcn_parity` from its closed-form formula.

`goldens.json` states the formula; every entry is a function of its key's index in the manifest and its kind, so
the weights need not be stored. `state_dict_sha256` hashes key bytes then array bytes in manifest order, to prove
the rebuild is the exact state dict the golden outputs were computed with.
"""
import hashlib
import json
import pathlib

import numpy as np

_M32 = np.uint64(0xFFFFFFFF)


def det_values(shape, idx: int) -> np.ndarray:
    """Uniform [-1, 1) float64 values from the fixture's exact uint32 hash of (flat index, key index)."""
    k = np.arange(int(np.prod(shape)), dtype=np.uint64)
    h = (k * np.uint64(2654435761) + np.uint64(idx * 40503 + 12345)) & _M32
    for _ in range(2):
        h ^= h >> np.uint64(16)
        h = (h * np.uint64(0x45D9F3B)) & _M32
    h ^= h >> np.uint64(16)
    return (2.0 * (h.astype(np.float64) / 2.0**32) - 1.0).reshape(shape)


def _value(entry: dict, graph_a: np.ndarray) -> np.ndarray:
    kind, shape = entry["kind"], tuple(entry["shape"])
    if kind == "graph_buffer_untouched":
        return graph_a
    if kind == "untouched":  # num_batches_tracked of a fresh torch BatchNorm
        return np.zeros(shape, np.int64)
    s = det_values(shape, entry["idx"])
    value = {
        "weight": lambda: s * np.sqrt(6.0 / np.prod(shape[1:])),
        "bias": lambda: 0.02 * s,
        "bn_weight": lambda: 1.0 + 0.1 * s,
        "bn_bias": lambda: 0.02 * s,
        "bn_mean": lambda: 0.02 * s,
        "bn_var": lambda: 1.0 + 0.1 * (s + 1.0),
        "importance": lambda: 1.0 + 0.1 * s,
    }[kind]()
    return value.astype(np.float32)


def golden_state_dict(parity_dir: pathlib.Path) -> dict[str, np.ndarray]:
    """The original st-gcn `state_dict()` (manifest order) the fixture's outputs come from."""
    manifest = json.loads((parity_dir / "orig_stgcn_param_manifest.json").read_text())
    graph_a = np.load(parity_dir / "orig_graph_A_ntu_spatial.npy")
    return {entry["key"]: _value(entry, graph_a) for entry in manifest}


def state_dict_sha256(state_dict: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key, value in state_dict.items():
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()
