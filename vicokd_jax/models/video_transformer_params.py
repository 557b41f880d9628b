"""Parameter layouts of the video transformer: per-block (``block_{i}``) vs scanned (``blocks`` with a leading
``[depth]`` axis), and parameter counts."""
from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_BLOCK_RE = re.compile(r"^block_(\d+)$")


def stack_block_params(params: Any) -> dict:
    """Non-scan layout -> ``scan=True`` layout: every ``{block_0, ..., block_{L-1}}`` group becomes
    ``blocks`` with leaves stacked on a new leading ``[L]`` axis. Other entries are copied unchanged."""
    if not isinstance(params, dict) and not hasattr(params, "items"):
        return params
    out, blocks = {}, {}
    for key, value in params.items():
        m = _BLOCK_RE.match(key)
        if m:
            blocks[int(m.group(1))] = value
        else:
            out[key] = stack_block_params(value)
    if blocks:
        if sorted(blocks) != list(range(len(blocks))):
            raise ValueError(f"block indices are not 0..L-1: {sorted(blocks)}")
        out["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *[blocks[i] for i in range(len(blocks))])
    return out


def unstack_block_params(params: Any) -> dict:
    """Inverse of :func:`stack_block_params`: ``blocks`` (leading ``[L]`` axis) -> ``block_0..block_{L-1}``."""
    if not isinstance(params, dict) and not hasattr(params, "items"):
        return params
    out = {}
    for key, value in params.items():
        if key == "blocks":
            depth = jax.tree.leaves(value)[0].shape[0]
            for i in range(depth):
                out[f"block_{i}"] = jax.tree.map(lambda a, i=i: a[i], value)
        else:
            out[key] = unstack_block_params(value)
    return out


def count_params(tree: Any) -> int:
    """Number of scalars in a pytree of arrays or ``jax.ShapeDtypeStruct``s."""
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


__all__ = ["stack_block_params", "unstack_block_params", "count_params"]
