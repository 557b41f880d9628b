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

* Audio (`audio=True`, the default): each present view's soundtrack is decoded by `audio.load` (its first audio
  track, mono, resampled to 16 kHz) and cut on the frame grid: output frame t gets the AST log-mel window
  (`audio_frames` x `audio_mel_bins`, `audio.segment_windows`) of the stretch [t/fps, (t+1)/fps) s of that file,
  MultiTSF's one segment per sampled frame (0.4 s at 2.5 fps = 38 filterbank frames, padded to 40). The stretches
  follow the frames' time grid, so views cut to the shortest keep their first T windows, and with `merge_parts`
  each part's windows follow its own grid (MultiTSF instead splits the whole waveform into T equal pieces,
  `audio.frame_windows`; the two agree when the soundtrack lasts exactly T/fps). A soundtrack shorter than the
  video leaves the rest silent (the padding value of `audio.log_mel`, finite); an all-zero soundtrack is valid
  data (a silent room: the log floor, audio_mask True). A view without an audio track (a warning naming the file),
  without a file, or absent (null url) has audio 0 and audio_mask False. A track that cannot be decoded or holds
  NaN/inf is an error naming the file, as a corrupt video is. `audio=False` leaves out `audio` and `audio_mask`.

The parts: `multisensor_home_annotations` parses the JSON files (records, tricks, class lists, frame labels,
person scores), `multisensor_home_video` decodes and samples the views; this module holds the source and
`missing_files`, and re-exports (`__all__`) every public name of both.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from vicokd_jax.data import audio as audio_lib
from vicokd_jax.data import schema
from vicokd_jax.data.multisensor_home_annotations import (
    ANNOTATION_FILES, CLASS_LIST_FILE, HOME_CLASSES, HOME_FOLDERS, HOMES, NUM_VIEWS, SPLITS, Record, Trick,
    annotation_path, check_class_list, frame_labels, group_parts, home_root, human_save_path, human_score_lookup,
    load_human_scores, load_json, parse_annotations, parse_record, resample_scores, sequence_labels)
from vicokd_jax.data.multisensor_home_video import DEFAULT_MAX_VIEW_SKEW_S, decode_video, load_views

__all__ = [
    # annotation files, records, labels and person scores (multisensor_home_annotations)
    "ANNOTATION_FILES", "CLASS_LIST_FILE", "HOME_CLASSES", "HOME_FOLDERS", "HOMES", "NUM_VIEWS", "SPLITS", "Record",
    "Trick", "annotation_path", "check_class_list", "frame_labels", "group_parts", "home_root", "human_save_path",
    "human_score_lookup", "load_human_scores", "load_json", "parse_annotations", "parse_record", "resample_scores",
    "sequence_labels",
    # video (multisensor_home_video)
    "DEFAULT_MAX_VIEW_SKEW_S", "decode_video", "load_views",
    # soundtracks and the source (here)
    "DEFAULT_AUDIO_FRAMES", "DEFAULT_AUDIO_MEL_BINS", "DEFAULT_FPS", "DEFAULT_SIZE", "MultisensorHomeSource",
    "load_soundtracks", "missing_files",
]

DEFAULT_FPS = 2.5            # MultiTSF's Config.fps
DEFAULT_SIZE = (120, 160)    # (height, width): half of the released 240x320, aspect kept
DEFAULT_AUDIO_FRAMES = 40    # F: 0.4 s (one frame at 2.5 fps) is 38 filterbank frames of 10 ms, padded to 40
DEFAULT_AUDIO_MEL_BINS = 128  # M: ASTFeatureExtractor's num_mel_bins

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------------------------

class MultisensorHomeSource:
    """Random access over one split of one home: `len()` and `[i]` -> example dict (layout of `schema.py`).

    Example i:  id str, rgb [V=5, T, H, W, 3] uint8, human_score [V, T] float32, view_mask [V] bool,
                labels [C] float32 multi-hot, frame_labels [T, C] float32 multi-hot, and with `audio=True`
                audio [V, T, F=audio_frames, M=audio_mel_bins] float32 and audio_mask [V] bool.
    `root` is the home folder or a folder holding `MultiSensor-Home{1,2}/` (see `home_root`).
    """

    def __init__(self, root: str | os.PathLike, split: str, *, home: str = "home1", fps: float = DEFAULT_FPS,
                 height: int = DEFAULT_SIZE[0], width: int = DEFAULT_SIZE[1],
                 classes: Sequence[str] = HOME_CLASSES, merge_parts: bool = False,
                 max_view_skew_s: float = DEFAULT_MAX_VIEW_SKEW_S, audio: bool = True,
                 audio_frames: int = DEFAULT_AUDIO_FRAMES, audio_mel_bins: int = DEFAULT_AUDIO_MEL_BINS):
        if fps <= 0 or height <= 0 or width <= 0:
            raise ValueError(f"fps, height and width must be positive, got fps={fps}, height={height}, width={width}")
        if audio and (audio_frames < 1 or audio_mel_bins < 1):
            raise ValueError(f"audio_frames and audio_mel_bins must be >= 1, got audio_frames={audio_frames}, "
                             f"audio_mel_bins={audio_mel_bins}")
        self.audio, self.audio_frames, self.audio_mel_bins = audio, audio_frames, audio_mel_bins
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
            **({"audio": np.concatenate([p["audio"] for p in parts], axis=1),
                "audio_mask": np.any([p["audio_mask"] for p in parts], axis=0)} if self.audio else {}),
            "human_score": np.concatenate([p["human_score"] for p in parts], axis=1),
            "view_mask": np.any([p["view_mask"] for p in parts], axis=0),
            "labels": sequence_labels([t for r in group for t in r.tricks], len(self.classes)),
            "frame_labels": np.concatenate([p["frame_labels"] for p in parts], axis=0),
        }
        schema.check_example(example, where=f"{self.home}/{self.split}[{i}] ({example['id']})")
        return example

    def _part(self, record: Record) -> dict:
        """One record's rgb [V,T,H,W,3], view_mask [V], human_score [V,T], frame_labels [T,C] (+ audio [V,T,F,M],
        audio_mask [V])."""
        rgb, mask = load_views(self.root, record, fps=self.fps, height=self.height, width=self.width,
                               max_view_skew_s=self.max_view_skew_s)
        num_frames = rgb.shape[1]
        scores = self._scores(record)
        human = np.ones([NUM_VIEWS, num_frames], np.float32) if scores is None else resample_scores(scores, num_frames)
        part = {"rgb": rgb, "view_mask": mask, "human_score": human * mask[:, None],
                "frame_labels": frame_labels(record.tricks, num_frames, self.fps, len(self.classes))}
        if self.audio:
            part["audio"], part["audio_mask"] = load_soundtracks(
                self.root, record, num_frames, fps=self.fps, audio_frames=self.audio_frames,
                audio_mel_bins=self.audio_mel_bins)
        return part


def load_soundtracks(root: str | os.PathLike, record: Record, num_frames: int, *, fps: float = DEFAULT_FPS,
                     audio_frames: int = DEFAULT_AUDIO_FRAMES,
                     audio_mel_bins: int = DEFAULT_AUDIO_MEL_BINS) -> tuple[np.ndarray, np.ndarray]:
    """audio [V, T=num_frames, F=audio_frames, M=audio_mel_bins] float32 and audio_mask [V] bool of one record.

    Frame t of view v is `audio.log_mel` of the stretch [t/fps, (t+1)/fps) s of that view's soundtrack
    (`audio.segment_windows`). A view that is absent, whose file is missing, or whose file has no audio track
    (logged as a warning naming the file) is 0 with audio_mask False; a corrupt track raises ValueError.
    """
    root = Path(root)
    windows = np.zeros([NUM_VIEWS, num_frames, audio_frames, audio_mel_bins], np.float32)
    mask = np.zeros([NUM_VIEWS], bool)
    starts = np.arange(num_frames) / fps
    for v, url in enumerate(record.videos):
        if url is None or not (root / url).is_file():
            continue  # no view: view_mask is False too
        try:
            wave = audio_lib.load(root / url)
        except audio_lib.NoAudioTrackError as err:
            log.warning("%s (%s, view %d): %s; audio = 0 and audio_mask False for this view", record.where,
                        record.id, v + 1, err)
            continue
        windows[v] = audio_lib.segment_windows(wave, starts, 1.0 / fps, num_mel_bins=audio_mel_bins,
                                               max_length=audio_frames)
        mask[v] = True
    return windows, mask


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
