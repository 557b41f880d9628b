"""HF VideoMAE / TimeSformer / ViViT import: logits parity with transformers, key handling, clear errors."""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vicokd_jax.convert.hf_video import CheckpointMismatchError, video_transformer_from_hf

FRAMES, SIZE = 8, 32
CLIP = "ntu_rgb/S001C001P001R001A001_rgb.avi"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

# ------------------------------------------------------------------------------------------------ inputs


@pytest.fixture(scope="module")
def clip(request) -> np.ndarray:
    """``[2,FRAMES,SIZE,SIZE,3]`` float32, ImageNet-normalised: the first frames of the NTU fixture
    (centre square, resized; second sample = the clip reversed in time), or random when unavailable."""
    try:
        frames = _decode(request.getfixturevalue("fixtures") / CLIP, FRAMES)
    except (pytest.skip.Exception, ImportError, FileNotFoundError):
        return np.random.default_rng(0).normal(size=(2, FRAMES, SIZE, SIZE, 3)).astype(np.float32)
    h, w = frames.shape[1:3]
    side = min(h, w)
    square = frames[:, (h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]
    small = jax.image.resize(jnp.asarray(square, jnp.float32) / 255.0, (FRAMES, SIZE, SIZE, 3), "linear")
    normed = (np.asarray(small) - IMAGENET_MEAN) / IMAGENET_STD
    return np.stack([normed, normed[::-1]]).astype(np.float32)


def _decode(path, count: int) -> np.ndarray:
    """The first ``count`` frames of a video as ``[count,H,W,3]`` uint8 RGB (PyAV)."""
    import av

    if not path.exists():
        raise FileNotFoundError(path)
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return np.stack(frames)


# ------------------------------------------------------------------------------------------------ HF models


def _hf_model(kind: str):
    """A tiny random-weight HF video classifier in eval mode (all parameters perturbed, so that zero
    biases or unit LayerNorm scales cannot hide a mapping mistake)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  num_labels=7, image_size=SIZE, num_frames=FRAMES, attn_implementation="eager")
    if kind.startswith("videomae"):
        config = transformers.VideoMAEConfig(patch_size=8, tubelet_size=2,
                                             use_mean_pooling=kind == "videomae", **common)
        model_cls = transformers.VideoMAEForVideoClassification
    elif kind.startswith("timesformer"):
        attention_type = "joint_space_time" if kind.endswith("joint") else "divided_space_time"
        config = transformers.TimesformerConfig(patch_size=8, attention_type=attention_type, **common)
        model_cls = transformers.TimesformerForVideoClassification
    else:
        config = transformers.VivitConfig(tubelet_size=[2, 8, 8], **common)
        model_cls = transformers.VivitForVideoClassification
    torch.manual_seed(0)
    model = model_cls(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _hf_logits(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():  # HF takes pixel_values [N,T,3,H,W]
        return model(pixel_values=torch.from_numpy(x.transpose(0, 1, 4, 2, 3).copy())).logits.numpy()


def _state_dict(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@functools.lru_cache(maxsize=None)
def _jitted_apply(module):
    return jax.jit(module.apply)


ARCHS = ["videomae", "videomae_first_token", "timesformer", "timesformer_joint", "vivit"]


@pytest.mark.torch
@pytest.mark.parametrize("kind", ARCHS)
def test_logits_match_hf(kind, clip):
    model = _hf_model(kind)
    module, variables = video_transformer_from_hf(_state_dict(model), model.config.to_dict())
    ours = np.asarray(_jitted_apply(module)(variables, clip)["logits"])
    ref = _hf_logits(model, clip)
    assert ours.shape == ref.shape == (2, 7)
    diff = np.abs(ours - ref).max()
    print(f"{kind}: max |logit diff| = {diff:.2e}")
    assert diff <= 1e-4, diff
    assert np.abs(ref).max() > 0.05  # the comparison is not between two near-zero vectors


@pytest.mark.torch
def test_module_choices_per_architecture():
    expected = {"videomae": ("joint", "sincos", "mean", "qv", "gelu", 1e-12, (2, 8, 8)),
                "timesformer": ("divided", "separable", "cls", "qkv", "gelu", 1e-6, (1, 8, 8)),
                "vivit": ("joint", "learned", "cls", "qkv", "gelu_tanh", 1e-6, (2, 8, 8))}
    for kind, want in expected.items():
        model = _hf_model(kind)
        module, _ = video_transformer_from_hf(model.state_dict(), model.config)  # torch tensors + config object
        got = (module.attention, module.posemb, module.pooling, module.qkv_bias, module.activation,
               module.layer_norm_eps, tuple(module.tubelet))
        assert got == want, kind


@pytest.mark.torch
def test_scan_bf16_import_options(clip):
    model = _hf_model("timesformer")
    sd, cfg = _state_dict(model), model.config.to_dict()
    module, variables = video_transformer_from_hf(sd, cfg, scan=True, remat=True)
    assert variables["params"]["encoder"]["blocks"]["temporal_dense"]["kernel"].shape == (2, 32, 32)
    diff = np.abs(np.asarray(_jitted_apply(module)(variables, clip)["logits"]) - _hf_logits(model, clip)).max()
    assert diff <= 1e-4, diff
    module, variables = video_transformer_from_hf(sd, cfg, dtype=jnp.bfloat16)
    assert module.dtype == jnp.bfloat16
    assert {a.dtype for a in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}


@pytest.mark.torch
@pytest.mark.parametrize("kind, renames", [
    ("videomae", [(r"query\.bias$", "q_bias"), (r"value\.bias$", "v_bias")]),
    ("vivit", [(r"^vivit\.layers\.", "vivit.encoder.layer."), (r"attention\.q_proj", "attention.attention.query"),
               (r"attention\.k_proj", "attention.attention.key"),
               (r"attention\.v_proj", "attention.attention.value"),
               (r"attention\.o_proj", "attention.output.dense"), (r"mlp\.fc1", "intermediate.dense"),
               (r"mlp\.fc2", "output.dense")]),
])
def test_legacy_key_names_give_the_same_params(kind, renames):
    """Older Hub checkpoints (VideoMAE q_bias/v_bias, transformers-4 ViViT names) import identically."""
    model = _hf_model(kind)
    sd, cfg = _state_dict(model), model.config.to_dict()
    old = {}
    for key, value in sd.items():
        for pattern, repl in renames:
            key = re.sub(pattern, repl, key)
        old[key] = value
    assert set(old) != set(sd)
    _, new_vars = video_transformer_from_hf(sd, cfg)
    _, old_vars = video_transformer_from_hf(old, cfg)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), new_vars, old_vars))


# ------------------------------------------------------------------------------------------------ errors
# A hand-written ViViT state dict (current key names) so these run without torch.

D, MLP, CLASSES = 8, 16, 3
VIVIT_CONFIG = dict(model_type="vivit", hidden_size=D, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=MLP, image_size=8, num_frames=4, tubelet_size=[2, 4, 4],
                    id2label={i: str(i) for i in range(CLASSES)})


def _vivit_state_dict() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    tokens = 1 + 2 * 2 * 2
    shapes = {"vivit.embeddings.cls_token": (1, 1, D), "vivit.embeddings.position_embeddings": (1, tokens, D),
              "vivit.embeddings.patch_embeddings.projection.weight": (D, 3, 2, 4, 4),
              "vivit.embeddings.patch_embeddings.projection.bias": (D,),
              "vivit.layernorm.weight": (D,), "vivit.layernorm.bias": (D,),
              "classifier.weight": (CLASSES, D), "classifier.bias": (CLASSES,)}
    layer = "vivit.layers.0."
    for name in ("layernorm_before", "layernorm_after"):
        shapes.update({f"{layer}{name}.weight": (D,), f"{layer}{name}.bias": (D,)})
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        shapes.update({f"{layer}attention.{name}.weight": (D, D), f"{layer}attention.{name}.bias": (D,)})
    shapes.update({f"{layer}mlp.fc1.weight": (MLP, D), f"{layer}mlp.fc1.bias": (MLP,),
                   f"{layer}mlp.fc2.weight": (D, MLP), f"{layer}mlp.fc2.bias": (D,)})
    return {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}


def test_handwritten_state_dict_converts_and_runs():
    module, variables = video_transformer_from_hf(_vivit_state_dict(), VIVIT_CONFIG)
    out = module.apply(variables, jnp.zeros((1, 4, 8, 8, 3)))
    assert out["logits"].shape == (1, CLASSES)
    assert module.activation == "gelu_tanh"  # ViViT's default hidden_act is gelu_fast


def test_missing_key_is_named():
    sd = _vivit_state_dict()
    del sd["vivit.layers.0.attention.k_proj.bias"]
    with pytest.raises(CheckpointMismatchError, match=r"missing key: vivit\.layers\.0\.attention\.k_proj\.bias"):
        video_transformer_from_hf(sd, VIVIT_CONFIG)


def test_wrong_shape_names_key_expected_and_actual():
    sd = _vivit_state_dict()
    sd["vivit.layers.0.mlp.fc1.weight"] = sd["vivit.layers.0.mlp.fc1.weight"].T
    with pytest.raises(CheckpointMismatchError) as info:
        video_transformer_from_hf(sd, VIVIT_CONFIG)
    assert "vivit.layers.0.mlp.fc1.weight: expected shape (16, 8), got (8, 16)" in str(info.value)


def test_unexpected_key_is_named_unless_not_strict():
    sd = _vivit_state_dict()
    sd["decoder.head.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected key: decoder\.head\.weight"):
        video_transformer_from_hf(sd, VIVIT_CONFIG)
    video_transformer_from_hf(sd, VIVIT_CONFIG, strict=False)


def test_family_detected_from_keys_and_unknown_rejected():
    cfg = {k: v for k, v in VIVIT_CONFIG.items() if k != "model_type"}
    module, _ = video_transformer_from_hf(_vivit_state_dict(), cfg)
    assert module.posemb == "learned"
    with pytest.raises(ValueError, match="cannot tell the model family"):
        video_transformer_from_hf({"bert.embeddings.word_embeddings.weight": np.zeros((2, 2))}, {})
    with pytest.raises(TypeError, match="hidden_size"):
        video_transformer_from_hf(_vivit_state_dict(), VIVIT_CONFIG, hidden_size=16)
