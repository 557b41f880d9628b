"""pyskl / mmaction2 annotation pickles: parity with the raw NTU source on real fixtures (3-D), multi-view grouping,
view masks, the pickle's splits, 2-D COCO keypoints (x, y, score), bad inputs, the TFDS build and the run config."""
import datetime
import os
import pathlib
import pickle
import re

import numpy as np
import pytest

from vicokd_jax.data import ntu, pyskl, schema

# camera file of the pickle -> fixture whose content it holds (None: a camera file whose frames list no body)
LAYOUT = {
    "S001C001P001R001A001": "S001C001P001R001A001",  # T=103 \
    "S001C002P001R001A001": "S001C001P001R001A011",  # T=82   > one 3-view sample, T = 103
    "S001C003P001R001A001": "S001C003P008R002A058",  # T=70  /  (2 bodies)
    "S001C001P001R001A011": "S001C001P001R001A011",
    "S001C002P001R001A011": None,                    # M = 0 -> view missing
    "S001C003P008R002A058": "S001C003P008R002A058",
    "S002C001P003R001A003": "S002C001P003R001A003",
    "S003C001P015R001A034": "S003C001P015R001A034",
    "S004C002P003R001A017": "S004C002P003R001A017",
    "S005C001P002R001A010": None,                    # the sample's only camera is empty -> no sample
}
A001, A011, A058, A003, A034, A017 = ("S001P001R001A001", "S001P001R001A011", "S001P008R002A058",
                                      "S002P003R001A003", "S003P015R001A034", "S004P003R001A017")
ONE, TWO, THREE, ALL = [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]
# pickle split -> {sample id: view_mask}, by hand from LAYOUT and the NTU-60 protocols (as test_builder_ntu.py)
EXPECTED = {
    "xsub_train": {A001: ALL, A011: ONE, A058: THREE, A034: ONE},
    "xsub_val": {A003: ONE, A017: TWO},
    "xview_train": {A001: [0, 1, 1], A058: THREE, A017: TWO},
    "xview_val": {A001: ONE, A011: ONE, A003: ONE, A034: ONE},
}


def ntu_splits(names) -> dict[str, list[str]]:
    """pyskl's NTU-60 splits of camera-file names: xsub by performer, xview by camera."""
    parsed = [ntu.parse_name(n) for n in names]
    return {"xsub_train": [str(n) for n in parsed if n.performer in ntu.NTU60_TRAIN_SUBJECTS],
            "xsub_val": [str(n) for n in parsed if n.performer not in ntu.NTU60_TRAIN_SUBJECTS],
            "xview_train": [str(n) for n in parsed if n.camera in ntu.XVIEW_TRAIN_CAMERAS],
            "xview_val": [str(n) for n in parsed if n.camera in ntu.XVIEW_TEST_CAMERAS]}


def write_pickle(path: pathlib.Path, content) -> pathlib.Path:
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)  # mmcv.dump's protocol, which wrote pyskl's files
    return path


@pytest.fixture(scope="module")
def camera_files(fixtures, tmp_path_factory) -> dict[str, pathlib.Path]:
    """{camera-file name: .skeleton path}: symlinks to the fixtures under the names of LAYOUT."""
    folder = tmp_path_factory.mktemp("ntu_skeletons")
    files = {}
    for name, source in LAYOUT.items():
        files[name] = folder / f"{name}.skeleton"
        if source is None:
            files[name].write_bytes(b"3\r\n0\r\n0\r\n0\r\n")
        else:
            os.symlink(fixtures / "ntu_skeleton" / f"{source}.skeleton", files[name])
    return files


@pytest.fixture(scope="module")
def parsed(camera_files) -> dict[str, dict]:
    return {name: ntu.read_skeleton(path) for name, path in camera_files.items()}


def annotation_3d(name: str, skeleton: dict) -> dict:
    """A pyskl 3-D annotation (ntu60_3danno.pkl): the bodies ordered by motion (as pyskl's preprocessing)."""
    joints = ntu.select_bodies(skeleton["joints"], len(skeleton["body_ids"]), skeleton["present"])  # [M, T, 25, 3]
    return {"frame_dir": name, "label": ntu.parse_name(name).label, "keypoint": joints,
            "total_frames": joints.shape[1], "img_shape": (1080, 1920), "original_shape": (1080, 1920)}


def score_of(shape) -> np.ndarray:
    """[M, T, 17] float32 scores, distinct per person, frame and keypoint, in (0, 1)."""
    m, t, j = shape
    grid = np.arange(m * t * j, dtype=np.float32).reshape(m, t, j)
    return (0.05 + 0.9 * (grid % 97) / 97).astype(np.float32)


def annotation_2d(name: str, skeleton: dict) -> dict:
    """A pyskl 2-D annotation (ntu60_hrnet.pkl): the real colour-image projection (colorX, colorY) of the first 17
    joints stands in for HRNet's COCO keypoints, with a score array."""
    xy = skeleton["color_xy"][:, :, :17].astype(np.float32)  # [M, T, 17, 2] pixels
    return {"frame_dir": name, "label": np.int64(ntu.parse_name(name).label), "keypoint": xy,  # numpy scalars too
            "keypoint_score": score_of(xy.shape[:3]), "total_frames": np.int64(xy.shape[1]), "img_shape": (1080, 1920)}


@pytest.fixture(scope="module")
def pkl_3d(parsed, tmp_path_factory) -> pathlib.Path:
    return write_pickle(tmp_path_factory.mktemp("pyskl") / "ntu60_3danno.pkl",
                        {"split": ntu_splits(LAYOUT), "annotations": [annotation_3d(n, s) for n, s in parsed.items()]})


@pytest.fixture(scope="module")
def pkl_2d(parsed, tmp_path_factory) -> pathlib.Path:
    return write_pickle(tmp_path_factory.mktemp("pyskl") / "ntu60_hrnet.pkl",
                        {"split": ntu_splits(LAYOUT), "annotations": [annotation_2d(n, s) for n, s in parsed.items()]})


def by_id(source) -> dict[str, dict]:
    return {source[i]["id"]: source[i] for i in range(len(source))}


# ---------------------------------------------------------------------------------------------------------------
# 3-D: parity with the raw NTU source, grouping, view masks, splits
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("split", sorted(EXPECTED))
def test_examples_equal_the_raw_ntu_source(split, pkl_3d, camera_files):
    """Each sample equals `ntu.load_sample` on the same camera files with the split's cameras kept: same id, label,
    skeleton [V, M, T, J, 3] (views, persons, frames in place), human_score and view_mask."""
    source = pyskl.PysklSource(pkl_3d, split)
    assert (source.layout, source.grouping, source.num_views, source.num_classes) == ("nturgb+d", "ntu", 3, 58)
    listed = set(ntu_splits(LAYOUT)[split])
    expected_ids = []
    for sample_id, cameras in ntu.group_views(ntu.parse_name(n) for n in LAYOUT).items():
        files = {c: camera_files[str(name)] for c, name in cameras.items()}
        reference = ntu.load_sample(files, cameras=[c for c, name in cameras.items() if str(name) in listed])
        if reference is None:
            continue
        expected_ids.append(sample_id)
        ours = by_id(source)[sample_id]
        schema.check_example(ours, where=sample_id)
        assert int(ours["label"]) == int(reference["label"]) and ours["label"].dtype == np.int32
        for key in ("skeleton", "human_score", "view_mask"):
            assert ours[key].dtype == reference[key].dtype, key
            np.testing.assert_array_equal(ours[key], reference[key], err_msg=f"{split} {sample_id} {key}")
    assert [source[i]["id"] for i in range(len(source))] == expected_ids  # ntu.group_views order
    assert sorted(expected_ids) == sorted(EXPECTED[split])


def test_cameras_grouped_as_views(pkl_3d, parsed):
    """S001P001R001A001: cameras 1-3 (different fixtures, T = 103 / 82 / 70) are views 0-2, padded to T = 103."""
    example = by_id(pyskl.PysklSource(pkl_3d, "xsub_train"))[A001]
    assert example["skeleton"].shape == (3, 2, 103, 25, 3)
    np.testing.assert_array_equal(example["human_score"].sum(1), [103, 82, 70])
    for view, camera_file in enumerate(["S001C001P001R001A001", "S001C002P001R001A001", "S001C003P001R001A001"]):
        joints = annotation_3d(camera_file, parsed[camera_file])["keypoint"]  # [M, T, 25, 3] as written
        m, t = joints.shape[:2]
        np.testing.assert_array_equal(example["skeleton"][view, :m, :t], joints)
        assert not example["skeleton"][view, m:].any() and not example["skeleton"][view, :, t:].any()
    assert not np.array_equal(example["skeleton"][0, 0, :70], example["skeleton"][2, 0, :70])


@pytest.mark.parametrize("split", sorted(EXPECTED))
def test_splits_and_view_masks(split, pkl_3d):
    """The pickle's splits keep only their cameras; absent / empty cameras are masked and zeroed; a sample whose
    cameras are all empty (S005P002R001A010) is left out."""
    examples = by_id(pyskl.PysklSource(pkl_3d, split))
    assert sorted(examples) == sorted(EXPECTED[split])
    for sample_id, example in examples.items():
        mask = example["view_mask"]
        np.testing.assert_array_equal(mask, np.array(EXPECTED[split][sample_id], bool), err_msg=sample_id)
        assert not example["skeleton"][~mask].any() and not example["human_score"][~mask].any()
        assert example["human_score"][mask].max() == 1.0


def test_unknown_split_lists_the_available_ones(pkl_3d):
    with pytest.raises(ValueError, match=rf"{re.escape(str(pkl_3d))}: no split 'train'.*"
                                         r"\['xsub_train', 'xsub_val', 'xview_train', 'xview_val'\]"):
        pyskl.PysklSource(pkl_3d, "train")


def test_one_file_several_splits_and_single_view_grouping(pkl_3d):
    file = pyskl.PysklFile(pkl_3d)
    assert len(pyskl.PysklSource(file, "xview_train")) == 3 and len(pyskl.PysklSource(file, "xview_val")) == 4
    single = pyskl.PysklSource(file, "xsub_train", grouping="none")  # one camera file = one sample, V = 1
    examples = by_id(single)
    assert sorted(examples) == sorted(["S001C001P001R001A001", "S001C002P001R001A001", "S001C003P001R001A001",
                                       "S001C001P001R001A011", "S001C003P008R002A058", "S003C001P015R001A034"])
    grouped = by_id(pyskl.PysklSource(file, "xsub_train"))[A001]
    for camera in (1, 2, 3):
        example = examples[f"S001C00{camera}P001R001A001"]
        assert example["view_mask"].tolist() == [True] and example["skeleton"].shape[0] == 1
        t = example["skeleton"].shape[2]
        np.testing.assert_array_equal(example["skeleton"][0], grouped["skeleton"][camera - 1, :, :t])


def test_non_ntu_names_are_single_view_samples(tmp_path):
    kp = np.arange(2 * 5 * 25 * 3, dtype=np.float32).reshape(2, 5, 25, 3) + 1
    annotations = [{"frame_dir": "v_ApplyEyeMakeup_g01_c01", "label": 0, "keypoint": kp, "total_frames": 5},
                   {"frame_dir": "v_Archery_g02_c03", "label": 2, "keypoint": kp[:1, :3], "total_frames": 3}]
    path = write_pickle(tmp_path / "ucf.pkl", {"split": {"train1": ["v_Archery_g02_c03", "v_ApplyEyeMakeup_g01_c01"]},
                                               "annotations": annotations})
    source = pyskl.PysklSource(path, "train1", max_persons=3)
    assert (source.grouping, source.num_views, source.num_classes, len(source)) == ("none", 1, 3, 2)
    first, second = source[0], source[1]  # the split's order
    assert first["id"] == "v_Archery_g02_c03" and int(first["label"]) == 2
    assert first["skeleton"].shape == (1, 3, 3, 25, 3) and first["view_mask"].tolist() == [True]
    np.testing.assert_array_equal(first["skeleton"][0, :1], kp[:1, :3])
    assert not first["skeleton"][0, 1:].any()
    np.testing.assert_array_equal(second["skeleton"][0, :2], kp)
    mixed = {"split": {"all": ["v_Archery_g02_c03", "S001C001P001R001A001"]},
             "annotations": [annotations[1], {**annotations[1], "frame_dir": "S001C001P001R001A001"}]}
    with pytest.raises(ValueError, match=r"mixed.pkl: some frame_dirs are NTU .*'S001C001P001R001A001'.*"
                                         r"'v_Archery_g02_c03'.*grouping='none'"):
        pyskl.PysklSource(write_pickle(tmp_path / "mixed.pkl", mixed), "all")
    assert len(pyskl.PysklSource(tmp_path / "mixed.pkl", "all", grouping="none")) == 2
    with pytest.raises(ValueError, match=r"'annotations'\[0\] \(frame_dir 'v_Archery_g02_c03'\): grouping='ntu'"):
        pyskl.PysklSource(tmp_path / "mixed.pkl", "all", grouping="ntu")


def test_persons_first_ones_kept_and_zero_padded(tmp_path):
    """M = 3 > max_persons = 2: the first two in the pickle's order (pyskl's FormatGCNInput); human_score counts
    every person, as the raw source counts every listed body."""
    t = 6
    kp = np.zeros((3, t, 25, 3), np.float32)
    kp[0, :2], kp[1, 1:3], kp[2, 4] = 1.0, 2.0, 3.0  # frame 5: nobody; frame 4: only the third person
    ann = {"frame_dir": "S001C002P001R001A001", "label": 0, "keypoint": kp, "total_frames": t}
    path = write_pickle(tmp_path / "m3.pkl", {"split": {"s": [ann["frame_dir"]]}, "annotations": [ann]})
    example = pyskl.PysklSource(path, "s")[0]
    assert example["skeleton"].shape == (3, 2, t, 25, 3)
    np.testing.assert_array_equal(example["skeleton"][1], kp[:2])
    np.testing.assert_array_equal(example["human_score"][1], [1, 1, 1, 0, 1, 0])
    one = pyskl.PysklSource(path, "s", max_persons=1)[0]
    np.testing.assert_array_equal(one["skeleton"][1], kp[:1])


# ---------------------------------------------------------------------------------------------------------------
# 2-D COCO keypoints
# ---------------------------------------------------------------------------------------------------------------

def test_2d_channels_are_x_y_score(pkl_2d, parsed):
    source = pyskl.PysklSource(pkl_2d, "xsub_train")
    assert (source.layout, source.num_joints, source.channels) == ("coco", 17, ("x", "y", "score"))
    example = by_id(source)[A001]
    assert example["skeleton"].shape == (3, 2, 103, 17, 3) and example["skeleton"].dtype == np.float32
    for view, camera_file in enumerate(["S001C001P001R001A001", "S001C002P001R001A001", "S001C003P001R001A001"]):
        written = annotation_2d(camera_file, parsed[camera_file])
        m, t = written["keypoint"].shape[:2]
        np.testing.assert_array_equal(example["skeleton"][view, :m, :t, :, :2], written["keypoint"])
        np.testing.assert_array_equal(example["skeleton"][view, :m, :t, :, 2], written["keypoint_score"])
        assert not example["skeleton"][view, :, t:].any()
    assert 100 < example["skeleton"][0, 0, :, :, 0].mean() < 1920  # pixels, untouched by default
    np.testing.assert_array_equal(example["view_mask"], [True, True, True])


def test_2d_normalisation_is_pyskls_prenormalize2d(tmp_path):
    """x' = (x - w/2) / (w/2), y' = (y - h/2) / (h/2) with img_shape (h, w); absent persons stay 0; score kept."""
    t = 4
    xy = np.stack([np.full((1, t, 17), 480.0), np.full((1, t, 17), 120.0)], -1).astype(np.float32)
    xy[0, 2] = 0  # the person is absent in frame 2
    score = np.full((1, t, 17), 0.5, np.float32)
    score[0, 2] = 0
    anns = [{"frame_dir": "clip_a", "label": 1, "keypoint": xy, "keypoint_score": score, "img_shape": (480, 640)},
            {"frame_dir": "clip_b", "label": 0, "keypoint": xy, "keypoint_score": score}]  # default 1080 x 1920
    path = write_pickle(tmp_path / "2d.pkl", {"split": {"all": ["clip_a", "clip_b"]}, "annotations": anns})
    a, b = (e["skeleton"][0, 0] for e in pyskl.PysklSource(path, "all", normalize_2d=True))
    np.testing.assert_allclose(a[[0, 1, 3], :, 0], 0.5, rtol=1e-6)  # (480 - 320) / 320
    np.testing.assert_allclose(a[[0, 1, 3], :, 1], -0.5, rtol=1e-6)  # (120 - 240) / 240
    np.testing.assert_allclose(b[[0, 1, 3], :, 0], (480 - 960) / 960, rtol=1e-6)
    np.testing.assert_allclose(b[[0, 1, 3], :, 1], (120 - 540) / 540, rtol=1e-6)
    assert not a[2].any() and (a[[0, 1, 3], :, 2] == 0.5).all()
    with pytest.raises(ValueError, match="normalize_2d=True: layout 'nturgb\\+d' is 3-D"):
        pyskl.PysklSource(path, "all", layout="nturgb+d", normalize_2d=True)


def test_layout_detection_and_mismatches(pkl_2d, pkl_3d, tmp_path):
    assert pyskl.PysklSource(pkl_3d, "xsub_val", layout="ntu-rgb+d").layout == "ntu-rgb+d"  # same joints
    with pytest.raises(ValueError, match=rf"{re.escape(str(pkl_2d))}: 'annotations'\[\d+\] \(frame_dir 'S\w+'\): "
                                         r"'keypoint' has shape \(\d, \d+, 17, 2\); layout 'nturgb\+d' expects "
                                         r"\[M, T, 25, 3\]"):
        pyskl.PysklSource(pkl_2d, "xsub_train", layout="nturgb+d")
    with pytest.raises(ValueError, match=r"'keypoint' has shape \(\d, \d+, 25, 3\); layout 'coco' expects "
                                         r"\[M, T, 17, 2\]"):
        pyskl.PysklSource(pkl_3d, "xsub_train", layout="coco")
    with pytest.raises(ValueError, match=r"unknown keypoint layout 'nw-ucla'.*'coco'"):
        pyskl.PysklSource(pkl_3d, "xsub_train", layout="nw-ucla")
    ucla = one_annotation_pickle(tmp_path, "ucla.pkl", keypoint=np.ones((1, 4, 20, 3), np.float32))
    with pytest.raises(ValueError, match=r"ucla.pkl: 'annotations'\[0\] \(frame_dir 'S001C001P001R001A001'\): "
                                         r"'keypoint' has shape \(1, 4, 20, 3\); expected \[M, T, 25, 3\] \(3-D NTU "
                                         r"joints\) or \[M, T, 17, 2\] \(2-D COCO keypoints\), or pass layout="):
        pyskl.PysklSource(ucla, "s")  # detection
    kp3, kp2 = np.ones((1, 3, 25, 3), np.float32), np.ones((1, 3, 17, 2), np.float32)
    mixed = {"split": {"all": ["a", "b"]}, "annotations": [
        {"frame_dir": "a", "label": 0, "keypoint": kp3},
        {"frame_dir": "b", "label": 0, "keypoint": kp2, "keypoint_score": kp2[..., 0]}]}
    with pytest.raises(ValueError, match=r"'annotations'\[1\] \(frame_dir 'b'\): 'keypoint' has shape "
                                         r"\(1, 3, 17, 2\); layout 'nturgb\+d'"):
        pyskl.PysklSource(write_pickle(tmp_path / "mixed_layouts.pkl", mixed), "all")


# ---------------------------------------------------------------------------------------------------------------
# Bad input: each error names the file and the key
# ---------------------------------------------------------------------------------------------------------------

def good_annotation(frame_dir="S001C001P001R001A001", t=4, **changes) -> dict:
    kp = np.ones((1, t, 25, 3), np.float32)
    return {"frame_dir": frame_dir, "label": ntu.parse_name(frame_dir).label, "keypoint": kp, "total_frames": t,
            **changes}


def one_annotation_pickle(tmp_path, name="bad.pkl", **changes) -> pathlib.Path:
    ann = good_annotation(**changes)
    return write_pickle(tmp_path / name, {"split": {"s": [ann["frame_dir"]]}, "annotations": [ann]})


def test_bad_files(tmp_path):
    missing = tmp_path / "absent.pkl"
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(missing))}: pyskl annotation file not found"):
        pyskl.PysklSource(missing, "s")
    text = tmp_path / "notes.pkl"
    text.write_text("not a pickle")
    with pytest.raises(ValueError, match=rf"{re.escape(str(text))}: not a readable pickle file"):
        pyskl.PysklSource(text, "s")
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(one_annotation_pickle(tmp_path).read_bytes()[:200])
    with pytest.raises(ValueError, match=rf"{re.escape(str(truncated))}: not a readable pickle file"):
        pyskl.PysklSource(truncated, "s")
    bare = write_pickle(tmp_path / "bare_list.pkl", [good_annotation()])
    with pytest.raises(ValueError, match=r"bare_list.pkl: expected a dict with keys 'split' and 'annotations'.*"
                                         "a bare list of annotations"):
        pyskl.PysklSource(bare, "s")
    for key in ("split", "annotations"):
        content = {"split": {"s": []}, "annotations": []}
        del content[key]
        path = write_pickle(tmp_path / f"no_{key}.pkl", content)
        with pytest.raises(ValueError, match=rf"no_{key}.pkl: missing key '{key}'"):
            pyskl.PysklSource(path, "s")
    path = write_pickle(tmp_path / "split_list.pkl", {"split": ["a"], "annotations": []})
    with pytest.raises(ValueError, match=r"split_list.pkl: 'split' must be a dict"):
        pyskl.PysklSource(path, "s")


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    """A global that is not numpy or a plain type is refused, naming it; restricted=False loads a trusted file."""
    path = one_annotation_pickle(tmp_path, "with_date.pkl", recorded=datetime.date(2016, 6, 1))
    with pytest.raises(ValueError, match=r"with_date.pkl: the pickle refers to datetime.date, .*restricted=False"):
        pyskl.PysklSource(path, "s")
    assert len(pyskl.PysklSource(path, "s", restricted=False)) == 1  # extra annotation keys are ignored
    with open(tmp_path / "proto5.pkl", "wb") as f:  # numpy's out-of-band buffers (protocol 5) are numpy too
        pickle.dump({"split": {"s": ["S001C001P001R001A001"]}, "annotations": [good_annotation()]}, f, protocol=5)
    assert len(pyskl.PysklSource(tmp_path / "proto5.pkl", "s")) == 1


@pytest.mark.parametrize("changes, match", [
    ({"keypoint": np.ones((4, 25, 3), np.float32)},
     r"'keypoint' has shape \(4, 25, 3\); layout 'nturgb\+d' expects \[M, T, 25, 3\]"),
    ({"keypoint": np.ones((1, 4, 25, 2), np.float32)}, r"'keypoint' has shape \(1, 4, 25, 2\)"),
    ({"keypoint": np.full((1, 4, 25, 3), np.nan, np.float32)}, r"'keypoint' \(float32\) must hold finite numbers"),
    ({"total_frames": 5}, r"'total_frames' is 5 but 'keypoint' has shape \(1, 4, 25, 3\) \(T = 4\)"),
    ({"label": 60}, r"'label' 60 is out of range \[0, 60\)"),
    ({"label": -1}, r"'label' -1 is out of range \[0, 60\)"),
    ({"label": 1.5}, r"'label' must be an integer class index, found 1.5"),
    ({"label": None}, r"'label' must be an integer"),
    ({"keypoint": [[[[0.0] * 3] * 25] * 4, [[[0.0] * 3] * 25] * 3]}, r"'keypoint' is not an array"),
])
def test_bad_annotation_names_file_frame_dir_and_key(tmp_path, changes, match):
    path = one_annotation_pickle(tmp_path, **changes)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: 'annotations'\[0\] "
                                         rf"\(frame_dir 'S001C001P001R001A001'\)(: | ){match}"):
        pyskl.PysklSource(path, "s", layout="nturgb+d", num_classes=60)


def test_bad_2d_scores(tmp_path):
    kp = np.ones((1, 4, 17, 2), np.float32)
    for name, score, match in (("no_score.pkl", None, r"has no 'keypoint_score'"),
                               ("score_shape.pkl", np.ones((1, 4, 16), np.float32),
                                r"'keypoint_score' has shape \(1, 4, 16\); expected \[M, T, J\] = \(1, 4, 17\)")):
        ann = {"frame_dir": "clip", "label": 0, "keypoint": kp,
               **({} if score is None else {"keypoint_score": score})}
        path = write_pickle(tmp_path / name, {"split": {"s": ["clip"]}, "annotations": [ann]})
        with pytest.raises(ValueError, match=rf"{name}: 'annotations'\[0\] \(frame_dir 'clip'\):? {match}"):
            pyskl.PysklSource(path, "s", layout="coco")


def test_bad_splits_and_annotation_lists(tmp_path):
    a, b = good_annotation(), good_annotation("S001C002P001R001A001", label=3)
    absent = write_pickle(tmp_path / "absent.pkl", {"split": {"xsub_train": [a["frame_dir"], "S009C001P001R001A001"]},
                                                    "annotations": [a]})
    with pytest.raises(ValueError, match=r"absent.pkl: 'split'\['xsub_train'\] lists frame_dir 'S009C001P001R001A001', "
                                         "which is absent from 'annotations'"):
        pyskl.PysklSource(absent, "xsub_train")
    twice = write_pickle(tmp_path / "twice.pkl", {"split": {"s": [a["frame_dir"]]}, "annotations": [a, a]})
    with pytest.raises(ValueError, match=r"twice.pkl: frame_dir 'S001C001P001R001A001' appears twice in "
                                         r"'annotations' \(entries 0 and 1\)"):
        pyskl.PysklSource(twice, "s")
    no_dir = write_pickle(tmp_path / "no_dir.pkl", {"split": {"s": []}, "annotations": [{"label": 0}]})
    with pytest.raises(ValueError, match=r"no_dir.pkl: 'annotations'\[0\] has no 'frame_dir'"):
        pyskl.PysklSource(no_dir, "s")
    no_kp = write_pickle(tmp_path / "no_kp.pkl", {"split": {"s": [a["frame_dir"]]},
                                                  "annotations": [{"frame_dir": a["frame_dir"], "label": 0}]})
    with pytest.raises(ValueError, match=r"no_kp.pkl: 'annotations'\[0\] \(frame_dir 'S001C001P001R001A001'\) "
                                         "has no 'keypoint'"):
        pyskl.PysklSource(no_kp, "s", layout="nturgb+d")
    disagree = write_pickle(tmp_path / "disagree.pkl", {"split": {"s": [a["frame_dir"], b["frame_dir"]]},
                                                        "annotations": [a, b]})
    with pytest.raises(ValueError, match=r"disagree.pkl: the cameras of sample S001P001R001A001 disagree on "
                                         r"'label': \{'S001C001P001R001A001': 0, 'S001C002P001R001A001': 3\}"):
        pyskl.PysklSource(disagree, "s")


# ---------------------------------------------------------------------------------------------------------------
# TFDS build, reading back, the run config
# ---------------------------------------------------------------------------------------------------------------

def test_tfds_build_round_trip(pkl_3d, tmp_path):
    """A PysklConfig of our own (absolute pkl_path, xview splits) builds to ArrayRecord; `open_source` (the path
    `datasets.make_source` takes, reading the copy from its files) returns the source's examples."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from vicokd_jax.data import builders, datasets
    from vicokd_jax.data.builders.pyskl import Pyskl, PysklConfig

    config = PysklConfig(name="test_ntu60_xview_3d", pkl_path=str(pkl_3d),
                         splits={"train": "xview_train", "test": "xview_val"}, num_classes=60)
    builder = Pyskl(config=config, data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig())
    assert builder.info.features["skeleton"].shape == (3, 2, None, 25, 3)
    for tfds_split, split in (("train", "xview_train"), ("test", "xview_val")):
        expected = by_id(pyskl.PysklSource(pkl_3d, split, num_classes=60))
        read = builders.open_source("pyskl", config.name, tfds_split, str(tmp_path))
        assert len(read) == len(expected) == len(EXPECTED[split])
        for i in range(len(read)):
            example = read[i]
            sample_id = example["id"].decode() if isinstance(example["id"], bytes) else example["id"]
            reference = expected[sample_id]
            assert int(example["label"]) == int(reference["label"])
            for key in ("skeleton", "human_score", "view_mask"):
                assert example[key].dtype == reference[key].dtype
                np.testing.assert_array_equal(example[key], reference[key], err_msg=f"{tfds_split} {sample_id} {key}")
    fields = datasets.prepared_pyskl_fields(tmp_path, config.name)
    assert fields == {**config.fields(), "splits": {"train": "xview_train", "test": "xview_val"}}
    assert (fields["num_views"], fields["num_joints"], fields["channels"]) == (3, 25, ["x", "y", "z"])

    from vicokd_jax import config as config_lib  # a run config reads the copy by name: described by its metadata

    cfg = config_lib.default_config("vicokd")
    cfg.stages, cfg.model.teacher_modalities = ("teacher",), ("skeleton",)
    cfg.data.name, cfg.data.tfds_config, cfg.data.data_dir = "pyskl", config.name, str(tmp_path)
    cfg.data.num_views, cfg.data.num_classes = 3, 60
    config_lib.validate(cfg)
    assert datasets.describe(cfg).num_joints == 25 and len(datasets.make_source(cfg, "test")) == 4


def test_builder_configs_and_files(pkl_3d, tmp_path):
    pytest.importorskip("tensorflow_datasets")
    from vicokd_jax.data.builders import pyskl as builder

    names = [c.name for c in builder.Pyskl.BUILDER_CONFIGS]
    assert names == [f"{v}_{p}_{d}" for v, ps in (("ntu60", ("xsub", "xview")), ("ntu120", ("xsub", "xset")))
                     for p in ps for d in ("3d", "2d")]
    c2d = builder.get_config("ntu120_xset_2d")
    assert (c2d.pkl_path, c2d.layout, c2d.num_classes, c2d.normalize_2d, dict(c2d.splits)) == (
        "ntu120_hrnet.pkl", "coco", 120, True, {"train": "xset_train", "test": "xset_val"})
    with pytest.raises(ValueError, match="ntu60_xsub_3d"):
        builder.get_config("ntu60_xsub")
    assert builder.missing_files(tmp_path, "ntu60_xsub_3d") == [
        f"{tmp_path / 'ntu60_3danno.pkl'} or {tmp_path / 'ntu60_3d.pkl'}: pyskl annotation file not found "
        "(see pyskl's data page, tools/data/README.md)"]
    os.symlink(pkl_3d, tmp_path / "ntu60_3d.pkl")  # mmaction2's name of the same file
    assert builder.missing_files(tmp_path, "ntu60_xview_3d") == []
    assert builder.resolve_pickle(builder.get_config("ntu60_xview_3d"), tmp_path) == tmp_path / "ntu60_3d.pkl"
    for bad, match in (({"pkl_path": ""}, "pkl_path is empty"), ({"layout": "nw-ucla"}, "unknown keypoint layout"),
                       ({"grouping": "auto"}, "grouping='auto'"), ({"splits": {"tr ain": "x"}}, "splits="),
                       ({"normalize_2d": True}, "normalize_2d=True needs a 2-D layout")):
        with pytest.raises(ValueError, match=match):
            builder.PysklConfig(name="bad", **{"pkl_path": "x.pkl", **bad})


def test_run_config_selects_a_pyskl_copy(tmp_path):
    """`data.name="pyskl"`: a standard config is described without files; a teacher-only skeleton run validates;
    fields the copy cannot honour are refused naming the field; 2-D keypoints are not spine-centred."""
    from vicokd_jax import config as config_lib
    from vicokd_jax.data import datasets

    cfg = config_lib.default_config("vicokd")
    cfg.stages, cfg.model.teacher_modalities = ("teacher",), ("skeleton",)
    cfg.data.name, cfg.data.tfds_config, cfg.data.data_dir = "pyskl", "ntu60_xsub_3d", str(tmp_path)
    cfg.data.num_views, cfg.data.num_classes = 3, 60
    config_lib.validate(cfg)
    info = datasets.describe(cfg)
    assert (info.modalities, info.num_persons, info.num_joints, info.frame_labels) == (("skeleton",), 2, 25, False)
    assert datasets.pipeline_config(cfg, training=True, batch_size=2).center_skeleton
    for field, value, match in (("data.num_views", 4, r"config.data.num_views=4.*has 3 views"),
                                ("data.num_classes", 120, r"config.data.num_classes=120.*has 60 classes"),
                                ("model.layout", "coco", r"config.model.layout='coco'.*set model.layout='nturgb\+d'"),
                                ("data.audio", True, r"config.data.audio=True")):
        bad = config_lib.default_config("vicokd")
        bad.update_from_flattened_dict({**{k: cfg[k.split(".")[0]][k.split(".")[1]] for k in (
            "data.name", "data.tfds_config", "data.data_dir", "data.num_views", "data.num_classes")},
            "stages": cfg.stages, "model.teacher_modalities": cfg.model.teacher_modalities, field: value})
        with pytest.raises(ValueError, match=match):
            config_lib.validate(bad)
    cfg.data.tfds_config, cfg.model.layout = "ntu60_xsub_2d", "coco"
    config_lib.validate(cfg)
    assert datasets.describe(cfg).num_joints == 17
    assert not datasets.pipeline_config(cfg, training=False, batch_size=2).center_skeleton
    cfg.data.flip = True
    with pytest.raises(ValueError, match=r"config.data.flip=True: the flip augmentation mirrors 3-D NTU-25"):
        config_lib.validate(cfg)
    cfg.data.flip, cfg.data.tfds_config = False, "my_copy"
    with pytest.raises(ValueError, match=r"config.data.tfds_config='my_copy': not a standard pyskl config.*"
                                         "no prepared copy"):
        config_lib.validate(cfg)
    cfg.stages = ("teacher", "student")
    cfg.data.tfds_config, cfg.model.layout = "ntu60_xsub_3d", "nturgb+d"
    with pytest.raises(ValueError, match=r"needs the modality 'rgb'.*pyskl/ntu60_xsub_3d"):
        config_lib.validate(cfg)
