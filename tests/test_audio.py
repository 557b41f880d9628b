"""The audio front end: real soundtracks decoded with PyAV, log-mel windows equal to HF's ASTFeatureExtractor."""
import numpy as np
import pytest

from vicokd_jax.data import audio

WITH_AUDIO = "video/mmaction2_tests_data_test.avi"  # mp3 stereo 44.1 kHz, 6.56 s
WITHOUT_AUDIO = "video/mmaction2_tests_data_rawvideo_dataset_part_0.mp4"


@pytest.fixture(scope="module")
def soundtrack(fixtures):
    return audio.load(fixtures / WITH_AUDIO)


def test_load_gives_the_mono_16khz_soundtrack(soundtrack):
    assert soundtrack.dtype == np.float32 and soundtrack.ndim == 1
    assert abs(soundtrack.size / audio.SAMPLE_RATE - 6.56) < 0.1  # the track's duration
    assert 0.01 < np.abs(soundtrack).max() < 2.0 and np.std(soundtrack) > 1e-3  # real sound, not silence


def test_load_errors_name_the_file(fixtures, tmp_path):
    with pytest.raises(ValueError, match=r"mmaction2_tests_data_rawvideo_dataset_part_0.mp4 has no audio track"):
        audio.load(fixtures / WITHOUT_AUDIO)
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        audio.load(tmp_path / "nothing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="junk.mp4"):
        audio.load(tmp_path / "junk.mp4")


@pytest.mark.torch
@pytest.mark.parametrize("max_length, num_mel_bins", [(1024, 128), (200, 128), (1024, 64)])
def test_log_mel_equals_hf_ast_feature_extractor(soundtrack, max_length, num_mel_bins):
    pytest.importorskip("torch")
    from transformers import ASTFeatureExtractor

    hf = ASTFeatureExtractor(num_mel_bins=num_mel_bins, max_length=max_length, do_normalize=True)
    want = hf(soundtrack, sampling_rate=16000, return_tensors="np")["input_values"][0]
    got = audio.log_mel(soundtrack, num_mel_bins=num_mel_bins, max_length=max_length)
    assert got.shape == want.shape == (max_length, num_mel_bins) and got.dtype == np.float32
    # 1024: the 6.56 s clip has 654 frames, so the rest is padding; 200: the clip is cut.
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.torch
def test_per_frame_windows_equal_the_extractor_on_each_segment(soundtrack):
    pytest.importorskip("torch")
    from transformers import ASTFeatureExtractor

    hf = ASTFeatureExtractor(num_mel_bins=128, max_length=48, do_normalize=True)
    windows = audio.frame_windows(soundtrack, num_frames=16, max_length=48)
    assert windows.shape == (16, 48, 128)
    bounds = np.linspace(0, soundtrack.size, 17).astype(int)
    for t in (0, 7, 15):
        want = hf(soundtrack[bounds[t]:bounds[t + 1]], sampling_rate=16000, return_tensors="np")["input_values"][0]
        np.testing.assert_allclose(windows[t], want, atol=1e-4, rtol=0)


def test_log_mel_of_a_clip_shorter_than_one_frame_is_all_padding():
    out = audio.log_mel(np.zeros(100, np.float32), max_length=8, num_mel_bins=16)
    np.testing.assert_allclose(out, -audio.AUDIOSET_MEAN / (2 * audio.AUDIOSET_STD), rtol=1e-6)
    with pytest.raises(ValueError, match="16000 Hz"):
        audio.log_mel(np.zeros(1000, np.float32), sample_rate=8000)
    with pytest.raises(ValueError, match=r"\[S\]"):
        audio.fbank(np.zeros((2, 1000), np.float32))
