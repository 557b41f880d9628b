"""NTU RGB+D TFDS builder: ArrayRecord build from a tiny manual_dir of real fixtures, read back with
`as_data_source` (no TensorFlow), split membership, view masks, labels; `missing_files`."""
import os
import pathlib
import shutil

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from vicokd_jax.data import ntu, schema  # noqa: E402
from vicokd_jax.data.builders import ntu_rgbd  # noqa: E402
from vicokd_jax.data.builders.ntu_rgbd import NtuRgbd, NtuRgbdConfig, missing_files  # noqa: E402

# camera file in manual_dir -> fixture whose content it holds
LAYOUT = {
    "S001C001P001R001A001": "S001C001P001R001A001",  # T=103 \
    "S001C002P001R001A001": "S001C001P001R001A011",  # T=82   > one 3-view sample, T = 103
    "S001C003P001R001A001": "S001C003P008R002A058",  # T=70  /  (2 bodies)
    "S001C001P001R001A011": "S001C001P001R001A011",
    "S001C002P001R001A011": None,                    # every frame lists 0 bodies -> view missing
    "S001C003P008R002A058": "S001C003P008R002A058",
    "S002C001P003R001A003": "S002C001P003R001A003",
    "S003C001P015R001A034": "S003C001P015R001A034",
    "S004C002P003R001A017": "S004C002P003R001A017",
    "S001C002P005R002A008": "S001C001P001R001A011",  # on the authors' missing-skeleton list -> skipped
    "S018C001P001R001A001": "S001C001P001R001A001",  # NTU-120 only (setup 18)
    "S018C001P045R001A061": "S003C001P015R001A034",  # NTU-120 only (action 61, performer 45)
}
# (split -> {sample id: view_mask}) for each benchmark, derived by hand from LAYOUT and the protocols
A001, A011, A058, A003, A034, A017 = ("S001P001R001A001", "S001P001R001A011", "S001P008R002A058",
                                      "S002P003R001A003", "S003P015R001A034", "S004P003R001A017")
ONE, TWO, THREE, ALL = [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]
EXPECTED = {
    "ntu60_xsub": {"train": {A001: ALL, A011: ONE, A058: THREE, A034: ONE}, "test": {A003: ONE, A017: TWO}},
    "ntu60_xview": {"train": {A001: [0, 1, 1], A058: THREE, A017: TWO},
                    "test": {A001: ONE, A011: ONE, A003: ONE, A034: ONE}},
    "ntu120_xsub": {"train": {A001: ALL, A011: ONE, A058: THREE, A034: ONE, "S018P001R001A001": ONE,
                              "S018P045R001A061": ONE}, "test": {A003: ONE, A017: TWO}},
    "ntu120_xset": {"train": {A003: ONE, A017: TWO, "S018P001R001A001": ONE, "S018P045R001A061": ONE},
                    "test": {A001: ALL, A011: ONE, A058: THREE, A034: ONE}},
}
VIDEO = "S001C001P001R001A001"


@pytest.fixture(scope="module")
def manual_dir(fixtures, tmp_path_factory) -> pathlib.Path:
    """nturgb+d_skeletons/ with the fixtures (symlinks) and synthesised camera files; a stray README."""
    root = tmp_path_factory.mktemp("ntu_manual")
    folder = root / ntu.SKELETON_DIR
    folder.mkdir()
    for name, source in LAYOUT.items():
        if source is None:
            (folder / f"{name}.skeleton").write_bytes(b"3\r\n0\r\n0\r\n0\r\n")
        else:
            os.symlink(fixtures / "ntu_skeleton" / f"{source}.skeleton", folder / f"{name}.skeleton")
    (folder / "README.txt").write_text("not a camera file")
    return root


def build(config, manual_dir: pathlib.Path, data_dir: pathlib.Path):
    builder = NtuRgbd(config=config, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
    return builder


def read_split(builder, split) -> dict[str, dict]:
    source = builder.as_data_source()[split]
    examples = [source[i] for i in range(len(source))]
    return {e["id"].decode() if isinstance(e["id"], bytes) else e["id"]: e for e in examples}


def test_builder_configs():
    names = [c.name for c in NtuRgbd.BUILDER_CONFIGS]
    assert names == [f"{b}_{m}" for b in ("ntu60_xsub", "ntu60_xview", "ntu120_xsub", "ntu120_xset")
                     for m in ("skeleton", "skeleton_rgb")]
    assert ntu_rgbd.get_config("ntu120_xset_skeleton_rgb").rgb_size == ntu.DEFAULT_RGB_SIZE
    with pytest.raises(ValueError, match="ntu60_xsub_skeleton"):
        ntu_rgbd.get_config("ntu60_xsub")
    with pytest.raises(ValueError, match="modality"):
        NtuRgbdConfig(name="bad", modality="depth")
    assert "nturgb+d_skeletons" in NtuRgbd.MANUAL_DOWNLOAD_INSTRUCTIONS


@pytest.mark.parametrize("benchmark", sorted(EXPECTED))
def test_build_skeleton_config(benchmark, manual_dir, fixtures, tmp_path):
    builder = build(f"{benchmark}_skeleton", manual_dir, tmp_path)
    num_classes = ntu.BENCHMARKS[benchmark].num_classes
    assert builder.info.features["label"].num_classes == num_classes
    for split, expected in EXPECTED[benchmark].items():
        examples = read_split(builder, split)
        assert sorted(examples) == sorted(expected), (benchmark, split)
        for sample_id, example in examples.items():
            schema.check_example(example, where=sample_id)
            mask = example["view_mask"]
            np.testing.assert_array_equal(mask, np.array(expected[sample_id], bool), err_msg=sample_id)
            t = example["human_score"].shape[1]
            assert example["skeleton"].shape == (3, 2, t, 25, 3) and example["skeleton"].dtype == np.float32
            assert example["label"] == int(sample_id[-3:]) - 1 < num_classes
            assert not example["skeleton"][~mask].any() and not example["human_score"][~mask].any()
            assert example["human_score"][mask].max() == 1.0


def test_built_values_match_the_parser(manual_dir, fixtures, tmp_path):
    """The 3-view sample: views padded to the longest camera (103), contents equal to the parsed files."""
    examples = read_split(build("ntu60_xsub_skeleton", manual_dir, tmp_path), "train")
    sample = examples[A001]
    assert sample["skeleton"].shape[2] == 103
    np.testing.assert_array_equal(sample["human_score"].sum(1), [103, 82, 70])
    for view, source in enumerate(["S001C001P001R001A001", "S001C001P001R001A011", "S001C003P008R002A058"]):
        parsed = ntu.read_skeleton(fixtures / "ntu_skeleton" / f"{source}.skeleton")
        expected = ntu.select_bodies(parsed["joints"], 2, parsed["present"])
        np.testing.assert_array_equal(sample["skeleton"][view, :, :expected.shape[1]], expected)
        assert not sample["skeleton"][view, :, expected.shape[1]:].any()


def test_build_rgb_config(fixtures, tmp_path):
    """skeleton_rgb at 32x32 (custom config), flat manual_dir; a camera's video is cut to its skeleton's T."""
    root = tmp_path / "manual"
    root.mkdir()
    video = fixtures / "ntu_rgb" / f"{VIDEO}_rgb.avi"
    for camera, source in ((1, VIDEO), (2, "S001C001P001R001A011")):  # T = 103 and 82
        name = f"S001C00{camera}P001R001A001"
        os.symlink(fixtures / "ntu_skeleton" / f"{source}.skeleton", root / f"{name}.skeleton")
        os.symlink(video, root / f"{name}_rgb.avi")
    config = NtuRgbdConfig(name="ntu60_xview_rgb32_test", benchmark="ntu60_xview", modality="skeleton_rgb",
                           rgb_size=(32, 32))
    assert missing_files(root, config) == [f"{root / ntu.SKELETON_DIR}: no .skeleton files for setups "
                                           "S002-S017 of ntu60 (setups 1-17)"]
    builder = build(config, root, tmp_path / "tfds")
    train, test = read_split(builder, "train")[A001], read_split(builder, "test")[A001]
    for example in (train, test):
        schema.check_example(example)
    reference = ntu.read_rgb(video, (32, 32))  # [103, 32, 32, 3]
    assert test["rgb"].shape == (3, 103, 32, 32, 3) and test["rgb"].dtype == np.uint8
    np.testing.assert_array_equal(test["rgb"][0], reference)
    assert not test["rgb"][1:].any()
    assert train["rgb"].shape == (3, 82, 32, 32, 3)  # only camera 2 (T=82) in cross-view train
    np.testing.assert_array_equal(train["rgb"][1], reference[:82])
    assert not train["rgb"][[0, 2]].any()


def test_rgb_config_refuses_missing_videos(manual_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no RGB videos for setup S001"):
        build("ntu60_xsub_skeleton_rgb", manual_dir, tmp_path)


def test_missing_files(manual_dir, fixtures, tmp_path):
    assert missing_files(tmp_path / "absent", "ntu60_xsub_skeleton") == [
        f"{tmp_path / 'absent'}: folder does not exist (put NTU RGB+D's nturgb+d_skeletons/ there)"]
    assert "no .skeleton files" in missing_files(tmp_path, "ntu60_xsub_skeleton")[0]
    assert missing_files(manual_dir, "ntu60_xview_skeleton") == [
        f"{manual_dir / ntu.SKELETON_DIR}: no .skeleton files for setups S005-S017 of ntu60 (setups 1-17)"]
    ntu120 = missing_files(manual_dir, "ntu120_xset_skeleton")
    assert len(ntu120) == 1 and "setups S005-S017, S019-S032 of ntu120" in ntu120[0]
    assert "nturgbd_skeletons_s018_to_s032.zip" in ntu120[0]

    rgb_root = tmp_path / "with_rgb"
    shutil.copytree(manual_dir, rgb_root, symlinks=True)
    (rgb_root / ntu.RGB_DIR).mkdir()
    os.symlink(fixtures / "ntu_rgb" / f"{VIDEO}_rgb.avi", rgb_root / ntu.RGB_DIR / f"{VIDEO}_rgb.avi")
    problems = missing_files(rgb_root, "ntu60_xsub_skeleton_rgb")[1:]  # [0]: the setups S005-S017
    folder = rgb_root / ntu.RGB_DIR
    # setup 1 has one video: the others are named one by one (not the file on the missing-skeleton list)
    assert problems[:4] == [f"{folder}: {n}_rgb.avi missing" for n in
                            ("S001C001P001R001A011", "S001C002P001R001A001", "S001C002P001R001A011",
                             "S001C003P001R001A001")]
    assert problems[4] == f"{folder}: S001C003P008R002A058_rgb.avi missing"
    assert problems[5:] == [f"{folder}: no RGB videos for setup S00{s} (needed by 1 camera file; "
                            f"nturgbd_rgb_s00{s}.zip)" for s in (2, 3, 4)]


def test_built_dataset_feeds_the_grain_pipeline(manual_dir, tmp_path):
    from vicokd_jax.data import pipeline

    source = build("ntu60_xsub_skeleton", manual_dir, tmp_path).as_data_source()["train"]
    cfg = pipeline.PipelineConfig(batch_size=2, num_frames=16, shard_index=0, shard_count=1, labeled_fraction=0.5)
    batch = next(iter(pipeline.make_dataset(source, cfg)))
    assert batch["skeleton"].shape == (2, 3, 2, 16, 25, 3) and batch["skeleton"].dtype == np.float32
    assert batch["human_score"].shape == (2, 3, 16) and batch["view_mask"].shape == (2, 3)
    assert batch["label"].dtype == np.int32 and batch["labeled"].sum() == 1 * (len(source) >= 2)
    assert "rgb" not in batch


def test_prepare_data_tool_checks_then_builds(manual_dir, tmp_path, capsys):
    from tools import prepare_data

    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_data.main(["ntu_rgbd", "--config", "ntu60_xsub_skeleton", "--manual_dir", str(empty),
                              "--data_dir", str(tmp_path / "tfds")]) == 1
    assert "missing:" in capsys.readouterr().err
    assert not (tmp_path / "tfds" / "ntu_rgbd").exists()  # nothing built
    args = ["ntu_rgbd", "--config", "ntu60_xsub_skeleton", "--manual_dir", str(manual_dir),
            "--data_dir", str(tmp_path / "tfds")]
    assert prepare_data.main(args) == 1  # a few setups only: refused by default...
    assert "S005-S017" in capsys.readouterr().err
    assert prepare_data.main(args + ["--allow_incomplete"]) == 0  # ...built as a deliberate subset
    assert "prepared ntu_rgbd/ntu60_xsub_skeleton" in capsys.readouterr().out
    from vicokd_jax.data.builders import open_source

    assert len(open_source("ntu_rgbd", "ntu60_xsub_skeleton", "train", str(tmp_path / "tfds"))) > 0
