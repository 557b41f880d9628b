"""The `pretrain` stage: masked video autoencoding (VideoMAE) of the student's encoder, and the student starting
from it."""
import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import vicokd_jax as vk
from vicokd_jax import parallel
from vicokd_jax.models import presets
from vicokd_jax.models.masked_autoencoder import normalize_patches, patchify, reconstruction_loss, tube_mask
from vicokd_jax.train import checkpoint as ckpt
from vicokd_jax.train import setup

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "experiments" / "synth_student_only.py") + ":smoke"
FAST = ["data.num_train=32", "data.num_test=16", "train.steps=3", "pretrain.steps=6", "train.checkpoint_every=3",
        "train.log_every=3"]
PRETRAIN_ONLY = "stages=('pretrain',)"


def _cfg(*extra):
    return vk.config.from_file(SMOKE, FAST + list(extra))


def _flat(tree):
    return traverse_util.flatten_dict(jax.device_get(tree), sep="/")


def test_patchify_orders_pixels_as_the_tubelet_embedding_does():
    """A tubelet Conv (kernel = stride) is a matmul of each patch's pixels with the flattened kernel: this holds
    only if `patchify` lays out positions and pixels as the Conv does."""
    x = jax.random.normal(jax.random.key(0), (2, 4, 8, 12, 3))
    tubelet, width = (2, 4, 4), 5
    conv = nn.Conv(width, kernel_size=tubelet, strides=tubelet, padding="VALID")
    variables = conv.init(jax.random.key(1), x)
    expected = conv.apply(variables, x)  # [N, T', H', W', D]
    kernel, bias = variables["params"]["kernel"], variables["params"]["bias"]
    got = patchify(x, tubelet) @ kernel.reshape(-1, width) + bias
    assert got.shape == (2, 2, 2 * 3, width)  # T' = 2, S = (8/4)·(12/4)
    np.testing.assert_allclose(got, expected.reshape(2, 2, 6, width), atol=1e-5)


def test_tube_mask_draws_distinct_positions_uniformly():
    visible = np.asarray(tube_mask(jax.random.key(0), 4000, 16, 0.75))
    assert visible.shape == (4000, 4) and visible.dtype == np.int32
    assert all(len(set(row)) == 4 for row in visible[:200])
    counts = np.bincount(visible.ravel(), minlength=16) / visible.size
    np.testing.assert_allclose(counts, 1 / 16, atol=0.01)
    assert tube_mask(jax.random.key(0), 3, 16, 0.99).shape == (3, 1)  # at least one visible position


def test_normalize_patches_gives_each_channel_of_a_patch_zero_mean_and_unit_std():
    patches = jax.random.normal(jax.random.key(0), (2, 3, 4, 8 * 3)) * 5 + 2
    out = np.asarray(normalize_patches(patches)).reshape(2, 3, 4, 8, 3)
    np.testing.assert_allclose(out.mean(-2), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(-2, ddof=1), 1, atol=1e-4)


def test_reconstruction_loss_counts_only_masked_patches_of_present_views():
    targets = jnp.zeros((2, 1, 3, 2))
    predictions = jnp.array([[[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]],
                             [[[5.0, 5.0], [5.0, 5.0], [5.0, 5.0]]]])
    masked = jnp.array([[True, False, True], [True, True, True]])
    # clip 1 is an absent view: its errors (25) must not count; clip 0's masked patches have errors 1 and 9.
    loss, count = reconstruction_loss(predictions, targets, masked, jnp.array([1.0, 0.0]))
    assert float(count) == 2 and float(loss) == pytest.approx((1 + 9) / 2)


def test_masked_encoding_sees_only_the_visible_patches():
    encoder = presets.build_encoder("micro")  # tubelet 2x8x8 on 32^2: 16 positions per step
    x = jax.random.normal(jax.random.key(0), (2, 4, 32, 32, 3))
    visible = jnp.array([[0, 5, 10], [3, 4, 15]], jnp.int32)
    variables = encoder.init(jax.random.key(1), x)
    out = encoder.apply(variables, x, visible=visible)["patch_tokens"]
    assert out.shape == (2, 2, 3, 64)
    patches = np.asarray(patchify(x, (2, 8, 8)))  # [N, T', 16, P]
    hidden = np.ones((2, 16), bool)
    hidden[np.arange(2)[:, None], np.asarray(visible)] = False
    changed = np.where(hidden[:, None, :, None], patches + 3.0, patches)
    y = _unpatchify(changed, x.shape)
    np.testing.assert_allclose(encoder.apply(variables, y, visible=visible)["patch_tokens"], out, atol=1e-5)
    shown = np.where(~hidden[:, None, :, None], patches + 3.0, patches)
    assert not np.allclose(encoder.apply(variables, _unpatchify(shown, x.shape), visible=visible)["patch_tokens"],
                           out, atol=1e-3)
    # The full forward uses the same parameters: masked encoding adds none.
    assert set(_flat(encoder.init(jax.random.key(1), x, visible=visible))) <= set(_flat(variables))


def _unpatchify(patches, shape):
    n, t, h, w, c = shape
    x = np.asarray(patches).reshape(n, t // 2, h // 8, w // 8, 2, 8, 8, c).transpose(0, 1, 4, 2, 5, 3, 6, 7)
    return jnp.asarray(x.reshape(shape))


def test_masked_encoding_refuses_factorised_attention():
    encoder = presets.build_encoder("micro", attention="factorised")
    x = jnp.zeros((1, 4, 32, 32, 3))
    with pytest.raises(ValueError, match="factorised"):
        encoder.init(jax.random.key(0), x, visible=jnp.zeros((1, 2), jnp.int32))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pretrain")
    summary = vk.launch.run(_cfg(PRETRAIN_ONLY, "pretrain.steps=12", "pretrain.lr=3e-3"), workdir)
    return summary, workdir


@pytest.mark.slow
def test_pretrain_stage_trains_and_reports_its_reconstruction_loss(pretrained):
    summary, workdir = pretrained
    result = summary["pretrain"]
    assert result["steps"] == 12 and result["num_examples"] == 16 and np.isfinite(result["reconstruction_loss"])
    records = [json.loads(x) for x in (workdir / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss/reconstruction"] for r in records if "loss/reconstruction" in r]
    assert len(losses) == 4
    # From the random decoder's ~1.7 towards ~1.0, what predicting each normalised patch's mean (zero) scores: this
    # shows the stage optimises its loss, not that 12 steps learn more than that (docs/RESULTS.md measures that).
    assert losses[-1] < 0.8 * losses[0], losses
    assert "export" not in summary  # no student, nothing to export


@pytest.mark.slow
def test_student_starts_from_the_pretrained_encoder(pretrained, tmp_path):
    _, workdir = pretrained
    saved = _flat(_load(workdir))
    mesh = parallel.mesh_from_config(_cfg().mesh)
    for cfg, where in ((_cfg(f"pretrain.checkpoint={workdir}"), tmp_path),
                       (_cfg("stages=('pretrain','student')"), workdir)):
        state = setup.build_stage("student", cfg, where, mesh).initial_state()
        encoder = _flat(state.params[setup.ENCODER])
        pretrained_encoder = {k.split("/", 2)[2]: v for k, v in saved.items()
                              if k.startswith(f"params/{setup.ENCODER}/")}
        assert pretrained_encoder and set(pretrained_encoder) <= set(encoder)
        for key, value in pretrained_encoder.items():
            np.testing.assert_array_equal(encoder[key], value, err_msg=key)
        # The pooling norm is the student's own (the masked encoder has no readout): it keeps its initialisation.
        assert set(encoder) - set(pretrained_encoder) == {"fc_norm/scale", "fc_norm/bias"}
    fresh = _flat(setup.build_stage("student", _cfg(), tmp_path / "none", mesh).initial_state().params[setup.ENCODER])
    assert not np.array_equal(fresh["patch_embed/kernel"], pretrained_encoder["patch_embed/kernel"])


def _load(workdir):
    cfg = _cfg(PRETRAIN_ONLY)
    abstract = jax.eval_shape(setup.model_init(presets.pretrainer_from_config(cfg), cfg, "pretrain"),
                              jax.random.key(0))
    return ckpt.load_variables(workdir / "pretrain" / "final_variables", abstract)


def test_a_missing_pretrained_encoder_is_an_error_naming_the_path(tmp_path):
    cfg = _cfg(f"pretrain.checkpoint={tmp_path / 'nowhere'}")
    mesh = parallel.mesh_from_config(cfg.mesh)
    with pytest.raises(FileNotFoundError, match="nowhere"):  # before the step is compiled
        setup.build_stage("student", cfg, tmp_path, mesh)


@pytest.mark.slow
def test_preempted_pretrain_stage_resumes_to_the_same_variables(tmp_path, preempt_first_call):
    """SIGTERM in the first call (steps 1-3 of 6) saves step 3; the rerun ends with the uninterrupted run's
    exact variables."""
    reference = tmp_path / "reference"
    vk.launch.run(_cfg(PRETRAIN_ONLY), reference)
    disarm = preempt_first_call()
    first = vk.launch.run(_cfg(PRETRAIN_ONLY), tmp_path / "run")
    assert first.get("preempted") and first["pretrain"]["step"] == 3
    disarm()
    second = vk.launch.run(_cfg(PRETRAIN_ONLY), tmp_path / "run")
    assert not second.get("preempted")
    assert second["pretrain"]["reconstruction_loss"] == pytest.approx(
        json.loads((reference / "summary.json").read_text())["pretrain"]["reconstruction_loss"], abs=0)
    a, b = _flat(_load(reference)), _flat(_load(tmp_path / "run"))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("overrides, message", [
    (["stages=('student','pretrain')"], "must come before 'student'"),
    (["stages=('pretrain','student')", "pretrain.checkpoint=/tmp/x"], "one of two encoders"),
    (["stages=('pretrain','student')", "model.student_input=audio", "data.audio=True"], "RGB video encoder"),
    (["stages=('pretrain','student')", "method.name=mskd", "stages=('pretrain','teacher','student')"],
     "per_view_weights"),
    (["stages=('pretrain',)", "pretrain.mask_ratio=1.0"], "mask_ratio"),
    (["stages=('pretrain',)", "pretrain.decoder_width=30", "pretrain.decoder_heads=4"], "decoder_heads"),
])
def test_config_refuses_a_pretrain_that_cannot_work(overrides, message):
    with pytest.raises(ValueError, match=message):
        _cfg(*overrides)


def test_masked_encoding_of_every_position_is_the_plain_encoding():
    """With every position visible (in any order) the masked encoder computes what the plain one does: the
    position embeddings travel with their patches. The plain encoder's per-step tokens are fc_norm of the
    spatial mean of its patch tokens (mean pooling)."""
    encoder = presets.build_encoder("micro")
    x = jax.random.normal(jax.random.key(0), (2, 4, 32, 32, 3))
    variables = encoder.init(jax.random.key(1), x)
    plain = encoder.apply(variables, x)["frame_tokens"]
    order = jnp.stack([jnp.arange(16), jax.random.permutation(jax.random.key(2), 16)]).astype(jnp.int32)
    tokens = encoder.apply(variables, x, visible=order)["patch_tokens"]  # [2, T', 16, D] in `order`
    norm = nn.LayerNorm(epsilon=1e-6)
    steps = norm.apply({"params": variables["params"]["fc_norm"]}, tokens.mean(2))
    np.testing.assert_allclose(steps, plain, atol=1e-5)
    in_place = encoder.apply(variables, x, visible=jnp.stack([jnp.arange(16)] * 2).astype(jnp.int32))["patch_tokens"]
    np.testing.assert_allclose(tokens[1], in_place[1][:, np.asarray(order[1])], atol=1e-5)


@pytest.mark.slow
def test_the_autoencoder_reconstructs_hidden_patches_it_can_infer():
    """Clips whose hidden patches follow from where they are (one fixed image, still): 200 steps take
    the loss far below that of predicting zeros, which a decoder that did not know where each hidden patch is
    could not do."""
    import optax

    from vicokd_jax.models.masked_autoencoder import MaskedVideoAutoencoder

    model = MaskedVideoAutoencoder(presets.build_encoder("micro"), input_mode="rgb", normalize_targets=False)
    image = jax.random.randint(jax.random.key(0), (1, 1, 1, 32, 32, 3), 0, 256).astype(jnp.uint8)
    rgb = jnp.broadcast_to(image, (2, 2, 4, 32, 32, 3))
    view_mask = jnp.ones((2, 2), bool)
    variables = model.init({"params": jax.random.key(1), "masking": jax.random.key(2)}, rgb, view_mask)
    tx = optax.adam(3e-3)
    params, opt_state = variables["params"], tx.init(variables["params"])

    def loss_fn(params, key):
        return model.apply({"params": params}, rgb, view_mask, rngs={"masking": key})["loss"]

    @jax.jit
    def step(params, opt_state, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, key)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    for i in range(200):
        params, opt_state, loss = step(params, opt_state, jax.random.key(100 + i))
    pixels = vk.models.heads.normalize_rgb(rgb)
    zeros_loss = float(jnp.mean(jnp.square(pixels)))  # the loss of predicting 0 for every hidden patch
    assert float(loss_fn(params, jax.random.key(7))) < 0.2 * zeros_loss
