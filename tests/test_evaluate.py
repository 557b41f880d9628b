"""Host-side evaluation (train/metrics.py, train/report.py) against hand-computed values: accuracies with absent
and invisible views, padding rows, streaming, average precision with ties and skipped classes, frame mAP with
resampling, confusion matrix, thresholds from the run config, tables and plots, JSON round trip."""
import json
import logging
import pathlib
import sys

import numpy as np
import pytest

from vicokd_jax import config
from vicokd_jax.train import metrics as E
from vicokd_jax.train import report as R

RNG = np.random.default_rng(0)


def strict_json(result):
    """The result survives a strict JSON round trip (no NaN / numpy scalars)."""
    return json.loads(json.dumps(result, allow_nan=False))


def one_hot_logits(pred, num_classes, scale=3.0):
    return scale * np.eye(num_classes, dtype=np.float32)[np.asarray(pred)]


# ------------------------------------------------------------------------------------------------ single-label
C, V, T = 6, 3, 4
X = 0  # placeholder in absent views' predictions, replaced below by the true label (must be ignored)


def single_label_case():
    """4 real samples + 1 padding row; every expected value below is worked out by hand in the comments."""
    label = np.array([0, 5, 4, 1, 5])
    ramp = np.array([5, 4, 3, 2, 1, 0], np.float32)
    logits = np.stack([ramp, ramp, ramp, one_hot_logits(1, C), one_hot_logits(5, C)])
    # top1: s0 yes, s1 no (label ranked 6th), s2 no (ranked 5th -> top5 yes), s3 yes -> 50 / 75; padding s4 "yes"
    view_mask = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 1, 1], [1, 1, 1]], bool)
    view_pred = np.array([[0, 1, X], [3, X, 5], [4, 4, 0], [X, 1, 2], [5, 5, 5]])
    view_pred = np.where(view_mask, view_pred, label[:, None])  # absent views predict the truth: must not count
    # present: v0 {s0 ok, s1 no, s2 ok} = 66.67; v1 {s0 no, s2 ok, s3 ok} = 66.67; v2 {s1 ok, s2 no, s3 no} = 33.33
    human_score = np.array([
        [[.9, .9, 0, 0], [.9, 0, 0, 0], [1, 1, 1, 1]],      # v0 visible (2/4), v1 not (1/4), v2 absent
        [[0, 0, 0, .6], [0, 0, 0, 0], [.4, .4, .4, .4]],    # v0 not (1/4), v2 not (below threshold)
        [[.5, .5, .5, .5], [0, 0, 0, 0], [1, 1, 0, 0]],     # v0 visible (≥ is inclusive), v1 not, v2 visible
        [[1, 1, 1, 1], [.7, .7, .7, 0], [0, 0, .8, .8]],    # v0 absent, v1 visible, v2 visible
        [[1, 1, 1, 1]] * 3,                                 # padding
    ], np.float32)
    # visible: v0 {s0 ok, s2 ok} = 100; v1 {s3 ok} = 100; v2 {s2 no, s3 no} = 0
    # co-visible pairs (frame rule, ≥1 common frame): s0 (0,1) via frame 0 -> 1; s1 -> 0; s2 (0,2) -> 1;
    # s3 (1,2) via frame 2 -> 1; mean 0.75 (the padding row would add 3)
    teacher = np.stack([one_hot_logits(0, C, 10), one_hot_logits(0, C, 10),
                        np.array([0, .1, 0, 0, 0, 0], np.float32), one_hot_logits(1, C, 10),
                        one_hot_logits(2, C, 10)])
    # teacher argmax [0,0,1,1] vs student [0,0,0,1] -> 75; θ=0.9 keeps s0, s1, s3 (75), right on s0, s3 (66.67)
    outputs = {"logits": logits, "view_logits": one_hot_logits(view_pred, C), "teacher_logits": teacher}
    batch = {"label": label, "view_mask": view_mask, "human_score": human_score,
             "valid": np.array([1, 1, 1, 1, 0], bool)}
    return outputs, batch


def test_single_label_hand_values_with_absent_invisible_views_and_padding():
    acc = E.EvalAccumulator(C, visibility_threshold=0.5, visibility_min_fraction=0.5, pseudo_label_threshold=0.9,
                            class_names=[f"c{i}" for i in range(C)])
    acc.add(*single_label_case())
    r = strict_json(acc.result())
    assert r["num_examples"] == 4
    assert r["top1"] == pytest.approx(50.0)
    assert r["top5"] == pytest.approx(75.0)
    assert r["per_view_top1"] == pytest.approx([200 / 3, 200 / 3, 100 / 3])
    assert r["mean_view_top1"] == pytest.approx(500 / 9)
    assert r["per_view_top1_visible"] == pytest.approx([100.0, 100.0, 0.0])
    assert r["mean_view_top1_visible"] == pytest.approx(200 / 3)
    # seen by: s1 no view (wrong), s0 one (right), s2 and s3 two (one right); none by all three
    assert r["clips_by_visible_views"] == [1, 1, 2, 0]
    assert r["top1_by_visible_views"] == [0.0, 100.0, 50.0, None]
    assert r["mean_covisible_pairs"] == pytest.approx(0.75)
    assert r["agreement"] == pytest.approx(75.0)
    assert r["pl_keep_rate"] == pytest.approx(75.0)
    assert r["pl_precision"] == pytest.approx(200 / 3)
    assert r["class_names"] == [f"c{i}" for i in range(C)]
    expected = np.zeros((C, C), int)
    for true, pred in [(0, 0), (5, 0), (4, 0), (1, 1)]:
        expected[true, pred] += 1
    assert r["confusion"] == expected.tolist()  # rows = true class


def test_visibility_defaults_and_view_never_present_is_none():
    outputs, batch = single_label_case()
    batch["view_mask"][:, 2] = False
    acc = E.EvalAccumulator(C)  # default min fraction 0.25: one detected frame of four is enough
    acc.add(outputs, batch)
    r = strict_json(acc.result())
    assert r["per_view_top1"][2] is None and r["per_view_top1_visible"][2] is None
    # v0 visible now also s1 (1/4 ≥ 0.25) -> {s0 ok, s1 no, s2 ok}; v1 also s0 -> {s0 no, s3 ok}
    assert r["per_view_top1_visible"][:2] == pytest.approx([200 / 3, 50.0])
    assert r["mean_view_top1"] == pytest.approx(200 / 3)  # mean over the views that have a value


def run_config(vc_threshold=0.5, min_covisible_frames=1, pl_threshold=0.9, teacher_threshold=0.5):
    cfg = config.default_config("vicokd_semi")
    cfg.data.num_classes = C
    cfg.method.vc.score_threshold = vc_threshold
    cfg.method.vc.min_covisible_frames = min_covisible_frames
    cfg.method.pl.threshold = pl_threshold
    cfg.teacher.view_score_threshold = teacher_threshold
    return cfg


def from_config_result(cfg, stage):
    acc = E.EvalAccumulator.from_config(cfg, stage, class_names=[f"c{i}" for i in range(C)])
    acc.add(*single_label_case())
    return strict_json(acc.result())


def test_from_config_takes_the_visibility_threshold_and_covisible_frames_of_the_objective():
    # threshold 0.5 (the default), min fraction 0.25: visible v0 {s0 ok, s1 no, s2 ok}, v1 {s0 no, s3 ok},
    # v2 {s2 no, s3 no}; co-visible pairs as in single_label_case: mean 0.75
    r = from_config_result(run_config(), "student")
    assert r["per_view_top1_visible"] == pytest.approx([200 / 3, 50.0, 0.0])
    assert r["mean_covisible_pairs"] == pytest.approx(0.75)
    assert r["per_view_top1"] == pytest.approx([200 / 3, 200 / 3, 100 / 3])  # visibility never changes these
    # vc.score_threshold 0.75: detected s0 v0 {f0,f1}, v1 {f0}; s1 none; s2 v2 {f0,f1}; s3 v2 {f2,f3}
    # (s2 v0 at .5, s3 v1 at .7 and s1 v0 at .6 drop out) -> visible v0 {s0 ok}, v1 {s0 no}, v2 {s2 no, s3 no};
    # co-visible pairs: only s0 (0,1) via f0 -> mean 1/4
    r = from_config_result(run_config(vc_threshold=0.75), "student")
    assert r["per_view_top1_visible"] == pytest.approx([100.0, 0.0, 0.0])
    assert r["mean_view_top1_visible"] == pytest.approx(100 / 3)
    assert r["mean_covisible_pairs"] == pytest.approx(0.25)
    assert r["per_view_top1"] == pytest.approx([200 / 3, 200 / 3, 100 / 3])
    # min_covisible_frames 2 at 0.5: s0 (0,1) share f0 only; s2 (0,2) share f0, f1; s3 (1,2) share f2 only -> 1/4
    r = from_config_result(run_config(min_covisible_frames=2), "student")
    assert r["mean_covisible_pairs"] == pytest.approx(0.25)
    # the teacher stage reads teacher.view_score_threshold, not the student's vc.score_threshold
    r = from_config_result(run_config(vc_threshold=0.5, teacher_threshold=0.75), "teacher")
    assert r["per_view_top1_visible"] == pytest.approx([100.0, 0.0, 0.0])
    assert r["mean_covisible_pairs"] == pytest.approx(0.25)


def test_from_config_reports_pseudo_label_diagnostics_at_the_method_threshold():
    # teacher max softmax: s0, s1, s3 e^10 / (e^10 + 5) ≈ 0.9998; s2 e^.1 / (e^.1 + 5) ≈ 0.181;
    # teacher argmax [0, 0, 1, 1] against labels [0, 5, 4, 1]
    r = from_config_result(run_config(pl_threshold=0.9), "student")
    assert r["pl_keep_rate"] == pytest.approx(75.0)  # s0, s1, s3
    assert r["pl_precision"] == pytest.approx(200 / 3)  # right on s0, s3
    r = from_config_result(run_config(pl_threshold=0.15), "student")
    assert r["pl_keep_rate"] == pytest.approx(100.0)  # s2 kept too
    assert r["pl_precision"] == pytest.approx(50.0)  # right on s0, s3 of 4
    r = from_config_result(run_config(pl_threshold=0.15), "teacher")
    assert "pl_keep_rate" not in r and "pl_precision" not in r and r["agreement"] == pytest.approx(75.0)
    assert r["class_names"] == [f"c{i}" for i in range(C)]


def test_from_config_classes_and_stage_errors():
    cfg = run_config()
    cfg.data.multi_label = True
    acc = E.EvalAccumulator.from_config(cfg, "student")
    assert acc.multi_label and acc.num_classes == C and acc.pseudo_label_threshold == 0.9
    with pytest.raises(ValueError, match="stage must be 'teacher' or 'student', got 'tacher'"):
        E.EvalAccumulator.from_config(cfg, "tacher")


def test_covisible_pairs_match_the_view_consistency_loss_mask():
    from vicokd_jax import losses

    _, batch = single_label_case()
    score, mask = batch["human_score"], batch["view_mask"]
    acc = E.EvalAccumulator(C)
    acc.add({"logits": np.zeros((5, C)), "view_logits": np.zeros((5, V, C))}, {**batch, "valid": np.ones(5, bool)})
    _, aux = losses.view_consistency(np.zeros((5, V, C), np.float32), score, mask, score_threshold=0.5)
    assert acc.result()["mean_covisible_pairs"] == pytest.approx(float(aux["pairs_per_sample"]))


def test_top5_with_fewer_than_five_classes_is_100_and_errors_are_clear():
    acc = E.EvalAccumulator(3)
    acc.add({"logits": np.array([[0., 1., 2.]]), "view_logits": np.zeros((1, 2, 3))},
            {"label": np.array([0]), "view_mask": np.ones((1, 2), bool)})
    r = acc.result()
    assert r["top1"] == 0.0 and r["top5"] == 100.0
    assert "mean_covisible_pairs" not in r and "per_view_top1_visible" not in r  # no human_score given

    with pytest.raises(ValueError, match=r"batch\['view_mask'\] has shape \(1, 3\), expected \[B,V\]=\(1, 2\)"):
        acc.add({"logits": np.zeros((1, 3)), "view_logits": np.zeros((1, 2, 3))},
                {"label": np.array([0]), "view_mask": np.ones((1, 3), bool)})
    with pytest.raises(ValueError, match=r"outputs\['logits'\] has shape \(1, 4\), expected \[B,C\]=\('\?', 3\)"):
        acc.add({"logits": np.zeros((1, 4)), "view_logits": np.zeros((1, 2, 4))},
                {"label": np.array([0]), "view_mask": np.ones((1, 2), bool)})
    with pytest.raises(KeyError, match=r"outputs\['view_logits'\] is required"):
        acc.add({"logits": np.zeros((1, 3))}, {"label": np.array([0]), "view_mask": np.ones((1, 2), bool)})
    with pytest.raises(ValueError, match=r"label'\] values must lie in \[0, 3\)"):
        acc.add({"logits": np.zeros((1, 3)), "view_logits": np.zeros((1, 2, 3))},
                {"label": np.array([3]), "view_mask": np.ones((1, 2), bool)})
    with pytest.raises(ValueError, match="in every batch or in none"):
        acc.add({"logits": np.zeros((1, 3)), "view_logits": np.zeros((1, 2, 3)), "teacher_logits": np.zeros((1, 3))},
                {"label": np.array([0]), "view_mask": np.ones((1, 2), bool)})
    with pytest.raises(ValueError, match="no examples"):
        E.EvalAccumulator(3).result()


# ---------------------------------------------------------------------------------------- average precision
def test_average_precision_hand_values_and_ties():
    # ranks 1 (+), 2 (-), 3 (+): (1/1 + 2/3) / 2
    assert E.average_precision([.9, .8, .7, .6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # the tied pair (.5: one +, one -) enters as one threshold: P=1/3 at R=.5, then P=2/4 at R=1 -> 5/12;
    # a sort that puts the tied positive first would give 1/2
    assert E.average_precision([.9, .5, .5, .1], [0, 1, 0, 1]) == pytest.approx(5 / 12)
    assert E.average_precision([.1, .5, .5, .9], [1, 0, 1, 0]) == pytest.approx(5 / 12)  # order-independent
    assert E.average_precision([.3, .3, .3], [1, 0, 0]) == pytest.approx(1 / 3)
    assert np.isnan(E.average_precision([.3, .2], [0, 0]))


def test_average_precision_without_ties_is_mean_precision_at_positives():
    """The MultiSensor-Home (MultiTSF) formula: Σ_{positives} precision@rank / #positives."""
    for _ in range(20):
        scores = RNG.permutation(50).astype(float)  # distinct
        targets = RNG.random(50) < 0.3
        targets[0] = True
        ranked = targets[np.argsort(-scores)]
        reference = np.sum((np.cumsum(ranked) / np.arange(1, 51))[ranked]) / ranked.sum()
        assert E.average_precision(scores, targets) == pytest.approx(reference)


SCORES = np.array([[.9, .9, .3], [.8, .5, .2], [.7, .5, .1], [.6, .1, .7], [0., 0., 0.]], np.float32)
TARGETS = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32)
# class-wise: c0 [.9+,.8-,.7+,.6-,0-] -> 5/6; c1 [.9-,.5+,.5-,.1+,0-] -> 5/12 (ties); c2 no positive -> skipped
MAP_CLASS = 100 * (5 / 6 + 5 / 12) / 2
# sample-wise: s0 tie .9/.9 -> 1/2; s1 -> 1/2; s2 -> 1; s3 positive ranked 3rd -> 1/3; s4 no positive -> skipped
MAP_SAMPLE = 100 * (1 / 2 + 1 / 2 + 1 + 1 / 3) / 4


def test_mean_average_precision_class_and_sample_wise():
    assert E.mean_average_precision(SCORES, TARGETS, axis=0) == pytest.approx(MAP_CLASS)
    assert E.mean_average_precision(SCORES, TARGETS, axis=1) == pytest.approx(MAP_SAMPLE)
    assert E.mean_average_precision(SCORES, np.zeros_like(TARGETS)) is None


def test_multi_label_accumulator_hand_values():
    n = SCORES.shape[0]
    view_mask = np.array([[1, 1], [1, 1], [1, 0], [1, 0], [1, 0]], bool)
    view_logits = np.stack([SCORES, np.where(view_mask[:, 1:], SCORES, 5.0)], axis=1)  # absent: high, ignored
    # view 1 over s0, s1: c0 [.9+, .8-] -> 1; c1 [.9-, .5+] -> 1/2; c2 none -> 75
    acc = E.EvalAccumulator(3, multi_label=True)
    acc.add({"logits": SCORES, "view_logits": view_logits}, {"labels": TARGETS, "view_mask": view_mask})
    r = strict_json(acc.result())
    assert r["map_class"] == pytest.approx(MAP_CLASS)
    assert r["map_sample"] == pytest.approx(MAP_SAMPLE)
    assert r["per_view_map_class"] == pytest.approx([MAP_CLASS, 75.0])
    assert r["mean_view_map_class"] == pytest.approx((MAP_CLASS + 75.0) / 2)
    assert r["num_examples"] == n and "top1" not in r and "map_frame" not in r

    # the MultiTSF convention (softmax probabilities) changes class-wise but not sample-wise AP
    soft = E.EvalAccumulator(3, multi_label=True, multi_label_scores="softmax")
    logits = np.array([[4., 0., 0.], [0., -3., -3.], [1., 1., 1.]], np.float32)
    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    for a in (acc, soft):
        a.reset()
        a.add({"logits": logits, "view_logits": logits[:, None]},
              {"labels": labels, "view_mask": np.ones((3, 1), bool)})
    assert acc.result()["map_sample"] == pytest.approx(soft.result()["map_sample"])
    # raw logits rank s2 (1) above s1 (0) for class 0; softmax ranks s1 (~.91) above s2 (1/3)
    assert acc.result()["map_class"] != pytest.approx(soft.result()["map_class"])


# ------------------------------------------------------------------------------------------------- frame mAP
def frame_case(multi_hot=False):
    """B=2, V=2, L=2 model frames, T=4 label frames, C=2."""
    frame_labels = np.array([[0, 0, 1, -1], [-1, 1, 1, 0]])
    # nearest-frame resampling to L=2 takes label frames [1, 3]: s0 -> [0, bg], s1 -> [1, 0]
    s0 = np.array([[[.8, -5], [-5, .9]], [[-5, .2], [.3, -5]]], np.float32)  # max over views: [[.8,.2],[.3,.9]]
    s1 = np.array([[[.6, .5], [.4, .1]], [[9, 9], [9, 9]]], np.float32)  # view 1 absent
    # fused frames (s0l0, s0l1, s1l0, s1l1): c0 scores [.8,.3,.6,.4] targets [1,0,0,1] -> 5/6;
    # c1 scores [.2,.9,.5,.1] targets [0,0,1,0] -> 1/2
    if multi_hot:
        frame_labels = (frame_labels[..., None] == np.arange(2)).astype(np.float32)
    outputs = {"logits": np.zeros((2, 2)), "view_logits": np.zeros((2, 2, 2)), "frame_logits": np.stack([s0, s1])}
    batch = {"label": np.array([0, 1]), "view_mask": np.array([[1, 1], [1, 0]], bool), "frame_labels": frame_labels}
    return outputs, batch


@pytest.mark.parametrize("multi_hot", [False, True])
def test_frame_map_fuses_present_views_by_max_and_resamples_labels(multi_hot):
    for multi_label in (False, True):
        outputs, batch = frame_case(multi_hot)
        if multi_label:
            batch["labels"] = np.eye(2, dtype=np.float32)[batch.pop("label")]
        acc = E.EvalAccumulator(2, multi_label=multi_label)
        acc.add(outputs, batch)
        assert strict_json(acc.result())["map_frame"] == pytest.approx(100 * (5 / 6 + 1 / 2) / 2)


def test_frame_label_errors_name_the_key():
    outputs, batch = frame_case()
    batch["frame_labels"] = np.full((2, 4), 2)
    with pytest.raises(ValueError, match=r"frame_labels'\] values must lie in \[-1, 2\)"):
        E.EvalAccumulator(2).add(outputs, batch)
    outputs, batch = frame_case()
    outputs["frame_logits"] = outputs["frame_logits"][:, :1]
    with pytest.raises(ValueError, match=r"outputs\['frame_logits'\] has shape \(2, 1, 2, 2\)"):
        E.EvalAccumulator(2).add(outputs, batch)


# ------------------------------------------------------------------------------------------------- streaming
def random_batch(b, c, v=3, t=6, length=3, multi_label=False):
    outputs = {"logits": RNG.normal(size=(b, c)).astype(np.float32),
               "view_logits": RNG.normal(size=(b, v, c)).astype(np.float32),
               "frame_logits": RNG.normal(size=(b, v, length, c)).astype(np.float32),
               "teacher_logits": RNG.normal(size=(b, c)).astype(np.float32)}
    batch = {"view_mask": RNG.random((b, v)) < 0.7, "human_score": RNG.random((b, v, t)).astype(np.float32),
             "frame_labels": RNG.integers(-1, c, size=(b, t)), "valid": RNG.random(b) < 0.8}
    if multi_label:
        batch["labels"] = (RNG.random((b, c)) < 0.3).astype(np.float32)
    else:
        batch["label"] = RNG.integers(0, c, size=b)
    return outputs, batch


def concat(parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@pytest.mark.parametrize("multi_label", [False, True])
def test_streaming_equals_one_shot_and_merge(multi_label):
    batches = [random_batch(b, 7, multi_label=multi_label) for b in (5, 3, 4)]
    streamed = E.EvalAccumulator(7, multi_label=multi_label, pseudo_label_threshold=0.2)
    for outputs, batch in batches:
        streamed.add(outputs, batch)
    once = E.EvalAccumulator(7, multi_label=multi_label, pseudo_label_threshold=0.2)
    once.add(concat([o for o, _ in batches]), concat([b for _, b in batches]))
    merged = E.EvalAccumulator(7, multi_label=multi_label, pseudo_label_threshold=0.2)
    merged.add(*batches[0])
    other = E.EvalAccumulator(7, multi_label=multi_label, pseudo_label_threshold=0.2)
    for outputs, batch in batches[1:]:
        other.add(outputs, batch)
    merged.merge(other)

    expected = strict_json(once.result())
    assert expected["num_examples"] == sum(int(b["valid"].sum()) for _, b in batches)
    assert strict_json(streamed.result()) == expected
    assert strict_json(merged.result()) == expected
    assert ("top1" in expected) != multi_label and "map_frame" in expected and "agreement" in expected


def test_all_padding_batch_is_ignored():
    outputs, batch = random_batch(4, 5)
    acc = E.EvalAccumulator(5)
    acc.add(outputs, batch)
    reference = acc.result()
    padding_out, padding = random_batch(3, 5)
    padding["valid"][:] = False
    acc.add(padding_out, padding)
    assert acc.result() == reference


# ---------------------------------------------------------------------------------------------- table, plots
def test_format_table_lists_headline_and_per_view_rows():
    acc = E.EvalAccumulator(C, visibility_min_fraction=0.5)
    outputs, batch = single_label_case()
    batch["view_mask"][:, 2] = False
    acc.add(outputs, batch)
    table = R.format_table(acc.result())
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "value"]
    assert any(line.split() == ["top1", "50.00"] for line in lines)
    assert any(line.split() == ["top5", "75.00"] for line in lines)
    assert any(line.split() == ["num_examples", "4"] for line in lines)
    header = next(line for line in lines if line.startswith("view"))
    assert header.split() == ["view", "top1", "top1_visible"]
    assert lines[-1].split()[0] == "mean" and lines[-2].split() == ["2", "-", "-"]  # view 2 never present
    assert "map_class" in R.format_table({"map_class": 12.5, "per_view_map_class": [None, 3.0]})


def history():
    return [{"step": s, "loss/total": 1.0 / s, "loss/sup": 0.5 / s, "lr": 1e-3,
             **({"eval/top1": 10.0 * s, "eval/per_view_top1": [1.0, 2.0]} if s % 2 == 0 else {})}
            for s in range(1, 7)]


def test_plots_write_png_files(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib not installed: plots are optional")
    confusion = np.array(single_label_case()[0]["logits"] > 4, int)[:, :4][:4]  # any small square matrix
    assert R.plot_confusion(confusion, ["a", "b", "c", "d"], tmp_path / "sub" / "confusion.png")
    assert R.plot_curves(history(), tmp_path / "curves.png")
    assert R.plot_curves(history(), tmp_path / "eval.png", keys=["eval/top1"])
    for name in ("sub/confusion.png", "curves.png", "eval.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"\['eval/top5'\]"):
        R.plot_curves(history(), tmp_path / "x.png", keys=["eval/top5"])
    with pytest.raises(ValueError, match="class_names"):
        R.plot_confusion(confusion, ["a"], tmp_path / "x.png")


def test_stage_plots_write_what_the_result_and_history_have(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib not installed: plots are optional")
    result = {"top1": 50.0, "confusion": np.eye(3, dtype=int).tolist()}
    plots = R.stage_plots(result, history(), ["a", "b", "c"], tmp_path, ("loss/total", "loss/vc"))
    assert plots == {"confusion": str(tmp_path / "confusion.png"), "curves": str(tmp_path / "curves.png")}
    assert all(pathlib.Path(p).read_bytes()[:4] == b"\x89PNG" for p in plots.values())
    plots = R.stage_plots({"map_class": 1.0}, history(), None, tmp_path / "ml", ("loss/none",))  # no confusion
    assert plots == {"curves": str(tmp_path / "ml" / "curves.png")}  # no listed key: every scalar key drawn


def test_plot_series_groups_by_family_and_skips_non_scalars():
    families = R.curve_series(history())
    assert sorted(families) == ["eval", "loss", "lr"]
    assert sorted(families["loss"]) == ["loss/sup", "loss/total"]
    steps, values = families["eval"]["eval/top1"]
    assert steps == (2, 4, 6) and values == (20.0, 40.0, 60.0)


def test_plots_degrade_without_matplotlib(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    with caplog.at_level(logging.WARNING, logger=R.__name__):
        assert R.plot_confusion(np.eye(2, dtype=int), None, tmp_path / "c.png") is False
        assert R.plot_curves(history(), tmp_path / "h.png") is False
    assert not list(tmp_path.iterdir())
    assert "matplotlib is not installed" in caplog.text
