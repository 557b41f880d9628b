"""NTU RGB+D: .skeleton parser (real fixtures, parity with st-gcn's reader, malformed files), body selection,
names, splits, multi-view samples, RGB decoding."""
import functools
import pathlib
import re
import shutil

import numpy as np
import pytest

from vicokd_jax.data import ntu, schema

FRAMES = {"S001C001P001R001A001": 103, "S001C001P001R001A011": 82, "S001C003P008R002A058": 70,
          "S002C001P003R001A003": 100, "S003C001P015R001A034": 71, "S004C002P003R001A017": 124}
BODIES = {name: 2 if name == "S001C003P008R002A058" else 1 for name in FRAMES}
PARITY_SAMPLES = ("S001C001P001R001A001", "S001C003P008R002A058")  # order of input_NMTVC.npy's N axis
VIDEO = "S001C001P001R001A001"


def skeleton_path(fixtures: pathlib.Path, name: str) -> pathlib.Path:
    return fixtures / "ntu_skeleton" / f"{name}.skeleton"


def skeleton_text(frames) -> str:
    """A .skeleton file (CRLF) from frames = [[(tracking_id, xyz [25, 3]), ...], ...]."""
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for tracking_id, xyz in bodies:
            lines += [f"{tracking_id} 0 1 1 1 1 0 0.01 -0.2 2", "25"]
            rest = "300.5 190.25 1000.5 500.25 0.1 0.2 0.3 0.4 2"  # depth/color pixels, orientation, state
            lines += [f"{float(x)!r} {float(y)!r} {float(z)!r} {rest}" for x, y, z in xyz]
    return "\r\n".join(lines) + "\r\n"


def pose(offset: float, scale: float = 0.0) -> np.ndarray:
    """[25, 3] float64, exactly representable in float32 (multiples of 1/64)."""
    return (np.arange(75, dtype=np.float64).reshape(25, 3) / 64 + offset) * (1 + scale)


# ---------------------------------------------------------------------------------------------------------------
# Real fixtures
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(FRAMES))
def test_read_skeleton_fixture(fixtures, name):
    parsed = ntu.read_skeleton(skeleton_path(fixtures, name))
    t, m = FRAMES[name], BODIES[name]
    assert parsed["num_frames"] == t
    assert parsed["joints"].shape == (m, t, 25, 3) and parsed["joints"].dtype == np.float32
    assert parsed["color_xy"].shape == (m, t, 25, 2)
    assert len(parsed["body_ids"]) == m and all(isinstance(i, int) and i > 2**53 for i in parsed["body_ids"])
    assert parsed["present"].all() and (parsed["num_bodies"] == m).all()
    depth = parsed["joints"][..., 2]
    assert 1.0 < depth.min() and depth.max() < 6.0  # Kinect range, metres: x y z columns, not pixels
    color = parsed["color_xy"]
    assert 0 < color[..., 0].mean() < 1920 and 0 < color[..., 1].mean() < 1080


def test_two_body_fixture_has_distinct_ids(fixtures):
    parsed = ntu.read_skeleton(skeleton_path(fixtures, "S001C003P008R002A058"))
    assert parsed["body_ids"] == [72057594037944738, 72057594037944734]  # 17 digits: a float would merge them
    assert not np.allclose(parsed["joints"][0], parsed["joints"][1])


def test_parity_with_stgcn_read_xyz(fixtures):
    """Ours (tracked bodies -> select_bodies -> zero-pad to 300) equals st-gcn's read_xyz(max_body=2) exactly."""
    reference = np.load(fixtures / "stgcn_parity" / "input_NMTVC.npy")  # [N=2, M=2, T=300, V=25, C=3]
    assert reference.shape == (2, 2, 300, 25, 3)
    for n, name in enumerate(PARITY_SAMPLES):
        parsed = ntu.read_skeleton(skeleton_path(fixtures, name))
        selected = ntu.select_bodies(parsed["joints"], 2, parsed["present"])
        ours = np.zeros((2, 300, 25, 3), np.float32)
        ours[:, :selected.shape[1]] = selected
        np.testing.assert_array_equal(ours, reference[n], err_msg=name)


def test_malformed_copies_name_file_and_line(fixtures, tmp_path):
    """Each corruption of a real file raises ValueError naming the copy, the exact line and what was expected."""
    original = skeleton_path(fixtures, "S001C001P001R001A001").read_bytes().decode()
    lines = original.split("\r\n")  # line k (1-based) is lines[k - 1]; frame 1: count, body, joint count, joints
    first_joint = 4  # list index of line 5, the first joint line

    def corrupt(edit) -> list[str]:
        copy = list(lines)
        edit(copy)
        return copy

    cases = {
        "joint_count": (corrupt(lambda c: c.__setitem__(3, "24")), 4, r"expected 25 joints .* found 24"),
        "non_numeric": (corrupt(lambda c: c.__setitem__(first_joint + 2, c[first_joint + 2].replace(
            c[first_joint + 2].split()[1], "abc", 1))), first_joint + 3, r"expected a number .* found 'abc'"),
        "nan": (corrupt(lambda c: c.__setitem__(first_joint, "nan " + " ".join(c[first_joint].split()[1:]))),
                first_joint + 1, r"joint 1 .* expected finite numbers"),
        "short_joint_line": (corrupt(lambda c: c.__setitem__(first_joint, "0.1 0.2 0.3")), first_joint + 1,
                             r"expected 12 values .* found 3"),
        "body_line": (corrupt(lambda c: c.__setitem__(2, "72057594037931101 0 1")), 3,
                      r"expected 10 values in the body line"),
        "body_count": (corrupt(lambda c: c.__setitem__(1, "one")), 2, r"expected the body count .* found 'one'"),
        "trailing_data": (corrupt(lambda c: c.insert(len(c) - 1, "1")), len(lines), r"expected the end of the file"),
        "truncated_at_line": (lines[:1000] + [""], 1001, r"file ends after 1000 lines, .* truncated"),
        "truncated_mid_line": ([*lines[:1000], lines[1000][:9]], 1001, r"expected 12 values .* truncated"),
    }
    for case, (content, line, expected) in cases.items():
        path = tmp_path / f"{case}_S001C001P001R001A001.skeleton"
        path.write_bytes("\r\n".join(content).encode())
        with pytest.raises(ValueError) as info:
            ntu.read_skeleton(path)
        message = str(info.value)
        assert str(path) in message, (case, message)
        assert f"line {line}:" in message, (case, message)
        assert re.search(expected, message), (case, message)


def test_truncated_bytes_and_empty_files(fixtures, tmp_path):
    data = skeleton_path(fixtures, "S001C003P008R002A058").read_bytes()
    for cut in (len(data) // 2, len(data) - 3, 1):
        path = tmp_path / f"cut{cut}.skeleton"
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, line \d+: .*truncated"):
            ntu.read_skeleton(path)
    empty = tmp_path / "empty.skeleton"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{re.escape(str(empty))}, line 1: .*truncated"):
        ntu.read_skeleton(empty)
    zero = tmp_path / "zero.skeleton"
    zero.write_bytes(b"0\r\n")
    with pytest.raises(ntu.EmptySkeletonError, match=rf"{re.escape(str(zero))}, line 1: the frame count is 0"):
        ntu.read_skeleton(zero)


# ---------------------------------------------------------------------------------------------------------------
# Body tracking and selection (synthetic files)
# ---------------------------------------------------------------------------------------------------------------

def test_bodies_tracked_by_id_across_frames(tmp_path):
    a, b = pose(0.0), pose(1.0)
    frames = [[(11, a)], [(11, a), (22, b)], [], [(22, b), (11, a)], [(22, b)]]
    path = tmp_path / "tracked.skeleton"
    path.write_text(skeleton_text(frames), newline="")
    parsed = ntu.read_skeleton(path)
    assert parsed["body_ids"] == [11, 22]
    np.testing.assert_array_equal(parsed["num_bodies"], [1, 2, 0, 2, 1])
    np.testing.assert_array_equal(parsed["present"], [[1, 1, 0, 1, 0], [0, 1, 0, 1, 1]])
    # body 22 is listed first in frame 4 but stays in its own track
    np.testing.assert_array_equal(parsed["joints"][0, 3], a.astype(np.float32))
    np.testing.assert_array_equal(parsed["joints"][1, 3], b.astype(np.float32))
    assert not parsed["joints"][0, [2, 4]].any() and not parsed["joints"][1, [0, 2]].any()
    lf = tmp_path / "lf.skeleton"  # LF line endings parse the same
    lf.write_text(skeleton_text(frames).replace("\r\n", "\n"), newline="")
    np.testing.assert_array_equal(ntu.read_skeleton(lf)["joints"], parsed["joints"])


def _moving(num_frames: int, amplitude: float, offset: float) -> np.ndarray:
    """[T, 25, 3]: a pose oscillating with `amplitude` (activity grows with it)."""
    wave = amplitude * np.sin(np.arange(num_frames))[:, None, None]
    return (pose(offset)[None] + wave).astype(np.float32)


def test_select_bodies_keeps_two_most_active():
    t = 12
    joints = np.stack([_moving(t, 0.0, 0.0), _moving(t, 0.5, 1.0), _moving(t, 0.1, 2.0), _moving(t, 0.3, 3.0)])
    activity = ntu.body_activity(joints)
    assert activity[0] == 0 and activity[1] > activity[3] > activity[2] > 0
    selected = ntu.select_bodies(joints, max_bodies=2)
    assert selected.shape == (2, t, 25, 3)
    np.testing.assert_array_equal(selected, joints[[1, 3]])


def test_select_bodies_stitches_a_changed_tracking_id_and_pads():
    t = 10
    person_a = _moving(t, 0.4, 0.0)
    first_half, second_half = np.zeros_like(person_a), np.zeros_like(person_a)
    first_half[:5], second_half[5:] = person_a[:5], person_a[5:]  # same person, new id at frame 5
    other = _moving(t, 0.2, 5.0)
    joints = np.stack([first_half, other, second_half])
    slots = ntu.assign_bodies(joints, max_bodies=2)
    assert sorted(map(sorted, slots)) == [[0, 2], [1]]
    selected = ntu.select_bodies(joints, max_bodies=2)
    expected = [person_a if 1 not in slot else other for slot in slots]
    np.testing.assert_array_equal(selected, np.stack(expected))
    single = ntu.select_bodies(other[None], max_bodies=2)
    np.testing.assert_array_equal(single[0], other)
    assert not single[1].any()
    assert ntu.select_bodies(np.zeros((0, t, 25, 3)), 2).shape == (2, t, 25, 3)


# ---------------------------------------------------------------------------------------------------------------
# Names, published lists, splits
# ---------------------------------------------------------------------------------------------------------------

def test_parse_name():
    name = ntu.parse_name("/data/nturgb+d_skeletons/S017C002P015R001A042.skeleton")
    assert (name.setup, name.camera, name.performer, name.replication, name.action) == (17, 2, 15, 1, 42)
    assert str(name) == "S017C002P015R001A042" and name.sample_id == "S017P015R001A042"
    assert name.label == 41 and name.view == 1
    assert ntu.parse_name("S017C002P015R001A042_rgb.avi") == name
    assert str(name.with_camera(3)) == "S017C003P015R001A042"
    for bad in ("S017C004P015R001A042", "S17C002P015R001A042", "S017C002P015R001A042.txt", "video.avi"):
        with pytest.raises(ValueError, match=re.escape(bad)):
            ntu.parse_name(bad)


def test_group_views():
    names = [ntu.parse_name(n) for n in ("S001C003P001R001A001", "S001C001P001R001A001", "S002C002P003R001A003")]
    groups = ntu.group_views(names)
    assert list(groups) == ["S001P001R001A001", "S002P003R001A003"]
    assert sorted(groups["S001P001R001A001"]) == [1, 3] and list(groups["S002P003R001A003"]) == [2]


def test_published_missing_lists():
    assert len(ntu.published_missing("ntu60")) == 302  # sizes stated by the dataset authors
    assert len(ntu.published_missing("ntu120")) == 535 == len(ntu.MISSING_SKELETONS_NTU120)
    assert ntu.published_missing("ntu60") < ntu.published_missing("ntu120")
    assert {"S001C002P005R002A008", "S017C003P020R001A059"} <= ntu.published_missing("ntu60")
    assert "S032C003P067R002A077" in ntu.published_missing("ntu120") - ntu.published_missing("ntu60")
    assert all(ntu.parse_name(n) for n in ntu.MISSING_SKELETONS_NTU120)


def test_benchmark_splits():
    assert len(ntu.NTU60_TRAIN_SUBJECTS) == 20 and len(ntu.NTU120_TRAIN_SUBJECTS) == 53
    xsub60, xview, xsub120, xset = (ntu.BENCHMARKS[k] for k in
                                    ("ntu60_xsub", "ntu60_xview", "ntu120_xsub", "ntu120_xset"))
    p1, p3, p45 = (ntu.parse_name(n) for n in ("S001C001P001R001A001", "S001C001P003R001A001",
                                                "S018C002P045R001A061"))
    assert xsub60.cameras("train", p1) == (1, 2, 3) and xsub60.cameras("test", p1) == ()
    assert xsub60.cameras("train", p3) == () and xsub60.cameras("test", p3) == (1, 2, 3)
    assert xsub120.cameras("train", p45) == (1, 2, 3) and not xsub60.includes(p45) and xsub120.includes(p45)
    assert xview.cameras("train", p3) == (2, 3) and xview.cameras("test", p3) == (1,)
    assert xset.cameras("train", p45) == (1, 2, 3) and xset.cameras("test", p1) == (1, 2, 3)
    assert (xsub60.num_classes, xsub60.num_setups, xset.num_classes, xset.num_setups) == (60, 17, 120, 32)
    with pytest.raises(ValueError, match="split"):
        xsub60.cameras("val", p1)
    with pytest.raises(ValueError, match="ntu60_xsub"):
        ntu.get_benchmark("ntu60_xset")


# ---------------------------------------------------------------------------------------------------------------
# Multi-view samples
# ---------------------------------------------------------------------------------------------------------------

def _camera_copy(fixtures, tmp_path, source: str, target: str) -> pathlib.Path:
    path = tmp_path / f"{target}.skeleton"
    shutil.copyfile(skeleton_path(fixtures, source), path)
    return path


def test_load_sample_pads_views_and_masks(fixtures, tmp_path):
    files = {1: _camera_copy(fixtures, tmp_path, "S001C001P001R001A001", "S001C001P001R001A001"),  # T=103
             2: _camera_copy(fixtures, tmp_path, "S001C001P001R001A011", "S001C002P001R001A001"),  # T=82
             3: _camera_copy(fixtures, tmp_path, "S001C003P008R002A058", "S001C003P001R001A001")}  # T=70, 2 bodies
    example = ntu.load_sample(files)
    schema.check_example(example)
    assert example["id"] == "S001P001R001A001" and example["label"] == 0
    assert example["skeleton"].shape == (3, 2, 103, 25, 3) and example["human_score"].shape == (3, 103)
    np.testing.assert_array_equal(example["view_mask"], [True, True, True])
    np.testing.assert_array_equal(example["human_score"].sum(1), [103, 82, 70])
    assert not example["skeleton"][1, :, 82:].any() and not example["skeleton"][1, 1].any()
    assert example["skeleton"][2, 1, :70].any()  # the second person of the 2-body view
    direct = ntu.read_skeleton(files[2])
    np.testing.assert_array_equal(example["skeleton"][1, 0, :82], direct["joints"][0])

    only_23 = ntu.load_sample(files, cameras=(2, 3))  # cross-view train: camera 1 masked out and zeroed
    np.testing.assert_array_equal(only_23["view_mask"], [False, True, True])
    assert only_23["skeleton"].shape[2] == 82 and not only_23["skeleton"][0].any()
    assert not only_23["human_score"][0].any()
    excluded = ntu.load_sample(files, exclude={"S001C002P001R001A001"})
    np.testing.assert_array_equal(excluded["view_mask"], [True, False, True])
    assert ntu.load_sample({2: files[2]}, cameras=(1,)) is None


def test_load_sample_empty_view_is_missing(tmp_path):
    empty = tmp_path / "S005C001P002R001A010.skeleton"
    empty.write_text(skeleton_text([[], [], []]), newline="")
    assert ntu.read_view(empty) is None
    assert ntu.load_sample({1: empty}) is None
    moving = tmp_path / "S005C002P002R001A010.skeleton"
    moving.write_text(skeleton_text([[(7, pose(0.0))], [], [(7, pose(0.5))]]), newline="")
    example = ntu.load_sample({1: empty, 2: moving})
    np.testing.assert_array_equal(example["view_mask"], [False, True, False])
    np.testing.assert_array_equal(example["human_score"][1], [1, 0, 1])
    assert example["label"] == 9
    with pytest.raises(ValueError, match="one sample"):
        ntu.load_sample({1: moving})


# ---------------------------------------------------------------------------------------------------------------
# RGB
# ---------------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def decoded(path: str, size=(32, 32)) -> np.ndarray:
    """Decode once per test session (1080p H.264 is the slow part of these tests)."""
    return ntu.read_rgb(path, size)


def test_read_rgb_fixture(fixtures):
    path = fixtures / "ntu_rgb" / f"{VIDEO}_rgb.avi"
    video = decoded(str(path))
    assert video.shape == (FRAMES[VIDEO], 32, 32, 3) and video.dtype == np.uint8
    assert video.std() > 10 and np.abs(np.diff(video.astype(np.int16), axis=0)).mean() > 0.1  # real, moving
    np.testing.assert_array_equal(ntu.match_length(video, 100), video[:100])
    longer = ntu.match_length(video, 110)
    assert longer.shape[0] == 110 and (longer[103:] == video[-1]).all()


def test_read_rgb_errors_name_the_file(fixtures, tmp_path):
    data = (fixtures / "ntu_rgb" / f"{VIDEO}_rgb.avi").read_bytes()
    truncated = tmp_path / "truncated_rgb.avi"
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=rf"{re.escape(str(truncated))}: decoded \d+ frames but .* declares 103"):
        ntu.read_rgb(truncated, (16, 16))
    garbage = tmp_path / "garbage_rgb.avi"
    garbage.write_bytes(b"RIFF" + bytes(2000))
    with pytest.raises(ValueError, match=re.escape(str(garbage))):
        ntu.read_rgb(garbage, (16, 16))
    with pytest.raises(FileNotFoundError, match="absent_rgb.avi"):
        ntu.read_rgb(tmp_path / "absent_rgb.avi")


def test_load_sample_with_rgb(fixtures, tmp_path):
    video = fixtures / "ntu_rgb" / f"{VIDEO}_rgb.avi"
    skeleton = _camera_copy(fixtures, tmp_path, VIDEO, VIDEO)
    example = ntu.load_sample({1: skeleton}, rgb_files={1: video}, rgb_size=(32, 32))
    schema.check_example(example)
    assert example["rgb"].shape == (3, 103, 32, 32, 3)
    np.testing.assert_array_equal(example["rgb"][0], decoded(str(video)))
    assert not example["rgb"][1:].any()
    with pytest.raises(FileNotFoundError, match=f"{VIDEO}_rgb.avi not found"):
        ntu.load_sample({1: skeleton}, rgb_files={}, rgb_size=(32, 32))
