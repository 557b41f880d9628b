"""Devices: the mesh, sharding rules for parameters and batches, host -> global arrays, multi-host start-up.

The mesh has two named axes, `data` and `fsdp` (`AxisType.Auto`: GSPMD-style propagation). The batch is split
over both. A variable (parameter, BatchNorm statistic, teacher weight) is sharded by the first rule of
`config.mesh.rules` whose regex is found in its path, else by the size heuristic (`fallback_spec`: the largest
dimension divisible by the fsdp axis is split over it, for tensors of at least `mesh.fsdp_min_size` elements).

Rules, big_vision style: an ordered sequence of `(regex, spec)` pairs; `regex` is searched (`re.search`) in the
"/"-joined key path of the variable (`encoder/block_0/attn/query/kernel`; in a variables dict
`params/encoder/...`); `spec` is a PartitionSpec written as a tuple with one entry per dimension, each None, an
axis name or a tuple of axis names, and `()` means replicated whatever the rank:

    rules = (("attn/(query|key|value)/kernel$", ("fsdp", None, None)), ("mlp/fc1/kernel$", ("fsdp", None)),
             ("pos_embedding$", ()))

A rule whose spec does not fit the tensor it matches (another rank, a dimension not divisible by the axes) is an
error naming the path, the rule and the shape. Optimizer state follows the parameters: a leaf whose path ends
with a parameter's path and has its shape (optax's `mu`, `nu`, `trace`, ... whatever the wrappers around them)
takes that parameter's sharding; other optimizer leaves (step counts) use the size heuristic. Matching on path
suffixes, not on tree structure, also covers masked and partial optimizer states.

Hybrid meshes (MaxText style): `mesh.dcn_data` x `mesh.dcn_fsdp` > 1 splits the `data` / `fsdp` axes into a
within-granule part (fast interconnect) and an across-granule part (data-centre network), a granule being a TPU
slice or else a process: `jax.experimental.mesh_utils.create_hybrid_device_mesh`.
"""
from __future__ import annotations

import os
import re

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp")
_DEVICE_DTYPES = {np.dtype(np.int64): np.int32, np.dtype(np.float64): np.float32}  # what the step expects
BATCH = P(AXES)  # leading (batch) dimension split over every device
STACKED_BATCH = P(None, AXES)  # [K, B, ...]: the batches of K steps of one call (train.steps_per_call)


def initialize_distributed() -> None:
    """`jax.distributed.initialize` when launched as several processes (a no-op for one process).

    Detected from `JAX_COORDINATOR_ADDRESS` (host:port of process 0) with `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`,
    or from a cluster JAX knows (SLURM, TPU pods), whose environment `jax.distributed.initialize()` reads itself.
    On CPU the processes' collectives go through gloo (JAX's default `jax_cpu_collectives_implementation`);
    there, and for several CPU devices of one process, `match_cpu_collectives` sets an XLA option first.
    Must run before anything touches the devices.
    """
    if jax.distributed.is_initialized() if hasattr(jax.distributed, "is_initialized") else False:
        return
    env = os.environ
    cluster = any(k in env for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES"))
    if cluster or forced_cpu_device_count() > 1:
        match_cpu_collectives()
    if "JAX_COORDINATOR_ADDRESS" in env and "JAX_NUM_PROCESSES" in env:
        missing = [k for k in ("JAX_PROCESS_ID",) if k not in env]
        if missing:
            raise ValueError(f"JAX_COORDINATOR_ADDRESS and JAX_NUM_PROCESSES are set but not {missing}")
        jax.distributed.initialize(env["JAX_COORDINATOR_ADDRESS"], num_processes=int(env["JAX_NUM_PROCESSES"]),
                                   process_id=int(env["JAX_PROCESS_ID"]))
    elif cluster:
        jax.distributed.initialize()


CPU_COLLECTIVES_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def forced_cpu_device_count() -> int:
    """N of `--xla_force_host_platform_device_count=N` in XLA_FLAGS (1 when absent)."""
    found = re.findall(r"--xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return int(found[-1]) if found else 1


def match_cpu_collectives() -> None:
    """Adds CPU_COLLECTIVES_FLAG to XLA_FLAGS (unless XLA_FLAGS sets that option itself): before the backend starts.

    With XLA:CPU's concurrency-optimised scheduler, CPU devices training the default config (the teacher's RGB
    stream on frame differences) stop agreeing on the order of their collectives: two processes abort in gloo
    ("op.preamble.length <= op.nbytes ... collective mismatch"), and four devices of one process time out in
    their rendezvous. The option only changes how CPU programs are scheduled; accelerator runs are unaffected.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if CPU_COLLECTIVES_FLAG.split("=")[0] not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {CPU_COLLECTIVES_FLAG}".strip()


# ------------------------------------------------------------------------------------------------------------
# The mesh
# ------------------------------------------------------------------------------------------------------------
def mesh_sizes(data: int, fsdp: int, num_devices: int) -> tuple[int, int]:
    """(data, fsdp) with a -1 ("all remaining devices") resolved; their product must be `num_devices`."""
    sizes = [data, fsdp]
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh: at most one axis may be -1, got data={data}, fsdp={fsdp}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if known < 1 or num_devices % known:
        raise ValueError(f"mesh: data={data} x fsdp={fsdp} does not divide the {num_devices} devices")
    sizes = [num_devices // known if s == -1 else s for s in sizes]
    if int(np.prod(sizes)) != num_devices:
        raise ValueError(f"mesh: data={sizes[0]} x fsdp={sizes[1]} = {np.prod(sizes)} but there are "
                         f"{num_devices} devices")
    return sizes[0], sizes[1]


def make_mesh(data: int = -1, fsdp: int = 1, devices=None, *, dcn_data: int = 1,
              dcn_fsdp: int = 1) -> jax.sharding.Mesh:
    """Mesh of shape (data, fsdp) over `devices` (default: all); -1 means "all remaining devices".

    `dcn_data` x `dcn_fsdp` > 1: a hybrid mesh (`hybrid_device_array`) of the same shape and axis names, whose
    `data` axis holds `dcn_data` granules (slices or processes) and `fsdp` axis `dcn_fsdp` granules.
    """
    devices = list(devices if devices is not None else jax.devices())
    sizes = mesh_sizes(data, fsdp, len(devices))
    if dcn_data * dcn_fsdp == 1:
        return jax.make_mesh(sizes, AXES, axis_types=(AxisType.Auto,) * 2, devices=devices)
    grid = hybrid_device_array(sizes, (dcn_data, dcn_fsdp), devices)
    return jax.sharding.Mesh(grid, AXES, axis_types=(AxisType.Auto,) * 2)


def hybrid_device_array(sizes: tuple[int, int], dcn: tuple[int, int], devices) -> np.ndarray:
    """Devices `[data, fsdp]` for a hybrid mesh: axis i of size `sizes[i]` spans `dcn[i]` granules.

    A granule is a TPU slice when the devices' `slice_index` values number `prod(dcn)`, else a process. Within a
    granule the layout is `mesh_utils.create_device_mesh` of `sizes[i] // dcn[i]`; granules are tiled in order of
    their index (`create_hybrid_device_mesh`).
    """
    for axis, size, across in zip(AXES, sizes, dcn):
        if across < 1 or size % across:
            raise ValueError(f"config.mesh.dcn_{axis}={across} must be >= 1 and divide the mesh's {axis} axis "
                             f"(config.mesh.{axis} resolves to {size})")
    want = int(np.prod(dcn))
    slices = {getattr(d, "slice_index", None) for d in devices}
    processes = {d.process_index for d in devices}
    if None not in slices and len(slices) == want:
        process_is_granule = False
    elif len(processes) == want:
        process_is_granule = True
    else:
        found = "no slice_index on the devices" if None in slices else f"{len(slices)} slice(s)"
        raise ValueError(f"config.mesh.dcn_data={dcn[0]} x config.mesh.dcn_fsdp={dcn[1]} = {want} granules, but "
                         f"the {len(devices)} devices come from {len(processes)} process(es) and {found}: set the "
                         "dcn sizes so that their product is the number of processes (or TPU slices)")
    ici = tuple(size // across for size, across in zip(sizes, dcn))
    return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, process_is_granule=process_is_granule)


def mesh_from_config(mesh_cfg) -> jax.sharding.Mesh:
    return make_mesh(mesh_cfg.data, mesh_cfg.fsdp, dcn_data=mesh_cfg.dcn_data, dcn_fsdp=mesh_cfg.dcn_fsdp)


def validate_mesh_config(mesh_cfg) -> None:
    """Checks of `config.mesh` that need no devices: axis sizes, dcn sizes, and every rule (`check_rules`)."""
    for axis in AXES:
        size, across = mesh_cfg[axis], mesh_cfg[f"dcn_{axis}"]
        if size != -1 and size < 1:
            raise ValueError(f"config.mesh.{axis}={size} must be >= 1 or -1 (all remaining devices)")
        if across < 1:
            raise ValueError(f"config.mesh.dcn_{axis}={across} must be >= 1")
        if size != -1 and size % across:
            raise ValueError(f"config.mesh.dcn_{axis}={across} does not divide config.mesh.{axis}={size}")
    check_rules(mesh_cfg.rules, "config.mesh.rules")


# ------------------------------------------------------------------------------------------------------------
# Sharding rules
# ------------------------------------------------------------------------------------------------------------
def check_rules(rules, where: str = "rules") -> tuple[tuple[re.Pattern, P], ...]:
    """`((regex, spec), ...)` -> `((compiled regex, PartitionSpec), ...)`; a bad rule raises naming `where[i]`."""
    out = []
    for i, rule in enumerate(rules):
        name = f"{where}[{i}]={rule!r}"
        if isinstance(rule, (str, bytes)) or not hasattr(rule, "__len__") or len(rule) != 2:
            raise ValueError(f"{name}: a rule is a (regex, spec) pair, e.g. ('mlp/fc1/kernel$', ('fsdp', None))")
        pattern, spec = rule
        if not isinstance(pattern, str):
            raise ValueError(f"{name}: the regex must be a string, got {type(pattern).__name__}")
        try:
            compiled = re.compile(pattern)
        except re.error as err:
            raise ValueError(f"{name}: bad regex {pattern!r}: {err}") from err
        if isinstance(spec, str) or not isinstance(spec, (tuple, list)):
            raise ValueError(f"{name}: the spec must be a tuple with one entry per dimension (None, an axis name "
                             f"or a tuple of axis names), e.g. (None, 'fsdp'); got {spec!r}")
        used = []
        for entry in spec:
            names = (entry,) if entry is None or isinstance(entry, str) else entry
            if not isinstance(names, (tuple, list)):
                raise ValueError(f"{name}: spec entry {entry!r} is not None, an axis name or a tuple of them")
            for axis in names:
                if axis is None and entry is None:
                    continue
                if axis not in AXES:
                    raise ValueError(f"{name}: unknown mesh axis {axis!r}; the mesh has {AXES}")
                if axis in used:
                    raise ValueError(f"{name}: mesh axis {axis!r} is used twice")
                used.append(axis)
        out.append((compiled, P(*(e if e is None or isinstance(e, str) else tuple(e) for e in spec))))
    return tuple(out)


def fallback_spec(shape, fsdp_size: int, min_size: int) -> P:
    """The size heuristic: shard the largest dimension divisible by the fsdp axis size, for tensors >= min_size."""
    if fsdp_size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    order = sorted(range(len(shape)), key=lambda i: -shape[i])
    for axis in order:
        if shape[axis] % fsdp_size == 0:
            spec = [None] * len(shape)
            spec[axis] = "fsdp"
            return P(*spec)
    return P()


def rule_spec(path: str, shape, rules, mesh, min_size: int = 2**16) -> P:
    """The spec of the variable at `path`: the first rule (from `check_rules`) whose regex is found in `path`,
    checked against `shape`; `fallback_spec` when none matches."""
    shape = tuple(shape)
    for i, (regex, spec) in enumerate(rules):
        if not regex.search(path):
            continue
        if len(spec) and len(spec) != len(shape):
            raise ValueError(f"sharding rule {i} ({regex.pattern!r}, {tuple(spec)}) matches {path!r} of shape "
                             f"{shape}: the spec has {len(spec)} entries for a rank-{len(shape)} tensor")
        for dim, entry in zip(shape, spec):
            names = () if entry is None else (entry,) if isinstance(entry, str) else entry
            size = int(np.prod([mesh.shape[a] for a in names], dtype=np.int64))
            if dim % size:
                raise ValueError(f"sharding rule {i} ({regex.pattern!r}, {tuple(spec)}) matches {path!r} of shape "
                                 f"{shape}: dimension {dim} does not divide over {names} (size {size})")
        return spec
    return fallback_spec(shape, mesh.shape["fsdp"], min_size)


def key_path(path) -> str:
    """A pytree key path as "/"-joined names: `encoder/block_0/attn/query/kernel`, `1/0/mu/head/kernel`."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def variable_shardings(mesh, tree, rules=(), min_size: int = 2**16):
    """NamedShardings for any pytree of arrays / ShapeDtypeStructs (parameters, BatchNorm statistics, the frozen
    teacher's variables): each leaf by `rules` on its key path, else by the size heuristic."""
    checked = check_rules(rules)
    return jax.tree_util.tree_map_with_path(
        lambda path, x: NamedSharding(mesh, rule_spec(key_path(path), np.shape(x), checked, mesh, min_size)), tree)


def mirrored_shardings(mesh, tree, params, params_shardings, min_size: int = 2**16):
    """Shardings for optimizer state: a leaf whose key path ends with a parameter's path (the longest such) and
    has that parameter's shape takes the parameter's sharding; any other leaf the size heuristic."""
    by_path = {}
    for (path, leaf), sharding in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                      jax.tree.leaves(params_shardings)):
        by_path[key_path(path)] = (tuple(np.shape(leaf)), sharding)

    def one(path, x):
        parts, shape = key_path(path).split("/"), tuple(np.shape(x))
        for start in range(len(parts)):
            hit = by_path.get("/".join(parts[start:]))
            if hit is not None and hit[0] == shape:
                return hit[1]
        return NamedSharding(mesh, fallback_spec(shape, mesh.shape["fsdp"], min_size))

    return jax.tree_util.tree_map_with_path(one, tree)


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


# ------------------------------------------------------------------------------------------------------------
# Batches
# ------------------------------------------------------------------------------------------------------------
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
