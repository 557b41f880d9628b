"""Devices: the mesh, sharding rules for parameters and batches, host -> global arrays, multi-host start-up.

The mesh has two named axes, `data` and `fsdp`. The batch is split over both; parameters are replicated, or
sharded over `fsdp` on their largest divisible dimension when large (FSDP). Everything else (optimizer state)
follows the parameters' shardings. Axes are `AxisType.Auto` (GSPMD-style propagation).
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp")
_DEVICE_DTYPES = {np.dtype(np.int64): np.int32, np.dtype(np.float64): np.float32}  # what the step expects
BATCH = P(AXES)  # leading (batch) dimension split over every device
STACKED_BATCH = P(None, AXES)  # [K, B, ...]: the batches of K steps of one call (train.steps_per_call)


def initialize_distributed() -> None:
    """`jax.distributed.initialize` when launched as several processes (a no-op for one process).

    Detected from `JAX_COORDINATOR_ADDRESS` (host:port of process 0) with `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`,
    or from a cluster JAX knows (SLURM, TPU pods), whose environment `jax.distributed.initialize()` reads itself.
    On CPU the processes' collectives go through gloo (JAX's default `jax_cpu_collectives_implementation`).
    Must run before anything touches the devices.
    """
    if jax.distributed.is_initialized() if hasattr(jax.distributed, "is_initialized") else False:
        return
    env = os.environ
    if "JAX_COORDINATOR_ADDRESS" in env and "JAX_NUM_PROCESSES" in env:
        missing = [k for k in ("JAX_PROCESS_ID",) if k not in env]
        if missing:
            raise ValueError(f"JAX_COORDINATOR_ADDRESS and JAX_NUM_PROCESSES are set but not {missing}")
        jax.distributed.initialize(env["JAX_COORDINATOR_ADDRESS"], num_processes=int(env["JAX_NUM_PROCESSES"]),
                                   process_id=int(env["JAX_PROCESS_ID"]))
    elif any(k in env for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES")):
        jax.distributed.initialize()


def make_mesh(data: int = -1, fsdp: int = 1, devices=None) -> jax.sharding.Mesh:
    """Mesh of shape (data, fsdp) over `devices` (default: all); -1 means "all remaining devices"."""
    devices = list(devices if devices is not None else jax.devices())
    n = len(devices)
    sizes = [data, fsdp]
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh: at most one axis may be -1, got data={data}, fsdp={fsdp}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if known < 1 or n % known:
        raise ValueError(f"mesh: data={data} x fsdp={fsdp} does not divide the {n} devices")
    sizes = [n // known if s == -1 else s for s in sizes]
    if int(np.prod(sizes)) != n:
        raise ValueError(f"mesh: data={sizes[0]} x fsdp={sizes[1]} = {np.prod(sizes)} but there are {n} devices")
    return jax.make_mesh(tuple(sizes), AXES, axis_types=(AxisType.Auto,) * 2, devices=devices)


def mesh_from_config(mesh_cfg) -> jax.sharding.Mesh:
    return make_mesh(mesh_cfg.data, mesh_cfg.fsdp)


def _param_spec(shape, fsdp_size: int, min_size: int) -> P:
    """FSDP rule: shard the largest dimension divisible by the fsdp axis size, for tensors >= min_size."""
    if fsdp_size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    order = sorted(range(len(shape)), key=lambda i: -shape[i])
    for axis in order:
        if shape[axis] % fsdp_size == 0:
            spec = [None] * len(shape)
            spec[axis] = "fsdp"
            return P(*spec)
    return P()


def param_shardings(mesh, tree, min_size: int = 2**16):
    """NamedShardings for a pytree of arrays / ShapeDtypeStructs (parameters or optimizer state)."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, _param_spec(np.shape(x), fsdp, min_size)), tree)


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, BATCH)


def global_batch(host_batch: dict, mesh) -> dict:
    """Per-host numpy batch -> global jax arrays split over the mesh (non-numeric keys such as `id` dropped).

    Every process passes its own rows; `jax.make_array_from_process_local_data` assembles the global batch.
    """
    sharding = batch_sharding(mesh)
    return {key: jax.make_array_from_process_local_data(sharding, value)
            for key, value in _numeric_arrays(host_batch).items()}


def stacked_batch_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, STACKED_BATCH)


def global_batches(host_batches: list[dict], mesh) -> dict:
    """K per-host numpy batches -> global jax arrays `[K, B, ...]`, each step's rows split like `global_batch`."""
    sharding = stacked_batch_sharding(mesh)
    arrays = [_numeric_arrays(batch) for batch in host_batches]
    return {key: jax.make_array_from_process_local_data(sharding, np.stack([a[key] for a in arrays]))
            for key in arrays[0]}


def global_batch_from_full(batch: dict, mesh) -> dict:
    """The same global batch held whole by every process -> global jax arrays split over the mesh.

    Unlike `global_batch` (each process passes only its rows), every process passes all rows and each device takes
    its slice: the global array equals `batch` row for row whatever the process count (used for evaluation).
    """
    sharding = batch_sharding(mesh)
    return {key: jax.make_array_from_callback(value.shape, sharding, lambda index, v=value: v[index])
            for key, value in _numeric_arrays(batch).items()}


def _numeric_arrays(batch: dict) -> dict:
    """The numeric entries of a numpy batch in their device dtypes (string keys such as `id` dropped)."""
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if value.dtype.kind in "biuf":
            out[key] = value.astype(_DEVICE_DTYPES.get(value.dtype, value.dtype))
    return out
