"""pyskl / mmaction2 skeleton annotation pickles as a multi-view source (random access, `schema.py` layout).

The format (pyskl's `ntu60_3danno.pkl`, `ntu60_hrnet.pkl`, ...; mmaction2's `ntu60_3d.pkl`, `ntu60_2d.pkl`, ...):

    {"split": {split_name: [frame_dir, ...], ...},
     "annotations": [{"frame_dir": str, "label": int, "keypoint": float [M, T, J, C],
                      "keypoint_score": float [M, T, J] (2-D only), "total_frames": int (= T),
                      "img_shape": (h, w) (optional), ...}, ...]}

Other keys of an annotation (`original_shape`, ...) are ignored.

    source = PysklSource("/data/ntu60_3danno.pkl", "xsub_train")
    len(source); example = source[0]

Format decisions:

* Layouts (`KEYPOINT_LAYOUTS`): 3-D NTU joints `keypoint [M, T, 25, 3]` (x, y, z; layout "nturgb+d", or
  "ntu-rgb+d": the same joints, the layouts differ only in the model's graph), and 2-D COCO keypoints
  `keypoint [M, T, 17, 2]` with `keypoint_score [M, T, 17]` (layout "coco"): their 3 channels are (x, y, score),
  as pyskl's `FormatGCNInput` concatenates them. `layout=None` detects it from the first annotation's shape;
  every annotation read must then have that shape, else an error names the file, the frame_dir and the shape.
  `normalize_2d=True` maps 2-D pixel coordinates to [-1, 1] as pyskl's `PreNormalize2D` does,
  x' = (x - w/2) / (w/2), y' = (y - h/2) / (h/2) with the annotation's `img_shape` (default 1080 x 1920), where
  the person is present (absent persons stay 0); by default the pickle's values are kept as they are.
* Multi-view grouping (`grouping="auto"`, the default): when every frame_dir of the pickle is an NTU camera-file
  name `SsssCcccPpppRrrrAaaa`, the cameras of one (setup, performer, replication, action) form ONE sample with
  the id of the raw NTU source (`SsssPpppRrrrAaaa`, `NtuName.sample_id`), V = 3 views, camera c -> view c - 1, in
  the order of `ntu.group_views`. When no frame_dir is NTU-style (UCF101, FineGYM, ... pickles), each annotation
  is a single-view sample (V = 1) with its frame_dir as id. A mix is an error (pass `grouping="none"` to read an
  NTU pickle one camera at a time, or `grouping="ntu"` to insist on names).
* Splits: the pickle's own (`xsub_train`, `xsub_val`, `xview_train`, ...). A sample holds only the cameras its
  split lists: in pyskl's xview splits camera 1 is listed in `xview_val` and cameras 2, 3 in `xview_train`, so the
  same sample appears in both splits with different views, as in `ntu.Benchmark("xview")`.
* view_mask [V]: the camera is listed in the split and has a person in some frame (a camera absent from the
  pickle, left out of the split, or with `M = 0` / all-zero keypoints is masked out and zeroed, as the raw NTU
  source treats a file without bodies). A sample with no view left is dropped (not counted in `len`).
* Frames: the cameras of a sample may differ in length; T is the longest present view, shorter views are
  zero-padded at the end (their human_score is 0 there), as in `ntu.load_sample`.
* Persons: the first `max_persons` persons of each annotation, in the pickle's order (pyskl's preprocessing
  ordered them, and its `FormatGCNInput` keeps the first ones), zero-padded to `max_persons` (default 2, the raw
  NTU source's).
* human_score [V, T]: 1 where some person of the annotation (kept or not) has a non-zero value in that frame
  (coordinates, or 2-D score), else 0: the raw NTU source's "the frame lists a body" for data without a body list.
* label: the annotation's `label` (0-based, pyskl's action - 1 for NTU), an integer in [0, num_classes);
  `num_classes=None` takes max label + 1 over the pickle's annotations. The cameras of a sample must agree.

Trust: a pickle can execute code while it loads. pyskl's and mmaction2's files hold only dicts, lists, tuples,
strings, numbers and numpy arrays, so they are read with a restricted unpickler that refuses any other global
(an error names it); `restricted=False` uses plain `pickle.load`, for files you trust. The whole pickle is held
in memory; for training, prepare it once as TFDS ArrayRecord files (`vicokd_jax.data.builders.pyskl`).
"""
from __future__ import annotations

import os
import pathlib
import pickle
from collections.abc import Mapping

import numpy as np

from vicokd_jax.data import ntu, schema

# layout -> (joints J, channels C of `keypoint`); a 2-D layout adds `keypoint_score` as the third channel.
KEYPOINT_LAYOUTS = {"nturgb+d": (25, 3), "ntu-rgb+d": (25, 3), "coco": (17, 2)}
# What `layout=None` picks for a keypoint shape (J, C): pyskl's NTU graph, and COCO.
DETECTED_LAYOUTS = {(25, 3): "nturgb+d", (17, 2): "coco"}
GROUPINGS = ("auto", "ntu", "none")
DEFAULT_MAX_PERSONS = 2  # the raw NTU source's default (ntu.load_sample's max_bodies)
DEFAULT_IMG_SHAPE = (1080, 1920)  # (h, w) pyskl's PreNormalize2D assumes without `img_shape` (Kinect v2 RGB)

# pyskl's NTU pickles (the names of its data page) and the builder configs preparing them: config name ->
# the file, TFDS split -> pickle split, layout, classes. mmaction2 publishes the same files as MMACTION2_NAMES.
STANDARD_CONFIGS = {
    f"{variant}_{protocol}_{dims}": {
        "pkl_path": f"{variant}_{'3danno' if dims == '3d' else 'hrnet'}.pkl",
        "splits": {"train": f"{protocol}_train", "test": f"{protocol}_val"},
        "layout": "nturgb+d" if dims == "3d" else "coco",
        "num_classes": ntu.VARIANTS[variant].num_classes,
        "normalize_2d": dims == "2d",  # pyskl's 2-D NTU configs start with PreNormalize2D
    }
    for variant, protocols in (("ntu60", ("xsub", "xview")), ("ntu120", ("xsub", "xset")))
    for protocol in protocols for dims in ("3d", "2d")
}
MMACTION2_NAMES = {"ntu60_3danno.pkl": "ntu60_3d.pkl", "ntu60_hrnet.pkl": "ntu60_2d.pkl",
                   "ntu120_3danno.pkl": "ntu120_3d.pkl", "ntu120_hrnet.pkl": "ntu120_2d.pkl"}

__all__ = ["DEFAULT_IMG_SHAPE", "DEFAULT_MAX_PERSONS", "DETECTED_LAYOUTS", "GROUPINGS", "KEYPOINT_LAYOUTS",
           "MMACTION2_NAMES", "STANDARD_CONFIGS", "PysklFile", "PysklFormatError", "PysklSource", "channel_names",
           "copy_fields", "load_pickle"]


class PysklFormatError(ValueError):
    """A pyskl annotation file that breaks the format; the message names the file and the key."""


def channel_names(layout: str) -> tuple[str, str, str]:
    """The 3 channels of `skeleton [..., 3]` for `layout`: ("x", "y", "z") for 3-D, ("x", "y", "score") for 2-D."""
    _layout_spec(layout)
    return ("x", "y", "score") if KEYPOINT_LAYOUTS[layout][1] == 2 else ("x", "y", "z")


def copy_fields(*, pkl_path: str, splits: Mapping[str, str], layout: str, num_classes: int, grouping: str = "ntu",
                max_persons: int = DEFAULT_MAX_PERSONS, normalize_2d: bool = False) -> dict:
    """What a TFDS copy prepared with these settings holds, as its metadata records it ("pyskl"): the settings plus
    channels, num_joints and num_views (3 for grouping "ntu", else 1). JSON-able."""
    return {"pkl_path": pkl_path, "splits": dict(splits), "layout": layout, "channels": list(channel_names(layout)),
            "num_joints": KEYPOINT_LAYOUTS[layout][0], "num_views": ntu.NUM_CAMERAS if grouping == "ntu" else 1,
            "num_classes": num_classes, "grouping": grouping, "max_persons": max_persons, "normalize_2d": normalize_2d}


def _layout_spec(layout: str) -> tuple[int, int]:
    if layout not in KEYPOINT_LAYOUTS:
        raise ValueError(f"unknown keypoint layout {layout!r}; expected one of {list(KEYPOINT_LAYOUTS)} "
                         "(3-D NTU joints [M, T, 25, 3] or 2-D COCO keypoints [M, T, 17, 2] + keypoint_score)")
    return KEYPOINT_LAYOUTS[layout]


# ----------------------------------------------------------------------------------------------------------------
# Reading the pickle
# ----------------------------------------------------------------------------------------------------------------

# Globals a pyskl / mmaction2 annotation pickle needs: numpy arrays, dtypes and scalars (numpy 1 names
# `numpy.core`, numpy 2 `numpy._core`), and the plain types protocol-2 pickles (mmcv.dump's) name under
# `__builtin__` or encode with `_codecs.encode` (bytes).
_ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"), ("collections", "OrderedDict"),
    *((module, name) for module in ("builtins", "__builtin__")
      for name in ("bytes", "bytearray", "complex", "frozenset", "range", "set", "slice")),
})
_NUMPY_2 = int(np.__version__.split(".")[0]) >= 2


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only `_ALLOWED_GLOBALS`, so loading cannot call anything else."""

    def __init__(self, file, path: str):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise PysklFormatError(
                f"{self.path}: the pickle refers to {module}.{name}, which a pyskl annotation file does not hold "
                "(only dicts, lists, strings, numbers and numpy arrays are allowed, because loading a pickle can "
                "run code); if you trust this file, load it with restricted=False")
        # NOTE: the other numpy major's names, so files written by either load without deprecation warnings.
        if _NUMPY_2 and module.startswith("numpy.core."):
            module = "numpy._core." + module[len("numpy.core."):]
        elif not _NUMPY_2 and module.startswith("numpy._core."):
            module = "numpy.core." + module[len("numpy._core."):]
        return super().find_class(module, name)


def load_pickle(path: str | os.PathLike, *, restricted: bool = True):
    """The object stored in the pickle at `path`.

    restricted: refuse every global but numpy's array/dtype/scalar and a few plain types (see the module
    docstring). Raises FileNotFoundError naming a missing file and PysklFormatError for a file that is not a
    pickle or needs another global.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pyskl annotation file not found")
    with open(path, "rb") as f:
        try:
            return _RestrictedUnpickler(f, str(path)).load() if restricted else pickle.load(f)
        except PysklFormatError:
            raise
        except Exception as err:  # pickle raises many types on garbage: UnpicklingError, EOFError, KeyError, ...
            raise PysklFormatError(f"{path}: not a readable pickle file ({type(err).__name__}: {err})") from err


class PysklFile:
    """A loaded pyskl annotation file, checked at the top level.

    path         pathlib.Path
    splits       {split name: [frame_dir, ...]}  (the pickle's "split")
    annotations  [dict, ...]                     (the pickle's "annotations")
    index        {frame_dir: position in annotations}

    Raises PysklFormatError naming the file and the key when "split" or "annotations" is missing or malformed,
    an annotation lacks "frame_dir", or a frame_dir appears twice.
    """

    def __init__(self, path: str | os.PathLike, *, restricted: bool = True):
        self.path = pathlib.Path(path)
        content = load_pickle(self.path, restricted=restricted)
        if not isinstance(content, Mapping):
            hint = (" (a bare list of annotations, mmaction2's older layout: wrap it as "
                    "{'split': {name: [frame_dir, ...]}, 'annotations': [...]})" if isinstance(content, list) else "")
            raise PysklFormatError(f"{self.path}: expected a dict with keys 'split' and 'annotations' (the pyskl "
                                   f"format), found a {type(content).__name__}{hint}")
        for key in ("split", "annotations"):
            if key not in content:
                raise PysklFormatError(f"{self.path}: missing key {key!r}; the pickle has keys "
                                       f"{sorted(map(str, content))} (the pyskl format needs 'split' and "
                                       "'annotations')")
        self.splits = self._read_splits(content["split"])
        self.annotations = content["annotations"]
        if not isinstance(self.annotations, (list, tuple)):
            raise PysklFormatError(f"{self.path}: 'annotations' must be a list of dicts, found a "
                                   f"{type(self.annotations).__name__}")
        self.index: dict[str, int] = {}
        for i, ann in enumerate(self.annotations):
            if not isinstance(ann, Mapping):
                raise PysklFormatError(f"{self.path}: 'annotations'[{i}] must be a dict, found a {type(ann).__name__}")
            frame_dir = ann.get("frame_dir")
            if not isinstance(frame_dir, str):
                raise PysklFormatError(f"{self.path}: 'annotations'[{i}] has no 'frame_dir' string "
                                       f"(found {frame_dir!r})")
            if frame_dir in self.index:
                raise PysklFormatError(f"{self.path}: frame_dir {frame_dir!r} appears twice in 'annotations' "
                                       f"(entries {self.index[frame_dir]} and {i})")
            self.index[frame_dir] = i

    def _read_splits(self, splits) -> dict[str, list[str]]:
        if not isinstance(splits, Mapping):
            raise PysklFormatError(f"{self.path}: 'split' must be a dict {{split name: [frame_dir, ...]}}, found a "
                                   f"{type(splits).__name__}")
        out = {}
        for name, frame_dirs in splits.items():
            if not isinstance(frame_dirs, (list, tuple)) or not all(isinstance(f, str) for f in frame_dirs):
                raise PysklFormatError(f"{self.path}: 'split'[{name!r}] must be a list of frame_dir strings")
            out[str(name)] = list(frame_dirs)
        return out

    def where(self, frame_dir: str) -> str:
        """`FILE: annotations[i] (frame_dir 'X')`, the prefix of errors about one annotation."""
        return f"{self.path}: 'annotations'[{self.index[frame_dir]}] (frame_dir {frame_dir!r})"

    def detect_layout(self) -> str:
        """The layout of the first annotation's `keypoint` shape (`DETECTED_LAYOUTS`)."""
        if not self.annotations:
            raise PysklFormatError(f"{self.path}: 'annotations' is empty: no keypoint layout to detect; pass layout=")
        first = self.annotations[0]
        where = self.where(first["frame_dir"])
        if "keypoint" not in first:
            raise PysklFormatError(f"{where} has no 'keypoint'")
        shape = np.shape(first["keypoint"])
        if len(shape) != 4 or tuple(shape[2:]) not in DETECTED_LAYOUTS:
            raise PysklFormatError(f"{where}: 'keypoint' has shape {shape}; expected [M, T, 25, 3] (3-D NTU joints) "
                                   "or [M, T, 17, 2] (2-D COCO keypoints), or pass layout=")
        return DETECTED_LAYOUTS[tuple(shape[2:])]

    def grouping(self) -> str:
        """"ntu" when every frame_dir is an NTU camera-file name, "none" when none is; otherwise an error."""
        ntu_style = [bool(ntu.NAME_PATTERN.fullmatch(f)) for f in self.index]
        if all(ntu_style):
            return "ntu"
        if not any(ntu_style):
            return "none"
        names = list(self.index)
        odd, regular = (names[ntu_style.index(False)], names[ntu_style.index(True)])
        raise PysklFormatError(f"{self.path}: some frame_dirs are NTU camera-file names (e.g. {regular!r}) and "
                               f"some are not (e.g. {odd!r}); pass grouping='none' to read every annotation as a "
                               "single-view sample")

    def max_label(self) -> int:
        """The largest `label` of all annotations (-1 when there is none)."""
        return max((_label(self, ann["frame_dir"], ann) for ann in self.annotations), default=-1)


def _as_array(ann: Mapping, key: str, where: str) -> np.ndarray:
    try:
        return np.asarray(ann[key])
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise PysklFormatError(f"{where}: {key!r} is not an array ({err})") from None


def _label(file: PysklFile, frame_dir: str, ann: Mapping) -> int:
    if "label" not in ann:
        raise PysklFormatError(f"{file.where(frame_dir)} has no 'label'")
    label = ann["label"]
    if isinstance(label, np.ndarray) and label.shape == ():
        label = label[()]
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise PysklFormatError(f"{file.where(frame_dir)}: 'label' must be an integer class index, found {label!r}")
    return int(label)


# ----------------------------------------------------------------------------------------------------------------
# The source
# ----------------------------------------------------------------------------------------------------------------

class PysklSource:
    """Random access over one split of a pyskl annotation pickle: `len()` and `[i]` -> example dict (`schema.py`).

    Example i:
        id           str                         NTU: "SsssPpppRrrrAaaa" (the raw NTU source's id); else frame_dir
        skeleton     [V, M, T, J, 3] float32     V = 3 (NTU cameras 1-3) or 1, M = max_persons, J = 25 or 17;
                                                 channels (x, y, z) or (x, y, score) (`channel_names(layout)`)
        human_score  [V, T] float32              1 where a person is in the view's frame, else 0
        view_mask    [V] bool                    the camera is listed in the split and has a person
        label        int32                       in [0, num_classes)

    pkl: the pickle's path, or a `PysklFile` already loaded (to read several splits of one file).
    split: a key of the pickle's "split"; an unknown one is an error listing them.
    layout: a key of KEYPOINT_LAYOUTS, or None to detect it; grouping: "auto" | "ntu" | "none" (module docstring).
    max_persons: M. num_classes: None = max label + 1 over the pickle. normalize_2d: pyskl's PreNormalize2D (2-D).
    restricted: the restricted unpickler (see `load_pickle`).

    Every annotation of the split is checked when the source is made (keypoint / keypoint_score shapes, finite
    values, total_frames, label range, cameras of a sample agreeing on the label): errors name the file, the
    frame_dir and the key.
    """

    def __init__(self, pkl: str | os.PathLike | PysklFile, split: str, *, layout: str | None = None,
                 grouping: str = "auto", max_persons: int = DEFAULT_MAX_PERSONS, num_classes: int | None = None,
                 normalize_2d: bool = False, restricted: bool = True):
        self.file = pkl if isinstance(pkl, PysklFile) else PysklFile(pkl, restricted=restricted)
        self.path, self.split = self.file.path, split
        if split not in self.file.splits:
            raise PysklFormatError(f"{self.path}: no split {split!r} in 'split'; the pickle has splits "
                                   f"{sorted(self.file.splits)}")
        if grouping not in GROUPINGS:
            raise ValueError(f"grouping={grouping!r}; expected one of {GROUPINGS}")
        if max_persons < 1:
            raise ValueError(f"max_persons={max_persons} must be >= 1")
        self.layout = self.file.detect_layout() if layout is None else layout
        self.num_joints, self.dims = _layout_spec(self.layout)
        if normalize_2d and self.dims != 2:
            raise ValueError(f"normalize_2d=True: layout {self.layout!r} is 3-D; PreNormalize2D applies to 2-D "
                             "pixel coordinates only")
        self.channels = channel_names(self.layout)
        self.max_persons, self.normalize_2d = max_persons, normalize_2d
        self.grouping = self.file.grouping() if grouping == "auto" else grouping
        self.num_views = ntu.NUM_CAMERAS if self.grouping == "ntu" else 1
        self.num_classes = self.file.max_label() + 1 if num_classes is None else num_classes
        if self.num_classes < 1:
            raise ValueError(f"num_classes={self.num_classes} must be >= 1")
        frame_dirs = self.file.splits[split]
        present = {f: self._check(f) for f in self._listed(frame_dirs)}
        self._samples = self._group(present)

    def _listed(self, frame_dirs: list[str]) -> list[str]:
        seen = set()
        for f in frame_dirs:
            if f not in self.file.index:
                raise PysklFormatError(f"{self.path}: 'split'[{self.split!r}] lists frame_dir {f!r}, which is absent "
                                       "from 'annotations'")
            if f in seen:
                raise PysklFormatError(f"{self.path}: 'split'[{self.split!r}] lists frame_dir {f!r} twice")
            seen.add(f)
        return list(frame_dirs)

    def _check(self, frame_dir: str) -> bool:
        """Check one annotation against the layout; -> whether it has a person in some frame."""
        ann = self.file.annotations[self.file.index[frame_dir]]
        where = self.file.where(frame_dir)
        if "keypoint" not in ann:
            raise PysklFormatError(f"{where} has no 'keypoint'")
        keypoint = _as_array(ann, "keypoint", where)
        j, c = self.num_joints, self.dims
        if keypoint.ndim != 4 or keypoint.shape[2:] != (j, c) or keypoint.shape[1] < 1:
            raise PysklFormatError(f"{where}: 'keypoint' has shape {keypoint.shape}; layout {self.layout!r} expects "
                                   f"[M, T, {j}, {c}] with T >= 1")
        if not np.issubdtype(keypoint.dtype, np.number) or not np.isfinite(keypoint).all():
            raise PysklFormatError(f"{where}: 'keypoint' ({keypoint.dtype}) must hold finite numbers")
        m, t = keypoint.shape[:2]
        nonzero = keypoint.any()
        if c == 2:
            if "keypoint_score" not in ann:
                raise PysklFormatError(f"{where} has no 'keypoint_score': 2-D keypoints (layout {self.layout!r}) need "
                                       f"scores [M, T, {j}]")
            score = _as_array(ann, "keypoint_score", where)
            if score.shape != (m, t, j):
                raise PysklFormatError(f"{where}: 'keypoint_score' has shape {score.shape}; expected [M, T, J] = "
                                       f"{(m, t, j)} (the shape of 'keypoint' {keypoint.shape} without C)")
            if not np.issubdtype(score.dtype, np.number) or not np.isfinite(score).all():
                raise PysklFormatError(f"{where}: 'keypoint_score' ({score.dtype}) must hold finite numbers")
            nonzero = nonzero or score.any()
        total = ann.get("total_frames", t)
        if not isinstance(total, (int, np.integer)) or int(total) != t:
            raise PysklFormatError(f"{where}: 'total_frames' is {total!r} but 'keypoint' has shape {keypoint.shape} "
                                   f"(T = {t})")
        if self.normalize_2d:
            self._img_shape(ann, where)
        label = _label(self.file, frame_dir, ann)
        if not 0 <= label < self.num_classes:
            raise PysklFormatError(f"{where}: 'label' {label} is out of range [0, {self.num_classes})")
        return bool(nonzero)

    @staticmethod
    def _img_shape(ann: Mapping, where: str) -> tuple[float, float]:
        shape = ann.get("img_shape", DEFAULT_IMG_SHAPE)
        if np.shape(shape) != (2,) or not all(isinstance(s, (int, float, np.number)) and s > 0 for s in shape):
            raise PysklFormatError(f"{where}: 'img_shape' must be (height, width) > 0, found {shape!r}")
        return float(shape[0]), float(shape[1])

    def _group(self, present: dict[str, bool]) -> list[tuple[str, dict[int, str]]]:
        """[(sample id, {view: frame_dir of a present view})], samples without a present view left out."""
        if self.grouping == "none":
            return [(f, {0: f}) for f, ok in present.items() if ok]
        names = {}
        for f in present:
            try:
                names[ntu.parse_name(f)] = f
            except ValueError as err:
                raise PysklFormatError(f"{self.file.where(f)}: grouping='ntu' needs NTU camera-file names: {err}") \
                    from None
        samples = []
        for sample_id, cameras in ntu.group_views(names).items():
            views = {camera - 1: names[name] for camera, name in cameras.items() if present[names[name]]}
            labels = {f: _label(self.file, f, self.file.annotations[self.file.index[f]]) for f in views.values()}
            if len(set(labels.values())) > 1:
                raise PysklFormatError(f"{self.path}: the cameras of sample {sample_id} disagree on 'label': {labels}")
            if views:
                samples.append((sample_id, views))
        return samples

    def __len__(self) -> int:
        return len(self._samples)

    def frame_dirs(self, i: int) -> dict[int, str]:
        """{view: frame_dir} of the present views of example i."""
        return dict(self._samples[i][1])

    def read_view(self, frame_dir: str) -> tuple[np.ndarray, np.ndarray]:
        """One annotation -> (skeleton [max_persons, T, J, 3] float32, human_score [T] float32)."""
        ann = self.file.annotations[self.file.index[frame_dir]]
        values = np.asarray(ann["keypoint"], np.float32)
        if self.dims == 2:
            values = np.concatenate([values, np.asarray(ann["keypoint_score"], np.float32)[..., None]], axis=-1)
        present = values.any(axis=(2, 3))  # [M, T]: every person, kept or not (the NTU "frame lists a body")
        if self.normalize_2d:
            h, w = self._img_shape(ann, self.file.where(frame_dir))
            centre = np.array([w / 2, h / 2], np.float32)
            xy = (values[..., :2] - centre) / centre
            values[..., :2] = np.where(present[..., None, None], xy, 0.0)  # absent persons stay 0
        skeleton = np.zeros((self.max_persons,) + values.shape[1:], np.float32)
        kept = values[:self.max_persons]
        skeleton[:len(kept)] = kept
        return skeleton, present.any(axis=0).astype(np.float32)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self._samples):
            raise IndexError(f"index {i} out of range for {len(self._samples)} examples of {self.path} "
                             f"[{self.split}]")
        sample_id, views = self._samples[i]
        read = {v: self.read_view(f) for v, f in views.items()}
        frames = max(skeleton.shape[1] for skeleton, _ in read.values())
        skeleton = np.zeros((self.num_views, self.max_persons, frames, self.num_joints, 3), np.float32)
        score = np.zeros((self.num_views, frames), np.float32)
        mask = np.zeros((self.num_views,), bool)
        for v, (joints, present) in read.items():
            t = joints.shape[1]
            skeleton[v, :, :t], score[v, :t], mask[v] = joints, present, True
        first = next(iter(views.values()))
        label = _label(self.file, first, self.file.annotations[self.file.index[first]])
        example = {"id": sample_id, "label": np.int32(label), "skeleton": skeleton, "human_score": score,
                   "view_mask": mask}
        schema.check_example(example, where=f"{self.path} [{self.split}] {sample_id}")
        return example

    def __repr__(self) -> str:
        return (f"PysklSource({str(self.path)!r}, {self.split!r}, layout={self.layout!r}, grouping={self.grouping!r}, "
                f"{len(self)} examples, V={self.num_views}, M={self.max_persons}, J={self.num_joints})")
