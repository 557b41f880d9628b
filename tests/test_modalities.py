"""A teacher that hears, students of one modality with an adapter per missing stream, and the config checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vicokd_jax import config, losses, methods, views
from vicokd_jax.models import presets
from vicokd_jax.models.audio_segment import SegmentAudioEncoder
from vicokd_jax.models.audio_transformer import AudioTransformer
from vicokd_jax.models.student import Student
from vicokd_jax.models.teacher import Teacher
from vicokd_jax.models.video_transformer import VideoTransformer
from trained_like import trained_like

B, V, T, HW, C, F, M = 2, 3, 8, 32, 6, 16, 32
ENCODER = VideoTransformer(num_classes=0, hidden_size=32, depth=1, num_heads=2, mlp_dim=64, tubelet=(2, 8, 8),
                           pooling="mean", posemb="sincos")
AUDIO = AudioTransformer(0, hidden_size=32, depth=1, num_heads=2, mlp_dim=64, patch_size=4, frequency_stride=4,
                         time_stride=4, num_mel_bins=M, max_length=F)
WIDTH = dict(width=32, token_frames=4, num_heads=2)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    rgb = jnp.asarray(rng.integers(0, 256, (B, V, T, HW, HW, 3)), jnp.uint8)
    audio = jnp.asarray(rng.standard_normal((B, V, T, F, M)), jnp.float32)
    return rgb, audio, jnp.ones((B, V), bool)


@pytest.fixture(scope="module")
def hearing_teacher():
    rgb, audio, view_mask = _inputs()
    model = Teacher(C, rgb_encoder=ENCODER, audio_encoder=AUDIO, modalities=("rgb", "audio"), **WIDTH)
    variables = jax.jit(lambda: model.init(jax.random.key(0), None, rgb, view_mask, audio))()
    return model, trained_like(variables)


def test_a_view_without_soundtrack_is_silent_in_every_stream(hearing_teacher):
    model, variables = hearing_teacher
    rgb, audio, view_mask = _inputs()
    audio_mask = jnp.array([[True, False, True], [True, True, True]])
    apply = jax.jit(lambda a, m: model.apply(variables, None, rgb, view_mask, a, m))
    out = apply(audio, audio_mask)
    assert float(jnp.abs(out["audio_tokens"][0, 1]).max()) == 0.0
    assert float(jnp.abs(out["audio_tokens"][0, 0]).max()) > 0.0
    # What the masked view's windows hold changes nothing anywhere.
    noisy = audio.at[0, 1].set(100.0 * jax.random.normal(jax.random.key(3), audio.shape[2:]))
    again = apply(noisy, audio_mask)
    for key in out:
        np.testing.assert_allclose(np.asarray(again[key]), np.asarray(out[key]), atol=1e-5, err_msg=key)
    # Without the mask that view's sound does reach the logits, and the other views' RGB stream too.
    unmasked = apply(noisy, jnp.ones((B, V), bool))
    assert float(jnp.abs(unmasked["logits"][0] - out["logits"][0]).max()) > 1e-3
    assert float(jnp.abs(unmasked["rgb_tokens"][0, 1] - out["rgb_tokens"][0, 1]).max()) > 1e-3


def test_no_audio_mask_means_every_view_has_a_soundtrack(hearing_teacher):
    model, variables = hearing_teacher
    rgb, audio, view_mask = _inputs()
    none = model.apply(variables, None, rgb, view_mask, audio)
    every = model.apply(variables, None, rgb, view_mask, audio, jnp.ones((B, V), bool))
    np.testing.assert_allclose(np.asarray(none["logits"]), np.asarray(every["logits"]), atol=1e-6)


def test_wrong_window_shape_names_the_config_fields(hearing_teacher):
    model, variables = hearing_teacher
    rgb, audio, view_mask = _inputs()
    with pytest.raises(ValueError, match=r"\[N, 16, 32\].*data.audio_frames.*\(48, 12, 32\)"):
        model.apply(variables, None, rgb, view_mask, audio[..., :12, :])


def test_an_rgb_student_stands_in_for_every_missing_stream_and_l_feat_averages_them():
    rgb, audio, view_mask = _inputs()
    student = Student(C, ENCODER, teacher_width=32, missing=("skeleton", "audio"), **WIDTH)
    variables = trained_like(jax.jit(lambda: student.init(jax.random.key(0), rgb, view_mask))())
    assert {"adapter_align", "adapter_align_audio"} <= set(variables["params"])
    out = student.apply(variables, rgb, view_mask)
    assert out["skeleton_tokens"].shape == out["audio_tokens"].shape == (B, V, 4, 32)
    rng = np.random.default_rng(5)
    teacher = {k: jnp.asarray(rng.standard_normal(out[k].shape), jnp.float32) for k in ("skeleton_tokens",
                                                                                         "audio_tokens")}
    teacher.update(logits=out["logits"], view_logits=out["view_logits"], frame_logits=out["frame_logits"])
    human_score = jnp.asarray(rng.uniform(size=(B, V, T)), jnp.float32)
    audio_mask = jnp.array([[True, True, False], [False, True, True]])
    batch = dict(label=jnp.array([0, 1]), labeled=jnp.array([True, True]), view_mask=view_mask,
                 human_score=human_score, audio_mask=audio_mask)
    cfg = methods.method_config("vicokd")
    _, metrics = methods.total_loss(out, teacher, batch, cfg, missing=("skeleton", "audio"))
    visible = (views.resample_scores(human_score, 4) >= cfg.feat.score_threshold) & view_mask[:, :, None]
    skeleton, _ = losses.feature_alignment(out["skeleton_tokens"], teacher["skeleton_tokens"], visible)
    heard, _ = losses.feature_alignment(out["audio_tokens"], teacher["audio_tokens"],
                                        visible & audio_mask[:, :, None])
    np.testing.assert_allclose(float(metrics["loss/feat"]), (float(skeleton) + float(heard)) / 2, rtol=1e-6)
    assert float(skeleton) != pytest.approx(float(heard), abs=1e-3)  # the average is not one term twice


def test_an_audio_student_reads_windows_and_stands_in_for_skeleton_and_rgb():
    _, audio, view_mask = _inputs()
    student = Student(C, audio_encoder=AUDIO, input_mode="audio", teacher_width=24, missing=("skeleton", "rgb"),
                      **WIDTH)
    variables = jax.jit(lambda: student.init(jax.random.key(0), audio, view_mask))()
    assert "audio_proj" in variables["params"] and "rgb_encoder" not in variables["params"]
    out = student.apply(variables, audio, view_mask)
    assert out["rgb_tokens"].shape == out["skeleton_tokens"].shape == (B, V, 4, 24)
    assert out["logits"].shape == (B, C)
    with pytest.raises(ValueError, match="audio: expected shape"):
        student.apply(variables, audio[:, :, 0], view_mask)
    with pytest.raises(ValueError, match="needs rgb_encoder"):
        Student(C, input_mode="rgb", **WIDTH).init(jax.random.key(0), _inputs()[0], view_mask)


def test_the_segment_encoder_is_the_reference_mlp():
    module = SegmentAudioEncoder(max_length=4, num_mel_bins=3, hidden=(5, 6), features=2)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 3)), jnp.float32)
    params = trained_like(module.init(jax.random.key(0), x))["params"]
    h = np.asarray(x).reshape(2, 12)
    for name in ("fc1", "fc2"):
        h = np.maximum(h @ np.asarray(params[name]["kernel"]) + np.asarray(params[name]["bias"]), 0)
    want = h @ np.asarray(params["output"]["kernel"]) + np.asarray(params["output"]["bias"])
    np.testing.assert_allclose(np.asarray(module.apply({"params": params}, x)["clip"]), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[N, 4, 3\]"):
        module.apply({"params": params}, x[:, :3])


def test_presets_build_each_audio_encoder_and_refuse_windows_smaller_than_a_patch():
    assert isinstance(presets.build_audio_encoder("multitsf", (40, 128)), SegmentAudioEncoder)
    ast = presets.build_audio_encoder("ast_base", (40, 128))
    assert (ast.patch_size, ast.time_stride, ast.hidden_size, ast.grid()) == (16, 10, 768, (12, 3))
    with pytest.raises(ValueError, match="smaller than one patch"):
        presets.build_audio_encoder("ast_base", (8, 128))
    with pytest.raises(ValueError, match="unknown audio encoder 'wav2vec'"):
        presets.build_audio_encoder("wav2vec", (40, 128))


def _cfg(**fields):
    cfg = config.default_config("vicokd")
    for key, value in fields.items():
        config.apply_override(cfg, f"{key}={value!r}" if not isinstance(value, str) else f"{key}={value}")
    return cfg


@pytest.mark.parametrize("fields, match", [
    ({"model.teacher_modalities": ("rgb", "audio")}, "needs the modality 'audio'.*has only"),
    ({"model.student_input": "audio"}, "audio student.*needs the modality 'audio'"),
    ({"model.teacher_modalities": ("rgb",)}, "weights.feat=1.0.*has none"),
    ({"method.name": "fitnet", "model.student_input": "audio", "data.audio": True}, "kind='hint'.*no 'audio'"),
    ({"model.audio_encoder": "wav2vec"}, "model.audio_encoder='wav2vec'"),
    ({"data.name": "ntu_rgbd", "data.tfds_config": "ntu60_xsub", "data.audio": True}, "NTU RGB\\+D has no soundtracks"),
    ({"model.student_input": "sound"}, "student_input='sound'"),
])
def test_a_combination_that_cannot_work_is_refused_naming_the_field(fields, match):
    cfg = _cfg(**fields)
    with pytest.raises(ValueError, match=match):
        config.validate(cfg)


def test_the_settings_of_the_paper_validate():
    for experiment in ("experiments/msh1_vicokd.py", "experiments/synth_audio_vicokd.py"):
        cfg = config.from_file(experiment)
        assert tuple(cfg.model.teacher_modalities) == ("rgb", "audio") and cfg.data.audio
        assert presets.student_missing(cfg) == ("audio",)
    msh = config.from_file("experiments/msh1_vicokd.py")
    assert (msh.data.audio_frames, msh.data.audio_mel_bins, msh.model.audio_encoder) == (40, 128, "multitsf")
