"""Host-side (numpy) evaluation metrics of METHOD.md: the streaming `EvalAccumulator`, average precision, mAP.

Used by the training loop at eval points and by the export evaluator. Everything here runs on host numpy arrays
(jax arrays are converted with `np.asarray`); nothing is jitted. Tables and plots of the results: `report.py`.

    acc = EvalAccumulator.from_config(cfg, "student")    # every threshold from the run config
    for batch in eval_batches:
        acc.add(predict(batch), batch)                    # outputs: logits [B,C], view_logits [B,V,C], ...
    result = acc.result()                                 # plain floats / lists: json.dumps(result) works
    print(report.format_table(result))

Metric definitions (all percentages are ×100; a metric with nothing to average over is `None`, never NaN):

* single-label — `top1`, `top5`: accuracy of the fused `logits` (top-k with k = min(5, C); order among equal
  logits is by class index, as `argmax`). `per_view_top1[v]`: accuracy of `view_logits[:, v]` over samples where
  view v exists (`view_mask`); `per_view_top1_visible[v]`: the same over samples where, in addition, the person
  is *visible* in view v (see below). `mean_view_top1(_visible)`: the mean of the per-view values over the views
  that have one (a macro average over views). `confusion`: C×C counts of argmax predictions, rows = true class.
  `top1_by_visible_views[n]`: `top1` over the samples in which exactly n views see the person (visible, below),
  `clips_by_visible_views[n]` their number (both when visibility is known).
* multi-label — `map_class`: class-wise average precision averaged over the classes with ≥ 1 positive;
  `map_sample`: per-sample AP over classes averaged over samples with ≥ 1 positive (the MultiSensor-Home code's
  `mAP(targets, preds)` and `mAP(targets.T, preds.T)`, which equal ours up to tie handling);
  `per_view_map_class(_visible)`, `mean_view_map_class(_visible)` likewise per view over the samples where the
  view exists (is visible). A label counts as positive when > 0.5.
* both — `map_frame` (when `frame_logits` and `frame_labels` are both given): class-wise mAP over all (sample,
  frame) pairs; frame logits are fused over views by max over the *present* views (`views.fuse_frame_logits`,
  as in the train step); `[B,T]` integer frame labels become one-hot (−1 = background = negative for every
  class). When the model's frame count L differs from the labels' T, labels are resampled to L frames by
  nearest-frame sampling (`views.resample_nearest`): output frame l takes label frame `floor((l + 0.5) · T / L)`
  (the label frame nearest to the centre of the span output frame l covers; exact half-way ties go to the later
  frame).
* diagnostics — `agreement`: % of samples where teacher and student argmax agree (when `teacher_logits` are
  given; argmax also in multi-label mode). `mean_covisible_pairs`: mean over samples of the number of view
  pairs i<j that both exist and are co-visible: detected (`human_score ≥ visibility_threshold`) in both views
  on ≥ `min_covisible_frames` common frames — the pair mask c_ij of ViCoKD's L_vc (`views.covisible_pairs`, which
  `losses.view_consistency` uses too).
  `pl_keep_rate`, `pl_precision` (single-label, with `pseudo_label_threshold`): % of samples whose max teacher
  softmax is ≥ θ, and the teacher's accuracy on those.

Visibility of a view: it exists and `human_score ≥ visibility_threshold` on ≥ `visibility_min_fraction` of its
frames (`views.visible_fraction`). `EvalAccumulator.from_config` takes the detection threshold, the co-visibility
rule and θ from the run config, the ones the stage's objective uses. Metrics that need `human_score` (the
`*_visible` ones, `mean_covisible_pairs`) are left out of the result when the batches do not carry it. For
multi-host evaluation, accumulate per host and `merge` (or gather outputs first); `valid` marks the padding rows
of a partial last batch.

Average precision is the step-wise (scikit-learn) definition AP = Σ_n (R_n − R_{n−1}) P_n over the distinct
score thresholds in descending order, so tied scores enter together; it is rank-based, so AP of logits equals
AP of sigmoid probabilities. (The MultiTSF reference ranks softmax probabilities — `multi_label_scores="softmax"`
reproduces that; it changes class-wise but not sample-wise AP.)
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from vicokd_jax import views

__all__ = ["EvalAccumulator", "average_precision", "mean_average_precision"]


# ------------------------------------------------------------------------------------------------------------
# Average precision
# ------------------------------------------------------------------------------------------------------------
def average_precision(scores, targets) -> float:
    """AP of one ranking: `scores [N]`, `targets [N]` (positive where > 0.5) -> float in [0, 1]; NaN if no positive.

    AP = Σ_n (R_n − R_{n−1}) P_n over the distinct thresholds, highest first; tied scores form one threshold.
    """
    scores = np.asarray(scores, np.float64).ravel()
    positive = np.asarray(targets).ravel() > 0.5
    if scores.shape != positive.shape:
        raise ValueError(f"average_precision: scores has {scores.size} entries, targets {positive.size}")
    n_pos = int(positive.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    tp = np.cumsum(positive)
    fp = np.cumsum(~positive)
    last_of_tie = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), scores.size - 1]
    tp, fp = tp[last_of_tie], fp[last_of_tie]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def mean_average_precision(scores, targets, axis: int = 0) -> float | None:
    """mAP ×100 of `scores [N,C]` against multi-hot `targets [N,C]`.

    axis=0: class-wise (one AP per column, i.e. ranking the N samples for each class); axis=1: sample-wise (one
    AP per row). Rankings without a positive are skipped; None when none has one.
    """
    scores, targets = np.asarray(scores), np.asarray(targets)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"mean_average_precision: scores {scores.shape} and targets {targets.shape} must be "
                         f"equal [N,C] shapes")
    if axis == 1:
        scores, targets = scores.T, targets.T
    elif axis != 0:
        raise ValueError(f"mean_average_precision: axis must be 0 (class-wise) or 1 (sample-wise), got {axis}")
    aps = [average_precision(scores[:, k], targets[:, k]) for k in range(scores.shape[1])]
    aps = [ap for ap in aps if not math.isnan(ap)]
    return 100.0 * float(np.mean(aps)) if aps else None


# ------------------------------------------------------------------------------------------------------------
# Array helpers
# ------------------------------------------------------------------------------------------------------------
def _as_array(mapping: Mapping[str, Any], key: str, where: str, dtype=None) -> np.ndarray:
    """`mapping[key]` as a numpy array; a clear KeyError naming `where` when missing."""
    if key not in mapping:
        raise KeyError(f"EvalAccumulator.add: {where}[{key!r}] is required (got keys {sorted(mapping)})")
    array = np.asarray(mapping[key])
    return array.astype(dtype) if dtype is not None else array


def _check_shape(name: str, array: np.ndarray, dims: str, expected: Sequence[int | None]) -> None:
    """Raise ValueError naming `name` unless `array.shape` matches `expected` (None = any size)."""
    ok = array.ndim == len(expected) and all(e is None or e == a for e, a in zip(expected, array.shape))
    if not ok:
        want = tuple("?" if e is None else e for e in expected)
        raise ValueError(f"EvalAccumulator.add: {name} has shape {tuple(array.shape)}, expected {dims}={want}")


def _softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _percent(numerator, denominator) -> float | None:
    """100·numerator/denominator as a float; None when the denominator is 0."""
    return 100.0 * float(numerator) / float(denominator) if denominator else None


def _mean_defined(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None; None when there are none."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


# ------------------------------------------------------------------------------------------------------------
# Per-batch preparation: validate and reduce one batch to per-sample columns
# ------------------------------------------------------------------------------------------------------------
def _frame_targets(frame_labels: np.ndarray, b: int, num_classes: int, length: int) -> np.ndarray:
    """`[B,T]` int (−1 background) or `[B,T,C]` multi-hot -> `[B,length,C]` bool, resampled to `length` frames."""
    if frame_labels.ndim == 2:
        _check_shape("batch['frame_labels']", frame_labels, "[B,T]", (b, None))
        labels = frame_labels.astype(np.int64)
        if labels.min(initial=-1) < -1 or labels.max(initial=-1) >= num_classes:
            raise ValueError(f"EvalAccumulator.add: batch['frame_labels'] values must lie in [-1, {num_classes}), "
                             f"got min {labels.min()} max {labels.max()}")
        targets = labels[..., None] == np.arange(num_classes)
    else:
        _check_shape("batch['frame_labels']", frame_labels, "[B,T,C]", (b, None, num_classes))
        targets = frame_labels > 0.5
    return views.resample_nearest(targets, length)


def _sequence_targets(batch: Mapping[str, Any], b: int, num_classes: int, multi_label: bool) -> dict:
    """`{"label": [B] int}` (single-label) or `{"labels": [B,C] bool}` (multi-label), validated."""
    if multi_label:
        if "labels" in batch:
            labels = np.asarray(batch["labels"])
            _check_shape("batch['labels']", labels, "[B,C]", (b, num_classes))
            return {"labels": labels > 0.5}
        if "label" not in batch:
            raise KeyError("EvalAccumulator.add: multi_label=True needs batch['labels'] [B,C] (or batch['label'] "
                           f"[B]); got keys {sorted(batch)}")
    label = _as_array(batch, "label", "batch").astype(np.int64)
    _check_shape("batch['label']", label, "[B]", (b,))
    if label.size and (label.min() < 0 or label.max() >= num_classes):
        raise ValueError(f"EvalAccumulator.add: batch['label'] values must lie in [0, {num_classes}), "
                         f"got min {label.min()} max {label.max()}")
    if multi_label:
        return {"labels": label[:, None] == np.arange(num_classes)}
    return {"label": label}


# ------------------------------------------------------------------------------------------------------------
# The accumulator
# ------------------------------------------------------------------------------------------------------------
class EvalAccumulator:
    """Streaming evaluation over eval batches; `result()` gives the metrics of METHOD.md as plain Python values.

    Args:
        num_classes: C.
        multi_label: mAP metrics from `batch["labels"] [B,C]` instead of accuracies from `batch["label"] [B]`.
        class_names: optional C names, copied into the result (for tables and plots).
        visibility_threshold: a frame counts as detected where `human_score ≥` this.
        visibility_min_fraction: a view counts as visible where ≥ this fraction of its frames is detected.
        min_covisible_frames: a view pair counts as co-visible with ≥ this many commonly detected frames.
        pseudo_label_threshold: θ for the `pl_keep_rate` / `pl_precision` diagnostics (single-label, teacher
            logits given); None leaves them out.
        multi_label_scores: "sigmoid" (rank the logits; the default) or "softmax" (the MultiTSF reference).

    Per-sample values (not whole batches) are kept until `result()`: O(N·V·C) floats, plus O(N·L·C) with frames.
    """

    def __init__(self, num_classes: int, multi_label: bool = False, class_names: Sequence[str] | None = None,
                 visibility_threshold: float = 0.5, visibility_min_fraction: float = 0.25,
                 min_covisible_frames: int = 1, pseudo_label_threshold: float | None = None,
                 multi_label_scores: str = "sigmoid"):
        if num_classes < 1:
            raise ValueError(f"EvalAccumulator: num_classes must be ≥ 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"EvalAccumulator: {len(class_names)} class_names for num_classes={num_classes}")
        if multi_label_scores not in ("sigmoid", "softmax"):
            raise ValueError(f"EvalAccumulator: multi_label_scores must be 'sigmoid' or 'softmax', "
                             f"got {multi_label_scores!r}")
        self.num_classes = int(num_classes)
        self.multi_label = bool(multi_label)
        self.class_names = list(class_names) if class_names is not None else None
        self.visibility_threshold = float(visibility_threshold)
        self.visibility_min_fraction = float(visibility_min_fraction)
        self.min_covisible_frames = int(min_covisible_frames)
        self.pseudo_label_threshold = pseudo_label_threshold
        self.multi_label_scores = multi_label_scores
        self.reset()

    @classmethod
    def from_config(cls, cfg, stage: str, class_names: Sequence[str] | None = None) -> "EvalAccumulator":
        """The accumulator for `stage` ("teacher" | "student") of a run, every threshold from its config `cfg`.

        Classes: `cfg.data.num_classes`, `cfg.data.multi_label`. Detection threshold: the one the stage's
        objective uses, `cfg.teacher.view_score_threshold` (teacher) or `cfg.method.vc.score_threshold`
        (student). Co-visible pairs: ≥ `cfg.method.vc.min_covisible_frames` common frames. Student stage:
        `pl_keep_rate` / `pl_precision` at θ = `cfg.method.pl.threshold` (from the `teacher_logits` its eval step
        returns). `visibility_min_fraction` and `multi_label_scores` keep their defaults (no config field).
        """
        if stage not in ("teacher", "student"):
            raise ValueError(f"EvalAccumulator.from_config: stage must be 'teacher' or 'student', got {stage!r}")
        student = stage == "student"
        return cls(cfg.data.num_classes, multi_label=cfg.data.multi_label, class_names=class_names,
                   visibility_threshold=(cfg.method.vc.score_threshold if student
                                         else cfg.teacher.view_score_threshold),
                   min_covisible_frames=cfg.method.vc.min_covisible_frames,
                   pseudo_label_threshold=cfg.method.pl.threshold if student else None)

    # ---------------------------------------------------------------------------------------------- streaming
    def reset(self) -> None:
        """Forget every added batch."""
        self._parts: dict[str, list[np.ndarray]] = {}
        self._keys: frozenset[str] | None = None

    @property
    def num_examples(self) -> int:
        """Valid samples added so far."""
        return int(sum(p.shape[0] for p in self._parts.get("logits", [])))

    def add(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        """Add one batch.

        outputs: `logits [B,C]`, `view_logits [B,V,C]`; optional `frame_logits [B,V,L,C]`, `teacher_logits [B,C]`.
        batch: `label [B]` int (or `labels [B,C]` multi-hot), `view_mask [B,V]` bool; optional `human_score
            [B,V,T]`, `frame_labels [B,T]` int (−1 background) or `[B,T,C]`, `valid [B]` bool (rows that are
            False — padding of a partial last batch — are ignored entirely).
        The optional keys must be present in every batch or in none.
        """
        self._append(self._prepare(outputs, batch), "add")

    def merge(self, other: "EvalAccumulator") -> None:
        """Add every sample of `other` (e.g. another host's accumulator over its shard) to this one."""
        columns = other.columns()
        if columns:
            self._append(columns, "merge")

    def columns(self) -> dict[str, np.ndarray]:
        """Every added sample as per-sample columns (`{}` before the first batch)."""
        return {key: np.concatenate(parts) for key, parts in self._parts.items()}

    def _append(self, columns: dict[str, np.ndarray], where: str) -> None:
        """Append per-sample columns after checking they match what was added before."""
        keys = frozenset(columns)
        if self._keys is not None and keys != self._keys:
            raise ValueError(f"EvalAccumulator.{where}: this batch yields {sorted(keys)} but earlier batches yielded "
                             f"{sorted(self._keys)}; optional keys must be given in every batch or in none")
        for key, value in columns.items():
            if self._parts.get(key) and self._parts[key][0].shape[1:] != value.shape[1:]:
                raise ValueError(f"EvalAccumulator.{where}: {key} has per-sample shape {value.shape[1:]} here but "
                                 f"{self._parts[key][0].shape[1:]} in earlier batches")
            self._parts.setdefault(key, []).append(value)
        self._keys = keys

    def _prepare(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Validate one batch and reduce it to per-sample columns (valid rows only)."""
        c = self.num_classes
        logits = _as_array(outputs, "logits", "outputs", np.float32)
        _check_shape("outputs['logits']", logits, "[B,C]", (None, c))
        b = logits.shape[0]
        view_logits = _as_array(outputs, "view_logits", "outputs", np.float32)
        _check_shape("outputs['view_logits']", view_logits, "[B,V,C]", (b, None, c))
        v = view_logits.shape[1]
        view_mask = _as_array(batch, "view_mask", "batch").astype(bool)
        _check_shape("batch['view_mask']", view_mask, "[B,V]", (b, v))
        if np.isnan(logits).any() or np.isnan(view_logits).any():
            raise ValueError("EvalAccumulator.add: outputs['logits'] or outputs['view_logits'] contain NaN")

        cols: dict[str, np.ndarray] = {"logits": logits, "view_logits": view_logits, "view_mask": view_mask}
        cols.update(_sequence_targets(batch, b, c, self.multi_label))
        if "human_score" in batch:
            score = np.asarray(batch["human_score"], np.float32)
            _check_shape("batch['human_score']", score, "[B,V,T]", (b, v, None))
            fraction = views.visible_fraction(score, view_mask, self.visibility_threshold)
            cols["visible"] = view_mask & (fraction >= self.visibility_min_fraction)
            pairs = views.covisible_pairs(score, view_mask, self.visibility_threshold, self.min_covisible_frames)
            cols["covisible_pairs"] = pairs.sum(axis=(1, 2))
        if outputs.get("teacher_logits") is not None:
            teacher = np.asarray(outputs["teacher_logits"], np.float32)
            _check_shape("outputs['teacher_logits']", teacher, "[B,C]", (b, c))
            cols["teacher_pred"] = teacher.argmax(-1)
            cols["teacher_conf"] = _softmax(teacher).max(-1)
        if outputs.get("frame_logits") is not None and batch.get("frame_labels") is not None:
            frame_logits = np.asarray(outputs["frame_logits"], np.float32)
            _check_shape("outputs['frame_logits']", frame_logits, "[B,V,L,C]", (b, v, None, c))
            cols["frame_scores"] = views.fuse_frame_logits(frame_logits, view_mask)
            cols["frame_targets"] = _frame_targets(np.asarray(batch["frame_labels"]), b, c, frame_logits.shape[2])

        if "valid" in batch:
            valid = np.asarray(batch["valid"]).astype(bool)
            _check_shape("batch['valid']", valid, "[B]", (b,))
            cols = {key: value[valid] for key, value in cols.items()}
        return cols

    # ------------------------------------------------------------------------------------------------ results
    def _columns(self) -> dict[str, np.ndarray]:
        return {key: np.concatenate(parts, axis=0) for key, parts in self._parts.items()}

    def result(self) -> dict[str, Any]:
        """The metrics (see the module docstring) as plain floats / ints / lists / None: JSON-serialisable."""
        if self.num_examples == 0:
            raise ValueError("EvalAccumulator.result: no examples (nothing added, or every row had valid=False)")
        cols = self._columns()
        out: dict[str, Any] = {}
        if self.multi_label:
            out.update(self._multi_label_metrics(cols))
        else:
            out.update(self._single_label_metrics(cols))
        if "frame_scores" in cols:
            scores = cols["frame_scores"].reshape(-1, self.num_classes)
            out["map_frame"] = mean_average_precision(self._rank_scores(scores),
                                                      cols["frame_targets"].reshape(-1, self.num_classes))
        out.update(self._diagnostics(cols))
        out["num_examples"] = self.num_examples
        if self.class_names is not None:
            out["class_names"] = list(self.class_names)
        return out

    def _single_label_metrics(self, cols: dict[str, np.ndarray]) -> dict[str, Any]:
        label, logits = cols["label"], cols["logits"]
        ranked = np.argsort(-logits, axis=1, kind="stable")
        confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        np.add.at(confusion, (label, ranked[:, 0]), 1)
        out = {
            "top1": _percent((ranked[:, 0] == label).sum(), label.size),
            "top5": _percent((ranked[:, :5] == label[:, None]).any(1).sum(), label.size),
            "confusion": confusion.tolist(),
        }
        view_correct = cols["view_logits"].argmax(-1) == label[:, None]  # [N,V]
        out.update(self._per_view("top1", cols, lambda m, v: _percent(view_correct[m[:, v], v].sum(), m[:, v].sum())))
        if "visible" in cols:
            seen_by = cols["visible"].sum(1)  # [N]: how many views see the person
            correct = ranked[:, 0] == label
            counts = [int((seen_by == n).sum()) for n in range(cols["visible"].shape[1] + 1)]
            out["clips_by_visible_views"] = counts
            out["top1_by_visible_views"] = [_percent(correct[seen_by == n].sum(), count)
                                            for n, count in enumerate(counts)]
        return out

    def _multi_label_metrics(self, cols: dict[str, np.ndarray]) -> dict[str, Any]:
        labels, scores = cols["labels"], self._rank_scores(cols["logits"])
        view_scores = self._rank_scores(cols["view_logits"])
        out = {"map_class": mean_average_precision(scores, labels, axis=0),
               "map_sample": mean_average_precision(scores, labels, axis=1)}

        def view_map(mask, v):
            rows = mask[:, v]
            return mean_average_precision(view_scores[rows, v], labels[rows]) if rows.any() else None

        out.update(self._per_view("map_class", cols, view_map))
        return out

    def _per_view(self, name: str, cols: dict[str, np.ndarray], metric) -> dict[str, Any]:
        """`per_view_<name>`, `mean_view_<name>` (+ `_visible` variants when visibility is known).

        metric(mask [N,V] bool, v) -> float | None evaluates view v over the rows where mask[:, v].
        """
        out = {}
        masks = {"": cols["view_mask"]}
        if "visible" in cols:
            masks["_visible"] = cols["visible"]
        for suffix, mask in masks.items():
            values = [metric(mask, v) for v in range(mask.shape[1])]
            out[f"per_view_{name}{suffix}"] = values
            out[f"mean_view_{name}{suffix}"] = _mean_defined(values)
        return out

    def _rank_scores(self, logits: np.ndarray) -> np.ndarray:
        """The scores AP ranks (multi-label): the logits themselves (≡ sigmoid) or softmax over classes."""
        return _softmax(logits) if self.multi_label_scores == "softmax" and self.multi_label else logits

    def _diagnostics(self, cols: dict[str, np.ndarray]) -> dict[str, Any]:
        out = {}
        if "teacher_pred" in cols:
            student = cols["logits"].argmax(-1)
            out["agreement"] = _percent((student == cols["teacher_pred"]).sum(), student.size)
            if self.pseudo_label_threshold is not None and not self.multi_label:
                kept = cols["teacher_conf"] >= self.pseudo_label_threshold
                out["pl_keep_rate"] = _percent(kept.sum(), kept.size)
                out["pl_precision"] = _percent((cols["teacher_pred"][kept] == cols["label"][kept]).sum(), kept.sum())
        if "covisible_pairs" in cols:
            out["mean_covisible_pairs"] = float(cols["covisible_pairs"].mean())
        return out
