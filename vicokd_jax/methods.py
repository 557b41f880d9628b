"""Method presets (METHOD.md, "Methods") and the student objective `total_loss` that the train step calls.

    L = λ_sup·L_sup + λ_view·L_view + λ_kd·L_kd + λ_dkd·L_dkd + λ_feat·L_feat + λ_pl·L_pl + λ_vc·L_vc
        + λ_mv·L_mv + λ_con·L_con

`L_view` is ours, not METHOD.md's: every view head against the sequence label on labeled samples, weighted by
the share of frames where that view sees the person (`losses.view_supervision`). Without it the RGB encoder gets
its gradient only through view fusion, and with the action visible in one or two of four views it never starts
learning (on SynthMV the student stayed at chance). Likewise `L_kd` adds, with `kd.view_weight`, the KL from the
teacher's view logits to the student's, weighted the same way, on all samples. Set `weights.view=0` and
`kd.view_weight=0` for METHOD.md's objective exactly.

| method        | terms                       | student                                 |
|---------------|-----------------------------|-----------------------------------------|
| student_only  | sup (+ view on all presets) | shared weights, no adapter              |
| kd            | sup + kd                    |                                         |
| dkd           | sup + dkd                   |                                         |
| fitnet        | sup + kd + feat (hint)      | FitNets hint regressor                  |
| mskd          | sup + kd + pl + mv + con    | one encoder per view                    |
| vicokd        | sup + kd + feat + vc        | cross-modal adapter                     |
| vicokd_semi   | vicokd + pl                 | cross-modal adapter                     |

A term is computed only when its weight is non-zero (the set is static under jit). ViCoKD ablations:
`method_config("vicokd", ablation="no_adapter" | "no_vc" | "vc_no_mask" | "vc_no_confidence" | "vc_kl" | "vc_x10")`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from vicokd_jax import losses
from vicokd_jax.views import fuse_frame_logits, resample_scores

TERMS = ("sup", "view", "kd", "dkd", "feat", "pl", "vc", "mv", "con")

METHOD_TERMS = {
    "student_only": ("sup", "view"),
    "kd": ("sup", "view", "kd"),
    "dkd": ("sup", "view", "dkd"),
    "fitnet": ("sup", "view", "kd", "feat"),
    "mskd": ("sup", "view", "kd", "pl", "mv", "con"),
    "vicokd": ("sup", "view", "kd", "feat", "vc"),
    "vicokd_semi": ("sup", "view", "kd", "feat", "vc", "pl"),
}
METHODS = tuple(METHOD_TERMS)

# Default weight of each term when a preset switches it on.
_DEFAULT_WEIGHTS = dict(sup=1.0, view=1.0, kd=1.0, dkd=1.0, feat=1.0, pl=1.0, vc=1.0, mv=1.0, con=0.1)

ABLATIONS = {
    "no_adapter": {"weights.feat": 0.0, "student.adapter": False},
    "no_vc": {"weights.vc": 0.0},
    "vc_no_mask": {"vc.use_detection_mask": False},
    "vc_no_confidence": {"vc.confidence_weight": False},
    "vc_kl": {"vc.divergence": "kl"},
    # Not in METHOD.md: L_vc at ten times its weight. On SynthMV, L_vc (a JS in [0, 1]) is ~0.1 against ~12 for
    # L_kd (tau^2-scaled), so this variant tests whether VC is simply too weak to matter (docs/RESULTS.md).
    "vc_x10": {"weights.vc": 10.0},
}


class MethodConfig(ml_collections.ConfigDict):
    """A method's ConfigDict whose `name` and `ablation` select the preset: assigning either (in Python, a
    `--config.method.name=kd` flag or an override) refills every other field from `method_config`, so a run
    labelled "kd" is KD. Fields set afterwards apply on top (`vicokd_jax.config` applies name and ablation
    overrides before the others). Assigning `name` clears the ablation, which belongs to one method."""

    def __setitem__(self, key, value):
        if key in ("name", "ablation") and key in self._fields and not self.__dict__.get("_refilling"):
            name, ablation = (value, "") if key == "name" else (self["name"], value)
            preset = method_config(name, ablation or None)
            object.__setattr__(self, "_refilling", True)
            try:
                _refill(self, preset)
            finally:
                object.__setattr__(self, "_refilling", False)
            return
        super().__setitem__(key, value)


def _refill(target: ml_collections.ConfigDict, source: ml_collections.ConfigDict) -> None:
    for key, value in source.items():
        if isinstance(value, ml_collections.ConfigDict):
            _refill(target[key], value)
        else:
            target[key] = value


def needs_teacher(cfg) -> bool:
    """Whether the objective `cfg` (a method config) reads the teacher's outputs."""
    w = cfg.weights
    return bool(w.kd or w.dkd or w.feat or (w.pl and cfg.pl.source == "teacher"))


def method_config(name: str, ablation: str | None = None) -> MethodConfig:
    """The preset `name` of METHOD.md as a ConfigDict (every weight, temperature and threshold is a field)."""
    if name not in METHOD_TERMS:
        raise ValueError(f"unknown method {name!r}; expected one of {list(METHODS)}")
    terms = METHOD_TERMS[name]
    cfg = MethodConfig(dict(
        name=name,
        ablation=ablation or "",
        weights={t: (_DEFAULT_WEIGHTS[t] if t in terms else 0.0) for t in TERMS},
        # Per-view supervision and view-level KD: weight of a view = share of its frames with human_score >= this.
        view=dict(score_threshold=0.5),
        kd=dict(temperature=4.0, frame_weight=1.0, view_weight=1.0),
        dkd=dict(alpha=1.0, beta=8.0, temperature=4.0),
        # "adapter": cos(W·a, teacher skeleton tokens) (ViCoKD); "hint": MSE to teacher RGB tokens (FitNets).
        feat=dict(kind="hint" if name == "fitnet" else "adapter", score_threshold=0.5),
        # source: "teacher" (MSKD) or "ensemble" (mean of the student's present views' logits).
        pl=dict(threshold=0.9, source="teacher"),
        vc=dict(temperature=1.0, score_threshold=0.5, min_covisible_frames=1, use_detection_mask=True,
                confidence_weight=True, divergence="js", frame_level=False),
        mv=dict(temperature=1.0),
        con=dict(temperature=0.1),
        # Model-side choices the method implies (read by the student builder).
        student=dict(adapter=name in ("vicokd", "vicokd_semi"), hint=name == "fitnet",
                     per_view_weights=name == "mskd"),
    ))
    if ablation:
        if ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {ablation!r}; expected one of {list(ABLATIONS)}")
        if not name.startswith("vicokd"):
            raise ValueError(f"ablation {ablation!r} applies to vicokd / vicokd_semi, not {name!r}")
        for dotted, value in ABLATIONS[ablation].items():
            section, field = dotted.split(".")
            cfg[section][field] = value
    return cfg


def active_terms(cfg) -> tuple[str, ...]:
    return tuple(t for t in TERMS if cfg.weights[t] != 0)


def _need(out: dict, key: str, who: str, cfg, hint: str):
    if key not in out or out[key] is None:
        raise KeyError(f"method {cfg.name!r} needs {who} output {key!r}: {hint}")
    return out[key]


def total_loss(student_out: dict, teacher_out: dict, batch: dict, cfg, missing: tuple[str, ...] = ("skeleton",),
               own: str = "rgb") -> tuple[jax.Array, dict]:
    """The student's objective -> `(loss, metrics)`; metrics hold each active term and diagnostics.

    student_out / teacher_out: the model dicts (`logits [B,C]`, `view_logits [B,V,C]`, `frame_logits [B,V,L,C]`,
    `view_tokens`, `{modality}_tokens`). batch: `label [B]` int (or `labels [B,C]` multi-hot), `labeled [B]` bool,
    `view_mask [B,V]` bool, `human_score [B,V,T]` (and `audio_mask [B,V]` where there are soundtracks).
    missing: the teacher's streams the student lacks (the adapter's L_feat targets); own: the student's modality
    (the FitNets hint's target stream).
    """
    w = cfg.weights
    multi_label = "labels" in batch
    view_mask = batch["view_mask"]
    s_logits = student_out["logits"]
    b = s_logits.shape[0]
    labeled = batch.get("labeled", jnp.ones((b,), bool))
    terms, metrics = {}, {}
    visible = None
    if w.view or (w.kd and cfg.kd.view_weight):
        visible = losses.visible_fraction(batch["human_score"], view_mask, cfg.view.score_threshold)  # [B, V]

    if w.sup:
        if multi_label:
            terms["sup"], _ = losses.sigmoid_bce(s_logits, batch["labels"], labeled)
        else:
            terms["sup"], _ = losses.cross_entropy(s_logits, batch["label"], labeled)
        metrics["sup/labeled_fraction"] = labeled.mean()

    if w.view:
        target = batch["labels"] if multi_label else batch["label"]
        terms["view"], aux = losses.view_supervision(student_out["view_logits"], target,
                                                     visible * labeled[:, None])
        metrics["view/weight"] = aux["count"]

    if w.kd:
        t_logits = _need(teacher_out, "logits", "teacher", cfg, "a teacher forward is required")
        kd = losses.binary_kd if multi_label else losses.kd_kl
        tau = cfg.kd.temperature
        sequence = kd(s_logits, t_logits, tau).mean()
        frames = kd(fuse_frame_logits(student_out["frame_logits"], view_mask),
                    fuse_frame_logits(teacher_out["frame_logits"], view_mask), tau).mean()
        terms["kd"] = sequence + cfg.kd.frame_weight * frames
        metrics["kd/sequence"], metrics["kd/frames"] = sequence, frames
        if cfg.kd.view_weight:
            t_views = _need(teacher_out, "view_logits", "teacher", cfg, "the teacher's view heads")
            views, _ = losses.masked_mean(kd(student_out["view_logits"], t_views, tau), visible)
            terms["kd"] = terms["kd"] + cfg.kd.view_weight * views
            metrics["kd/views"] = views

    if w.dkd:
        if multi_label:
            raise ValueError("DKD is defined for single-label data; method has weights.dkd != 0 with 'labels'")
        t_logits = teacher_out["logits"]
        target = jnp.where(labeled, batch["label"], jnp.argmax(t_logits, -1))
        per_example, aux = losses.dkd(s_logits, t_logits, target, cfg.dkd.alpha, cfg.dkd.beta,
                                      cfg.dkd.temperature)
        terms["dkd"] = per_example.mean()
        metrics["dkd/tckd"], metrics["dkd/nckd"] = aux["tckd"].mean(), aux["nckd"].mean()

    if w.feat:
        if cfg.feat.kind == "adapter":
            # L_feat = mean over the missing streams m of 1 - cos(W_m·a, sg(f_m)) on visible positions.
            pairs = [(_need(student_out, f"{m}_tokens", "student", cfg,
                            "build the student with the adapter (student.adapter=True)"),
                      _need(teacher_out, f"{m}_tokens", "teacher", cfg, f"the teacher's {m} stream"), m)
                     for m in missing]
            align = losses.feature_alignment
        elif cfg.feat.kind == "hint":
            pairs = [(_need(student_out, f"{own}_tokens", "student", cfg,
                            "build the student with the hint regressor (student.hint=True)"),
                      _need(teacher_out, f"{own}_tokens", "teacher", cfg, f"a teacher with the {own} modality"), own)]
            align = losses.fitnet_hint
        else:
            raise ValueError(f"feat.kind must be 'adapter' or 'hint', got {cfg.feat.kind!r}")
        if not pairs:
            raise ValueError("weights.feat != 0 with the adapter, but the teacher has no stream the student lacks")
        length = pairs[0][0].shape[2]
        visible = resample_scores(batch["human_score"], length) >= cfg.feat.score_threshold  # [B, V, L]
        visible = visible & view_mask[:, :, None]
        feat, positions = 0.0, 0
        for student_tokens, teacher_tokens, m in pairs:
            where = visible & batch["audio_mask"][:, :, None] if m == "audio" and "audio_mask" in batch else visible
            term, aux = align(student_tokens, teacher_tokens, where)
            feat, positions = feat + term / len(pairs), positions + aux["count"]
        terms["feat"] = feat
        metrics["feat/positions"] = positions

    if w.pl:
        if multi_label:
            raise ValueError("pseudo-labels are defined for single-label data; weights.pl != 0 with 'labels'")
        if cfg.pl.source == "teacher":
            source = teacher_out["logits"]
        elif cfg.pl.source == "ensemble":
            present = view_mask[:, :, None].astype(jnp.float32)
            source = jnp.sum(student_out["view_logits"] * present, 1) / jnp.maximum(present.sum(1), 1.0)
        else:
            raise ValueError(f"pl.source must be 'teacher' or 'ensemble', got {cfg.pl.source!r}")
        terms["pl"], aux = losses.pseudo_label(s_logits, source, cfg.pl.threshold, ~labeled, batch.get("label"))
        metrics["pl/keep_rate"] = aux["keep_rate"]
        if "precision" in aux:
            metrics["pl/precision"] = aux["precision"]

    if w.vc:
        vc = cfg.vc
        kw = dict(temperature=vc.temperature, score_threshold=vc.score_threshold,
                  use_detection_mask=vc.use_detection_mask, confidence_weight=vc.confidence_weight,
                  divergence=vc.divergence)
        if vc.frame_level:
            frame_logits = student_out["frame_logits"]
            scores = resample_scores(batch["human_score"], frame_logits.shape[2])
            terms["vc"], aux = losses.frame_view_consistency(frame_logits, scores, view_mask, **kw)
        else:
            terms["vc"], aux = losses.view_consistency(student_out["view_logits"], batch["human_score"], view_mask,
                                                       min_covisible_frames=vc.min_covisible_frames, **kw)
        metrics["vc/pairs_per_sample"], metrics["vc/mean_weight"] = aux["pairs_per_sample"], aux["mean_weight"]

    if w.mv:
        terms["mv"], _ = losses.cross_view_kl(student_out["view_logits"], view_mask, cfg.mv.temperature)

    if w.con:
        terms["con"], _ = losses.cross_view_infonce(student_out["view_tokens"], view_mask, cfg.con.temperature)

    total = sum((w[t] * terms[t] for t in terms), jnp.zeros((), jnp.float32))
    metrics.update({f"loss/{t}": v for t, v in terms.items()})
    metrics["loss/total"] = total
    if "logits" in teacher_out and teacher_out["logits"] is not None and not multi_label:
        metrics["agreement"] = jnp.mean(jnp.argmax(s_logits, -1) == jnp.argmax(teacher_out["logits"], -1))
    return total, metrics
