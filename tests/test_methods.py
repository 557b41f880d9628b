"""Method presets and `total_loss`: each preset uses exactly the terms of METHOD.md's table."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vicokd_jax import losses as L
from vicokd_jax import methods as M
from vicokd_jax import views

B, V, LEN, C, D, T = 4, 3, 4, 5, 8, 8

# Which loss terms may move when an input moves (feat depends on the feature kind of the preset).
DEPENDS = {
    "teacher.logits": {"kd", "dkd", "pl"},
    "teacher.frame_logits": {"kd"},
    "teacher.view_logits": {"kd"},
    "teacher.skeleton_tokens": {"feat:adapter"},
    "teacher.rgb_tokens": {"feat:hint"},
    "student.logits": {"sup", "kd", "dkd", "pl"},
    "student.view_logits": {"view", "kd", "vc", "mv"},
    "student.frame_logits": {"kd"},
    "student.view_tokens": {"con"},
    "student.skeleton_tokens": {"feat:adapter"},
    "student.rgb_tokens": {"feat:hint"},
    "batch.label": {"sup", "view", "dkd"},
    "batch.human_score": {"view", "kd", "vc", "feat:adapter", "feat:hint"},
}


def make_inputs(seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)  # noqa: E731
    student = dict(logits=f(B, C), view_logits=f(B, V, C), frame_logits=f(B, V, LEN, C), view_tokens=f(B, V, D),
                   skeleton_tokens=f(B, V, LEN, D), rgb_tokens=f(B, V, LEN, D))
    teacher = dict(logits=8 * f(B, C), view_logits=f(B, V, C), frame_logits=f(B, V, LEN, C),
                   skeleton_tokens=f(B, V, LEN, D), rgb_tokens=f(B, V, LEN, D))
    score = np.full((B, V, T), 0.9, np.float32)
    score[1, 2, :] = 0.1  # one view never sees the person
    batch = dict(label=jnp.asarray(rng.integers(0, C, B)), labeled=jnp.array([True, False, True, False]),
                 view_mask=jnp.array([[True] * 3, [True] * 3, [True, True, False], [True] * 3]),
                 human_score=jnp.asarray(score))
    return student, teacher, batch


def perturb(name, student, teacher, batch):
    student, teacher, batch = dict(student), dict(teacher), dict(batch)
    where, key = name.split(".")
    if name == "teacher.logits":
        teacher["logits"] = jnp.roll(teacher["logits"], 1, axis=-1)  # every argmax moves
    elif name == "batch.label":
        batch["label"] = (batch["label"] + 1) % C
    elif name == "batch.human_score":
        batch["human_score"] = batch["human_score"].at[0, 0].set(0.0)  # sample 0 loses view 0's detections
    else:
        target = student if where == "student" else teacher
        target[key] = target[key] + 0.5 * jax.random.normal(jax.random.key(7), target[key].shape)
    return student, teacher, batch


def expected_terms(cfg, moved):
    out = set()
    for term in DEPENDS[moved]:
        name, _, kind = term.partition(":")
        if kind and kind != cfg.feat.kind:
            continue
        out.add(name)
    return out & set(M.active_terms(cfg))


@pytest.mark.parametrize("method", M.METHODS)
def test_preset_uses_exactly_the_terms_of_the_method_table(method):
    cfg = M.method_config(method)
    assert set(M.active_terms(cfg)) == set(M.METHOD_TERMS[method])
    student, teacher, batch = make_inputs()
    loss_fn = jax.jit(lambda s, t, b: M.total_loss(s, t, b, cfg))
    loss, metrics = loss_fn(student, teacher, batch)
    assert {k[5:] for k in metrics if k.startswith("loss/") and k != "loss/total"} == set(M.METHOD_TERMS[method])
    assert float(loss) == pytest.approx(sum(cfg.weights[t] * float(metrics[f"loss/{t}"])
                                            for t in M.active_terms(cfg)), rel=1e-6)
    for moved in DEPENDS:
        _, m2 = loss_fn(*perturb(moved, student, teacher, batch))
        changed = {t for t in M.active_terms(cfg) if abs(float(m2[f"loss/{t}"]) - float(metrics[f"loss/{t}"])) > 1e-6}
        assert changed == expected_terms(cfg, moved), f"{method}: perturbing {moved}"


@pytest.mark.parametrize("method", M.METHODS)
def test_jit_equals_eager_and_gradients_are_finite(method):
    cfg = M.method_config(method)
    student, teacher, batch = make_inputs(1)
    eager, eager_metrics = M.total_loss(student, teacher, batch, cfg)
    jitted, jit_metrics = jax.jit(lambda s: M.total_loss(s, teacher, batch, cfg))(student)
    assert float(jitted) == pytest.approx(float(eager), rel=1e-5)
    for key in eager_metrics:
        assert float(jit_metrics[key]) == pytest.approx(float(eager_metrics[key]), rel=1e-5, abs=1e-7), key
    grads = jax.grad(lambda s: M.total_loss(s, teacher, batch, cfg)[0])(student)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    teacher_grads = jax.grad(lambda t: M.total_loss(student, t, batch, cfg)[0])(teacher)
    assert not any(np.any(np.asarray(g)) for g in jax.tree.leaves(teacher_grads))  # the teacher is frozen


def test_terms_match_the_loss_functions():
    cfg = M.method_config("vicokd_semi")
    student, teacher, batch = make_inputs(2)
    _, m = M.total_loss(student, teacher, batch, cfg)
    assert float(m["loss/sup"]) == pytest.approx(float(L.cross_entropy(student["logits"], batch["label"],
                                                                       batch["labeled"])[0]), rel=1e-6)
    kd_seq = float(L.kd_kl(student["logits"], teacher["logits"], 4.0).mean())
    kd_frames = float(L.kd_kl(views.fuse_frame_logits(student["frame_logits"], batch["view_mask"]),
                              views.fuse_frame_logits(teacher["frame_logits"], batch["view_mask"]), 4.0).mean())
    visible = np.asarray(L.visible_fraction(batch["human_score"], batch["view_mask"]))
    per_view_kd = np.asarray(L.kd_kl(student["view_logits"], teacher["view_logits"], 4.0))
    kd_views = float((visible * per_view_kd).sum() / visible.sum())
    assert float(m["loss/kd"]) == pytest.approx(kd_seq + kd_frames + kd_views, rel=1e-5)
    view = L.view_supervision(student["view_logits"], batch["label"], visible * np.asarray(batch["labeled"])[:, None])
    assert float(m["loss/view"]) == pytest.approx(float(view[0]), rel=1e-6)
    vc = L.view_consistency(student["view_logits"], batch["human_score"], batch["view_mask"])[0]
    assert float(m["loss/vc"]) == pytest.approx(float(vc), rel=1e-6)
    pl = L.pseudo_label(student["logits"], teacher["logits"], 0.9, ~batch["labeled"])[0]
    assert float(m["loss/pl"]) == pytest.approx(float(pl), rel=1e-6)
    assert 0.0 <= float(m["pl/keep_rate"]) <= 1.0 and 0.0 <= float(m["agreement"]) <= 1.0


def test_vicokd_ablations():
    student, teacher, batch = make_inputs(4)
    value = lambda cfg: M.total_loss(student, teacher, batch, cfg)[1]  # noqa: E731
    base = value(M.method_config("vicokd"))
    no_mask = value(M.method_config("vicokd", "vc_no_mask"))
    assert float(no_mask["vc/pairs_per_sample"]) > float(base["vc/pairs_per_sample"])
    assert float(no_mask["loss/vc"]) != pytest.approx(float(base["loss/vc"]), rel=1e-6)
    no_conf = value(M.method_config("vicokd", "vc_no_confidence"))
    assert float(no_conf["vc/mean_weight"]) == 1.0
    kl = value(M.method_config("vicokd", "vc_kl"))
    expected = L.view_consistency(student["view_logits"], batch["human_score"], batch["view_mask"],
                                  divergence="kl")[0]
    assert float(kl["loss/vc"]) == pytest.approx(float(expected), rel=1e-6)
    assert "loss/vc" not in value(M.method_config("vicokd", "no_vc"))
    no_adapter = M.method_config("vicokd", "no_adapter")
    assert "feat" not in M.active_terms(no_adapter) and not no_adapter.student.adapter
    x10 = value(M.method_config("vicokd", "vc_x10"))  # only the weight changes: total moves by 9 * L_vc
    assert float(x10["loss/total"]) == pytest.approx(float(base["loss/total"]) + 9 * float(base["loss/vc"]), rel=1e-5)
    frame_cfg = M.method_config("vicokd")
    frame_cfg.vc.frame_level = True
    moved = perturb("student.frame_logits", student, teacher, batch)
    assert float(M.total_loss(*moved, frame_cfg)[1]["loss/vc"]) != pytest.approx(
        float(value(frame_cfg)["loss/vc"]), rel=1e-6)


def test_presets_imply_the_student_architecture():
    assert M.method_config("mskd").student.per_view_weights
    assert M.method_config("vicokd").student.adapter and M.method_config("vicokd_semi").student.adapter
    assert M.method_config("fitnet").student.hint and M.method_config("fitnet").feat.kind == "hint"
    assert not M.method_config("kd").student.adapter


def test_multi_label_batches_use_bce_and_binary_kd():
    student, teacher, batch = make_inputs(5)
    batch = {k: v for k, v in batch.items() if k != "label"}
    batch["labels"] = jnp.asarray(np.random.default_rng(5).integers(0, 2, (B, C)), jnp.float32)
    _, m = M.total_loss(student, teacher, batch, M.method_config("vicokd"))
    assert float(m["loss/sup"]) == pytest.approx(float(L.sigmoid_bce(student["logits"], batch["labels"],
                                                                     batch["labeled"])[0]), rel=1e-6)
    assert float(m["kd/sequence"]) == pytest.approx(float(L.binary_kd(student["logits"], teacher["logits"],
                                                                      4.0).mean()), rel=1e-6)
    with pytest.raises(ValueError, match="DKD is defined for single-label"):
        M.total_loss(student, teacher, batch, M.method_config("dkd"))


def test_clear_errors():
    with pytest.raises(ValueError, match="unknown method 'vicoKD'"):
        M.method_config("vicoKD")
    with pytest.raises(ValueError, match="unknown ablation"):
        M.method_config("vicokd", "no_teacher")
    with pytest.raises(ValueError, match="applies to vicokd"):
        M.method_config("kd", "no_vc")
    student, teacher, batch = make_inputs()
    del student["skeleton_tokens"]
    with pytest.raises(KeyError, match="needs student output 'skeleton_tokens'.*adapter=True"):
        M.total_loss(student, teacher, batch, M.method_config("vicokd"))
