"""grain pipeline: batch layout, exact resume, labeled subset, sharding, sampling and augmentation."""
import numpy as np
import pytest

from vicokd_jax.data import pipeline as P
from vicokd_jax.data.synthetic import SynthMV


def _cfg(**kw):
    return P.PipelineConfig(**{"batch_size": 4, "shard_index": 0, "shard_count": 1, **kw})


@pytest.fixture(scope="module")
def source():
    return SynthMV("train", 24, seed=0, num_frames=12)


def test_batches_have_the_method_layout(source):
    batch = next(iter(P.make_dataset(source, _cfg(num_frames=8, image_size=24, labeled_fraction=0.5))))
    assert batch["rgb"].shape == (4, 4, 8, 24, 24, 3) and batch["rgb"].dtype == np.uint8
    assert batch["skeleton"].shape == (4, 4, 1, 8, 25, 3) and batch["skeleton"].dtype == np.float32
    assert batch["human_score"].shape == (4, 4, 8) and batch["view_mask"].shape == (4, 4)
    assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
    assert batch["labeled"].dtype == bool and batch["frame_labels"].shape == (4, 8)


def test_restored_iterator_yields_exactly_the_same_batches(source):
    cfg = _cfg(labeled_fraction=0.3, flip=True, image_size=28)
    it = iter(P.make_dataset(source, cfg))
    for _ in range(7):  # past the end of the first epoch (24 examples / 4)
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(5)]
    resumed = iter(P.make_dataset(source, cfg))
    resumed.set_state(state)
    for want, got in zip(expected, [next(resumed) for _ in range(5)]):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_epochs_are_reshuffled_and_cover_every_example(source):
    it = iter(P.make_dataset(source, _cfg()))
    epochs = [np.concatenate([next(it)["index"] for _ in range(6)]) for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(24))
    assert list(epochs[0]) != list(epochs[1])


def test_labeled_subset_is_exact_deterministic_and_shard_independent(source):
    mask = P.labeled_mask(1000, 0.1, seed=3)
    assert mask.sum() == 100
    np.testing.assert_array_equal(mask, P.labeled_mask(1000, 0.1, seed=3))
    assert not np.array_equal(mask, P.labeled_mask(1000, 0.1, seed=4))
    cfg = _cfg(training=False, labeled_fraction=0.25, shard_count=2)
    seen = {}
    for shard in (0, 1):
        for batch in P.make_dataset(source, cfg.__class__(**{**cfg.__dict__, "shard_index": shard})):
            seen.update(zip(batch["index"].tolist(), batch["labeled"].tolist()))
    assert sorted(seen) == list(range(24))  # the two shards partition the data
    expected = P.labeled_mask(24, 0.25, 0)
    assert all(seen[i] == expected[i] for i in seen) and sum(seen.values()) == 6


def test_evaluation_is_one_ordered_pass_with_a_partial_last_batch(source):
    batches = list(P.make_dataset(source, _cfg(training=False, batch_size=10)))
    assert [len(b["index"]) for b in batches] == [10, 10, 4]
    assert np.concatenate([b["index"] for b in batches]).tolist() == list(range(24))


def test_frame_indices():
    np.testing.assert_array_equal(P.frame_indices(8, 4, "uniform", None), [1, 3, 5, 7])
    np.testing.assert_array_equal(P.frame_indices(3, 6, "uniform", None), [0, 0, 1, 1, 2, 2])
    crop = P.frame_indices(20, 5, "random_crop", np.random.default_rng(0))
    assert (np.diff(crop) == 1).all() and 0 <= crop[0] <= 15
    with pytest.raises(ValueError, match="0-frame"):
        P.frame_indices(0, 4, "uniform", None)


def test_temporal_sampling_moves_every_time_indexed_key_together(source):
    example = source[0]
    out = P.transform_example(example, _cfg(training=False, num_frames=4), None)
    idx = P.frame_indices(12, 4, "uniform", None)
    np.testing.assert_array_equal(out["rgb"], example["rgb"][:, idx])
    np.testing.assert_array_equal(out["human_score"], example["human_score"][:, idx])
    np.testing.assert_array_equal(out["frame_labels"], example["frame_labels"][idx])
    raw = P.transform_example(example, _cfg(training=False, num_frames=4, center_skeleton=False), None)
    np.testing.assert_array_equal(raw["skeleton"], example["skeleton"][:, :, idx])


def test_resize_is_exact_on_constant_images_and_identity_at_same_size():
    flat = np.full((2, 3, 40, 40, 3), 77, np.uint8)
    assert (P.crop_and_resize(flat, (0, 0, 40), 16) == 77).all()
    img = np.random.default_rng(0).integers(0, 256, (1, 2, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(P.crop_and_resize(img, (0, 0, 16), 16), img)
    # A left-to-right ramp stays a ramp after resizing.
    ramp = np.broadcast_to(np.linspace(0, 255, 32).astype(np.uint8)[None, :, None], (32, 32, 3))
    out = P.crop_and_resize(ramp, (0, 0, 32), 8)
    assert (np.diff(out[0, :, 0].astype(int)) > 0).all()


@pytest.mark.parametrize("shape,box,size", [((2, 3, 32, 32, 3), (2, 3, 27), 32),   # the training crop: upscale
                                            ((4, 40, 48, 3), (0, 5, 40), 16),      # shrink (antialiased)
                                            ((1, 24, 24, 1), (0, 4, 20), 32)])     # one channel
def test_resize_matches_jax_image_resize_per_channel(shape, box, size):
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    img[..., 0] = 0  # channels must not mix: an all-black channel stays black
    top, left, side = box
    patch = jnp.asarray(img[..., top:top + side, left:left + side, :], jnp.float32)
    expected = jax.image.resize(patch, (*shape[:-3], size, size, shape[-1]), "linear", antialias=True)
    expected = np.clip(np.rint(np.asarray(expected)), 0, 255)
    out = P.crop_and_resize(img, box, size)
    assert out.shape == expected.shape and out.dtype == np.uint8
    assert (out[..., 0] == 0).all()
    diff = np.abs(out.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # float summation order only, at .5 ties


def test_flip_is_consistent_across_views_and_skeleton(source):
    example = source[1]
    cfg = _cfg(num_frames=12, flip=True, center_skeleton=False, crop_scale=(1.0, 1.0))
    for seed in range(20):  # find a draw that flips and one that does not
        rng = np.random.default_rng(seed)
        out = P.transform_example(example, cfg, rng)
        if np.array_equal(out["rgb"], example["rgb"]):
            continue
        np.testing.assert_array_equal(out["rgb"], example["rgb"][..., ::-1, :])  # every view flipped
        np.testing.assert_allclose(out["skeleton"], P.mirror_skeleton(example["skeleton"]))
        break
    else:
        pytest.fail("no flip in 20 draws")
    skel = example["skeleton"]
    np.testing.assert_array_equal(P.mirror_skeleton(P.mirror_skeleton(skel)), skel)
    left_hand, right_hand = 7, 11
    np.testing.assert_array_equal(P.mirror_skeleton(skel)[..., left_hand, 0], -skel[..., right_hand, 0])


def test_skeleton_centring_keeps_untracked_frames_zero(source):
    example = next(e for e in (source[i] for i in range(24))
                   if (np.abs(example_skel := e["skeleton"]).sum((1, 3, 4)) == 0).any()
                   and np.abs(example_skel).sum() > 0)
    centred = P.center_skeleton(example["skeleton"])
    tracked = np.abs(example["skeleton"]).sum(-1) > 0
    assert (centred[~tracked] == 0).all()
    for v in range(centred.shape[0]):
        spine = centred[v, :, :, 1][tracked[v, :, :, 1]]
        if len(spine):
            np.testing.assert_allclose(spine.mean(0), 0.0, atol=1e-5)


def test_bad_configuration_and_input():
    with pytest.raises(ValueError, match="temporal_sampling"):
        _cfg(temporal_sampling="random")
    with pytest.raises(ValueError, match="labeled_fraction"):
        _cfg(labeled_fraction=1.5)
    with pytest.raises(ValueError, match="is empty"):
        P.make_dataset(SynthMV("train", 0), _cfg())
    example = dict(SynthMV("train", 1, image_size=16)[0])
    example["rgb"] = example["rgb"][..., :12, :]  # 16 x 12 frames
    with pytest.raises(ValueError, match="16x12; set image_size"):
        P.transform_example(example, _cfg(training=False), None)


def test_worker_processes_give_the_same_batches(source):
    cfg = _cfg(labeled_fraction=0.5)
    plain = iter(P.make_dataset(source, cfg))
    workers = iter(P.make_dataset(source, P.PipelineConfig(**{**cfg.__dict__, "num_workers": 2})))
    for _ in range(3):
        a, b = next(plain), next(workers)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


class _CountingSource:
    def __init__(self, inner):
        self.inner, self.reads = inner, []

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        self.reads.append(index)
        return self.inner[index]


def test_cached_source_renders_each_clip_once_and_gives_the_same_batches(source):
    counting = _CountingSource(source)
    cached = P.CachedSource(counting)
    assert len(cached) == 24 and P.CachedSource(source).class_names == source.class_names  # attributes pass through
    cfg = _cfg(labeled_fraction=0.5)
    plain, from_cache = iter(P.make_dataset(source, cfg)), iter(P.make_dataset(cached, cfg))
    for _ in range(12):  # two epochs
        a, b = next(plain), next(from_cache)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # Every clip was rendered exactly once in two epochs, even when grain's read-ahead threads ask for a clip of
    # the next epoch while the current epoch's read of it is still rendering, and a third epoch adds none.
    assert sorted(counting.reads) == list(range(24))
    reads = len(counting.reads)
    for _ in range(6):
        next(from_cache)
    assert len(counting.reads) == reads
    import pickle  # grain workers receive the source pickled

    assert pickle.loads(pickle.dumps(cached))[3]["id"] == source[3]["id"]


def test_filled_in_background_fills_the_caches_while_the_block_runs_and_stops_with_it(source):
    import time

    first, second = P.CachedSource(_CountingSource(source)), P.CachedSource(_CountingSource(source))
    plain = _CountingSource(source)
    with P.filled_in_background(first, second, plain):
        deadline = time.monotonic() + 60
        while not second.cached(len(second) - 1) and time.monotonic() < deadline:
            time.sleep(0.01)
    # Both caches, in order, each clip rendered once and the same as a direct read; a source without a cache is
    # not read at all.
    assert first.source.reads == list(range(24)) and second.source.reads == list(range(24))
    assert plain.reads == []
    for index in (0, 23):
        np.testing.assert_array_equal(second[index]["rgb"], source[index]["rgb"])
    assert len(second.source.reads) == 24  # read from the cache
    # The thread stops when the block ends: a block that ends at once leaves most clips for the pipeline.
    slow = P.CachedSource(_SlowSource(source, seconds=0.05))
    with P.filled_in_background(slow):
        pass
    assert sum(slow.cached(i) for i in range(24)) <= 1


class _SlowSource(_CountingSource):
    def __init__(self, inner, seconds):
        super().__init__(inner)
        self.seconds = seconds

    def __getitem__(self, index):
        import time

        time.sleep(self.seconds)
        return super().__getitem__(index)


def test_a_clip_that_fails_in_the_background_fails_where_the_pipeline_reads_it(source):
    class Broken(_CountingSource):
        def __getitem__(self, index):
            super().__getitem__(index)
            if index == 2:
                raise ValueError("clip 2 is broken")
            return self.inner[index]

    cached = P.CachedSource(Broken(source))
    with P.filled_in_background(cached):
        import time

        deadline = time.monotonic() + 60
        while len(cached.source.reads) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert cached.source.reads == [0, 1, 2]  # the thread stopped at the broken clip
    with pytest.raises(ValueError, match="clip 2 is broken"):
        cached[2]


def test_the_stages_of_a_run_share_its_rendered_clips():
    """make_source gives every stage of a process the same cached SynthMV split, so the student stage reads the
    clips the teacher stage rendered; another scene, split or size is another source."""
    from vicokd_jax import config
    from vicokd_jax.data import datasets

    cfg = config.from_file("experiments/synth_vicokd.py:smoke")
    train = datasets.make_source(cfg, cfg.data.train_split)
    assert isinstance(train, P.CachedSource)
    first = train[0]
    assert datasets.make_source(config.from_file("experiments/synth_vicokd.py:smoke"), cfg.data.train_split) is train
    assert datasets.make_source(cfg, cfg.data.train_split)[0] is first  # not rendered again
    assert datasets.make_source(cfg, cfg.data.test_split) is not train
    other = config.from_file("experiments/synth_vicokd.py:smoke", overrides=["data.seed=5"])
    assert datasets.make_source(other, cfg.data.train_split) is not train
    assert not np.array_equal(datasets.make_source(other, cfg.data.train_split)[0]["rgb"], first["rgb"])
    uncached = config.from_file("experiments/synth_vicokd.py:smoke", overrides=["data.cache_examples=False"])
    assert not isinstance(datasets.make_source(uncached, cfg.data.train_split), P.CachedSource)


class _ReadCounter:
    """Pre-rendered examples that count how many times they are read."""

    def __init__(self, examples):
        self.examples, self.reads = examples, 0

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, index):
        self.reads += 1
        return self.examples[index]


@pytest.mark.parametrize("read_ahead", [1, 3])
def test_the_pipeline_reads_only_read_ahead_batches_ahead(source, read_ahead):
    import time

    counting = _ReadCounter([source[i] for i in range(8)])
    it = iter(P.make_dataset(counting, _cfg(num_frames=8, read_ahead=read_ahead)))
    next(it)
    time.sleep(1.0)  # time enough to read hundreds of batches of in-memory examples
    # The batch taken, the read-ahead, and one batch being prepared: grain's default would hold 500 batches.
    assert counting.reads <= (1 + read_ahead + 1) * 4
    with pytest.raises(ValueError, match="read_ahead"):
        _cfg(read_ahead=0)
