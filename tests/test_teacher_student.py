"""Teacher and student: output contract and the properties of METHOD.md."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trained_like import trained_like

from vicokd_jax.models.audio_transformer import AudioTransformer
from vicokd_jax.models.stgcn import STGCN
from vicokd_jax.models.student import Student
from vicokd_jax.models.teacher import Teacher
from vicokd_jax.models.video_transformer import VideoTransformer

B, V, T, HW, C = 2, 3, 8, 32, 6
ENCODER = VideoTransformer(num_classes=0, hidden_size=32, depth=1, num_heads=2, mlp_dim=64, tubelet=(2, 8, 8),
                           pooling="mean", posemb="sincos")
SKELETON = STGCN(0, channels=(8, 16), strides=(1, 2))
WIDTH = dict(width=32, token_frames=4, num_heads=2)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    rgb = jnp.asarray(rng.integers(0, 256, (B, V, T, HW, HW, 3)), jnp.uint8)
    skeleton = jnp.asarray(rng.standard_normal((B, V, 2, 16, 25, 3)), jnp.float32)
    view_mask = jnp.array([[True, True, False], [True, True, True]])
    return rgb, skeleton, view_mask


def _student(**kw):
    return Student(C, ENCODER, teacher_width=24, **WIDTH, **kw)


@pytest.fixture(scope="module")
def student_shared():
    rgb, _, view_mask = _inputs()
    model = _student(hint=True)
    return model, jax.jit(lambda: model.init(jax.random.key(0), rgb, view_mask))()


def test_student_output_contract(student_shared):
    model, variables = student_shared
    rgb, _, view_mask = _inputs()
    out = jax.jit(model.apply)(variables, rgb, view_mask)
    assert {k: v.shape for k, v in out.items()} == {
        "logits": (B, C), "view_logits": (B, V, C), "frame_logits": (B, V, 4, C), "frame_tokens": (B, V, 4, 32),
        "view_tokens": (B, V, 32), "skeleton_tokens": (B, V, 4, 24), "rgb_tokens": (B, V, 4, 24)}


def test_adapter_is_the_identity_at_init(student_shared):
    model, variables = student_shared
    rgb, _, view_mask = _inputs()
    with_adapter = jax.jit(model.apply)(variables, rgb, view_mask)
    plain = _student(hint=True, adapter=False)
    params = {k: v for k, v in variables["params"].items() if not k.startswith("adapter")}
    without = jax.jit(plain.apply)({"params": params}, rgb, view_mask)
    assert set(with_adapter) - set(without) == {"skeleton_tokens"}
    # Equal up to float rounding (the adapter adds an exact zero, but the two programs fuse differently).
    for key in without:
        np.testing.assert_allclose(with_adapter[key], without[key], rtol=1e-6, atol=1e-6, err_msg=key)
    # ...and it is not the identity once trained.
    trained = jax.jit(model.apply)(trained_like(variables), rgb, view_mask)
    trained_plain = jax.jit(plain.apply)({"params": {k: v for k, v in trained_like(variables)["params"].items()
                                                     if not k.startswith("adapter")}}, rgb, view_mask)
    assert np.abs(np.asarray(trained["logits"] - trained_plain["logits"])).max() > 1e-4


def test_shared_weights_permuting_views_permutes_per_view_outputs(student_shared):
    model, variables = student_shared
    variables = trained_like(variables)
    rgb, _, view_mask = _inputs()
    perm = np.array([2, 0, 1])
    apply = jax.jit(model.apply)
    out, permuted = apply(variables, rgb, view_mask), apply(variables, rgb[:, perm], view_mask[:, perm])
    for key in ("view_logits", "frame_logits", "view_tokens", "skeleton_tokens", "rgb_tokens"):
        np.testing.assert_allclose(permuted[key], out[key][:, perm], atol=1e-5, err_msg=key)
    # View fusion has no view embedding: the sequence prediction does not depend on the view order.
    np.testing.assert_allclose(permuted["logits"], out["logits"], atol=1e-5)


@pytest.mark.parametrize("which", ["student", "teacher"])
def test_a_masked_view_cannot_change_the_sequence_logits(which, student_shared):
    rgb, skeleton, view_mask = _inputs()  # view 2 of sample 0 is absent
    if which == "student":
        model, variables = student_shared
        apply = jax.jit(lambda v, rgb, skel: model.apply(v, rgb, view_mask))
    else:
        model = Teacher(C, SKELETON, ENCODER, **WIDTH)
        variables = jax.jit(lambda: model.init(jax.random.key(0), skeleton, rgb, view_mask))()
        apply = jax.jit(lambda v, rgb, skel: model.apply(v, skel, rgb, view_mask))
    variables = trained_like(variables)
    out = apply(variables, rgb, skeleton)
    noise = np.random.default_rng(5)
    rgb2 = rgb.at[0, 2].set(jnp.asarray(noise.integers(0, 256, rgb.shape[2:]), jnp.uint8))
    skel2 = skeleton.at[0, 2].set(jnp.asarray(noise.standard_normal(skeleton.shape[2:]) * 3, jnp.float32))
    changed = apply(variables, rgb2, skel2)
    np.testing.assert_allclose(changed["logits"], out["logits"], atol=1e-6)
    # The absent view's own outputs do change (it is computed, just never fused), and a present view matters.
    assert np.abs(np.asarray(changed["view_logits"][0, 2] - out["view_logits"][0, 2])).max() > 1e-4
    rgb3 = rgb.at[0, 1].set(jnp.asarray(noise.integers(0, 256, rgb.shape[2:]), jnp.uint8))
    skel3 = skeleton.at[0, 1].set(jnp.asarray(noise.standard_normal(skeleton.shape[2:]) * 3, jnp.float32))
    assert np.abs(np.asarray(apply(variables, rgb3, skel3)["logits"][0] - out["logits"][0])).max() > 1e-4


def test_per_view_student_has_one_parameter_set_per_view():
    rgb, _, view_mask = _inputs()
    model = _student(per_view_weights=True, num_views=V)
    variables = jax.jit(lambda: model.init(jax.random.key(0), rgb, view_mask))()
    shared = jax.eval_shape(lambda: _student().init(jax.random.key(0), rgb, view_mask))
    per_view_enc = variables["params"]["rgb_encoder"]
    shared_enc = shared["params"]["rgb_encoder"]
    jax.tree.map(lambda a, b: np.testing.assert_equal(a.shape, (V, *b.shape)), per_view_enc, shared_enc)
    kernel = np.asarray(per_view_enc["patch_embed"]["kernel"])
    assert all(np.abs(kernel[i] - kernel[j]).max() > 1e-3 for i in range(V) for j in range(i + 1, V))
    # Each view really runs its own encoder: swapping two views' contents is no longer a permutation of outputs.
    out = jax.jit(model.apply)(variables, rgb, view_mask)
    swapped = jax.jit(model.apply)(variables, rgb[:, [1, 0, 2]], view_mask)
    assert np.abs(np.asarray(swapped["view_logits"][:, 0] - out["view_logits"][:, 1])).max() > 1e-4
    with pytest.raises(ValueError, match="num_views=3\\) got 2 views"):
        model.init(jax.random.key(0), rgb[:, :2], view_mask[:, :2])


def test_per_view_encoders_in_a_loop_equal_the_vmapped_ones():
    """`views_in_loop` (the export's form) reads the same stacked parameters and computes the same outputs."""
    rgb, _, view_mask = _inputs()
    model = _student(per_view_weights=True, num_views=V)
    variables = trained_like(jax.jit(lambda: model.init(jax.random.key(0), rgb, view_mask))())
    vmapped = jax.jit(model.apply)(variables, rgb, view_mask)
    looped_model = model.clone(views_in_loop=True)
    looped = jax.jit(looped_model.apply)(variables, rgb, view_mask)
    for key in ("logits", "view_logits", "frame_tokens"):
        np.testing.assert_allclose(looped[key], vmapped[key], atol=1e-5, err_msg=key)
    assert np.abs(np.asarray(vmapped["view_logits"][:, 0] - vmapped["view_logits"][:, 1])).max() > 1e-3
    # Initialised in the loop form, the parameters are the vmapped form's (stacked per view).
    looped_init = jax.eval_shape(lambda: looped_model.init(jax.random.key(0), rgb, view_mask))
    assert jax.tree.map(lambda a: a.shape, looped_init) == jax.tree.map(lambda a: a.shape, variables)


def test_teacher_modalities():
    rgb, skeleton, view_mask = _inputs()
    skel_only = Teacher(C, SKELETON, None, modalities=("skeleton",), **WIDTH)
    variables = jax.jit(lambda: skel_only.init(jax.random.key(0), skeleton, None, view_mask))()
    assert not any("rgb" in k for k in variables["params"])
    out = jax.jit(lambda v, s: skel_only.apply(v, s, None, view_mask))(variables, skeleton)
    assert "rgb_tokens" not in out and out["skeleton_tokens"].shape == (B, V, 4, 32)
    np.testing.assert_array_equal(out["frame_tokens"], out["skeleton_tokens"])

    both = Teacher(C, SKELETON, ENCODER, **WIDTH)
    variables = jax.jit(lambda: both.init(jax.random.key(0), skeleton, rgb, view_mask))()
    assert {"skeleton_from_rgb", "rgb_from_skeleton", "rgb_encoder", "skeleton_encoder"} <= set(variables["params"])
    out = jax.jit(both.apply)(variables, skeleton, rgb, view_mask)
    assert out["rgb_tokens"].shape == out["skeleton_tokens"].shape == (B, V, 4, 32)
    assert out["frame_logits"].shape == (B, V, 4, C) and out["logits"].shape == (B, C)
    with pytest.raises(ValueError, match="modalities must be a non-empty subset"):
        Teacher(C, SKELETON, ENCODER, modalities=("rgb", "skeleton"), **WIDTH).init(jax.random.key(0), skeleton,
                                                                                    rgb, view_mask)
    with pytest.raises(ValueError, match="audio_encoder is None"):
        Teacher(C, SKELETON, ENCODER, modalities=("rgb", "audio"), **WIDTH).init(jax.random.key(0), None, rgb,
                                                                                 view_mask)
    with pytest.raises(ValueError, match="needs rgb"):
        both.init(jax.random.key(0), skeleton, None, view_mask)


AUDIO = AudioTransformer(hidden_size=16, depth=1, num_heads=2, mlp_dim=32, num_mel_bins=16, max_length=16)


@pytest.mark.parametrize("modalities", [("rgb",), ("rgb", "audio"), ("skeleton", "rgb", "audio"), ("audio",)])
def test_teacher_over_any_subset_of_modalities(modalities):
    rgb, skeleton, view_mask = _inputs()
    audio = jnp.asarray(np.random.default_rng(1).standard_normal((B, V, T, 16, 16)), jnp.float32)
    model = Teacher(C, SKELETON, ENCODER, modalities=modalities, audio_encoder=AUDIO, **WIDTH)
    inputs = {m: (x if m in modalities else None) for m, x in (("skeleton", skeleton), ("rgb", rgb),
                                                              ("audio", audio))}
    args = (inputs["skeleton"], inputs["rgb"], view_mask)
    variables = model.init(jax.random.key(0), *args, audio=inputs["audio"])
    params = set(variables["params"])
    assert {f"{m}_proj" for m in modalities} <= params
    assert not {f"{m}_proj" for m in ("skeleton", "rgb", "audio") if m not in modalities} & params
    out = model.apply(variables, *args, audio=inputs["audio"])
    for m in modalities:
        assert out[f"{m}_tokens"].shape == (B, V, 4, 32)
    assert out["logits"].shape == (B, C) and out["frame_logits"].shape == (B, V, 4, C)
    if len(modalities) > 1:  # each stream queries the others; identity at init (zero output projections)
        others = lambda m: "_".join(o for o in modalities if o != m)  # noqa: E731
        assert {f"{m}_from_{others(m)}" for m in modalities} <= params
        first, last = modalities[0], modalities[-1]
        changed = dict(inputs, **{last: inputs[last] + (7 if last == "rgb" else 1.0)})
        call = lambda v, x: model.apply(v, x["skeleton"], x["rgb"], view_mask, audio=x["audio"])  # noqa: E731
        # At init the exchange is the identity: the first stream does not see a change of the last ...
        np.testing.assert_allclose(call(variables, changed)[f"{first}_tokens"], out[f"{first}_tokens"], atol=1e-6)
        # ... and once its attention output is non-zero it does.
        name = f"{first}_from_{others(first)}"
        trained = jax.tree.map(lambda x: x, variables)
        kernel = trained["params"][name]["out"]["kernel"]
        trained["params"][name]["out"]["kernel"] = kernel + 0.1
        moved = call(trained, changed)[f"{first}_tokens"] - call(trained, inputs)[f"{first}_tokens"]
        assert np.abs(np.asarray(moved)).max() > 1e-4
    else:
        np.testing.assert_array_equal(out["frame_tokens"], out[f"{modalities[0]}_tokens"])
    if "audio" in modalities:  # the audio stream reads its input: changing the sound changes the output
        moved = model.apply(variables, *args, audio=inputs["audio"] + 1.0)
        assert np.abs(np.asarray(moved["audio_tokens"]) - np.asarray(out["audio_tokens"])).max() > 1e-4


@pytest.mark.parametrize("bad,match", [
    ("rgb_rank", r"rgb: expected shape \[B, V, \.\.\., \.\.\., \.\.\., 3\] \(rank 6\), got \(2, 8, 32, 32, 3\)"),
    ("mask", r"view_mask: expected shape \(2, 3\)"),
])
def test_student_input_errors(bad, match, student_shared):
    model, variables = student_shared
    rgb, _, view_mask = _inputs()
    if bad == "rgb_rank":
        rgb = rgb[:, 0]
    else:
        view_mask = view_mask[:, :2]
    with pytest.raises(ValueError, match=match):
        model.apply(variables, rgb, view_mask)


def test_frame_difference_by_hand():
    from vicokd_jax.models.heads import frame_difference

    x = jnp.arange(3, dtype=jnp.float32).reshape(1, 3, 1, 1, 1) ** 2 * jnp.ones((1, 3, 2, 2, 3))  # frames 0, 1, 4
    np.testing.assert_allclose(frame_difference(x, scale=2.0)[0, :, 0, 0, 0], [0.0, 2.0, 6.0])


def test_rgb_diff_student_ignores_static_appearance_and_rgb_student_does_not():
    """Adding the same image to every frame of a view (a static background) leaves an rgb_diff student's outputs
    unchanged; the raw-RGB student sees it."""
    rgb, _, view_mask = _inputs()
    rgb = (rgb // 2).astype(jnp.uint8)  # headroom so the offset does not saturate
    offset = jnp.asarray(np.random.default_rng(5).integers(0, 100, (B, V, 1, HW, HW, 3)), jnp.uint8)
    for mode, unchanged in (("rgb_diff", True), ("rgb", False)):
        model = _student(input_mode=mode)
        variables = trained_like(model.init(jax.random.key(0), rgb, view_mask))
        a = model.apply(variables, rgb, view_mask)["logits"]
        b = model.apply(variables, rgb + offset, view_mask)["logits"]
        assert np.allclose(a, b, atol=1e-4) == unchanged, mode
    with pytest.raises(ValueError, match="input_mode='flow'"):
        _student(input_mode="flow").init(jax.random.key(0), rgb, view_mask)


def test_rgb_diff_teacher_ignores_static_appearance_and_rgb_teacher_does_not():
    """The teacher's RGB stream with `rgb_input="rgb_diff"` sees differences of consecutive frames: an image added
    to every frame of a view changes nothing; with raw RGB it does."""
    rgb, skeleton, view_mask = _inputs()
    rgb = (rgb // 2).astype(jnp.uint8)
    offset = jnp.asarray(np.random.default_rng(6).integers(0, 100, (B, V, 1, HW, HW, 3)), jnp.uint8)
    for mode, unchanged in (("rgb_diff", True), ("rgb", False)):
        model = Teacher(C, None, ENCODER, modalities=("rgb",), rgb_input=mode, **WIDTH)
        variables = trained_like(model.init(jax.random.key(0), None, rgb, view_mask))
        a = model.apply(variables, None, rgb, view_mask)["logits"]
        b = model.apply(variables, None, rgb + offset, view_mask)["logits"]
        assert np.allclose(a, b, atol=1e-4) == unchanged, mode
    with pytest.raises(ValueError, match="rgb_input='flow'"):
        Teacher(C, None, ENCODER, modalities=("rgb",), rgb_input="flow", **WIDTH).init(
            jax.random.key(0), None, rgb, view_mask)


@pytest.mark.parametrize("length", [3, 4, 5, 16])
def test_resample_frames_is_linear_resize_over_time(length):
    """The constant-matrix form equals jax.image.resize (linear, antialiased when shrinking) over the frame axis."""
    from vicokd_jax.models.heads import resample_frames

    tokens = jax.random.normal(jax.random.key(0), (3, 8, 5))
    expected = jax.image.resize(tokens, (3, length, 5), method="linear")
    np.testing.assert_allclose(resample_frames(tokens, length), expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(jax.jit(lambda x: resample_frames(x, length))(tokens), expected, atol=1e-6, rtol=0)
