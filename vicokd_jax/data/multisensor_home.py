"""MultiSensor-Home 1/2 (Nguyen et al., FG 2025): annotation parsing, frame labels, person scores, video decoding.

The dataset (https://huggingface.co/datasets/thanhhff/MultiSensor-Home1 and ...-Home2) is a folder per home::

    MultiSensor-Home1/                       MultiSensor-Home2/
      train.json  test.json                    train_data.json  test_data.json
      all_labels.json      (optional)          all_labels.json      (optional)
      human_save_train.json human_save_test.json   (optional, both homes)
      01/00-View1-Part1.mp4 ...                01/00-View1-Part1.mp4 ...

Each annotation file is a JSON list of records::

    {"video_url_1": "01/00-View1-Part1.mp4", ..., "video_url_5": "01/00-View5-Part1.mp4",
     "tricks": [{"start": 3.25, "end": 6.13, "labels": ["Sitdown"]}, ...]}

`video_url_n` is the path of view n's MP4 (320x240, with audio) relative to the home folder; `null` marks a view
the record does not have. `start`/`end` are seconds from the start of that file; extra keys (e.g. `channel`) are
ignored. A recording `{session}/{seq}` is cut into parts `-Part{p}`, and each record is ONE part: its five files
are `{seq}-View{n}-Part{p}.mp4` and its trick times restart at 0.

Format decisions (all configurable where a choice exists):

* Record id: `video_url_1`'s path without extension and without the `-View{n}` token: "01/00-Part1". The sequence
  id drops `-Part{p}` too: "01/00". Ids are unique per split (checked).
* Parts: by default one record = one example (the benchmark's unit, as in the MultiTSF code). With
  `merge_parts=True` the records of one sequence become one example: each part is decoded and labelled on its own
  frame grid, and frames, frame labels and person scores are concatenated in part order (so a trick never leaks
  across a part boundary); a view present in some parts only keeps zero frames and zero scores in the others.
* Sampling: frames at `fps` (default 2.5, the MultiTSF value). Output frame t is the first decoded frame whose
  timestamp is >= t/fps minus half a source frame (nearest frame); t runs while t/fps stays within the video.
  For the dataset's 25 fps files this picks source frames 0, 10, 20, ... exactly like the original code. Frames
  are resized to (height, width) by FFmpeg's area filter while decoding, so full-size frames are never kept.
* Views of different lengths: cameras differ by a few frames; all views are cut to the shortest (as the original
  code does) when the spread is at most `max_view_skew_s` seconds, otherwise it is an error naming the files.
* Frame labels [T, C]: frame t is positive for a trick when round(start*fps) <= t <= round(end*fps) (round half
  up), the original code's rule. Every name in a trick's `labels` list counts (the original code kept only the
  first; the files have exactly one). Sequence labels [C] = union of the tricks' classes.
* Classes: both homes use the 16 MultiTSF classes (`HOME_CLASSES`, the order of the official `class_dict`, which
  is also their sorted order); the public Home-2 annotations use the same names. A name outside the list is an
  error naming it; a differing vocabulary is passed as `classes=`. `all_labels.json` is optional: if it is a list
  of class names it must equal `classes`; if it is a list of records (the "complete annotations" of the dataset
  README, = train + test) it is not needed and ignored.
* Person scores (`human_save_{split}.json`, written by MultiTSF's YOLO script): {key: [V][T_h] floats}. T_h is
  whatever frame count that script sampled (its `num_segments`), so row j is taken to cover the clip uniformly:
  frame t of T reads j = floor((t + 0.5) * T_h / T) (identity when T_h == T). Keys are looked up as the record id
  ("01/00-Part1"), then the file name without view ("00-Part1"), then the original script's key
  ("00" = text before the first "-"), the last only when no other record of the split shares it (the original key
  collides across parts and sessions). Values are clipped to [0, 1]; absent views score 0.
  Without a file (or without the record's key) human_score is 1.0 for every present view: "a person may be
  visible", which makes the view-consistency weights uniform over present views instead of silencing them.

Audio is not decoded (no method here uses it yet).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np

from vicokd_jax.data import schema

NUM_VIEWS = 5
DEFAULT_FPS = 2.5            # MultiTSF's Config.fps
DEFAULT_SIZE = (120, 160)    # (height, width): half of the released 240x320, aspect kept
DEFAULT_MAX_VIEW_SKEW_S = 1.0

# The official MultiTSF `class_dict`, index order kept (it is also sorted order).
HOME_CLASSES = ("AdjustAC", "Clean", "CleanVacuum", "CloseCurtain", "Drink", "Eat", "Enter", "Exit", "OpenCurtain",
                "ReadBook", "Sitdown", "Standup", "TurnOffLamp", "TurnOnLamp", "UseLaptop", "UsePhone")

HOMES = ("home1", "home2")
HOME_FOLDERS = {"home1": "MultiSensor-Home1", "home2": "MultiSensor-Home2"}
SPLITS = ("train", "test")
ANNOTATION_FILES = {"home1": {"train": "train.json", "test": "test.json"},
                    "home2": {"train": "train_data.json", "test": "test_data.json"}}
CLASS_LIST_FILE = "all_labels.json"

_VIEW_TOKEN = re.compile(r"-View(\d+)(?=-|$)")
_PART_TOKEN = re.compile(r"-Part(\d+)$")

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Files and folders
# ---------------------------------------------------------------------------------------------------------------

def home_root(manual_dir: str | os.PathLike, home: str) -> Path:
    """The folder holding `home`'s annotations: `manual_dir/MultiSensor-Home{1,2}` if it exists, else `manual_dir`."""
    _check_home(home)
    sub = Path(manual_dir) / HOME_FOLDERS[home]
    return sub if sub.is_dir() else Path(manual_dir)


def annotation_path(root: str | os.PathLike, home: str, split: str) -> Path:
    """Path of `split`'s annotation file in the home folder `root`."""
    _check_home(home)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return Path(root) / ANNOTATION_FILES[home][split]


def human_save_path(root: str | os.PathLike, split: str) -> Path:
    """Path of `split`'s optional person-score file in the home folder `root`."""
    return Path(root) / f"human_save_{split}.json"


def load_json(path: str | os.PathLike) -> Any:
    """Parsed JSON; errors name the file (and the line/column of a syntax error)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from None


def _check_home(home: str) -> None:
    if home not in HOMES:
        raise ValueError(f"unknown home {home!r}; expected one of {HOMES}")


# ---------------------------------------------------------------------------------------------------------------
# Annotations
# ---------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Trick:
    """One annotated interval: [start, end] seconds from the start of its record's files, class indices."""
    start: float
    end: float
    classes: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Record:
    """One annotation record (one part of a recording, all views).

    id:       "01/00-Part1" (video_url_1 without extension and "-View{n}")
    sequence: "01/00" (id without "-Part{p}"); part: p (1 when the name has no part token)
    videos:   [V] relative paths, None where the record has no such view
    where:    "train.json record 3", for error messages
    """
    id: str
    sequence: str
    part: int
    videos: tuple[str | None, ...]
    tricks: tuple[Trick, ...]
    where: str

    @property
    def original_key(self) -> str:
        """The key MultiTSF's scripts use for this record in human_save_*.json: file name up to the first '-'."""
        first = next(v for v in self.videos if v is not None)
        return PurePosixPath(first).name.split("-")[0]

    @property
    def name_key(self) -> str:
        """File name of the record without view and extension: "00-Part1"."""
        return PurePosixPath(self.id).name


def parse_annotations(path: str | os.PathLike, classes: Sequence[str] = HOME_CLASSES) -> list[Record]:
    """Records of one annotation file. Raises ValueError naming file, record index and key for malformed input."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    index = {name: i for i, name in enumerate(classes)}
    records = [parse_record(raw, index, where=f"{path} record {i}") for i, raw in enumerate(data)]
    _check_unique_ids(records, path)
    return records


def parse_record(raw: Any, class_index: dict[str, int], where: str) -> Record:
    """One record dict -> Record. `class_index` maps class name -> index; `where` prefixes every error."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object, got {type(raw).__name__}")
    videos = tuple(_video_url(raw, n, where) for n in range(1, NUM_VIEWS + 1))
    if all(v is None for v in videos):
        raise ValueError(f"{where}: all video_url_1..{NUM_VIEWS} are null")
    if "tricks" not in raw:
        raise ValueError(f"{where}: missing key 'tricks'")
    if not isinstance(raw["tricks"], list):
        raise ValueError(f"{where}: key 'tricks' must be a list, got {type(raw['tricks']).__name__}")
    tricks = tuple(_parse_trick(t, class_index, f"{where}: tricks[{j}]") for j, t in enumerate(raw["tricks"]))
    record_id, sequence, part = _record_id(videos, where)
    return Record(id=record_id, sequence=sequence, part=part, videos=videos, tricks=tricks, where=where)


def _video_url(raw: dict, n: int, where: str) -> str | None:
    """video_url_n as a relative posix path (None = view absent); its -View token, if any, must say n."""
    key = f"video_url_{n}"
    if key not in raw:
        raise ValueError(f"{where}: missing key {key!r}")
    url = raw[key]
    if url is None:
        return None
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{where}: key {key!r} must be a relative file path or null, got {url!r}")
    url = url.strip().replace("\\", "/")
    token = _VIEW_TOKEN.search(PurePosixPath(url).stem)
    if token is not None and int(token.group(1)) != n:
        raise ValueError(f"{where}: key {key!r} names View{token.group(1)} ({url})")
    return url


def _record_id(videos: tuple[str | None, ...], where: str) -> tuple[str, str, int]:
    """(id, sequence, part) from the first present view; every view that has a -View token must agree."""
    stripped = {n: _strip_view(url) for n, url in enumerate(videos, start=1) if url is not None}
    first_view, (record_id, _) = next(iter(stripped.items()))
    for n, (other, has_token) in stripped.items():
        if has_token and other != record_id:
            raise ValueError(f"{where}: key 'video_url_{n}' ({videos[n - 1]}) is not the same recording/part as "
                             f"'video_url_{first_view}' ({videos[first_view - 1]})")
    part_token = _PART_TOKEN.search(record_id)
    if part_token is None:
        return record_id, record_id, 1
    return record_id, record_id[:part_token.start()], int(part_token.group(1))


def _strip_view(url: str) -> tuple[str, bool]:
    """"01/00-View1-Part1.mp4" -> ("01/00-Part1", True); a name without a -View token keeps its stem."""
    path = PurePosixPath(url).with_suffix("")
    name, count = _VIEW_TOKEN.subn("", path.name, count=1)
    return str(path.with_name(name)), count > 0


def _parse_trick(raw: Any, class_index: dict[str, int], where: str) -> Trick:
    """{start, end, labels} -> Trick, checking 0 <= start <= end and known class names."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object, got {type(raw).__name__}")
    for key in ("start", "end", "labels"):
        if key not in raw:
            raise ValueError(f"{where}: missing key {key!r}")
    start, end = (_seconds(raw[k], f"{where}.{k}") for k in ("start", "end"))
    if start > end:
        raise ValueError(f"{where}: start {start} > end {end}")
    names = raw["labels"]
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
        raise ValueError(f"{where}.labels: expected a non-empty list of class names, got {raw['labels']!r}")
    for name in names:
        if name not in class_index:
            raise ValueError(f"{where}.labels: unknown class {name!r}; known classes ({len(class_index)}): "
                             f"{', '.join(class_index)}")
    return Trick(start=start, end=end, classes=tuple(sorted({class_index[x] for x in names})))


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number of seconds, got {value!r}")
    if value < 0:
        raise ValueError(f"{where}: negative time {value}")
    return float(value)


def _check_unique_ids(records: Sequence[Record], path: Path) -> None:
    seen: dict[str, str] = {}
    for r in records:
        if r.id in seen:
            raise ValueError(f"{path}: {r.where} repeats id {r.id!r} of {seen[r.id]} (same video files)")
        seen[r.id] = r.where


def check_class_list(root: str | os.PathLike, classes: Sequence[str]) -> None:
    """If `root/all_labels.json` is a list of class names it must equal `classes` (a list of records is ignored)."""
    path = Path(root) / CLASS_LIST_FILE
    if not path.is_file():
        return
    data = load_json(path)
    if isinstance(data, list) and data and all(isinstance(x, str) for x in data) and tuple(data) != tuple(classes):
        extra = [x for x in data if x not in classes]
        missing = [x for x in classes if x not in data]
        raise ValueError(f"{path}: class list differs from the configured {len(classes)} classes "
                         f"(not configured: {extra}; not in file: {missing}; or another order). Pass "
                         f"classes={tuple(data)!r} in the builder config to use the file's list.")


def group_parts(records: Sequence[Record]) -> list[list[Record]]:
    """Records of the same sequence, in part order; groups in order of first appearance."""
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(r.sequence, []).append(r)
    out = []
    for seq, group in groups.items():
        group = sorted(group, key=lambda r: r.part)
        parts = [r.part for r in group]
        if len(set(parts)) != len(parts):
            raise ValueError(f"sequence {seq!r}: part numbers repeat in {[r.where for r in group]}")
        out.append(group)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------------------

def sequence_labels(tricks: Sequence[Trick], num_classes: int) -> np.ndarray:
    """[C] float32 multi-hot: union of the tricks' classes."""
    labels = np.zeros([num_classes], np.float32)
    for trick in tricks:
        labels[list(trick.classes)] = 1.0
    return labels


def _frame_index(seconds: float, fps: float) -> int:
    return int(math.floor(seconds * fps + 0.5))  # round half up (Python's round() is half-to-even)


def frame_labels(tricks: Sequence[Trick], num_frames: int, fps: float, num_classes: int) -> np.ndarray:
    """[T, C] float32 multi-hot: frame t (time t/fps) is on for a trick when round(start*fps) <= t <= round(end*fps).

    Parts of a trick beyond the last frame are dropped (annotations may outlast the shortest view).
    """
    labels = np.zeros([num_frames, num_classes], np.float32)
    for trick in tricks:
        first, last = _frame_index(trick.start, fps), min(_frame_index(trick.end, fps), num_frames - 1)
        if first <= last:
            labels[first:last + 1, list(trick.classes)] = 1.0
    return labels


# ---------------------------------------------------------------------------------------------------------------
# Person scores (human_save_*.json)
# ---------------------------------------------------------------------------------------------------------------

def load_human_scores(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{key: [V, T_h] float32 in [0, 1]} from a human_save file; errors name the file and key."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{sequence id: [V][T] scores}}, got {type(data).__name__}")
    return {key: _score_matrix(value, f"{path} key {key!r}") for key, value in data.items()}


def _score_matrix(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, list) or len(value) != NUM_VIEWS or not all(isinstance(v, list) for v in value):
        raise ValueError(f"{where}: expected {NUM_VIEWS} lists of per-frame scores ([V][T]), got "
                         f"{_describe(value)}")
    lengths = [len(v) for v in value]
    if len(set(lengths)) != 1 or lengths[0] == 0:
        raise ValueError(f"{where}: views have different (or zero) lengths {lengths}")
    try:
        scores = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: scores must be numbers") from None
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{where}: scores must be finite numbers")
    return np.clip(scores, 0.0, 1.0).astype(np.float32)


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)} " + ("lists" if all(isinstance(v, list) for v in value) else "items")
    return type(value).__name__


def resample_scores(scores: np.ndarray, num_frames: int) -> np.ndarray:
    """[V, T_h] -> [V, T]: frame t reads column floor((t + 0.5) * T_h / T) (rows cover the clip uniformly)."""
    t_h = scores.shape[1]
    cols = np.minimum(((np.arange(num_frames) + 0.5) * t_h / num_frames).astype(np.int64), t_h - 1)
    return scores[:, cols]


def human_score_lookup(records: Sequence[Record], scores: dict[str, np.ndarray]):
    """A function Record -> [V, T_h] scores or None, using the key order of the module docstring."""
    original_counts = Counter(r.original_key for r in records)

    def lookup(record: Record) -> np.ndarray | None:
        for key in (record.id, record.name_key):
            if key in scores:
                return scores[key]
        if original_counts[record.original_key] == 1:  # the original key is ambiguous when shared
            return scores.get(record.original_key)
        return None

    return lookup


# ---------------------------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------------------------

def decode_video(path: str | os.PathLike, *, fps: float, height: int, width: int) -> np.ndarray:
    """[T, H, W, 3] uint8: the first video stream of `path` sampled at `fps` and resized while decoding.

    Output frame t is the first frame whose timestamp (from the first frame) is >= t/fps minus half a source frame;
    T counts the t with t/fps <= last timestamp + half a source frame. Audio and other streams are skipped.
    """
    import av  # PyAV bundles FFmpeg; imported lazily so parsing works without it

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            half = 0.5 / float(rate) if rate else 1e-6
            frames = _sample_frames(container.decode(stream), rate, half, fps, height, width)
    except av.error.FFmpegError as e:
        raise ValueError(f"{path}: cannot decode video ({e})") from None
    if not frames:
        raise ValueError(f"{path}: no decodable video frames")
    return np.stack(frames)


def _sample_frames(decoded, rate, half: float, fps: float, height: int, width: int) -> list[np.ndarray]:
    """Sample-and-resize loop of `decode_video`; a source frame is converted once even when repeated."""
    out: list[np.ndarray] = []
    first_time = None
    for i, frame in enumerate(decoded):
        time = frame.time if frame.time is not None else i / float(rate or fps)
        first_time = time if first_time is None else first_time
        time -= first_time
        image = None
        while len(out) / fps <= time + half:
            if image is None:
                image = frame.reformat(width=width, height=height, format="rgb24",
                                       interpolation="AREA").to_ndarray()
            out.append(image)
    return out


def load_views(root: str | os.PathLike, record: Record, *, fps: float, height: int, width: int,
               max_view_skew_s: float = DEFAULT_MAX_VIEW_SKEW_S) -> tuple[np.ndarray, np.ndarray]:
    """rgb [V, T, H, W, 3] uint8 and view_mask [V] bool of one record; absent or missing files give zero frames.

    All present views are cut to the shortest one; a spread above `max_view_skew_s` seconds is an error.
    """
    root = Path(root)
    clips: dict[int, np.ndarray] = {}
    for v, url in enumerate(record.videos):
        if url is not None and (root / url).is_file():
            clips[v] = decode_video(root / url, fps=fps, height=height, width=width)
    if not clips:
        files = [str(root / u) for u in record.videos if u is not None]
        raise FileNotFoundError(f"{record.where} ({record.id}): no view file exists: {', '.join(files)}")
    lengths = {v: len(c) for v, c in clips.items()}
    if max(lengths.values()) - min(lengths.values()) > max_view_skew_s * fps:
        detail = ", ".join(f"{record.videos[v]}: {n} frames ({n / fps:.1f} s)" for v, n in lengths.items())
        raise ValueError(f"{record.where} ({record.id}): views have different lengths beyond "
                         f"max_view_skew_s={max_view_skew_s} s at {fps} fps: {detail} (raise max_view_skew_s "
                         f"to cut them all to the shortest)")
    num_frames = min(lengths.values())
    rgb = np.zeros([NUM_VIEWS, num_frames, height, width, 3], np.uint8)
    mask = np.zeros([NUM_VIEWS], bool)
    for v, clip in clips.items():
        rgb[v], mask[v] = clip[:num_frames], True
    return rgb, mask


# ---------------------------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------------------------

class MultisensorHomeSource:
    """Random access over one split of one home: `len()` and `[i]` -> example dict (layout of `schema.py`).

    Example i:  id str, rgb [V=5, T, H, W, 3] uint8, human_score [V, T] float32, view_mask [V] bool,
                labels [C] float32 multi-hot, frame_labels [T, C] float32 multi-hot.
    `root` is the home folder or a folder holding `MultiSensor-Home{1,2}/` (see `home_root`).
    """

    def __init__(self, root: str | os.PathLike, split: str, *, home: str = "home1", fps: float = DEFAULT_FPS,
                 height: int = DEFAULT_SIZE[0], width: int = DEFAULT_SIZE[1],
                 classes: Sequence[str] = HOME_CLASSES, merge_parts: bool = False,
                 max_view_skew_s: float = DEFAULT_MAX_VIEW_SKEW_S):
        if fps <= 0 or height <= 0 or width <= 0:
            raise ValueError(f"fps, height and width must be positive, got fps={fps}, height={height}, width={width}")
        self.root = home_root(root, home)
        self.split, self.home, self.fps, self.height, self.width = split, home, fps, height, width
        self.classes, self.merge_parts, self.max_view_skew_s = tuple(classes), merge_parts, max_view_skew_s
        check_class_list(self.root, self.classes)
        self.records = parse_annotations(annotation_path(self.root, home, split), self.classes)
        self.groups = group_parts(self.records) if merge_parts else [[r] for r in self.records]
        self._scores = self._load_scores()

    def _load_scores(self):
        path = human_save_path(self.root, self.split)
        if not path.is_file():
            log.info("%s not found: human_score = 1.0 for every present view and frame", path)
            return lambda record: None
        lookup = human_score_lookup(self.records, load_human_scores(path))
        unmatched = [r.id for r in self.records if lookup(r) is None]
        if unmatched:
            log.warning("%s: no scores for %d of %d records (e.g. %s): human_score = 1.0 there", path,
                        len(unmatched), len(self.records), unmatched[:3])
        return lookup

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self.groups):
            raise IndexError(f"index {i} out of range for {len(self.groups)} examples")
        group = self.groups[i]
        parts = [self._part(r) for r in group]
        example = {
            "id": group[0].sequence if self.merge_parts else group[0].id,
            "rgb": np.concatenate([p["rgb"] for p in parts], axis=1),
            "human_score": np.concatenate([p["human_score"] for p in parts], axis=1),
            "view_mask": np.any([p["view_mask"] for p in parts], axis=0),
            "labels": sequence_labels([t for r in group for t in r.tricks], len(self.classes)),
            "frame_labels": np.concatenate([p["frame_labels"] for p in parts], axis=0),
        }
        schema.check_example(example, where=f"{self.home}/{self.split}[{i}] ({example['id']})")
        return example

    def _part(self, record: Record) -> dict:
        """One record's rgb [V,T,H,W,3], view_mask [V], human_score [V,T], frame_labels [T,C]."""
        rgb, mask = load_views(self.root, record, fps=self.fps, height=self.height, width=self.width,
                               max_view_skew_s=self.max_view_skew_s)
        num_frames = rgb.shape[1]
        scores = self._scores(record)
        human = np.ones([NUM_VIEWS, num_frames], np.float32) if scores is None else resample_scores(scores, num_frames)
        return {"rgb": rgb, "view_mask": mask, "human_score": human * mask[:, None],
                "frame_labels": frame_labels(record.tricks, num_frames, self.fps, len(self.classes))}


def missing_files(root: str | os.PathLike, home: str, classes: Sequence[str] = HOME_CLASSES) -> list[str]:
    """What `MultisensorHomeSource` needs and does not find under `root` (a home folder or its parent).

    Missing annotation files, and records none of whose view files exist (one line each). Single missing views are
    allowed (view_mask False) and not listed; malformed annotations raise their ValueError.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        return [f"{root_path} (folder not found)"]
    home_dir = home_root(root_path, home)
    missing = []
    for split in SPLITS:
        path = annotation_path(home_dir, home, split)
        if not path.is_file():
            other = root_path / HOME_FOLDERS[home] / path.name
            missing.append(f"{path} ({split} annotations; or {other})" if home_dir == root_path
                           else f"{path} ({split} annotations)")
            continue
        for record in parse_annotations(path, classes):
            files = [home_dir / u for u in record.videos if u is not None]
            if not any(f.is_file() for f in files):
                missing.append(f"{', '.join(map(str, files))} ({record.where}: no view file of {record.id} exists)")
    return missing
