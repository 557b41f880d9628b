"""SynthMV's soundtrack: what the microphone on each camera hears (the actor's movements, the room, distractors).

    audio = soundtrack(world, ["clap"], [(3, 14)], cameras, rng, clip_seconds=3.2, config=SynthConfig())
    # float32 [V, T, F, M]: per view and frame, the AST log-mel window (`vicokd_jax.data.audio.frame_windows`)

Sources, each a mono 16 kHz signal at a position in the room:
* The actor: every action makes the sounds of `SOUNDS`, driven by its own kinematics (the world joints of the
  T frames): swishes (band-passed noise whose loudness follows a limb's speed, the joints interpolated to
  `CONTROL_RATE` with Catmull-Rom splines), and events at the frames where the sampled kinematics reach a
  minimum: claps (the hands' distance), footfalls and landing thumps (a foot's height after it rose), creaks
  (the hips or head at the bottom of a squat or bow). Sound types are shared between actions (walking, kicking
  and turning all have footfalls; left and right sound alike; swish bands vary per example), so audio alone
  tells the class often but not always. Frames outside the actions' spans have no actor sound.
* The room: coloured noise (a random pink/brown mix at a random level per example, `SynthConfig.room_noise`),
  heard by every microphone (independent stretches), plus a little white microphone noise.
* Distractors: `SynthConfig.distractor_rate` short events per clip on average (a door knock, a tone, a
  clatter) at random times and random positions in the room.

Timing: frame f's stretch of sound is `[f, f + 1) * clip_seconds / T`; its pose sounds at the middle (events
within +-20% of it, so that the log-mel window, which may leave out the stretch's last ms, holds them).
Propagation: a source at distance d from a microphone (the camera's position) reaches it `d / 343` s later with
gain `1 / max(d, 0.5)` (moving sources: per 10-ms block); microphones are omnidirectional, so a camera's mic
hears actions its camera does not see. The views are scaled together (relative levels stay) when the loudest
sample would pass 0.98. Swish and room noise are random stretches of a fixed bank of band-limited noise (made
once per process from a fixed seed): cheap, and still a pure function of `rng`.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np

from vicokd_jax.data import audio
from vicokd_jax.data.synthetic_motion import HEAD, L_FOOT, L_HAND, NECK, R_FOOT, R_HAND, SPINE_BASE

if TYPE_CHECKING:
    from vicokd_jax.data.synthetic import SynthConfig
    from vicokd_jax.data.synthetic_render import Camera

SAMPLE_RATE = audio.SAMPLE_RATE
SPEED_OF_SOUND = 343.0  # m/s
CONTROL_RATE = 100  # Hz: kinematics, loudness envelopes and propagation delays are evaluated at this rate
_HOP = SAMPLE_RATE // CONTROL_RATE
_BANK_SEED = 5801
_BANDS = (500.0, 900.0, 1300.0, 1900.0, 2800.0, 4200.0)  # swish centre frequencies (Hz) in the noise bank
_MAX_SPEED = 3.0  # m/s: limb speeds are capped (the pose jumps where an action starts or ends)


class Sound(NamedTuple):
    """One sound an action makes. `kind`: "swish" (band noise at `band` Hz, amplitude `level * speed **
    exponent` of the mean of `joints`), "clap" (a click at each minimum of the distance between the two `joints`
    after it grew by `lift` metres), "step" / "thump" / "creak" (at each minimum of the joints' mean height after
    it rose by `lift`). `level`: amplitude at 1 m."""

    kind: str
    joints: tuple
    level: float
    band: float = 0.0
    exponent: float = 0.5
    lift: float = 0.0


SOUNDS = {
    "wave_right": (Sound("swish", (R_HAND,), 0.10, band=2800.0),),
    "wave_left": (Sound("swish", (L_HAND,), 0.10, band=2800.0),),
    "raise_arms": (Sound("swish", (L_HAND, R_HAND), 0.07, band=1300.0),),
    "clap": (Sound("clap", (L_HAND, R_HAND), 0.5, lift=0.01),),
    "squat": (Sound("creak", (SPINE_BASE,), 0.3, lift=0.1), Sound("swish", (SPINE_BASE,), 0.08, band=500.0)),
    "jump": (Sound("thump", (L_FOOT, R_FOOT), 0.9, lift=0.1), Sound("swish", (L_HAND, R_HAND), 0.05, band=1300.0)),
    "walk": (Sound("step", (L_FOOT,), 0.8, lift=0.02), Sound("step", (R_FOOT,), 0.8, lift=0.02)),
    "kick_right": (Sound("swish", (R_FOOT,), 0.08, band=900.0, exponent=1.0), Sound("step", (R_FOOT,), 0.6, lift=0.1)),
    "kick_left": (Sound("swish", (L_FOOT,), 0.08, band=900.0, exponent=1.0), Sound("step", (L_FOOT,), 0.6, lift=0.1)),
    "punch_right": (Sound("swish", (R_HAND,), 0.08, band=4200.0, exponent=1.0),),
    "punch_left": (Sound("swish", (L_HAND,), 0.08, band=4200.0, exponent=1.0),),
    "bow": (Sound("swish", (NECK,), 0.08, band=500.0), Sound("creak", (HEAD,), 0.2, lift=0.1)),
    "arm_circles": (Sound("swish", (L_HAND, R_HAND), 0.08, band=1900.0),),
    "turn_around": (Sound("step", (L_FOOT,), 0.35, lift=0.01), Sound("step", (R_FOOT,), 0.35, lift=0.01),
                    Sound("swish", (L_FOOT, R_FOOT), 0.05, band=2800.0, exponent=1.0)),
}
DISTRACTORS = ("knock", "tone", "clatter")


def soundtrack(world: np.ndarray, actions: Sequence[str], spans: Sequence[tuple[int, int]],
               cameras: Sequence[Camera], rng: np.random.Generator, *, clip_seconds: float, config: SynthConfig,
               num_mel_bins: int = 32, max_length: int = 16) -> np.ndarray:
    """Per-view log-mel windows of the clip's sound: float32 [V, T, max_length, num_mel_bins] (T = len(world))."""
    waves = waveforms(world, actions, spans, cameras, rng, clip_seconds=clip_seconds, config=config)
    return np.stack([audio.frame_windows(w, len(world), SAMPLE_RATE, num_mel_bins, max_length) for w in waves])


def waveforms(world: np.ndarray, actions: Sequence[str], spans: Sequence[tuple[int, int]],
              cameras: Sequence[Camera], rng: np.random.Generator, *, clip_seconds: float,
              config: SynthConfig) -> np.ndarray:
    """What each camera's microphone records: float32 [V, S], S = clip_seconds * 16 kHz, within [-1, 1].

    world [T, 25, 3] (metres) are the actor's joints per frame; `actions[k]` (names of `SOUNDS`) happens on frames
    [spans[k][0], spans[k][1]); the microphones sit at the cameras' positions.
    """
    t = world.shape[0]
    if world.ndim != 3 or world.shape[1:] != (25, 3) or t < 2:
        raise ValueError(f"synthetic_audio: world must be [T >= 2, 25, 3], got shape {world.shape}")
    unknown = [a for a in actions if a not in SOUNDS]
    if unknown:
        raise ValueError(f"synthetic_audio: no sounds for actions {unknown}; known: {list(SOUNDS)}")
    n_ctrl = int(round(clip_seconds * CONTROL_RATE))
    size = n_ctrl * _HOP
    mics = np.stack([np.asarray(c.position, np.float64) for c in cameras])  # [V, 3]
    joints = _control_rate(world, n_ctrl)  # [N, 25, 3]
    bank = _noise_bank(size)
    out = _room(bank, rng, len(mics), size, config)
    frame_of = np.arange(n_ctrl) * t / n_ctrl  # control block -> frame coordinate (frame f spans [f, f + 1))
    for action, (start, end) in zip(actions, spans):
        active = (frame_of >= start) & (frame_of < end)
        loudness = rng.uniform(0.6, 1.5)
        for sound in SOUNDS[action]:
            level = sound.level * loudness * rng.uniform(0.8, 1.25)
            if sound.kind == "swish":
                _add_swish(out, sound, level, joints, active, mics, bank, rng)
            else:
                _add_events(out, sound, level, world, start, end, mics, rng)
    _add_distractors(out, rng, mics, clip_seconds, config)
    peak = float(np.abs(out).max())
    if peak > 0.98:
        out *= 0.98 / peak
    return np.clip(np.nan_to_num(out), -1.0, 1.0).astype(np.float32)


def _add_swish(out, sound, level, joints, active, mics, bank, rng):
    """Band noise from the mean of `sound.joints` (control rate [N, 25, 3]), loudness following their speed."""
    where = joints[:, list(sound.joints)].mean(1)  # [N, 3]
    speed = np.linalg.norm(np.gradient(where, 1.0 / CONTROL_RATE, axis=0), axis=-1)
    gate = np.convolve(active.astype(np.float64), np.ones(3) / 3, mode="same")  # 30-ms ramps: no clicks
    envelope = level * np.clip(speed, 0.0, _MAX_SPEED) ** sound.exponent * gate
    band = _BANDS[int(np.clip(_BANDS.index(sound.band) + rng.integers(-1, 2), 0, len(_BANDS) - 1))]
    noise = _slice(bank[band], rng, out.shape[1]) * np.repeat(envelope.astype(np.float32), _HOP)
    _add_moving(out, noise, *_paths(mics, where))


def _add_events(out, sound, level, world, start, end, mics, rng):
    """One `sound.kind` grain per frame of [start, end) where the sampled kinematics reach a minimum."""
    t, size = world.shape[0], out.shape[1]
    where = world[:, list(sound.joints)].mean(1)  # [T, 3]
    if sound.kind == "clap":
        curve = np.linalg.norm(world[:, sound.joints[0]] - world[:, sound.joints[1]], axis=-1)
    else:
        curve = where[:, 1]
    for f in _minima(curve, start, end, sound.lift):
        gain, delay = _paths(mics, where[f][None])
        at = int((f + 0.5 + rng.uniform(-0.2, 0.2)) * size / t)
        _add_event(out, level * _grain(sound.kind, rng), at, gain[:, 0], delay[:, 0])


# ------------------------------------------------------------------------------------------------------------
# Kinematics and propagation
# ------------------------------------------------------------------------------------------------------------
def _control_rate(world, n_ctrl):
    """Catmull-Rom interpolation of [T, 25, 3] frames to [n_ctrl, 25, 3]; frame f at the middle of its stretch."""
    t = world.shape[0]
    u = np.clip((np.arange(n_ctrl) + 0.5) * t / n_ctrl - 0.5, 0.0, t - 1.0)
    i = np.minimum(np.floor(u).astype(int), t - 2)
    s = (u - i)[:, None, None]
    p0, p1, p2, p3 = (world[np.clip(i + k, 0, t - 1)] for k in (-1, 0, 1, 2))
    return 0.5 * (2 * p1 + (p2 - p0) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s ** 2
                  + (3 * (p1 - p2) + p3 - p0) * s ** 3)


def _minima(curve, start, end, lift):
    """Frames f in [start, end) where `curve` [T] has a local minimum at least `lift` below its maximum since the
    previous such frame (or since the frame before the span: the move into the action counts)."""
    found, since = [], max(start - 1, 0)
    for f in range(max(start, 1), min(end, len(curve) - 1)):  # the clip's last frame: no telling
        if (curve[f] < curve[f - 1] and curve[f] <= curve[f + 1]
                and curve[since:f + 1].max() - curve[f] >= lift):
            found.append(f)
            since = f
    return found


def _paths(mics, where):
    """Sources at `where` [N, 3] -> gain [V, N] (1 / max(d, 0.5)) and delay [V, N] (samples, d / 343 s)."""
    d = np.linalg.norm(where[None] - mics[:, None], axis=-1)
    return 1.0 / np.maximum(d, 0.5), np.rint(d / SPEED_OF_SOUND * SAMPLE_RATE).astype(np.int64)


def _add_moving(out, signal, gain, delay):
    """out [V, S] += the moving source `signal` [S], per 10-ms block delayed and scaled per microphone."""
    v, size = out.shape
    pad = int(delay.max())
    padded = np.concatenate([np.zeros(pad, np.float32), signal])
    # int32 indices and an in-place product: a third of the time of the int64 / float64 version
    index = np.arange(size, dtype=np.int32).reshape(-1, _HOP)[None] + (pad - delay).astype(np.int32)[:, :, None]
    heard = padded[index]  # [V, N, HOP]
    heard *= gain[:, :, None].astype(np.float32)
    out += heard.reshape(v, size)


def _add_event(out, grain, start, gain, delay):
    """out [V, S] += `grain` emitted at sample `start`, reaching microphone v `delay[v]` samples later."""
    size = out.shape[1]
    for v in range(out.shape[0]):
        a = start + int(delay[v])
        if a < size:
            out[v, a:a + len(grain)] += gain[v] * grain[:size - a]


# ------------------------------------------------------------------------------------------------------------
# Room, distractors and signals
# ------------------------------------------------------------------------------------------------------------
def _room(bank, rng, views, size, config):
    """[V, S] float32: the room's coloured noise (independent stretches per microphone) and microphone noise."""
    lo, hi = config.room_noise
    level = np.exp(rng.uniform(np.log(lo), np.log(hi)))
    pink = rng.uniform(0.0, 1.0)
    mix = (pink, 1.0 - pink) / np.hypot(pink, 1.0 - pink)
    out = np.empty((views, size), np.float32)
    for v in range(views):
        out[v] = level * rng.uniform(0.8, 1.25) * (mix[0] * _slice(bank["pink"], rng, size)
                                                    + mix[1] * _slice(bank["brown"], rng, size))
        out[v] += 3e-4 * _slice(bank["white"], rng, size)
    return out


def _add_distractors(out, rng, mics, clip_seconds, config):
    """Short unrelated events at random times and random places in the room."""
    h = config.room_half
    for _ in range(min(int(rng.poisson(config.distractor_rate)), 6)):
        kind = DISTRACTORS[int(rng.integers(len(DISTRACTORS)))]
        where = np.array([rng.uniform(-1.05, 1.05) * h, rng.uniform(0.0, 2.2), rng.uniform(-1.05, 1.05) * h])
        gain, delay = _paths(mics, where[None])
        level = np.exp(rng.uniform(np.log(0.05), np.log(0.4)))
        start = int(rng.uniform(0.0, clip_seconds - 0.2) * SAMPLE_RATE)
        _add_event(out, level * _grain(kind, rng), start, gain[:, 0], delay[:, 0])


def _shape(noise, profile):
    """`noise` [n] filtered by the amplitude response `profile(frequency in Hz)` (FFT domain), unit rms."""
    spectrum = np.fft.rfft(noise) * profile(np.maximum(np.fft.rfftfreq(len(noise), 1.0 / SAMPLE_RATE), 1.0))
    x = np.fft.irfft(spectrum, len(noise))
    return x / max(float(np.sqrt(np.mean(x ** 2))), 1e-12)


def _band(centre, octaves):
    """A log-Gaussian band-pass response around `centre` Hz, `octaves` wide (one standard deviation)."""
    return lambda f: np.exp(-0.5 * (np.log2(f / centre) / octaves) ** 2)


@functools.lru_cache(maxsize=2)
def _noise_bank(size):
    """{band Hz | "pink" | "brown" | "white": float32 [2 * size] unit-rms noise}, from a fixed seed."""
    rng = np.random.default_rng(_BANK_SEED)
    profiles = {band: _band(band, 0.45) for band in _BANDS}
    profiles.update(pink=lambda f: np.maximum(f, 20.0) ** -0.5, brown=lambda f: np.maximum(f, 20.0) ** -1.0,
                    white=lambda f: np.ones_like(f))
    bank = {}
    for key, profile in profiles.items():
        bank[key] = _shape(rng.standard_normal(2 * size), profile).astype(np.float32)
        bank[key].setflags(write=False)
    return bank


def _slice(noise, rng, size):
    """A random stretch of `size` samples of a bank entry (a view: do not write to it)."""
    start = int(rng.integers(len(noise) - size + 1))
    return noise[start:start + size]


def _decay(n, tau):
    return np.exp(-np.arange(n) / (tau * SAMPLE_RATE))


def _ring(n, freq, tau):
    """A decaying sinusoid: [n]."""
    return np.sin(2 * np.pi * freq * np.arange(n) / SAMPLE_RATE) * _decay(n, tau)


def _burst(rng, n, centre, octaves, tau):
    """A decaying burst of band noise: [n]."""
    return _shape(rng.standard_normal(n), _band(centre, octaves)) * _decay(n, tau)


def _grain(kind, rng):
    """One short event, float32 [n], peak 1 (`Sound` kinds and `DISTRACTORS`)."""
    sr, u = SAMPLE_RATE, rng.uniform
    if kind == "clap":
        x = _burst(rng, int(0.04 * sr), u(1500, 2600), 1.2, u(0.003, 0.006))
    elif kind == "step":  # thud, sole, heel click
        n = int(0.12 * sr)
        x = (_burst(rng, n, u(120, 220), 1.0, 0.03) + 0.6 * _burst(rng, n, u(500, 900), 0.8, 0.015)
             + 0.3 * _burst(rng, n, 3000, 1.0, 0.003))
    elif kind == "thump":  # a falling low tone, the floor, the impact
        n = int(0.3 * sr)
        x = (np.sin(2 * np.pi * np.cumsum(45 + 50 * _decay(n, 0.05)) / sr) * _decay(n, 0.08)
             + 0.8 * _burst(rng, n, 300, 0.8, 0.04) + 0.3 * _burst(rng, n, 1000, 1.0, 0.01))
    elif kind == "creak":
        n = int(u(0.15, 0.3) * sr)  # stick-slip: a jittered train of short rings
        x = np.zeros(n + int(0.02 * sr))
        ring = _ring(int(0.02 * sr), u(450, 900), 0.004)
        at = np.cumsum(u(0.6, 1.4, 40) * sr / u(25, 60)).astype(int)
        for a in at[at < n]:
            x[a:a + len(ring)] += u(0.5, 1.0) * ring
        x = x[:n] * np.sin(np.pi * np.arange(n) / n)
    elif kind == "knock":
        n = int(0.5 * sr)
        x = np.zeros(n)
        hit = _ring(int(0.12 * sr), rng.uniform(160, 260), 0.03)
        hit[:int(0.01 * sr)] += 0.4 * _burst(rng, int(0.01 * sr), 1500, 1.0, 0.002)
        for k in range(int(rng.integers(2, 4))):
            a = int(k * rng.uniform(0.12, 0.18) * sr)
            x[a:a + len(hit)] += hit[:n - a]
    elif kind == "tone":
        n = int(rng.uniform(0.1, 0.4) * sr)
        t, f0 = np.arange(n) / sr, rng.uniform(400, 2500)
        ramp = np.minimum(1.0, np.minimum(np.arange(n), n - 1 - np.arange(n)) / (0.01 * sr))
        x = (np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(4 * np.pi * f0 * t)) * ramp
    elif kind == "clatter":
        n = int(0.4 * sr)
        x = np.zeros(n)
        for _ in range(int(rng.integers(4, 8))):
            a, m = int(rng.uniform(0, 0.3) * sr), int(0.08 * sr)
            x[a:a + m] += rng.uniform(0.4, 1.0) * sum(_ring(m, f, rng.uniform(0.01, 0.03))
                                                       for f in rng.uniform(1500, 6000, 3))
    else:
        raise ValueError(f"synthetic_audio: unknown sound kind {kind!r}")
    return (x / max(float(np.abs(x).max()), 1e-9)).astype(np.float32)
