"""SynthMV: layout, determinism, the partial-overlap statistics, what the knobs do, and the rasteriser."""
import numpy as np
import pytest

from vicokd_jax.data import schema
from vicokd_jax.data.synthetic import ACTIONS, SynthConfig, SynthMV
from vicokd_jax.data.synthetic_render import rasterise


@pytest.fixture(scope="module")
def train():
    ds = SynthMV("train", 240, seed=0)
    return ds, [ds[i] for i in range(len(ds))]


def _views_seeing(example):
    """Views whose detector fires (score >= 0.5) on at least 25% of the frames."""
    return int(((example["human_score"] >= 0.5).mean(1) >= 0.25).sum())


def test_layout_matches_the_schema(train):
    ds, examples = train
    e = examples[0]
    schema.check_example(e, "SynthMV[0]")
    assert e["rgb"].shape == (4, 16, 32, 32, 3) and e["rgb"].dtype == np.uint8
    assert e["skeleton"].shape == (4, 1, 16, 25, 3) and e["skeleton"].dtype == np.float32
    assert e["human_score"].shape == (4, 16) and e["human_score"].dtype == np.float32
    assert e["frame_labels"].shape == (16,) and e["view_mask"].all()
    assert 0 <= int(e["label"]) < 12 and len(ds.class_names) == 12 >= 12
    for ex in examples:
        assert ((ex["human_score"] >= 0) & (ex["human_score"] <= 1)).all()
        action = ex["frame_labels"][ex["frame_labels"] >= 0]
        assert len(action) >= 2 and (action == ex["label"]).all()  # one contiguous action span, background around


def test_partial_overlap_statistics(train):
    _, examples = train
    seen = np.array([_views_seeing(e) for e in examples])
    exactly_one, everyone, nobody = (seen == 1).mean(), (seen == 4).mean(), (seen == 0).mean()
    # The papers' partial overlap: a good share of samples seen by one view only, few by all of them.
    assert exactly_one >= 0.10, exactly_one
    assert everyone <= 0.25, everyone
    assert nobody <= 0.05, nobody
    # Views really overlap partially: a good share of samples is seen by 2 or 3 views.
    assert ((seen == 2) | (seen == 3)).mean() >= 0.4


@pytest.mark.parametrize("views, seed", [(3, 1), (5, 2), (4, 7)])
def test_partial_overlap_holds_for_other_view_counts_and_seeds(views, seed):
    ds = SynthMV("train", 160, seed=seed, num_views=views)
    seen = np.array([_views_seeing(ds[i]) for i in range(len(ds))])
    assert (seen == 1).mean() >= 0.10, (views, seed, (seen == 1).mean())
    assert (seen == views).mean() <= 0.25, (views, seed, (seen == views).mean())
    assert (seen == 0).mean() <= 0.06, (views, seed, (seen == 0).mean())


def test_actions_enter_or_leave_views_mid_clip(train):
    _, examples = train
    changes = 0
    for e in examples:
        tracked = np.abs(e["skeleton"]).sum((1, 3, 4)) > 0  # [V, T]
        changes += int(np.any(tracked[:, 1:] != tracked[:, :-1]))
    assert changes >= 0.1 * len(examples)


def test_skeleton_is_zero_exactly_where_the_view_does_not_track(train):
    _, examples = train
    e = examples[3]
    tracked = np.abs(e["skeleton"]).sum((1, 3, 4)) > 0
    assert tracked.any() and not tracked.all()
    # Tracked skeletons are plausible camera-space bodies: in front of the camera, a person's height apart.
    joints = e["skeleton"][:, 0][tracked]  # [n, 25, 3]
    assert (joints[..., 2] > 0).all()
    height = joints[:, 3, 1] - joints[:, [14, 18], 1].min(-1)  # head above the lower ankle
    # Down-tilted cameras close to the actor foreshorten the camera-space height (0.79-1.03 m for this jump).
    assert (height > 0.6).all() and (height < 2.2).all()


def test_deterministic_per_index_and_different_across_seeds_and_splits():
    a = SynthMV("train", 10, seed=3)[7]
    b = SynthMV("train", 10, seed=3)[7]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    other_seed = SynthMV("train", 10, seed=4)[7]
    other_split = SynthMV("test", 10, seed=3)[7]
    assert not np.array_equal(a["rgb"], other_seed["rgb"])
    assert not np.array_equal(a["rgb"], other_split["rgb"])
    # Order of access does not matter (a pure function of the index).
    ds = SynthMV("train", 10, seed=3)
    _ = [ds[i] for i in (9, 2, 5)]
    np.testing.assert_array_equal(ds[7]["rgb"], a["rgb"])


def test_labels_cover_all_classes(train):
    _, examples = train
    assert set(int(e["label"]) for e in examples) == set(range(12))


def test_multi_label_variant():
    ds = SynthMV("train", 20, seed=1, multi_label=True)
    e = ds[0]
    schema.check_example(e)
    assert e["labels"].shape == (12,) and e["labels"].sum() == 2
    assert e["frame_labels"].shape == (16, 12)
    assert (e["frame_labels"].max(0) == e["labels"]).all()
    assert (e["frame_labels"].sum(1) == 1).all()  # one action at a time, one after the other


def test_full_overlap_variant_sees_more():
    partial = SynthMV("train", 60, seed=0)
    full = SynthMV("train", 60, seed=0, config=SynthConfig(overlap="full", occluders=0))
    seen_partial = np.mean([_views_seeing(partial[i]) for i in range(60)])
    seen_full = np.array([_views_seeing(full[i]) for i in range(60)])
    assert (seen_full == 4).mean() >= 0.9 and seen_full.mean() > seen_partial + 1


def test_knobs_change_the_rendering():
    base = SynthMV("train", 4, seed=0, image_size=48, num_frames=8, num_views=2, config=SynthConfig(noise_std=3.0))[1]
    assert base["rgb"].shape == (2, 8, 48, 48, 3)
    clean = SynthMV("train", 4, seed=0, image_size=48, num_frames=8, num_views=2,
                    config=SynthConfig(noise_std=0.0))[1]
    assert np.abs(base["rgb"].astype(int) - clean["rgb"].astype(int)).mean() > 2  # 3 * sqrt(2 / pi) = 2.39
    np.testing.assert_array_equal(base["label"], clean["label"])  # same actor and action


def test_bad_arguments_are_reported():
    with pytest.raises(ValueError, match="split must be one of"):
        SynthMV("dev")
    with pytest.raises(ValueError, match=f"num_classes must be in \\[2, {len(ACTIONS)}\\]"):
        SynthMV(num_classes=40)
    with pytest.raises(ValueError, match="overlap must be"):
        SynthConfig(overlap="some")
    with pytest.raises(IndexError, match="out of range"):
        SynthMV("train", 5)[5]


def _dense_z_buffer(a, b, za, zb, radius, size, dtype):
    """Every capsule at every pixel centre, then the nearest per pixel: (capsule, cover, depth) [N, size * size]."""
    centre = (np.arange(size) + 0.5).astype(dtype)
    px, py = np.tile(centre, size), np.repeat(centre, size)  # [P]
    f32 = lambda x: np.asarray(x, np.float32)[..., None]  # noqa: E731  [N, S, 1]
    ax, ay, dx, dy = f32(a[..., 0]), f32(a[..., 1]), f32(b[..., 0] - a[..., 0]), f32(b[..., 1] - a[..., 1])
    rx, ry = px - ax, py - ay
    t = np.clip((rx * dx + ry * dy) / np.maximum(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    dist = np.sqrt((rx - t * dx) ** 2 + (ry - t * dy) ** 2)
    depth = f32(za) + t * (f32(zb) - f32(za))
    cover = np.clip(f32(radius) + 0.5 - dist, 0.0, 1.0) * ((f32(za) > 0.2) & (f32(zb) > 0.2))
    nearest = np.where(cover > 0, depth, np.inf).argmin(1)  # [N, P] the first among equals
    take = lambda x: np.take_along_axis(x, nearest[:, None], 1)[:, 0]  # noqa: E731
    return nearest, take(cover), take(depth)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rasterise_is_the_dense_z_buffer_bit_for_bit(dtype):
    rng = np.random.default_rng(0)
    n, s, size = 3, 9, 16
    a = rng.uniform(-6, size + 6, (n, s, 2))  # some capsules leave the image
    b = a + rng.normal(0, 4, (n, s, 2))
    b[:, 0] = a[:, 0]  # a disc
    za, zb = rng.uniform(0.1, 4, (n, s)), rng.uniform(0.1, 4, (n, s))  # some ends behind the camera
    za[:, 1], zb[:, 1] = 0.5, 0.6  # capsule 1 in front of the rest
    a[:, 2], b[:, 2], za[:, 2], zb[:, 2] = a[:, 1], b[:, 1], za[:, 1], zb[:, 1]  # its equal twin: the first wins
    radius = rng.uniform(0.2, 4, (n, s))
    radius[:, 2] = radius[:, 1]
    seen = rasterise(a, b, za, zb, radius, size, dtype)
    nearest, cover, depth = _dense_z_buffer(a, b, za, zb, radius, size, dtype)
    image, pixel = np.nonzero(cover > 0)
    winners = set(nearest[image, pixel])
    assert len(image) > 50 and 1 in winners and 2 not in winners and 0 in winners
    np.testing.assert_array_equal(seen.image, image)
    np.testing.assert_array_equal(seen.pixel, pixel)
    np.testing.assert_array_equal(seen.capsule, nearest[image, pixel])
    for got, want in ((seen.cover, cover[image, pixel]), (seen.depth, depth[image, pixel])):
        assert got.dtype == want.dtype == dtype
        np.testing.assert_array_equal(got, want)
