"""Soundtracks: decoding (PyAV) and AST-compatible log-mel filterbank windows, in numpy (no torch at run time).

    wave = audio.load("clip.mp4")                       # float32 [S], mono, 16 kHz
    x = audio.log_mel(wave)                             # float32 [1024, 128]: ASTFeatureExtractor's input_values
    windows = audio.frame_windows(wave, num_frames=16)  # float32 [16, F, 128]: one window per sampled frame

`log_mel` is the Kaldi-compatible filterbank that HF's `ASTFeatureExtractor` computes (25 ms Hann frames every
10 ms without edge padding, DC removal, pre-emphasis 0.97, a 512-point power spectrum, 128 triangular filters on
Kaldi's mel scale between 20 Hz and Nyquist, natural log floored at float32 epsilon), then zero-padded or cut to
`max_length` frames and normalised with the AudioSet mean and std (`(x - mean) / (2 std)`). Written here in numpy
because the extractor needs torch (and torchaudio for its own fast path), which the runtime stack does not have.
"""
from __future__ import annotations

import os

import numpy as np

SAMPLE_RATE = 16000
FRAME_LENGTH, HOP_LENGTH, FFT_LENGTH = 400, 160, 512  # 25 ms and 10 ms at 16 kHz
PREEMPHASIS = 0.97
LOW_FREQUENCY = 20.0
MEL_FLOOR = float(np.finfo(np.float32).eps)
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974


def load(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The mono waveform of the first audio track of `path`, resampled to `sample_rate`: float32 [S], full scale
    ±1 (a downmix of several channels can exceed it).

    Raises FileNotFoundError for a missing file and ValueError naming the file when it has no audio track or
    cannot be decoded."""
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
            raise ValueError(f"audio: {path} has no audio track (streams: "
                             f"{[s.type for s in container.streams]})")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]  # flush
        except av.error.FFmpegError as err:
            raise ValueError(f"audio: the audio track of {path} cannot be decoded: {err}") from err
    if not chunks:
        raise ValueError(f"audio: the audio track of {path} holds no samples")
    return np.concatenate(chunks).astype(np.float32)


def kaldi_mel_filters(num_mel_bins: int = 128, sample_rate: int = SAMPLE_RATE,
                      fft_length: int = FFT_LENGTH) -> np.ndarray:
    """[fft_length // 2 + 1, num_mel_bins]: triangles on the Kaldi mel scale `1127 ln(1 + f / 700)`, from 20 Hz to
    Nyquist, triangular in mel (not in Hz) as Kaldi builds them."""
    mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f, np.float64) / 700.0)  # noqa: E731
    edges = np.linspace(mel(LOW_FREQUENCY), mel(sample_rate // 2), num_mel_bins + 2)
    bins = mel(sample_rate / fft_length * np.arange(fft_length // 2 + 1))[:, None]
    rising = (bins - edges[None, :-2]) / (edges[1:-1] - edges[:-2])
    falling = (edges[None, 2:] - bins) / (edges[2:] - edges[1:-1])
    return np.maximum(0.0, np.minimum(rising, falling))


def fbank(waveform: np.ndarray, num_mel_bins: int = 128, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Log-mel filterbank of a mono waveform `[S]` -> float32 `[N, num_mel_bins]`, N = 1 + (S - 400) // 160
    frames (0 when S < 400), before padding and normalisation."""
    wave = np.asarray(waveform, np.float64)
    if wave.ndim != 1:
        raise ValueError(f"audio.fbank: waveform must be [S], got shape {wave.shape}")
    n = 0 if wave.size < FRAME_LENGTH else 1 + (wave.size - FRAME_LENGTH) // HOP_LENGTH
    if n == 0:
        return np.zeros((0, num_mel_bins), np.float32)
    starts = HOP_LENGTH * np.arange(n)[:, None]
    frames = wave[starts + np.arange(FRAME_LENGTH)[None, :]]  # [N, 400]
    frames = frames - frames.mean(axis=1, keepdims=True)  # DC offset
    # Pre-emphasis within each frame; Kaldi scales the first sample by (1 - coefficient).
    frames = np.concatenate([frames[:, :1] * (1.0 - PREEMPHASIS), frames[:, 1:] - PREEMPHASIS * frames[:, :-1]], 1)
    frames = frames * np.hanning(FRAME_LENGTH)  # symmetric Hann ("hanning")
    power = np.abs(np.fft.rfft(frames, n=FFT_LENGTH, axis=1)) ** 2  # [N, 257]
    mel = power @ kaldi_mel_filters(num_mel_bins, sample_rate)
    return np.log(np.maximum(mel, MEL_FLOOR)).astype(np.float32)


def log_mel(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = 128,
            max_length: int = 1024) -> np.ndarray:
    """AST's input: float32 `[max_length, num_mel_bins]`, the filterbank zero-padded (before normalisation) or cut
    to `max_length` frames, then `(x - AudioSet mean) / (2 · AudioSet std)`."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"audio.log_mel: the AST filterbank is defined at {SAMPLE_RATE} Hz, got sample_rate="
                         f"{sample_rate}; resample first (audio.load(path, sample_rate={SAMPLE_RATE}))")
    features = fbank(waveform, num_mel_bins, sample_rate)[:max_length]
    padded = np.zeros((max_length, num_mel_bins), np.float32)
    padded[:len(features)] = features
    return ((padded - AUDIOSET_MEAN) / (AUDIOSET_STD * 2)).astype(np.float32)


def frame_windows(waveform: np.ndarray, num_frames: int, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = 128,
                  max_length: int = 1024) -> np.ndarray:
    """One AST window per sampled video frame: the waveform cut into `num_frames` consecutive segments of equal
    length (boundaries `floor(i · S / num_frames)`), each turned into `log_mel`
    -> float32 `[num_frames, max_length, num_mel_bins]`."""
    wave = np.asarray(waveform, np.float32)
    if num_frames < 1:
        raise ValueError(f"audio.frame_windows: num_frames must be >= 1, got {num_frames}")
    bounds = np.linspace(0, wave.size, num_frames + 1).astype(np.int64)
    return np.stack([log_mel(wave[a:b], sample_rate, num_mel_bins, max_length)
                     for a, b in zip(bounds[:-1], bounds[1:])])
