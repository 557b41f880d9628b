"""The audio front end: real soundtracks decoded with PyAV, log-mel windows equal to HF's ASTFeatureExtractor."""
import re

import numpy as np
import pytest
from multisensor_home_files import write_audio, write_video

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


# ---- generated files and bad input (no fixtures needed) ------------------------------------------------------------

def tone(hz, seconds, rate):
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def peak_bin(wave):
    return int(audio.log_mel(wave, max_length=100).mean(axis=0).argmax())


@pytest.mark.parametrize("rate", [44100, 48000])
def test_load_resamples_to_16khz(tmp_path, rate):
    path = write_audio(tmp_path / f"tone{rate}.m4a", tone(1000, 1.0, rate), sample_rate=rate)
    reference = audio.load(write_audio(tmp_path / "tone16000.m4a", tone(1000, 1.0, 16000), sample_rate=16000))
    wave = audio.load(path)
    assert abs(wave.size - 16000) <= 1024 * 16000 // rate + 1  # 1 s (+ at most one AAC frame of padding)
    assert abs(peak_bin(wave) - peak_bin(reference)) <= 1
    assert peak_bin(wave) > peak_bin(tone(250, 1.0, 16000)) + 10  # the peak says the pitch: 1 kHz, not 250 Hz


@pytest.mark.parametrize("name", ["nan.wav", "nan.mkv"])
def test_load_rejects_nan_samples_naming_the_file(tmp_path, name):
    wave = tone(440, 0.5, 16000)
    wave[1000:1010] = np.nan
    wave[2000] = np.inf
    path = write_audio(tmp_path / name, wave, codec="pcm_f32le")
    with pytest.raises(ValueError, match=rf"{name} holds 11 non-finite samples \(NaN/inf\)"):
        audio.load(path)


def test_file_without_audio_track_raises_no_audio_track_error(tmp_path):
    path = write_video(tmp_path / "silent_film.mp4", 5, 1, fps=10)
    with pytest.raises(audio.NoAudioTrackError, match=r"silent_film\.mp4 has no audio track"):
        audio.load(path)
    assert issubclass(audio.NoAudioTrackError, ValueError)


def test_all_zero_audio_gives_the_log_floor():
    out = audio.log_mel(np.zeros(6400, np.float32), max_length=40)
    floor = (np.log(audio.MEL_FLOOR) - audio.AUDIOSET_MEAN) / (2 * audio.AUDIOSET_STD)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:38], floor, rtol=1e-6)  # 1 + (6400 - 400) // 160 = 38 frames
    np.testing.assert_allclose(out[38:], -audio.AUDIOSET_MEAN / (2 * audio.AUDIOSET_STD), rtol=1e-6)


def test_segment_windows_are_the_log_mel_of_each_time_stretch():
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(16000 + 3000).astype(np.float32) * 0.1  # 1.1875 s
    windows = audio.segment_windows(wave, np.arange(4) / 2.5, 0.4, max_length=40, num_mel_bins=32)
    assert windows.shape == (4, 40, 32) and windows.dtype == np.float32
    for t, (a, b) in enumerate([(0, 6400), (6400, 12800), (12800, 19000), (19200, 19200)]):
        np.testing.assert_array_equal(windows[t], audio.log_mel(wave[a:b], max_length=40, num_mel_bins=32))
    np.testing.assert_allclose(windows[3], -audio.AUDIOSET_MEAN / (2 * audio.AUDIOSET_STD), rtol=1e-6)  # past the end
    # Not an equal split: frame_windows cuts the same wave into 4 pieces of 4750 samples.
    assert not np.allclose(windows[1], audio.frame_windows(wave, 4, max_length=40, num_mel_bins=32)[1])
    # The two agree when the waveform lasts exactly N segments.
    np.testing.assert_array_equal(audio.segment_windows(wave[:12800], [0.0, 0.4], 0.4, max_length=40),
                                  audio.frame_windows(wave[:12800], 2, max_length=40))
    assert audio.segment_windows(wave, [], 0.4, max_length=8, num_mel_bins=4).shape == (0, 8, 4)


def test_segment_windows_bad_times():
    wave = np.zeros(1000, np.float32)
    with pytest.raises(ValueError, match=r"starts must be finite seconds >= 0 of shape \[N\], got shape \(\)"):
        audio.segment_windows(wave, 0.0, 0.4)
    with pytest.raises(ValueError, match="starts must be finite seconds >= 0"):
        audio.segment_windows(wave, [0.0, -0.4], 0.4)
    with pytest.raises(ValueError, match=r"duration must be > 0 seconds, got 0"):
        audio.segment_windows(wave, [0.0], 0)


@pytest.mark.parametrize("fn", [
    lambda w: audio.fbank(w), lambda w: audio.log_mel(w), lambda w: audio.frame_windows(w, 4),
    lambda w: audio.segment_windows(w, [0.0], 0.4)], ids=["fbank", "log_mel", "frame_windows", "segment_windows"])
@pytest.mark.parametrize("shape", [(2, 1000), (1000, 2), (1, 1, 1000)])
def test_multi_channel_waveform_is_a_clear_error(fn, shape):
    with pytest.raises(ValueError, match=rf"waveform must be mono \[S\] \(1-D\), got shape {re.escape(str(shape))}"):
        fn(np.zeros(shape, np.float32))


def test_non_finite_waveform_is_a_clear_error():
    wave = np.zeros(1000, np.float32)
    wave[3] = np.nan
    with pytest.raises(ValueError, match=r"audio\.log_mel: waveform \[S=1000\] has 1 non-finite samples"):
        audio.log_mel(wave)
    with pytest.raises(ValueError, match=r"audio\.segment_windows: waveform \[S=1000\] has 1 non-finite"):
        audio.segment_windows(wave, [0.0], 0.4)


def test_batched_windows_equal_log_mel_of_each_segment_exactly(soundtrack):
    wave = soundtrack[:16000 * 2 + 123]
    bounds = np.linspace(0, wave.size, 7 + 1).astype(np.int64)
    want = np.stack([audio.log_mel(wave[a:b], num_mel_bins=32, max_length=24) for a, b in zip(bounds[:-1], bounds[1:])])
    np.testing.assert_array_equal(audio.frame_windows(wave, 7, num_mel_bins=32, max_length=24), want)
    starts = np.array([0.0, 0.5, 1.9, 2.5])  # the last two run past the end / start after it
    got = audio.segment_windows(wave, starts, 0.4, num_mel_bins=32, max_length=48)
    for i, start in enumerate(starts):
        a = int(round(start * 16000))
        np.testing.assert_array_equal(got[i], audio.log_mel(wave[a:a + 6400], num_mel_bins=32, max_length=48))
