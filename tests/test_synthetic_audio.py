"""SynthMV's soundtrack (synthetic_audio): layout, determinism, untouched images, physics, informativeness, builder."""
import hashlib

import numpy as np
import pytest

from vicokd_jax.data import audio, schema, synthetic_audio
from vicokd_jax.data.synthetic import L_FOOT, L_HAND, R_FOOT, R_HAND, SPINE_BASE, Camera, SynthConfig, SynthMV
from vicokd_jax.data.synthetic_motion import Pose, forward_kinematics
from test_synthetic_digests import V1_SCENE

# sha256 of rgb + skeleton + human_score, computed from the code before the sound existed (v1's scene): the sound
# must change none of the other arrays.
PINNED = {
    ("train", False, 0): "3e08e903f03f7926b902c4233777876a85d12492d18d86149f66c8a6cfe1cdbe",
    ("train", False, 3): "f9ce1fc1fe209a698350a92feb01344492ed74b34ceb48a0fd51fd01a26ca700",
    ("test", True, 1): "553e17298d1b1ae36e1f04c2abdf995de8fa601962c534c0d1150143a054beb5",
}
# Exact skeletons (the tests recover world joints), in v1's scene, where the physics checks were calibrated.
QUIET = SynthConfig(**V1_SCENE, distractor_rate=0.0, skeleton_noise=0.0)


def _digest(e):
    return hashlib.sha256(e["rgb"].tobytes() + e["skeleton"].tobytes() + e["human_score"].tobytes()).hexdigest()


def _power(a):
    """Audio windows -> mel power (undoing the AudioSet normalisation of `audio.log_mel`)."""
    return np.exp(a.astype(np.float64) * 2 * audio.AUDIOSET_STD + audio.AUDIOSET_MEAN)


def _world(e, ds):
    """World joints [T, 25, 3] from the views that track the actor (NaN on frames no view tracks)."""
    out = np.full(e["skeleton"].shape[2:], np.nan)
    for v, cam in enumerate(ds.cameras):
        tracked = (np.abs(e["skeleton"][v, 0]).sum((1, 2)) > 0) & np.isnan(out[:, 0, 0])
        out[tracked] = e["skeleton"][v, 0][tracked] @ cam.rotation + cam.position
    return out


@pytest.fixture(scope="module")
def quiet():
    ds = SynthMV("train", 120, image_size=8, audio=True, config=QUIET)
    return ds, [ds[i] for i in range(len(ds))]


# ------------------------------------------------------------------------------------------------------------
# The other arrays, layout, determinism
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("audio_on", [False, True])
def test_images_and_skeletons_are_the_pinned_ones_with_and_without_audio(audio_on):
    for (split, multi_label, index), digest in PINNED.items():
        e = SynthMV(split, 4, multi_label=multi_label, audio=audio_on, config=SynthConfig(**V1_SCENE))[index]
        assert _digest(e) == digest, (split, index)
        assert ("audio" in e) == audio_on and ("audio_mask" in e) == audio_on


def test_audio_adds_keys_and_changes_nothing_else():
    on, off = SynthMV("train", 6, audio=True), SynthMV("train", 6)
    for i in (0, 2, 5):
        a, b = on[i], off[i]
        assert set(a) - set(b) == {"audio", "audio_mask"} and set(b) <= set(a)
        for key in b:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_layout_dtypes_and_finite():
    ds = SynthMV("train", 4, audio=True)
    e = ds[1]
    schema.check_example(e, "SynthMV[1]")
    assert e["audio"].shape == (4, 16, 16, 32) and e["audio"].dtype == np.float32
    assert e["audio_mask"].dtype == np.bool_ and e["audio_mask"].all()
    assert np.isfinite(e["audio"]).all() and e["audio"].std() > 0.05
    custom = SynthMV("test", 2, num_frames=8, num_views=3, audio=True, audio_frames=24, audio_mel_bins=16,
                     multi_label=True)[0]
    schema.check_example(custom)
    assert custom["audio"].shape == (3, 8, 24, 16) and np.isfinite(custom["audio"]).all()
    # 3.2 s / 8 frames = 0.4 s = 38 fbank frames per window: 24 of them, no zero padding
    assert (custom["audio"] != custom["audio"][:, :, -1:].min()).any()


def test_waveforms_are_bounded_and_finite_even_when_loud():
    ds = SynthMV("train", 4)
    world = np.zeros((16, 25, 3))
    world[:, :, 1] = np.linspace(0, 1.7, 25)  # a pole standing still, 0.1 m from a microphone
    cams = [Camera(ds.cameras[0].position + np.array([0.0, 0.0, 0.1]), np.eye(3), 1.0)] + ds.cameras[1:]
    loud = SynthConfig(room_noise=(0.5, 0.5), distractor_rate=20.0)
    waves = synthetic_audio.waveforms(world, ["jump"], [(0, 16)], cams, np.random.default_rng(0),
                                      clip_seconds=3.2, config=loud)
    assert waves.shape == (4, 51200) and waves.dtype == np.float32
    assert np.isfinite(waves).all() and np.abs(waves).max() <= 1.0


def test_deterministic_per_index_and_different_across_indices_and_seeds():
    a = SynthMV("train", 10, seed=3, audio=True)[7]["audio"]
    ds = SynthMV("train", 10, seed=3, audio=True)
    _ = [ds[i] for i in (9, 2)]
    np.testing.assert_array_equal(ds[7]["audio"], a)
    assert not np.array_equal(ds[6]["audio"], a)
    assert not np.array_equal(SynthMV("train", 10, seed=4, audio=True)[7]["audio"], a)
    assert not np.array_equal(SynthMV("test", 10, seed=3, audio=True)[7]["audio"], a)


def test_bad_audio_arguments_are_reported():
    with pytest.raises(ValueError, match="audio_frames must be an integer >= 1"):
        SynthMV(audio=True, audio_frames=0)
    with pytest.raises(ValueError, match="audio_mel_bins must be an integer >= 1"):
        SynthMV(audio_mel_bins=-2)
    with pytest.raises(ValueError, match="distractor_rate"):
        SynthConfig(distractor_rate=-1.0)
    with pytest.raises(ValueError, match="no sounds for actions"):
        synthetic_audio.waveforms(np.zeros((4, 25, 3)), ["juggle"], [(0, 4)], SynthMV("train", 1).cameras,
                                  np.random.default_rng(0), clip_seconds=3.2, config=QUIET)


# ------------------------------------------------------------------------------------------------------------
# Physics
# ------------------------------------------------------------------------------------------------------------
def test_a_constructed_clap_attenuation_delay_and_timing():
    """Hands meeting every 4 frames, heard by microphones 1 m and 4 m away: 1/d gain, d/343 s delay, and the
    claps in the frames where the hands are closest."""
    t = 16
    body = forward_kinematics(Pose(), 1.0)
    world = np.repeat(body[None], t, 0)
    middle = np.array([0.0, 1.2, 0.4])
    half = 0.05 + 0.15 * (0.5 + 0.5 * np.cos(2 * np.pi * np.arange(t) / 4))  # smallest at frames 2, 6, 10, 14
    world[:, L_HAND] = middle + half[:, None] * np.array([1.0, 0.0, 0.0])
    world[:, R_HAND] = middle - half[:, None] * np.array([1.0, 0.0, 0.0])
    mics = [Camera(middle + np.array([0.0, 0.0, d]), np.eye(3), 1.0) for d in (1.0, 4.0)]
    waves = synthetic_audio.waveforms(world, ["clap"], [(0, t)], mics, np.random.default_rng(1), clip_seconds=3.2,
                                      config=SynthConfig(room_noise=(1e-5, 1e-5), distractor_rate=0.0))
    energy = (waves.astype(np.float64) ** 2).sum(1)
    assert 14 < energy[0] / energy[1] < 18  # (4 / 1) ** 2
    onsets = [np.flatnonzero(np.abs(w) > 0.3 * np.abs(w).max())[0] for w in waves]
    assert abs((onsets[1] - onsets[0]) - 3.0 / 343.0 * 16000) <= 2  # 140 samples
    windows = audio.frame_windows(waves[0], t, num_mel_bins=32, max_length=16)
    level = np.log(_power(windows).mean((1, 2)))  # [T]
    loud = np.flatnonzero(level > level.min() + 3.0)
    assert set(loud) == {2, 6, 10, 14}, (loud, np.round(level, 1))


def test_nearer_microphones_hear_the_action_louder(quiet):
    ds, examples = quiet
    wins, correlations = [], []
    for e in examples:
        act = e["frame_labels"] >= 0
        where = np.nanmean(_world(e, ds)[act][:, SPINE_BASE], 0)
        distance = np.array([np.linalg.norm(where - cam.position) for cam in ds.cameras])
        energy = _power(e["audio"])[:, act].mean((1, 2, 3))  # [V]
        wins.append(energy[distance.argmin()] > energy[distance.argmax()])
        correlations.append(np.corrcoef(np.log(energy), -np.log(distance))[0, 1])
    assert np.mean(wins) >= 0.9, np.mean(wins)
    assert np.mean(correlations) >= 0.7, np.mean(correlations)


def test_microphones_hear_actions_their_cameras_do_not_see(quiet):
    _, examples = quiet
    gains = []
    for e in examples:
        act = e["frame_labels"] >= 0
        if act.all():
            continue
        power = _power(e["audio"])[..., 3:].mean((2, 3))  # [V, T], above ~270 Hz (below: the room's rumble)
        blind = (np.abs(e["skeleton"]).sum((1, 2, 3, 4)) == 0) & (e["human_score"].mean(1) < 0.3)
        for v in np.flatnonzero(blind):  # the camera never sees the actor
            gains.append(np.log(power[v, act].mean() / power[v, ~act].mean()))
    gains = np.array(gains)
    assert len(gains) >= 40
    assert np.median(gains) >= 1.5, np.median(gains)  # ~6.5 dB and more
    assert (gains >= 0.5).mean() >= 0.9, np.sort(gains)[:10]


def test_claps_sound_where_the_hands_meet_and_jumps_thump_at_landing(quiet):
    ds, examples = quiet
    claps = jumps = 0
    for e in examples:
        name, act = ds.class_names[int(e["label"])], e["frame_labels"] >= 0
        world = _world(e, ds)
        power = _power(e["audio"])  # [V, T, F, M]
        if name == "clap":
            gap = np.linalg.norm(world[:, L_HAND] - world[:, R_HAND], axis=-1)
            span = np.flatnonzero(act)
            after = gap[np.minimum(span + 1, len(gap) - 1)]
            meet = span[(span > 0) & (gap[span] < gap[span - 1]) & (gap[span] <= after)]
            apart = span[(span > 0) & (gap[span] > gap[span - 1]) & (gap[span] >= after)]
            level = np.log(power[..., 14:].mean((0, 2, 3)))  # above ~1.5 kHz
            if len(meet) and len(apart) and np.isfinite(gap[span]).all():
                claps += 1
                loud = np.flatnonzero(level > np.median(level) + 2.0)
                assert len(loud) and set(loud) <= set(meet), (meet, np.round(level, 1))
                assert level[meet].max() > level[apart].max() + 1.0, (meet, apart, np.round(level, 1))
        elif name == "jump":
            feet = world[:, [L_FOOT, R_FOOT], 1].mean(-1)
            span = np.flatnonzero(act)
            airborne = act & (feet > 0.12)
            # Touchdown: the first frame after a flight where the feet stop coming down.
            landed = []
            for f in np.flatnonzero(airborne[:-1] & ~airborne[1:]) + 1:
                down = [g for g in range(f, len(feet) - 1) if feet[g] <= feet[g + 1]][:1]
                if down and act[down[0]]:
                    landed.append(down[0])
            level = np.log(power[..., :4].mean((0, 2, 3)))  # below ~300 Hz
            if airborne.any() and landed and np.isfinite(feet[span]).all():
                jumps += 1
                assert level[landed].min() > level[airborne].max() + 1.0, (landed, np.round(level, 1))
    assert claps >= 4 and jumps >= 4, (claps, jumps)


# ------------------------------------------------------------------------------------------------------------
# Informativeness: audio tells the action often, not always
# ------------------------------------------------------------------------------------------------------------
def _features(a):
    """[V, T, F, M] -> [V, 2M]: mean and spread of each mel bin over the clip."""
    x = a.reshape(a.shape[0], -1, a.shape[-1])
    return np.concatenate([x.mean(1), x.std(1)], -1)


def test_audio_alone_is_informative_but_not_perfect():
    train, test = SynthMV("train", 300, image_size=8, audio=True), SynthMV("test", 150, image_size=8, audio=True)
    tr, te = [train[i] for i in range(300)], [test[i] for i in range(150)]
    x_tr = np.stack([_features(e["audio"]).mean(0) for e in tr])
    y_tr = np.array([int(e["label"]) for e in tr])
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    design = lambda x: np.c_[(x - mu) / sd, np.ones(len(x))]  # noqa: E731
    a = design(x_tr)
    w = np.linalg.solve(a.T @ a + np.eye(a.shape[1]), a.T @ np.eye(12)[y_tr])  # ridge, one-hot targets
    y_te = np.array([int(e["label"]) for e in te])
    accuracy = ((design(np.stack([_features(e["audio"]).mean(0) for e in te])) @ w).argmax(1) == y_te).mean()
    unseen = [(design(_features(e["audio"])[v][None]) @ w).argmax() == int(e["label"])
              for e in te for v in np.flatnonzero(np.abs(e["skeleton"]).sum((1, 2, 3, 4)) == 0)]
    print(f"audio-only ridge accuracy {accuracy:.3f} (all views pooled), {np.mean(unseen):.3f} from one view that "
          f"does not see the actor ({len(unseen)} views)")
    assert 0.3 <= accuracy <= 0.85, accuracy  # chance is 1/12


# ------------------------------------------------------------------------------------------------------------
# Builder
# ------------------------------------------------------------------------------------------------------------
def test_partial_audio_builder_round_trip(tmp_path):
    from vicokd_jax.data.builders.synth_mv import SynthMv, SynthMvConfig

    named = {c.name: c for c in SynthMv.BUILDER_CONFIGS}
    assert named["partial_audio"].audio and named["partial_audio"].overlap == "partial"
    assert str(SynthMv.VERSION) == "2.0.0" and "1.2.0" in SynthMv.RELEASE_NOTES and "2.0.0" in SynthMv.RELEASE_NOTES
    config = SynthMvConfig(name="tiny_audio", num_train=3, num_test=2, num_frames=8, image_size=16, num_views=2,
                           audio=True, audio_frames=8, audio_mel_bins=16)
    builder = SynthMv(config=config, data_dir=str(tmp_path), file_format="array_record")
    assert {"audio", "audio_mask"} <= set(builder.info.features)
    builder.download_and_prepare()
    stored = builder.as_data_source()["train"]
    generated = config.source("train")
    by_id = {generated[i]["id"]: generated[i] for i in range(3)}
    for i in range(3):
        e = stored[i]
        key = e["id"].decode()
        schema.check_example(e, key)
        assert e["audio"].shape == (2, 8, 8, 16) and e["audio"].dtype == np.float32
        for field in ("audio", "audio_mask", "rgb", "skeleton", "human_score"):
            np.testing.assert_array_equal(e[field], by_id[key][field], err_msg=field)
    silent = SynthMv(config=SynthMvConfig(name="tiny_silent", num_train=1, num_test=1), data_dir=str(tmp_path))
    assert "audio" not in silent.info.features
