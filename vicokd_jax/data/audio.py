"""Soundtracks: decoding (PyAV) and AST-compatible log-mel filterbank windows, in numpy (no torch at run time).

    wave = audio.load("clip.mp4")                       # float32 [S], mono, 16 kHz
    x = audio.log_mel(wave)                             # float32 [1024, 128]: ASTFeatureExtractor's input_values
    windows = audio.frame_windows(wave, num_frames=16)  # float32 [16, F, 128]: one window per sampled frame
    windows = audio.segment_windows(wave, starts=np.arange(16) / 2.5, duration=0.4, max_length=40)
                                                        # float32 [16, 40, 128]: the stretches [t/2.5, (t+1)/2.5) s

`log_mel` is the Kaldi-compatible filterbank that HF's `ASTFeatureExtractor` computes (25 ms Hann frames every
10 ms without edge padding, DC removal, pre-emphasis 0.97, a 512-point power spectrum, 128 triangular filters on
Kaldi's mel scale between 20 Hz and Nyquist, natural log floored at float32 epsilon), then zero-padded or cut to
`max_length` frames and normalised with the AudioSet mean and std (`(x - mean) / (2 std)`). Written here in numpy
because the extractor needs torch (and torchaudio for its own fast path), which the runtime stack does not have.

Bad input: the functions that take a waveform want it mono `[S]` (a 2-D array, e.g. stereo, is a ValueError naming
its shape: downmix first) and finite. `load` raises ValueError naming the file when the decoded track holds
NaN or inf (a corrupt track: nothing downstream could tell such windows from data), and `NoAudioTrackError` (a
ValueError) when the file has no audio track or the track holds no samples, so callers can treat a missing
soundtrack apart from a broken one. Silence is valid data: all-zero samples give the log floor (finite), and a
segment with fewer than 400 samples (one 25-ms frame) is all padding.
"""
from __future__ import annotations

import functools
import os

import numpy as np

SAMPLE_RATE = 16000
FRAME_LENGTH, HOP_LENGTH, FFT_LENGTH = 400, 160, 512  # 25 ms and 10 ms at 16 kHz
PREEMPHASIS = 0.97
LOW_FREQUENCY = 20.0
MEL_FLOOR = float(np.finfo(np.float32).eps)
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974
HANN = np.hanning(FRAME_LENGTH)
HANN.flags.writeable = False


class NoAudioTrackError(ValueError):
    """`load`: the file has no audio track, or its track holds no samples (a ValueError naming the file)."""


def _mono(waveform, where: str) -> np.ndarray:
    """`waveform` as a float array [S], or ValueError naming `where` and the shape / the non-finite samples."""
    wave = np.asarray(waveform)
    if wave.ndim != 1:
        raise ValueError(f"audio.{where}: waveform must be mono [S] (1-D), got shape {wave.shape}; downmix a "
                         f"multi-channel array first (e.g. wave.mean(axis=0) for [channels, S])")
    if not np.issubdtype(wave.dtype, np.floating) and not np.issubdtype(wave.dtype, np.integer):
        raise ValueError(f"audio.{where}: waveform must hold numbers, got dtype {wave.dtype}")
    bad = np.count_nonzero(~np.isfinite(wave))
    if bad:
        raise ValueError(f"audio.{where}: waveform [S={wave.size}] has {bad} non-finite samples (NaN/inf)")
    return wave


def load(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The mono waveform of the first audio track of `path`, resampled to `sample_rate`: float32 [S], full scale
    ±1 (a downmix of several channels can exceed it).

    Raises FileNotFoundError for a missing file, NoAudioTrackError (a ValueError) naming the file when it has no
    audio track or the track holds no samples, and ValueError naming the file when it cannot be decoded or its
    samples hold NaN/inf."""
    import av

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio: {path} does not exist")
    try:
        container = av.open(path)
    except av.error.FFmpegError as err:
        raise ValueError(f"audio: {path} cannot be opened: {err}") from err
    with container:
        if not container.streams.audio:
            raise NoAudioTrackError(f"audio: {path} has no audio track (streams: "
                                    f"{[s.type for s in container.streams]})")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]  # flush
        except av.error.FFmpegError as err:
            raise ValueError(f"audio: the audio track of {path} cannot be decoded: {err}") from err
    wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if not wave.size:
        raise NoAudioTrackError(f"audio: the audio track of {path} holds no samples")
    bad = np.count_nonzero(~np.isfinite(wave))
    if bad:
        raise ValueError(f"audio: the audio track of {path} holds {bad} non-finite samples (NaN/inf) of "
                         f"{wave.size}: a corrupt track")
    return wave


@functools.lru_cache(maxsize=16)
def kaldi_mel_filters(num_mel_bins: int = 128, sample_rate: int = SAMPLE_RATE,
                      fft_length: int = FFT_LENGTH) -> np.ndarray:
    """[fft_length // 2 + 1, num_mel_bins]: triangles on the Kaldi mel scale `1127 ln(1 + f / 700)`, from 20 Hz to
    Nyquist, triangular in mel (not in Hz) as Kaldi builds them. Cached, so read-only."""
    mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f, np.float64) / 700.0)  # noqa: E731
    edges = np.linspace(mel(LOW_FREQUENCY), mel(sample_rate // 2), num_mel_bins + 2)
    bins = mel(sample_rate / fft_length * np.arange(fft_length // 2 + 1))[:, None]
    rising = (bins - edges[None, :-2]) / (edges[1:-1] - edges[:-2])
    falling = (edges[None, 2:] - bins) / (edges[2:] - edges[1:-1])
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters.flags.writeable = False
    return filters


def fbank(waveform: np.ndarray, num_mel_bins: int = 128, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Log-mel filterbank of a mono waveform `[S]` -> float32 `[N, num_mel_bins]`, N = 1 + (S - 400) // 160
    frames (0 when S < 400), before padding and normalisation."""
    wave = _mono(waveform, "fbank").astype(np.float64)
    n = 0 if wave.size < FRAME_LENGTH else 1 + (wave.size - FRAME_LENGTH) // HOP_LENGTH
    if n == 0:
        return np.zeros((0, num_mel_bins), np.float32)
    return _frame_features(wave, HOP_LENGTH * np.arange(n), num_mel_bins, sample_rate)


def _frame_features(wave: np.ndarray, starts: np.ndarray, num_mel_bins: int, sample_rate: int) -> np.ndarray:
    """The log-mel features of the 400-sample frames of float64 `wave` starting at `starts [N]` -> float32 [N, M]."""
    frames = wave[starts[:, None] + np.arange(FRAME_LENGTH)[None, :]]  # [N, 400]
    frames = frames - frames.mean(axis=1, keepdims=True)  # DC offset
    # Pre-emphasis within each frame; Kaldi scales the first sample by (1 - coefficient).
    frames = np.concatenate([frames[:, :1] * (1.0 - PREEMPHASIS), frames[:, 1:] - PREEMPHASIS * frames[:, :-1]], 1)
    frames = frames * HANN  # symmetric Hann ("hanning")
    power = np.abs(np.fft.rfft(frames, n=FFT_LENGTH, axis=1)) ** 2  # [N, 257]
    mel = power @ kaldi_mel_filters(num_mel_bins, sample_rate)
    return np.log(np.maximum(mel, MEL_FLOOR)).astype(np.float32)


def log_mel(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = 128,
            max_length: int = 1024) -> np.ndarray:
    """AST's input: float32 `[max_length, num_mel_bins]`, the filterbank zero-padded (before normalisation) or cut
    to `max_length` frames, then `(x - AudioSet mean) / (2 · AudioSet std)`."""
    wave = _mono(waveform, "log_mel")
    return _windows(wave, np.array([0]), np.array([wave.size]), sample_rate, num_mel_bins, max_length, "log_mel")[0]


def _check_window_args(where: str, sample_rate: int, num_mel_bins: int, max_length: int) -> None:
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"audio.{where}: the AST filterbank is defined at {SAMPLE_RATE} Hz, got sample_rate="
                         f"{sample_rate}; resample first (audio.load(path, sample_rate={SAMPLE_RATE}))")
    if max_length < 1 or num_mel_bins < 1:
        raise ValueError(f"audio.{where}: max_length and num_mel_bins must be >= 1, got {max_length}, {num_mel_bins}")


def frame_windows(waveform: np.ndarray, num_frames: int, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = 128,
                  max_length: int = 1024) -> np.ndarray:
    """One AST window per sampled video frame: the waveform cut into `num_frames` consecutive segments of equal
    length (boundaries `floor(i · S / num_frames)`), each turned into `log_mel`
    -> float32 `[num_frames, max_length, num_mel_bins]`."""
    wave = _mono(waveform, "frame_windows").astype(np.float32)
    if num_frames < 1:
        raise ValueError(f"audio.frame_windows: num_frames must be >= 1, got {num_frames}")
    bounds = np.linspace(0, wave.size, num_frames + 1).astype(np.int64)
    return _windows(wave, bounds[:-1], bounds[1:], sample_rate, num_mel_bins, max_length, "frame_windows")


def segment_windows(waveform: np.ndarray, starts, duration: float, sample_rate: int = SAMPLE_RATE,
                    num_mel_bins: int = 128, max_length: int = 1024) -> np.ndarray:
    """One AST window per time segment: `log_mel` of the samples `[a, a + n)` with `a = round(start · sample_rate)`
    for each start (seconds) of `starts [N]` and `n = round(duration · sample_rate)`
    -> float32 `[N, max_length, num_mel_bins]`.

    Segments are time-aligned (the window of a video frame sampled at `fps` is `starts = t / fps`,
    `duration = 1 / fps`), not an equal split of the waveform as in `frame_windows`. A segment running past the
    end of the waveform keeps what is there; one starting past it is empty: silence, all padding (finite).
    """
    wave = _mono(waveform, "segment_windows").astype(np.float32)
    starts = np.asarray(starts, np.float64)
    if starts.ndim != 1 or not np.all(np.isfinite(starts)) or np.any(starts < 0):
        raise ValueError(f"audio.segment_windows: starts must be finite seconds >= 0 of shape [N], got shape "
                         f"{starts.shape} with values {starts.ravel()[:4]}")
    if not np.isfinite(duration) or duration <= 0:
        raise ValueError(f"audio.segment_windows: duration must be > 0 seconds, got {duration}")
    begin = np.rint(starts * sample_rate).astype(np.int64)
    return _windows(wave, begin, begin + int(round(duration * sample_rate)), sample_rate, num_mel_bins, max_length,
                    "segment_windows")


def _windows(wave: np.ndarray, begin: np.ndarray, end: np.ndarray, sample_rate: int, num_mel_bins: int,
             max_length: int, where: str) -> np.ndarray:
    """The AST window (`log_mel`) of each `wave[begin[i]:end[i]]` -> float32 [N, max_length, num_mel_bins] (N may
    be 0); all segments' frames go through one batched FFT."""
    _check_window_args(where, sample_rate, num_mel_bins, max_length)
    end = np.minimum(end, wave.size)
    lengths = np.maximum(end - begin, 0)
    counts = np.where(lengths < FRAME_LENGTH, 0, 1 + (lengths - FRAME_LENGTH) // HOP_LENGTH)
    counts = np.minimum(counts, max_length)
    segment = np.repeat(np.arange(len(begin)), counts)
    position = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)  # frame index in its segment
    padded = np.zeros((len(begin), max_length, num_mel_bins), np.float32)
    if len(segment):
        starts = begin[segment] + HOP_LENGTH * position
        padded[segment, position] = _frame_features(wave.astype(np.float64), starts, num_mel_bins, sample_rate)
    return ((padded - AUDIOSET_MEAN) / (AUDIOSET_STD * 2)).astype(np.float32)
