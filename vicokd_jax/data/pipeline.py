"""grain input pipelines: random-access source -> per-host batches of the METHOD.md layout.

    source (SynthMV, a TFDS ArrayRecord data source, ...)  examples of `vicokd_jax.data.schema`
      -> + global index and the deterministic `labeled` flag (data.labeled_fraction)
      -> seeded shuffle, a new order each epoch          (training)
      -> repeat                                          (training: forever)
      -> per-process shard                               (evaluation: every `shard_count`-th example)
      -> temporal sampling: uniform or random crop to `num_frames`
      -> spatial: random square crop + resize (training) or centre crop + resize; optional flip applied to all
         views and mirrored into the skeleton (x -> -x, left/right joints swapped)
      -> normalisation: skeletons centred per view on the mean tracked spine joint; RGB stays uint8 (the models
         normalise it: four times fewer bytes to move)
      -> per-host batch (drop remainder in training)
      -> per-process shard                               (training: every `shard_count`-th per-host batch)
      -> worker processes (`num_workers > 0`), each reading `read_ahead` batches ahead of the step (so does the
         main process without workers)

Training shards whole per-host batches of one global order: global batch k is the concatenation of per-host
batches k·P .. k·P+P-1 (P processes), i.e. the same examples, augmented the same way, as the k-th batch of a
single process with P times the batch size. So the number of processes does not change what is trained on.

The iterator is checkpointable: `it.get_state()` / `it.set_state(state)` resume exactly (the random transforms
are seeded by the element index, not by the iteration history).
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Any, Sequence

import grain
import numpy as np

from vicokd_jax.data import schema
# Re-exported: the pipeline's frame sampling and crop are the jax-free `frames` module's.
from vicokd_jax.data.frames import centre_box, crop_and_resize, frame_indices  # noqa: F401

# Mirror of the NTU-25 skeleton: joint j of a flipped body is joint _NTU_MIRROR[j] of the original.
_NTU_MIRROR = np.array([0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 20, 23, 24, 21, 22])
_SPINE_MID = 1


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline does to each example and how it batches.

    batch_size: per-host batch. training: shuffle + repeat + random augmentation; otherwise one ordered pass.
    num_frames: T of the batch. temporal_sampling: "uniform" (evenly spaced) or "random_crop" (a contiguous
    window at a random start; uniform when the clip is shorter). image_size: square side of the RGB batch (None:
    keep the source size, which must then be square). crop_scale: area range of the random square crop.
    flip: horizontal flip with probability 1/2 (off by default: SynthMV has left/right-specific actions).
    center_skeleton: subtract each view's mean tracked spine-mid joint. labeled_fraction / labeled_seed: which
    training samples the student may use the label of. num_workers: grain worker processes. read_ahead: batches
    each reading process prepares ahead of what was asked for (grain's default, 500: each worker of a default
    SynthMV run holds 2.5 GB; lower values bound that, and on 2 cores made `make demo` slower, docs/PERFORMANCE.md).
    """

    batch_size: int
    training: bool = True
    seed: int = 0
    num_frames: int = 16
    temporal_sampling: str = "random_crop"
    image_size: int | None = None
    crop_scale: tuple[float, float] = (0.7, 1.0)
    flip: bool = False
    center_skeleton: bool = True
    labeled_fraction: float = 1.0
    labeled_seed: int = 0
    drop_remainder: bool | None = None  # default: True in training, False otherwise
    num_workers: int = 0
    read_ahead: int = grain.ReadOptions().prefetch_buffer_size  # grain's own default (500)
    shard_index: int | None = None  # default: jax.process_index()
    shard_count: int | None = None  # default: jax.process_count()

    def __post_init__(self):
        if self.temporal_sampling not in ("uniform", "random_crop"):
            raise ValueError(f"temporal_sampling must be 'uniform' or 'random_crop', got {self.temporal_sampling!r}")
        if not 0.0 <= self.labeled_fraction <= 1.0:
            raise ValueError(f"labeled_fraction must be in [0, 1], got {self.labeled_fraction}")
        if self.read_ahead < 1:
            raise ValueError(f"read_ahead must be >= 1 batch, got {self.read_ahead}")
        if self.batch_size < 1 or self.num_frames < 1:
            raise ValueError(f"batch_size and num_frames must be >= 1, got {self.batch_size}, {self.num_frames}")


# ------------------------------------------------------------------------------------------------------------
# Labeled subset
# ------------------------------------------------------------------------------------------------------------
def labeled_mask(num_examples: int, fraction: float, seed: int = 0) -> np.ndarray:
    """[num_examples] bool with exactly round(fraction · n) True, a seeded random subset (same on every host)."""
    mask = np.zeros(num_examples, bool)
    count = int(round(fraction * num_examples))
    mask[np.random.default_rng([seed, 104729]).permutation(num_examples)[:count]] = True
    return mask


# ------------------------------------------------------------------------------------------------------------
# Per-example transforms (numpy; run in grain workers)
# ------------------------------------------------------------------------------------------------------------
def _crop_box(height: int, width: int, cfg: PipelineConfig, rng) -> tuple[int, int, int]:
    short = min(height, width)
    if cfg.training and rng is not None:
        side = max(1, int(round(short * np.sqrt(rng.uniform(*cfg.crop_scale)))))
        return int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1)), side
    return centre_box(height, width)


def mirror_skeleton(skeleton: np.ndarray) -> np.ndarray:
    """Horizontal mirror of camera-space NTU-25 skeletons `[..., 25, 3]`: x -> -x and left <-> right joints."""
    if skeleton.shape[-2] != len(_NTU_MIRROR):
        raise ValueError(f"flip augmentation knows the NTU-25 layout only; skeleton has {skeleton.shape[-2]} joints")
    out = skeleton[..., _NTU_MIRROR, :].copy()
    out[..., 0] *= -1
    return out


def center_skeleton(skeleton: np.ndarray) -> np.ndarray:
    """`[V, M, T, J, 3]`: subtract each view's mean spine-mid position over tracked frames; untracked stay 0."""
    tracked = np.abs(skeleton).sum(-1) > 0  # [V, M, T, J]
    spine = skeleton[..., _SPINE_MID, :]  # [V, M, T, 3]
    valid = tracked[..., _SPINE_MID][..., None]
    centre = (spine * valid).sum((1, 2)) / np.maximum(valid.sum((1, 2)), 1)  # [V, 3]
    return np.where(tracked[..., None], skeleton - centre[:, None, None, None], 0.0).astype(np.float32)


def _check_frames(example: dict) -> None:
    """Every time-indexed key has the T of `human_score` [V, T], T >= 1: else an error naming the example and key."""
    where = example.get("id", "?")
    where = where.decode() if isinstance(where, bytes) else where
    score = np.shape(example["human_score"])
    if len(score) != 2 or score[1] < 1:
        raise ValueError(f"example {where!r}: human_score has shape {score}; expected [V, T] with T >= 1 frames")
    for key, axis in schema.TIME_AXIS.items():
        shape = np.shape(example[key]) if key in example else None
        if shape is not None and (len(shape) <= axis or shape[axis] != score[1]):
            raise ValueError(f"example {where!r}: {key} has shape {shape}; expected T={score[1]} frames on axis "
                             f"{axis} (the length of human_score): views/modalities of different lengths")


def transform_example(example: dict, cfg: PipelineConfig, rng: np.random.Generator | None) -> dict:
    """One example of the schema -> a fixed-size example (T = num_frames, square RGB)."""
    out = {k: v for k, v in example.items()}
    _check_frames(example)
    total = np.shape(example["human_score"])[1]
    idx = frame_indices(total, cfg.num_frames, cfg.temporal_sampling if cfg.training else "uniform", rng)
    for key, axis in schema.TIME_AXIS.items():
        if key in out:
            out[key] = np.take(np.asarray(out[key]), idx, axis=axis)
    flip = cfg.training and cfg.flip and rng is not None and rng.random() < 0.5
    if "rgb" in out:
        rgb = np.asarray(out["rgb"])
        height, width = rgb.shape[-3:-1]
        size = cfg.image_size or height
        if cfg.image_size is None and height != width:
            raise ValueError(f"{example.get('id', '?')}: rgb frames are {height}x{width}; set image_size to "
                             "crop them to squares")
        rgb = crop_and_resize(rgb, _crop_box(height, width, cfg, rng), size)
        out["rgb"] = rgb[..., ::-1, :].copy() if flip else rgb
    if "skeleton" in out:
        skeleton = np.asarray(out["skeleton"], np.float32)
        if flip:
            skeleton = mirror_skeleton(skeleton)
        out["skeleton"] = center_skeleton(skeleton) if cfg.center_skeleton else skeleton
    out["human_score"] = np.asarray(out["human_score"], np.float32)
    out["view_mask"] = np.asarray(out["view_mask"], bool)
    if "audio" in out:
        out["audio"] = np.asarray(out["audio"], np.float32)
        out["audio_mask"] = np.asarray(out["audio_mask"], bool)
    if "label" in out:
        out["label"] = np.int32(out["label"])
    if isinstance(out.get("id"), bytes):
        out["id"] = out["id"].decode()
    return out


def stack_examples(examples: Sequence[dict]) -> dict:
    """Per-host batch: each key stacked on a new leading axis B (ids become a numpy str array)."""
    keys = examples[0].keys()
    return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in keys}


# ------------------------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------------------------
class CachedSource:
    """Keeps every example of a deterministic random-access source in memory after its first read.

    For SynthMV generated on the fly: rendering is most of the input cost, and a run reads each clip several
    times (400 student steps of 16 are 3.2 epochs of 2000 clips), so later epochs come from memory. Each grain
    worker process holds its own cache (about 215 KB per clip at 4 views x 16 x 32^2).
    """

    _NUM_LOCKS = 64

    def __init__(self, source: Any):
        self.source, self._cache = source, {}
        self._locks = [threading.Lock() for _ in range(self._NUM_LOCKS)]

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        example = self._cache.get(index)
        if example is None:
            # grain's read-ahead threads ask for the same clip concurrently near epoch ends: one renders it, the
            # others wait for it (striped locks: clips with other indices still render in parallel).
            with self._locks[index % self._NUM_LOCKS]:
                example = self._cache.get(index)
                if example is None:
                    example = self._cache[index] = self.source[index]
        return example

    def __getstate__(self) -> dict:  # locks do not pickle (grain sends the source to its worker processes)
        return {"source": self.source, "_cache": self._cache}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["source"])
        self._cache = state["_cache"]

    def __getattr__(self, name: str):  # num_views, class_names, ... of the wrapped source
        if name in ("source", "_cache", "_locks"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)

    def __repr__(self) -> str:
        return f"CachedSource({self.source!r})"

    def cached(self, index: int) -> bool:
        return int(index) in self._cache


@contextlib.contextmanager
def filled_in_background(*sources: Any):
    """Reads the examples of each `CachedSource` in `sources` (in index order, one source after another) in a
    background thread until the block ends; other sources are left alone.

    For work that leaves a core idle: XLA compiles a train step mostly on one core with the GIL released, and
    the clips rendered meanwhile are not rendered between steps later. The demo teacher's setup took 18.7 s
    instead of 14.8 s with this thread, which rendered 1796 of SynthMV's 2000 training clips, about 14 s of
    rendering on one core (docs/PERFORMANCE.md). The block waits at its end for the clip being rendered. A clip
    that fails to render is left for the pipeline, which raises the same error.
    """
    caches = [s for s in sources if isinstance(s, CachedSource)]
    stop = threading.Event()

    def fill():
        for source in caches:
            for index in range(len(source)):
                if stop.is_set():
                    return
                if not source.cached(index):
                    try:
                        source[index]
                    except Exception:  # noqa: BLE001 -- re-raised where the pipeline reads this clip
                        return

    thread = threading.Thread(target=fill, name="fill-example-cache", daemon=True)
    if caches:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if caches:
            thread.join()


class AnnotatedSource:
    """Wraps a source: each example gains its global `index` and the `labeled` flag (on the unsharded index)."""

    def __init__(self, source: Any, labeled: np.ndarray):
        self.source, self.labeled = source, labeled

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        example = dict(self.source[index])
        example["index"] = np.int64(index)
        example["labeled"] = np.bool_(self.labeled[index])
        return example

    def __repr__(self) -> str:
        return f"AnnotatedSource({self.source!r})"


class _Transform(grain.transforms.RandomMap):
    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg

    def random_map(self, example: dict, rng: np.random.Generator) -> dict:
        return transform_example(example, self.cfg, rng)


class _EvalTransform(grain.transforms.Map):
    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg

    def map(self, example: dict) -> dict:
        return transform_example(example, self.cfg, None)


def make_dataset(source: Any, cfg: PipelineConfig) -> grain.IterDataset:
    """`source` (len + __getitem__) -> grain IterDataset of per-host batches (see the module docstring)."""
    n = len(source)
    if n == 0:
        raise ValueError(f"data source {source!r} is empty")
    shard_index, shard_count = cfg.shard_index, cfg.shard_count
    if shard_index is None or shard_count is None:
        import jax  # only for the process topology

        shard_index, shard_count = jax.process_index(), jax.process_count()
    ds = grain.MapDataset.source(AnnotatedSource(source, labeled_mask(n, cfg.labeled_fraction, cfg.labeled_seed)))
    drop = cfg.training if cfg.drop_remainder is None else cfg.drop_remainder
    if cfg.training:
        # NOTE: shuffled, augmented (seeded by global position) and batched before sharding, so P processes see
        # exactly the global batches of one process (see the module docstring). Grain is lazy: a process only
        # reads and transforms the examples of its own batches.
        ds = ds.shuffle(seed=cfg.seed).repeat(None).random_map(_Transform(cfg), seed=cfg.seed + 1)
        ds = ds.batch(cfg.batch_size, drop_remainder=drop, batch_fn=stack_examples)[shard_index::shard_count]
    else:
        ds = ds[shard_index::shard_count].map(_EvalTransform(cfg))
        ds = ds.batch(cfg.batch_size, drop_remainder=drop, batch_fn=stack_examples)
    iter_ds = ds.to_iter_dataset(grain.ReadOptions(prefetch_buffer_size=cfg.read_ahead))
    if cfg.num_workers > 0:
        # NOTE: grain's worker processes read absl flags; outside `absl.app.run` nobody has parsed them.
        from absl import flags

        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.num_workers))
    return iter_ds
