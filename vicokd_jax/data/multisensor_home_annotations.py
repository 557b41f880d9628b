"""MultiSensor-Home annotation files: folders, records and tricks, class lists, frame labels, person scores.

Pure parsing (no video decoding); every error names the file, the record and the key. The format and its
decisions are described in `vicokd_jax.data.multisensor_home`, which re-exports every public name here.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np

from vicokd_jax import views

NUM_VIEWS = 5

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
    return scores[:, views.nearest_indices(scores.shape[1], num_frames)]


def human_score_lookup(records: Sequence[Record], scores: dict[str, np.ndarray]):
    """A function Record -> [V, T_h] scores or None.

    Keys are tried as `vicokd_jax.data.multisensor_home`'s docstring says: the record id, the file name without
    view, then the original script's key when no other record shares it.
    """
    original_counts = Counter(r.original_key for r in records)

    def lookup(record: Record) -> np.ndarray | None:
        for key in (record.id, record.name_key):
            if key in scores:
                return scores[key]
        if original_counts[record.original_key] == 1:  # the original key is ambiguous when shared
            return scores.get(record.original_key)
        return None

    return lookup
