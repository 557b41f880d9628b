"""MultiSensor-Home: annotation parsing, frame labels, person scores, decoding, soundtracks, TFDS build (tiny
generated folder, written by `multisensor_home_files.write_home`).

Generated videos are 10 fps, 24x32 (H x W); source frame k of view n is a flat colour R = 12*k, G = 40*n, B = 100,
so the red channel of a decoded frame tells which source frame was sampled. At 2.5 fps the sampler takes every
4th source frame (0, 4, 8, ...), and frame t covers time t / 2.5 s, i.e. the soundtrack samples
[6400 t, 6400 (t + 1)) at 16 kHz. View n's soundtrack is a 250 n Hz tone plus noise (AAC).
"""
import json
import logging
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds
from multisensor_home_files import source_frames, urls, write_home, write_json, write_video

from vicokd_jax.data import audio
from vicokd_jax.data import multisensor_home as msh
from vicokd_jax.data import schema
from vicokd_jax.data.builders import multisensor_home as builder

SRC_FPS, H, W = 10, 24, 32
C = len(msh.HOME_CLASSES)
CLS = {name: i for i, name in enumerate(msh.HOME_CLASSES)}
F, M = msh.DEFAULT_AUDIO_FRAMES, msh.DEFAULT_AUDIO_MEL_BINS
SEGMENT = 6400  # samples of one frame's stretch: 0.4 s at 16 kHz


# ---- the tiny Home-1 folder --------------------------------------------------------------------------------------

TRAIN = [
    # 2.0 s -> T = 5 at 2.5 fps. Sitdown 0.3-0.9 s -> frames round(0.75)=1 .. round(2.25)=2; ReadBook 1.0-1.9 s ->
    # round(2.5)=3 (half up) .. round(4.75)=5, cut to the last frame 4.
    {**urls("01/00-Part1"), "tricks": [{"start": 0.3, "end": 0.9, "labels": ["Sitdown"]},
                                       {"start": 1.0, "end": 1.9, "labels": ["ReadBook"]}]},
    # 1.2 s -> T = 3; View3 file missing. One trick with two classes: frames round(0)=0 .. round(1.25)=1.
    {**urls("01/00-Part2"), "tricks": [{"start": 0, "end": 0.5, "channel": 0, "labels": ["ReadBook", "UsePhone"]}]},
    # 2.0 s (View5 2.2 s, cut to 5 frames); the trick outlasts the video: every frame on.
    {**urls("02/05-Part1"), "tricks": [{"start": 0.0, "end": 10.0, "labels": ["Enter"]}]},
]
TEST = [
    # 1.5 s -> T = 4 (t/2.5 <= 1.4 + 0.05); Exit 0.5-1.0 s -> frames round(1.25)=1 .. round(2.5)=3.
    {**urls("03/01-Part1"), "tricks": [{"start": 0.5, "end": 1.0, "labels": ["Exit"]}]},
]
FRAMES = {"01/00-Part1": 20, "01/00-Part2": 12, "02/05-Part1": 20, "03/01-Part1": 15,
          ("02/05-Part1", 5): 22}  # View5 of 02/05-Part1 is 2 source frames longer
HUMAN_TRAIN = {
    "01/00-Part1": [[0.1 * v + 0.01 * t for t in range(5)] for v in range(5)],   # record id, T_h = T
    "00-Part2": [[0.1 * v + 0.01 * t for t in range(6)] for v in range(5)],      # name key, T_h = 2T
    "05": [[1.5, -0.5, 0.5, 0.5, 0.5]] * 5,                                         # original key; clipped to [0,1]
}
NO_AUDIO = ("02/05-Part1", 2)       # an MP4 without an audio track
SHORT_AUDIO = ("01/00-Part1", 4)    # 0.5 s of sound in a 2.0 s video
SILENT = ("03/01-Part1", 3)         # an all-zero soundtrack


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """manual_dir/MultiSensor-Home1 with 3 train + 1 test records, one missing view, human_save_train.json, and one
    view each without an audio track, with a short soundtrack, with a silent one."""
    root = tmp_path_factory.mktemp("manual")
    written = write_home(root, train=TRAIN, test=TEST, fps=SRC_FPS, size=(H, W), frames=FRAMES,
                         missing={("01/00-Part2", 3)}, no_audio={NO_AUDIO}, audio_seconds={SHORT_AUDIO: 0.5},
                         silent={SILENT}, human={"train": HUMAN_TRAIN})
    write_json(written.path / "all_labels.json", TRAIN + TEST)  # the dataset's "complete annotations": ignored
    return written


@pytest.fixture(scope="module")
def manual_dir(home):
    return home.path.parent


@pytest.fixture(scope="module")
def train_source(manual_dir):
    return msh.MultisensorHomeSource(manual_dir, "train", home="home1", height=12, width=16)


def frame_rows(t, on):
    """[t, C] expected frame labels: rows `on[class] = frame indices`."""
    labels = np.zeros([t, C], np.float32)
    for name, frames in on.items():
        labels[frames, CLS[name]] = 1
    return labels


# ---- examples from the source ------------------------------------------------------------------------------------

def test_source_examples_follow_schema_and_trick_intervals(train_source):
    assert len(train_source) == 3
    ex = train_source[0]
    schema.check_example(ex)
    assert ex["id"] == "01/00-Part1"
    assert ex["rgb"].shape == (5, 5, 12, 16, 3) and ex["rgb"].dtype == np.uint8
    assert ex["frame_labels"].shape == (5, C) and ex["labels"].shape == (C,)
    np.testing.assert_array_equal(ex["labels"], sequence_labels_of("Sitdown", "ReadBook"))
    np.testing.assert_array_equal(ex["frame_labels"], frame_rows(5, {"Sitdown": [1, 2], "ReadBook": [3, 4]}))
    np.testing.assert_array_equal(source_frames(ex["rgb"]), np.tile([0, 4, 8, 12, 16], (5, 1)))
    green = ex["rgb"][..., 1].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(green, 40 * np.arange(1, 6), atol=4)  # view n's file went to view slot n-1
    assert ex["view_mask"].tolist() == [True] * 5


def sequence_labels_of(*names):
    labels = np.zeros([C], np.float32)
    labels[[CLS[n] for n in names]] = 1
    return labels


def test_missing_view_is_masked_with_zero_frames_and_scores(train_source):
    ex = train_source[1]
    assert ex["id"] == "01/00-Part2"
    assert ex["view_mask"].tolist() == [True, True, False, True, True]
    assert ex["rgb"].shape[1] == 3 and not ex["rgb"][2].any() and not ex["human_score"][2].any()
    np.testing.assert_array_equal(ex["labels"], sequence_labels_of("ReadBook", "UsePhone"))
    np.testing.assert_array_equal(ex["frame_labels"], frame_rows(3, {"ReadBook": [0, 1], "UsePhone": [0, 1]}))


def test_views_are_cut_to_the_shortest_and_long_tricks_to_the_clip(train_source):
    ex = train_source[2]
    assert ex["rgb"].shape[1] == 5  # View5 has 2 more source frames (6 sampled), within max_view_skew_s
    np.testing.assert_array_equal(ex["frame_labels"], frame_rows(5, {"Enter": [0, 1, 2, 3, 4]}))


def test_human_scores_by_id_name_and_original_key_resampled_and_clipped(train_source):
    np.testing.assert_allclose(train_source[0]["human_score"], np.asarray(HUMAN_TRAIN["01/00-Part1"]), atol=1e-6)
    # T_h = 6 for T = 3: frame t reads column floor((t + 0.5) * 2) = 1, 3, 5; the absent View3 scores 0.
    expected = np.asarray(HUMAN_TRAIN["00-Part2"])[:, [1, 3, 5]] * np.array([1, 1, 0, 1, 1])[:, None]
    np.testing.assert_allclose(train_source[1]["human_score"], expected, atol=1e-6)
    np.testing.assert_allclose(train_source[2]["human_score"], np.tile([1.0, 0.0, 0.5, 0.5, 0.5], (5, 1)))


def test_no_human_save_file_gives_score_one(manual_dir):
    ex = msh.MultisensorHomeSource(manual_dir, "test", home="home1", height=12, width=16)[0]
    assert ex["human_score"].shape == (5, 4) and np.all(ex["human_score"] == 1.0)
    np.testing.assert_array_equal(ex["frame_labels"], frame_rows(4, {"Exit": [1, 2, 3]}))


def test_original_key_is_not_used_when_parts_share_it():
    records = [msh.parse_record(r, CLS, "x") for r in TRAIN]
    lookup = msh.human_score_lookup(records, {"00": np.ones([5, 3], np.float32)})
    assert lookup(records[0]) is None and lookup(records[1]) is None  # "00" is Part1's or Part2's: ambiguous


def test_merge_parts_concatenates_frames_labels_and_scores(manual_dir, train_source):
    merged = msh.MultisensorHomeSource(manual_dir, "train", home="home1", height=12, width=16, merge_parts=True)
    assert len(merged) == 2
    ex = merged[0]
    part1, part2 = train_source[0], train_source[1]
    assert ex["id"] == "01/00" and ex["rgb"].shape[1] == 5 + 3
    np.testing.assert_array_equal(ex["rgb"], np.concatenate([part1["rgb"], part2["rgb"]], axis=1))
    np.testing.assert_array_equal(ex["frame_labels"], np.concatenate([part1["frame_labels"], part2["frame_labels"]]))
    np.testing.assert_array_equal(ex["human_score"], np.concatenate([part1["human_score"], part2["human_score"]], 1))
    np.testing.assert_array_equal(ex["audio"], np.concatenate([part1["audio"], part2["audio"]], axis=1))
    assert ex["audio_mask"].all() and not ex["audio"][2, 5:].any()  # each part's audio on its own frame grid
    assert ex["view_mask"].all()  # View3 exists in Part1 (its Part2 frames stay zero)
    assert not ex["rgb"][2, 5:].any() and ex["rgb"][2, :5].any()
    np.testing.assert_array_equal(ex["labels"], sequence_labels_of("Sitdown", "ReadBook", "UsePhone"))


# ---- soundtracks --------------------------------------------------------------------------------------------------

def stretch_windows(path, num_frames, max_length=F, num_mel_bins=M):
    """What frame t of `path`'s audio must be: audio.log_mel of audio.load(path)[6400 t : 6400 (t + 1)]."""
    wave = audio.load(path)
    return np.stack([audio.log_mel(wave[SEGMENT * t:SEGMENT * (t + 1)], max_length=max_length,
                                   num_mel_bins=num_mel_bins) for t in range(num_frames)])


def test_soundtrack_windows_are_the_log_mel_of_each_frames_stretch(home, train_source):
    for i, record_id in ((0, "01/00-Part1"), (2, "02/05-Part1")):  # 02/05: View5 (2.2 s) is cut to 5 frames
        ex = train_source[i]
        schema.check_example(ex)
        t = ex["rgb"].shape[1]
        assert ex["audio"].shape == (5, t, F, M) and ex["audio"].dtype == np.float32
        assert ex["audio_mask"].dtype == np.bool_
        for v in range(5):
            if (record_id, v + 1) == NO_AUDIO:
                continue
            np.testing.assert_allclose(ex["audio"][v], stretch_windows(home.file(record_id, v + 1), t), atol=1e-5,
                                       rtol=0, err_msg=f"{record_id} view {v + 1}")
    # View n's tone (250 n Hz) is the loudest mel bin of its window: each file went to its own view slot.
    peaks = train_source[0]["audio"][:, 0, 2:36].mean(axis=1).argmax(axis=-1)
    assert np.all(np.diff(peaks) > 0), peaks


def test_view_without_audio_track_is_zero_and_masked_with_a_warning(train_source, caplog):
    with caplog.at_level(logging.WARNING, logger=msh.__name__):
        ex = train_source[2]
    assert ex["audio_mask"].tolist() == [True, False, True, True, True]
    assert ex["view_mask"][1] and ex["rgb"][1].any()  # the video of that view is kept
    assert not ex["audio"][1].any() and ex["audio"][0].any()
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "02/05-View2-Part1.mp4" in warning.getMessage() and "no audio track" in warning.getMessage()


def test_missing_and_absent_views_have_no_audio_and_no_warning(home, train_source, caplog):
    ex = train_source[1]  # View3 file missing
    assert ex["audio_mask"].tolist() == [True, True, False, True, True] and not ex["audio"][2].any()
    record = msh.parse_record({**urls("01/00-Part1"), "video_url_5": None, "tricks": []}, CLS, "absent")
    with caplog.at_level(logging.WARNING, logger=msh.__name__):
        windows, mask = msh.load_soundtracks(home.path, record, 5)
    assert not caplog.records
    assert mask.tolist() == [True, True, True, True, False] and not windows[4].any()
    np.testing.assert_array_equal(windows[:4], train_source[0]["audio"][:4])


def test_short_soundtrack_leaves_finite_silence(train_source):
    ex = train_source[0]
    v = SHORT_AUDIO[1] - 1
    assert ex["audio_mask"][v] and np.isfinite(ex["audio"]).all()
    empty = audio.log_mel(np.zeros(0, np.float32), max_length=F)
    # 0.5 s of sound (one AAC frame of padding at most): frames 0 and 1 have sound, 2..4 are empty stretches.
    assert not np.allclose(ex["audio"][v, 1], empty)
    np.testing.assert_allclose(ex["audio"][v, 2:], np.broadcast_to(empty, (3, F, M)), atol=1e-6)


def test_silent_soundtrack_is_valid_data(manual_dir):
    ex = msh.MultisensorHomeSource(manual_dir, "test", home="home1", height=12, width=16)[0]
    v = SILENT[1] - 1
    assert ex["audio_mask"].all() and np.isfinite(ex["audio"]).all()
    floor = (np.log(audio.MEL_FLOOR) - audio.AUDIOSET_MEAN) / (2 * audio.AUDIOSET_STD)
    # Frames 0..2 hold 0.4 s of zeros each: 38 filterbank frames at the log floor, then 2 of padding.
    np.testing.assert_allclose(ex["audio"][v, :3, :38], floor, rtol=1e-6)
    np.testing.assert_allclose(ex["audio"][v, :3, 38:], -audio.AUDIOSET_MEAN / (2 * audio.AUDIOSET_STD), rtol=1e-6)


def test_corrupt_soundtrack_is_an_error_naming_the_file(tmp_path):
    wave = np.zeros(16000, np.float32)
    wave[100:200] = np.nan
    write_video(tmp_path / "01/00-View1-Part1.mkv", 10, 1, fps=SRC_FPS, size=(H, W), audio=wave, codec="pcm_f32le")
    record = msh.parse_record({"video_url_1": "01/00-View1-Part1.mkv", **{f"video_url_{n}": None for n in range(2, 6)},
                               "tricks": []}, CLS, "train.json record 0")
    with pytest.raises(ValueError, match=r"00-View1-Part1\.mkv holds 100 non-finite samples"):
        msh.load_soundtracks(tmp_path, record, 2)


def test_audio_off_gives_the_video_only_layout_and_window_sizes_are_settings(manual_dir, tmp_path):
    ex = msh.MultisensorHomeSource(manual_dir, "test", home="home1", height=12, width=16, audio=False)[0]
    assert set(ex) == {"id", "rgb", "human_score", "view_mask", "labels", "frame_labels"}
    config = builder.MultisensorHomeConfig(name="tiny_noaudio", home="home1", height=12, width=16, audio=False)
    features = builder.MultisensorHome(config=config, data_dir=str(tmp_path)).info.features
    assert "audio" not in features and "audio_mask" not in features and "rgb" in features
    small = msh.MultisensorHomeSource(manual_dir, "test", home="home1", height=12, width=16, audio_frames=16,
                                      audio_mel_bins=32)[0]
    assert small["audio"].shape == (5, 4, 16, 32)
    np.testing.assert_allclose(small["audio"][0], stretch_windows(
        manual_dir / "MultiSensor-Home1/03/01-View1-Part1.mp4", 4, 16, 32), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="audio_frames"):
        msh.MultisensorHomeSource(manual_dir, "test", home="home1", audio_frames=0)


def test_write_home_default_folder_feeds_the_source(tmp_path):
    home = write_home(tmp_path, absent={("01/00-Part1", 5)}, no_audio={4})
    assert len(home.train) >= 4 and len(home.test) >= 2
    train = msh.MultisensorHomeSource(tmp_path, "train", home="home1", height=12, width=16)
    test = msh.MultisensorHomeSource(tmp_path, "test", home="home1", height=12, width=16)
    assert (len(train), len(test)) == (len(home.train), len(home.test))
    labels = {tuple(msh.sequence_labels(r.tricks, C)) for r in train.records + test.records}
    assert len(labels) == len(home.train) + len(home.test)  # every record has other labels
    ex = train[0]
    schema.check_example(ex)
    assert ex["rgb"].shape == (5, 8, 12, 16, 3) and ex["audio"].shape == (5, 8, F, M)  # 3.2 s at 2.5 fps
    assert ex["view_mask"].tolist() == [True] * 4 + [False]
    assert ex["audio_mask"].tolist() == [True, True, True, False, False]
    assert 0 < ex["human_score"][:4].min() and ex["human_score"][:4].max() < 1  # human_save_train.json read
    assert ex["frame_labels"].sum() > 0 and len(msh.MultisensorHomeSource(tmp_path, "train", merge_parts=True)) == 2


# ---- TFDS build ---------------------------------------------------------------------------------------------------

def test_tfds_build_array_record_round_trip(manual_dir, train_source, tmp_path):
    config = builder.MultisensorHomeConfig(name="tiny_home1", home="home1", height=12, width=16)
    b = builder.MultisensorHome(config=config, data_dir=str(tmp_path), file_format="array_record")
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    sources = b.as_data_source()
    assert len(sources["train"]) == 3 and len(sources["test"]) == 1
    assert b.info.metadata["classes"] == list(msh.HOME_CLASSES) and str(b.info.version) == "1.1.0"
    assert b.info.features["audio"].shape == (5, None, F, M) and b.info.features["audio_mask"].shape == (5,)
    by_id = {}
    for i in range(len(sources["train"])):
        ex = sources["train"][i]
        key = ex["id"].decode() if isinstance(ex["id"], bytes) else ex["id"]
        by_id[key] = ex
        schema.check_example(ex, where=key)
    for i in range(len(train_source)):
        want = train_source[i]
        got = by_id[want["id"]]
        assert set(got) == set(want), sorted(got)
        for key in ("rgb", "audio", "audio_mask", "human_score", "view_mask", "labels", "frame_labels"):
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
            assert got[key].dtype == want[key].dtype, key


def test_built_dataset_feeds_the_grain_pipeline(manual_dir, tmp_path):
    from vicokd_jax.data import pipeline

    config = builder.MultisensorHomeConfig(name="tiny_pipe", home="home1", height=12, width=16)
    b = builder.MultisensorHome(config=config, data_dir=str(tmp_path), file_format="array_record")
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    cfg = pipeline.PipelineConfig(batch_size=2, num_frames=4, image_size=8, shard_index=0, shard_count=1)
    batch = next(iter(pipeline.make_dataset(b.as_data_source()["train"], cfg)))
    assert batch["rgb"].shape == (2, 5, 4, 8, 8, 3) and batch["rgb"].dtype == np.uint8
    assert batch["labels"].shape == (2, 16) and batch["frame_labels"].shape == (2, 4, 16)
    assert batch["human_score"].shape == (2, 5, 4) and batch["view_mask"].shape == (2, 5)
    assert batch["audio"].shape == (2, 5, 4, F, M) and batch["audio_mask"].shape == (2, 5)


def test_builder_configs_and_missing_files(manual_dir, tmp_path):
    assert [c.name for c in builder.MultisensorHome.BUILDER_CONFIGS] == ["home1", "home2"]
    assert "train.json" in builder.MultisensorHome.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert builder.missing_files(manual_dir, "home1") == []
    missing = builder.missing_files(manual_dir, "home2")
    assert any("train_data.json" in m for m in missing) and any("test_data.json" in m for m in missing)
    with pytest.raises(ValueError, match="home3"):
        builder.missing_files(manual_dir, "home3")
    # A record none of whose view files exist is listed with its files.
    write_json(tmp_path / "train.json", [{**urls("09/09-Part1"), "tricks": []}])
    write_json(tmp_path / "test.json", [])
    (missing_record,) = builder.missing_files(tmp_path, "home1")
    assert "09/09-View1-Part1.mp4" in missing_record and "record 0" in missing_record


def test_build_without_annotations_names_missing_files(tmp_path):
    b = builder.MultisensorHome(config="home2", data_dir=str(tmp_path / "data"), file_format="array_record")
    with pytest.raises(FileNotFoundError, match="train_data.json"):
        b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path)))


def test_home2_file_names_and_manual_dir_as_home_folder(manual_dir, tmp_path):
    home1 = manual_dir / "MultiSensor-Home1"
    record = {**{k: str(home1 / v) for k, v in urls("03/01-Part1").items()},
              "tricks": [{"start": 0.0, "end": 0.4, "labels": ["CloseCurtain"]}]}
    write_json(tmp_path / "train_data.json", [record])  # absolute paths also work (joined to the home folder)
    write_json(tmp_path / "test_data.json", [record])
    ex = msh.MultisensorHomeSource(tmp_path, "train", home="home2", height=12, width=16)[0]
    np.testing.assert_array_equal(ex["frame_labels"][:, CLS["CloseCurtain"]], [1, 1, 0, 0])
    assert builder.missing_files(tmp_path, "home2") == []


# ---- sampling ----------------------------------------------------------------------------------------------------

def test_decode_samples_nearest_frames_and_resizes(tmp_path):
    path = tmp_path / "a.mp4"
    write_video(path, 20, 1, fps=25, size=(H, W))  # 0.8 s at 25 fps
    clip = msh.decode_video(path, fps=2.5, height=6, width=8)
    assert clip.shape == (2, 6, 8, 3)  # times 0, 0.4 s
    np.testing.assert_array_equal(source_frames(clip), [0, 10])  # as MultiTSF: every round(25 / 2.5) = 10th
    held = msh.decode_video(tmp_path / "a.mp4", fps=50, height=6, width=8)  # faster than the source: repeats
    assert len(held) == 40 and source_frames(held)[:4].tolist() == [0, 0, 1, 1]


def test_frame_labels_round_half_up_and_clip():
    tricks = [msh.Trick(start=0.2, end=0.6, classes=(0,)), msh.Trick(start=1.0, end=9.0, classes=(2, 3))]
    got = msh.frame_labels(tricks, num_frames=4, fps=2.5, num_classes=4)
    # 0.2 s -> 0.5 -> 1; 0.6 s -> 1.5 -> 2; 1.0 s -> 2.5 -> 3; 9.0 s -> 22.5 -> cut to 3.
    np.testing.assert_array_equal(got, [[0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1]])


def test_resample_scores_identity_and_uniform():
    scores = np.arange(10, dtype=np.float32).reshape(5, 2)
    np.testing.assert_array_equal(msh.resample_scores(scores, 2), scores)
    np.testing.assert_array_equal(msh.resample_scores(scores, 4)[0], [0, 0, 1, 1])


# ---- malformed input: each error names the file, record and key ---------------------------------------------------

def parse(tmp_path, records, name="train.json"):
    return msh.parse_annotations(write_json(tmp_path / name, records))


GOOD = {**urls("01/00-Part1"), "tricks": [{"start": 1.0, "end": 2.0, "labels": ["Drink"]}]}


def test_error_missing_video_url(tmp_path):
    bad = {k: v for k, v in GOOD.items() if k != "video_url_3"}
    with pytest.raises(ValueError, match=r"train\.json record 1: missing key 'video_url_3'"):
        parse(tmp_path, [GOOD, bad])


def test_error_missing_tricks(tmp_path):
    bad = {k: v for k, v in GOOD.items() if k != "tricks"}
    with pytest.raises(ValueError, match=r"train\.json record 0: missing key 'tricks'"):
        parse(tmp_path, [bad])


def test_error_missing_trick_key(tmp_path):
    bad = {**GOOD, "tricks": [GOOD["tricks"][0], {"start": 1.0, "labels": ["Eat"]}]}
    with pytest.raises(ValueError, match=r"train\.json record 0: tricks\[1\]: missing key 'end'"):
        parse(tmp_path, [bad])


def test_error_partial_json(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps([GOOD, GOOD])[:150])
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: invalid JSON at line 1 column \d+"):
        msh.parse_annotations(path)


def test_error_not_a_list(tmp_path):
    with pytest.raises(ValueError, match=r"train\.json: expected a JSON list of records, got dict"):
        parse(tmp_path, {"records": [GOOD]})


def test_error_start_after_end(tmp_path):
    bad = {**GOOD, "tricks": [{"start": 5.0, "end": 2.0, "labels": ["Eat"]}]}
    with pytest.raises(ValueError, match=r"train\.json record 0: tricks\[0\]: start 5\.0 > end 2\.0"):
        parse(tmp_path, [bad])


def test_error_bad_time_value(tmp_path):
    bad = {**GOOD, "tricks": [{"start": "1.0", "end": 2.0, "labels": ["Eat"]}]}
    with pytest.raises(ValueError, match=r"record 0: tricks\[0\]\.start: expected a finite number"):
        parse(tmp_path, [bad])
    bad = {**GOOD, "tricks": [{"start": -1.0, "end": 2.0, "labels": ["Eat"]}]}
    with pytest.raises(ValueError, match=r"tricks\[0\]\.start: negative time"):
        parse(tmp_path, [bad])


def test_error_unknown_class(tmp_path):
    bad = {**GOOD, "tricks": [{"start": 1.0, "end": 2.0, "labels": ["Jump"]}]}
    with pytest.raises(ValueError) as err:
        parse(tmp_path, [GOOD, bad], name="test_data.json")
    message = str(err.value)
    assert "test_data.json record 1: tricks[0].labels: unknown class 'Jump'" in message
    assert "known classes (16): AdjustAC, Clean," in message and "UsePhone" in message


def test_error_empty_labels(tmp_path):
    bad = {**GOOD, "tricks": [{"start": 1.0, "end": 2.0, "labels": []}]}
    with pytest.raises(ValueError, match=r"tricks\[0\]\.labels: expected a non-empty list"):
        parse(tmp_path, [bad])


def test_error_url_names_another_view(tmp_path):
    bad = {**GOOD, "video_url_4": "01/00-View2-Part1.mp4"}
    with pytest.raises(ValueError, match=r"record 0: key 'video_url_4' names View2"):
        parse(tmp_path, [bad])


def test_error_views_of_different_recordings(tmp_path):
    bad = {**GOOD, "video_url_2": "01/07-View2-Part1.mp4"}
    with pytest.raises(ValueError, match=r"record 0: key 'video_url_2' \(01/07-View2-Part1\.mp4\) is not the same"):
        parse(tmp_path, [bad])


def test_error_duplicate_record(tmp_path):
    with pytest.raises(ValueError, match=r"record 1 repeats id '01/00-Part1' of .*record 0"):
        parse(tmp_path, [GOOD, GOOD])


def test_error_views_of_different_lengths(tmp_path):
    write_video(tmp_path / "01/00-View1-Part1.mp4", 20, 1, fps=SRC_FPS, size=(H, W))  # 2 s
    write_video(tmp_path / "01/00-View2-Part1.mp4", 60, 2, fps=SRC_FPS, size=(H, W))  # 6 s
    record = msh.parse_record({**urls("01/00-Part1", views=(1, 2)), **{f"video_url_{n}": None for n in (3, 4, 5)},
                               "tricks": []}, CLS, "train.json record 0")
    with pytest.raises(ValueError) as err:
        msh.load_views(tmp_path, record, fps=2.5, height=6, width=8, max_view_skew_s=1.0)
    message = str(err.value)
    assert "train.json record 0 (01/00-Part1): views have different lengths" in message
    assert "01/00-View1-Part1.mp4: 5 frames" in message and "01/00-View2-Part1.mp4: 15 frames" in message


def test_error_all_views_missing(tmp_path):
    record = msh.parse_record(GOOD, CLS, "train.json record 4")
    with pytest.raises(FileNotFoundError, match=r"train\.json record 4 \(01/00-Part1\): no view file exists: .*"
                                                r"01/00-View1-Part1\.mp4, .*01/00-View5-Part1\.mp4"):
        msh.load_views(tmp_path, record, fps=2.5, height=6, width=8)


def test_error_corrupt_video(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 20)
    with pytest.raises(ValueError, match=r"broken\.mp4: (cannot decode video|no video stream|no decodable)"):
        msh.decode_video(path, fps=2.5, height=6, width=8)


def test_error_human_save_views_of_different_lengths(tmp_path):
    path = write_json(tmp_path / "human_save_train.json", {"01/00-Part1": [[0.1] * 5] * 4 + [[0.1] * 4]})
    with pytest.raises(ValueError, match=r"human_save_train\.json key '01/00-Part1': views have different .*"
                                         r"\[5, 5, 5, 5, 4\]"):
        msh.load_human_scores(path)


def test_error_human_save_wrong_view_count(tmp_path):
    path = write_json(tmp_path / "human_save_test.json", {"00": [[0.1, 0.2]] * 3})
    with pytest.raises(ValueError, match=r"human_save_test\.json key '00': expected 5 lists .* got a list of 3"):
        msh.load_human_scores(path)


def test_error_class_list_file_differs(tmp_path):
    write_json(tmp_path / "all_labels.json", list(msh.HOME_CLASSES[:15]) + ["Jump"])
    with pytest.raises(ValueError, match=r"all_labels\.json: class list differs .*not configured: \['Jump'\]"):
        msh.check_class_list(tmp_path, msh.HOME_CLASSES)
    write_json(tmp_path / "all_labels.json", list(msh.HOME_CLASSES))
    msh.check_class_list(tmp_path, msh.HOME_CLASSES)  # the same list: fine
