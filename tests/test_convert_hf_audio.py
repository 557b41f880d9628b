"""AST from HF: a tiny random ASTForAudioClassification (every parameter perturbed) gives the same logits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vicokd_jax as vk
from vicokd_jax.convert.hf_video import CheckpointMismatchError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _tiny_hf(seed=0, **overrides):
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(seed)
    config = ASTConfig(**{**dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                 num_mel_bins=32, max_length=48, frequency_stride=10, time_stride=8, num_labels=5),
                          **overrides})
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # zeros/ones at init (cls, biases, LayerNorms) would hide a mix-up
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("overrides", [{}, dict(qkv_bias=False, frequency_stride=16, time_stride=16)])
def test_logits_equal_hf(overrides):
    hf = _tiny_hf(**overrides)
    x = np.random.default_rng(0).standard_normal((2, 48, 32)).astype(np.float32)
    with torch.no_grad():
        want = hf(input_values=torch.from_numpy(x)).logits.numpy()
    module, variables = vk.convert.audio_transformer_from_hf(hf.state_dict(), hf.config.to_dict())
    out = module.apply(variables, jnp.asarray(x), train=False)
    np.testing.assert_allclose(np.asarray(out["logits"]), want, atol=1e-4, rtol=0)
    f, t = module.grid()
    assert out["tokens"].shape == (2, 2 + f * t, 32) and out["frame_tokens"].shape == (2, t, 32)
    with torch.no_grad():
        hidden = hf.audio_spectrogram_transformer(input_values=torch.from_numpy(x)).last_hidden_state.numpy()
    np.testing.assert_allclose(np.asarray(out["tokens"]), hidden, atol=1e-4, rtol=0)


def test_on_a_real_soundtrack_through_the_front_end(fixtures):
    from vicokd_jax.data import audio

    hf = _tiny_hf(seed=1)
    x = audio.log_mel(audio.load(fixtures / "video/mmaction2_tests_data_test.avi"), num_mel_bins=32, max_length=48)
    with torch.no_grad():
        want = hf(input_values=torch.from_numpy(x[None])).logits.numpy()
    module, variables = vk.convert.audio_transformer_from_hf(hf.state_dict(), hf.config)
    np.testing.assert_allclose(np.asarray(module.apply(variables, x[None])["logits"]), want, atol=1e-4, rtol=0)


def test_mismatched_state_dict_names_every_key():
    hf = _tiny_hf()
    state = dict(hf.state_dict())
    state.pop("classifier.dense.bias")
    state["audio_spectrogram_transformer.layernorm.weight"] = torch.zeros(7)
    state["decoder.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as info:
        vk.convert.audio_transformer_from_hf(state, hf.config.to_dict())
    message = str(info.value)
    assert "missing key: classifier.dense.bias" in message
    assert "wrong shape: audio_spectrogram_transformer.layernorm.weight: expected shape (32,), got (7,)" in message
    assert "unexpected key: decoder.weight" in message


def test_headless_encoder_has_no_logits():
    module = vk.models.AudioTransformer(hidden_size=16, depth=1, num_heads=2, mlp_dim=32, num_mel_bins=32,
                                        max_length=32)
    variables = module.init(jax.random.key(0), jnp.zeros((1, 32, 32)))
    out = module.apply(variables, jnp.zeros((3, 32, 32)))
    assert out["logits"] is None and out["clip"].shape == (3, 16)
    with pytest.raises(ValueError, match=r"expected log-mel windows \[N, 32, 32\].*data.audio_frames.*got shape \(3, 31, 32\)"):
        module.apply(variables, jnp.zeros((3, 31, 32)))  # wrong max_length
    with pytest.raises(ValueError, match=r"got shape \(3, 32\)"):
        module.apply(variables, jnp.zeros((3, 32)))  # no mel axis
