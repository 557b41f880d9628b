"""MultiSensor-Home-format folders for tests: MP4 views (mpeg4 video + a real AAC soundtrack) and MultiTSF's JSON files.

    home = write_home(tmp_path)              # tmp_path/MultiSensor-Home1: 4 train + 2 test records, 5 views each
    home.path, home.train, home.test         # the home folder and the records written to train.json / test.json
    source = msh.MultisensorHomeSource(tmp_path, "train", home="home1", height=24, width=32)

Video frame k of view n is a flat colour R = min(12 k, 255), G = 40 n, B = 100 (`source_frames` reads k back from
the red level). View n's soundtrack is a `tone_hz(n)` sine (amplitude 0.3) plus white noise (0.02), AAC-encoded at
`sample_rate` and lasting as long as the video unless `audio_seconds` says otherwise (a decoded AAC track may run
up to one AAC frame, 1024 samples, longer: the encoder's padding, silence).

Which views something applies to (`absent`, `missing`, `no_audio`, `silent`, and the keys of `frames` and
`audio_seconds`) is said by items that are a view number n (every record), a record id ("01/00-Part1": every
view of it) or a pair (record id, n).
"""
from __future__ import annotations

import dataclasses
import fractions
import json
from pathlib import Path
from typing import Any, Collection, Mapping

import av
import numpy as np

from vicokd_jax.data import multisensor_home as msh

NOISE, AMPLITUDE = 0.02, 0.3
AUDIO_CHUNK = 1024  # AAC frame size


def tone_hz(view: int) -> float:
    """The frequency of view `view`'s (1..5) tone: 250 n Hz."""
    return 250.0 * view


def soundtrack(view: int, seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """float32 [round(seconds * sample_rate)]: view `view`'s tone plus white noise."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    noise = np.random.default_rng([seed, view]).standard_normal(t.size)
    return (AMPLITUDE * np.sin(2 * np.pi * tone_hz(view) * t) + NOISE * noise).astype(np.float32)


def _add_audio_stream(out, codec: str, sample_rate: int):
    stream = out.add_stream(codec, rate=sample_rate)
    stream.layout = "mono"
    return stream


def _mux_audio(out, stream, wave: np.ndarray, sample_rate: int) -> None:
    """Encode the mono `wave` [S] in AUDIO_CHUNK-sample frames (float planar for AAC, packed for PCM)."""
    fmt = "fltp" if stream.codec_context.name == "aac" else "flt"
    wave = np.asarray(wave, np.float32)
    for start in range(0, wave.size, AUDIO_CHUNK):
        frame = av.AudioFrame.from_ndarray(wave[None, start:start + AUDIO_CHUNK], format=fmt, layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, fractions.Fraction(1, sample_rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def write_audio(path, wave: np.ndarray, sample_rate: int = 16000, codec: str = "aac") -> Path:
    """An audio-only file of the mono `wave` [S]: codec "aac" (e.g. .m4a) or "pcm_f32le" (.wav / .mkv: float
    samples stored as they are, NaN included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        _mux_audio(out, _add_audio_stream(out, codec, sample_rate), wave, sample_rate)
    return path


def write_video(path, num_frames: int, view: int, *, fps: int = 25, size: tuple[int, int] = (48, 64),
                audio: np.ndarray | None = None, sample_rate: int = 16000, codec: str = "aac") -> Path:
    """A video of `num_frames` flat-colour frames (red = min(12 k, 255), green = 40 view) at `fps`, size (H, W),
    with a `codec` track of the mono `audio` [S] at `sample_rate` when given (None: no audio track). MP4 for AAC;
    give a .mkv path for "pcm_f32le" (float samples kept as they are, NaN included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = width, height, "yuv420p", 2_000_000
        if audio is not None:  # streams are added before muxing
            sound = _add_audio_stream(out, codec, sample_rate)
        for k in range(num_frames):
            image = np.empty([height, width, 3], np.uint8)
            image[...] = (min(12 * k, 255), 40 * view, 100)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = k, fractions.Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if audio is not None:
            _mux_audio(out, sound, audio, sample_rate)
    return path


def source_frames(rgb: np.ndarray) -> np.ndarray:
    """[..., T, H, W, 3] decoded frames -> [..., T] index of the source frame each shows (from the red level)."""
    return np.rint(rgb[..., 0].mean(axis=(-1, -2)) / 12).astype(int)


def urls(stem: str, views=range(1, 6)) -> dict[str, str]:
    """video_url_1..5 of `stem` = "01/00-Part1" -> "01/00-View{n}-Part1.mp4"."""
    seq, part = stem.split("-")
    return {f"video_url_{n}": f"{seq}-View{n}-{part}.mp4" for n in views}


def write_json(path, data) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _selects(items: Collection, record_id: str, view: int) -> bool:
    return view in items or record_id in items or (record_id, view) in items


def _lookup(mapping: Mapping, record_id: str, view: int, default):
    for key in ((record_id, view), record_id, view):
        if key in mapping:
            return mapping[key]
    return default


def make_records(count: int, *, first_session: int = 1, seconds: float = 3.2, offset: int = 0) -> list[dict]:
    """`count` records: two parts per recording ("{session:02d}/00-Part{1,2}"), two tricks each whose classes
    move through `HOME_CLASSES` (record i: classes 3i + offset and 3i + offset + 1, mod 16) over `seconds`."""
    classes = msh.HOME_CLASSES
    records = []
    for i in range(count):
        stem = f"{first_session + i // 2:02d}/00-Part{i % 2 + 1}"
        first, second = classes[(3 * i + offset) % len(classes)], classes[(3 * i + offset + 1) % len(classes)]
        records.append({**urls(stem), "tricks": [
            {"start": round(0.1 * seconds, 2), "end": round(0.4 * seconds, 2), "labels": [first]},
            {"start": round(0.5 * seconds, 2), "end": round(0.9 * seconds, 2), "labels": [second]}]})
    return records


def human_scores(records: list[dict], num_scores: int = 8) -> dict[str, list[list[float]]]:
    """human_save_{split}.json content: per record id, [5][num_scores] scores in (0, 1) (0 for absent views)."""
    out = {}
    for i, record in enumerate(records):
        rid = msh.parse_record(record, {c: j for j, c in enumerate(msh.HOME_CLASSES)}, "records").id
        out[rid] = [[0.0 if record[f"video_url_{n}"] is None else round(0.1 * n + 0.05 * ((i + t) % 4), 3)
                     for t in range(num_scores)] for n in range(1, 6)]
    return out


@dataclasses.dataclass
class HomeFolder:
    """What `write_home` wrote: the home folder, the records of each split, frame counts and soundtracks."""
    path: Path
    train: list[dict]
    test: list[dict]
    frames: dict[tuple[str, int], int]            # (record id, view) -> source frames of each written file
    soundtracks: dict[tuple[str, int], np.ndarray]  # (record id, view) -> the waveform encoded (at sample_rate)

    def file(self, record_id: str, view: int) -> Path:
        """The MP4 of view `view` (1..5) of `record_id`."""
        seq, part = record_id.split("-")
        return self.path / f"{seq}-View{view}-{part}.mp4"


def write_home(root, *, train: int | list[dict] = 4, test: int | list[dict] = 2, home: str = "home1",
               fps: int = 25, seconds: float = 3.2, size: tuple[int, int] = (48, 64), sample_rate: int = 16000,
               frames: Mapping[Any, int] = {}, audio_seconds: Mapping[Any, float] = {},
               absent: Collection = (), missing: Collection = (), no_audio: Collection = (),
               silent: Collection = (), human: bool | Mapping[str, dict] = True) -> HomeFolder:
    """Write `root/MultiSensor-Home{1,2}/` in the dataset's format; -> HomeFolder.

    train / test:   a number of generated records (`make_records`: labels differ between records) or the records
    fps, seconds:   the videos' frame rate and length (each file has round(seconds * fps) frames unless `frames`
                    says otherwise); size = (H, W)
    sample_rate:    the AAC tracks' rate (e.g. 16000, 44100, 48000)
    audio_seconds:  soundtrack lengths that differ from their video's (a shorter track: the rest is silence)
    absent:         views whose video_url is null;  missing: views whose url is written but not the file
    no_audio:       views written without an audio track;  silent: views whose soundtrack is all zeros
    human:          True: human_save_{train,test}.json (`human_scores`); False: none; {split: content}: those
    """
    home_dir = Path(root) / msh.HOME_FOLDERS[home]
    splits = {"train": make_records(train, seconds=seconds) if isinstance(train, int) else list(train),
              "test": make_records(test, first_session=50, seconds=seconds, offset=7) if isinstance(test, int)
              else list(test)}
    class_index = {c: j for j, c in enumerate(msh.HOME_CLASSES)}
    written = HomeFolder(home_dir, [], [], {}, {})
    for split, records in splits.items():
        for i, record in enumerate(records):
            record_id = msh.parse_record(record, class_index, f"{split} record {i}").id
            record = {**record, **{f"video_url_{n}": None for n in range(1, 6) if _selects(absent, record_id, n)}}
            getattr(written, split).append(record)
            for n in range(1, 6):
                url = record[f"video_url_{n}"]
                if url is None or _selects(missing, record_id, n):
                    continue
                num_frames = _lookup(frames, record_id, n, int(round(seconds * fps)))
                sound = None
                if not _selects(no_audio, record_id, n):
                    length = _lookup(audio_seconds, record_id, n, num_frames / fps)
                    sound = soundtrack(n, length, sample_rate, seed=i)
                    sound = np.zeros_like(sound) if _selects(silent, record_id, n) else sound
                    written.soundtracks[record_id, n] = sound
                write_video(home_dir / url, num_frames, n, fps=fps, size=size, audio=sound, sample_rate=sample_rate)
                written.frames[record_id, n] = num_frames
        write_json(msh.annotation_path(home_dir, home, split), getattr(written, split))
    if human:
        contents = human if isinstance(human, Mapping) else {s: human_scores(getattr(written, s)) for s in splits}
        for split, content in contents.items():
            write_json(msh.human_save_path(home_dir, split), content)
    return written
