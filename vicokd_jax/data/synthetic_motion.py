"""SynthMV's actor: the NTU-25 skeleton, forward kinematics from joint angles, and the actions' motion primitives.

Body frame: x = the actor's left, y = up, z = forward; joints in metres, the root on the floor below the spine
base. Used by `vicokd_jax.data.synthetic` (which re-exports `ACTIONS` and the joint indices).
"""
from __future__ import annotations

import dataclasses

import numpy as np

ACTIONS = ("wave_right", "wave_left", "raise_arms", "clap", "squat", "jump", "walk", "kick_right", "punch_right",
           "bow", "arm_circles", "turn_around", "kick_left", "punch_left")

# NTU joint indices (0-based).
(SPINE_BASE, SPINE_MID, NECK, HEAD, L_SHOULDER, L_ELBOW, L_WRIST, L_HAND, R_SHOULDER, R_ELBOW, R_WRIST, R_HAND,
 L_HIP, L_KNEE, L_ANKLE, L_FOOT, R_HIP, R_KNEE, R_ANKLE, R_FOOT, SPINE_SHOULDER, L_TIP, L_THUMB, R_TIP,
 R_THUMB) = range(25)

# Bones drawn as capsules, with the body part that gives their colour.
BONES = (
    (SPINE_BASE, SPINE_MID, "torso"), (SPINE_MID, SPINE_SHOULDER, "torso"), (SPINE_SHOULDER, NECK, "torso"),
    (SPINE_SHOULDER, L_SHOULDER, "torso"), (SPINE_SHOULDER, R_SHOULDER, "torso"),
    (L_SHOULDER, L_ELBOW, "left_arm"), (L_ELBOW, L_WRIST, "left_arm"), (L_WRIST, L_HAND, "left_arm"),
    (L_HAND, L_TIP, "left_arm"), (R_SHOULDER, R_ELBOW, "right_arm"), (R_ELBOW, R_WRIST, "right_arm"),
    (R_WRIST, R_HAND, "right_arm"), (R_HAND, R_TIP, "right_arm"),
    (SPINE_BASE, L_HIP, "torso"), (L_HIP, L_KNEE, "left_leg"), (L_KNEE, L_ANKLE, "left_leg"),
    (L_ANKLE, L_FOOT, "left_leg"), (SPINE_BASE, R_HIP, "torso"), (R_HIP, R_KNEE, "right_leg"),
    (R_KNEE, R_ANKLE, "right_leg"), (R_ANKLE, R_FOOT, "right_leg"), (NECK, HEAD, "head"),
)


# ------------------------------------------------------------------------------------------------------------
# Geometry
# ------------------------------------------------------------------------------------------------------------
def _rotation(a, axis):
    """[..., 3, 3] rotations by the angles `a` [...] (radians) about `axis` (0 = x, 1 = y, 2 = z)."""
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    m = np.zeros(np.shape(a) + (3, 3))
    m[..., axis, axis] = 1.0
    m[..., i, i], m[..., j, j] = c, c
    # About y the sine's sign flips: x' = c x + s z.
    m[..., i, j], m[..., j, i] = (s, -s) if axis == 1 else (-s, s)
    return m


def rot_x(a):
    """[..., 3, 3] rotations by the angles `a` [...] (radians) about the x axis."""
    return _rotation(a, 0)


def rot_y(a):
    """[..., 3, 3] rotations by the angles `a` [...] (radians) about the y axis."""
    return _rotation(a, 1)


def rot_z(a):
    """[..., 3, 3] rotations by the angles `a` [...] (radians) about the z axis."""
    return _rotation(a, 2)


def _dot(u, v):
    """u . v over the last axis, [..., 3] x [..., 3] -> [...], the same numbers as `np.dot` of each pair."""
    return np.matmul(u[..., None, :], v[..., :, None])[..., 0, 0]


def _apply(m, v):
    """m v: [..., 3, 3] x [3] or [..., 3] -> [..., 3], the same numbers as `m @ v` per matrix."""
    return np.matmul(m, v[..., None])[..., 0]


def unit(v):
    """Vectors `v` [..., 3] scaled to length 1 (a near-zero vector is divided by 1e-9 instead)."""
    return v / np.maximum(np.sqrt(_dot(v, v)), 1e-9)[..., None]


def _limb_direction(flexion, abduction, side):
    """Direction [..., 3] of a limb hanging down (0, -1, 0) raised forward by `flexion` and outward by `abduction`.

    Body frame: x = the actor's left, y = up, z = forward. `side` = +1 left, -1 right; angles [...] or scalars.
    """
    return _apply(rot_z(side * abduction) @ rot_x(-flexion), np.array([0.0, -1.0, 0.0]))


def _bend(direction, angle, towards):
    """Rotate `direction` [..., 3] by `angle` [...] in the plane spanned with `towards` (elbow / knee flexion)."""
    perp = towards - _dot(towards, direction)[..., None] * direction
    straight = np.sqrt(_dot(perp, perp)) < 1e-6  # `towards` along `direction`: bend towards the vertical
    perp = np.where(straight[..., None], np.array([0.0, 1.0, 0.0]) - direction[..., 1:2] * direction, perp)
    angle = np.asarray(angle)[..., None]
    return unit(np.cos(angle) * direction + np.sin(angle) * unit(perp))


@dataclasses.dataclass
class Pose:
    """Joint angles (radians) and root offsets of one frame; defaults are a relaxed standing pose."""

    arm_flex: tuple = (0.1, 0.1)  # (left, right)
    arm_abd: tuple = (0.15, 0.15)
    elbow: tuple = (0.2, 0.2)
    hip_flex: tuple = (0.0, 0.0)
    knee: tuple = (0.0, 0.0)
    torso_bend: float = 0.0
    torso_twist: float = 0.0
    root_dy: float = 0.0


def stack_poses(poses) -> Pose:
    """Frames' `Pose`s -> one `Pose` whose angles are arrays [T] (for `forward_kinematics` of all frames)."""
    fields = {}
    for field in dataclasses.fields(Pose):
        values = [getattr(p, field.name) for p in poses]
        if isinstance(field.default, tuple):  # (left, right)
            fields[field.name] = tuple(np.array([v[k] for v in values], float) for k in (0, 1))
        else:
            fields[field.name] = np.array(values, float)
    return Pose(**fields)


def forward_kinematics(pose: Pose, size: float) -> np.ndarray:
    """Forward kinematics: `Pose` -> [..., 25, 3] joints in the body frame (root on the floor below spine base).

    The pose's angles are scalars ([25, 3] joints) or arrays of one shape [...] (`stack_poses`: [T, 25, 3]).
    """
    s = size
    values = [getattr(pose, field.name) for field in dataclasses.fields(Pose)]
    angles = [a for v in values for a in (v if isinstance(v, tuple) else (v,))]
    j = np.zeros(np.broadcast_shapes(*(np.shape(a) for a in angles)) + (25, 3))
    hip_height = 0.95 * s + pose.root_dy
    j[..., SPINE_BASE, 1] = hip_height
    torso = rot_y(pose.torso_twist) @ rot_x(pose.torso_bend)  # [..., 3, 3]
    forward = _apply(torso, np.array([0.0, 0.0, 1.0]))
    up = _apply(torso, np.array([0.0, 1.0, 0.0]))
    j[..., SPINE_MID, :] = j[..., SPINE_BASE, :] + 0.25 * s * up
    j[..., SPINE_SHOULDER, :] = j[..., SPINE_BASE, :] + 0.5 * s * up
    j[..., NECK, :] = j[..., SPINE_BASE, :] + 0.58 * s * up
    j[..., HEAD, :] = j[..., SPINE_BASE, :] + 0.72 * s * up
    for k, (side, shoulder, elbow, wrist, hand, tip, thumb) in enumerate(
            ((1, L_SHOULDER, L_ELBOW, L_WRIST, L_HAND, L_TIP, L_THUMB),
             (-1, R_SHOULDER, R_ELBOW, R_WRIST, R_HAND, R_TIP, R_THUMB))):
        j[..., shoulder, :] = j[..., SPINE_SHOULDER, :] + _apply(torso, np.array([side * 0.18 * s, -0.02 * s, 0.0]))
        upper = _apply(torso, _limb_direction(pose.arm_flex[k], pose.arm_abd[k], side))
        j[..., elbow, :] = j[..., shoulder, :] + 0.30 * s * upper
        fore = _bend(upper, pose.elbow[k], forward + 0.3 * up)
        j[..., wrist, :] = j[..., elbow, :] + 0.27 * s * fore
        j[..., hand, :] = j[..., wrist, :] + 0.07 * s * fore
        j[..., tip, :] = j[..., hand, :] + 0.06 * s * fore
        outward = side * 0.8 * _apply(torso, np.array([1.0, 0.0, 0.0]))
        j[..., thumb, :] = j[..., hand, :] + 0.04 * s * unit(fore - outward)
    for k, (side, hip, knee, ankle, foot) in enumerate(((1, L_HIP, L_KNEE, L_ANKLE, L_FOOT),
                                                        (-1, R_HIP, R_KNEE, R_ANKLE, R_FOOT))):
        j[..., hip, :] = j[..., SPINE_BASE, :] + np.array([side * 0.1 * s, -0.05 * s, 0.0])
        thigh = _limb_direction(pose.hip_flex[k], 0.05, side)
        j[..., knee, :] = j[..., hip, :] + 0.45 * s * thigh
        shin = _apply(rot_x(-(pose.hip_flex[k] - pose.knee[k])), np.array([0.0, -1.0, 0.0]))
        j[..., ankle, :] = j[..., knee, :] + 0.43 * s * shin
        j[..., foot, :] = j[..., ankle, :] + np.array([0.0, -0.03 * s, 0.12 * s])
    return j


# ------------------------------------------------------------------------------------------------------------
# Actions: joint-angle motion primitives
# ------------------------------------------------------------------------------------------------------------
def action_pose(action: str, t: float, omega: float, amp: float, duration: float) -> tuple[Pose, float, float]:
    """Pose at time `t` (seconds since the action started) -> (pose, forward speed factor, extra heading)."""
    wave = np.sin(omega * t)
    rise = 0.5 - 0.5 * np.cos(omega * t)  # 0 -> 1 -> 0 per cycle
    pulse = max(0.0, np.sin(omega * t)) ** 2
    d = np.deg2rad
    p = Pose()
    walk, turn = 0.0, 0.0
    if action in ("wave_right", "wave_left"):
        k = 1 if action == "wave_right" else 0
        abd, flex, elbow = list(p.arm_abd), list(p.arm_flex), list(p.elbow)
        abd[k], flex[k], elbow[k] = d(150) * amp, d(20), d(45) + d(35) * amp * wave
        p = dataclasses.replace(p, arm_abd=tuple(abd), arm_flex=tuple(flex), elbow=tuple(elbow))
    elif action == "raise_arms":
        f = d(20) + d(150) * amp * rise
        p = dataclasses.replace(p, arm_flex=(f, f), elbow=(0.1, 0.1))
    elif action == "clap":
        a = d(5) + d(45) * amp * (0.5 + 0.5 * np.sin(2 * omega * t))
        p = dataclasses.replace(p, arm_flex=(d(80), d(80)), arm_abd=(a, a), elbow=(d(30), d(30)))
    elif action == "squat":
        p = dataclasses.replace(p, hip_flex=(d(95) * amp * rise,) * 2, knee=(d(120) * amp * rise,) * 2,
                                root_dy=-0.38 * amp * rise, torso_bend=d(25) * rise, arm_flex=(d(80) * rise,) * 2)
    elif action == "jump":
        air = max(0.0, np.sin(omega * t))
        crouch = max(0.0, -np.sin(omega * t))
        p = dataclasses.replace(p, root_dy=0.3 * amp * air - 0.15 * crouch, knee=(d(60) * crouch,) * 2,
                                hip_flex=(d(40) * crouch,) * 2, arm_flex=(d(30) + d(120) * air,) * 2)
    elif action == "walk":
        p = dataclasses.replace(p, hip_flex=(d(30) * amp * wave, -d(30) * amp * wave),
                                knee=(d(35) * max(0, -wave), d(35) * max(0, wave)),
                                arm_flex=(-d(30) * amp * wave, d(30) * amp * wave))
        walk = 1.0
    elif action in ("kick_right", "kick_left"):
        k = 1 if action == "kick_right" else 0
        hip, knee = [0.0, 0.0], [0.0, 0.0]
        hip[k], knee[k] = d(85) * amp * pulse, d(70) * (1 - pulse) * np.sqrt(pulse)
        p = dataclasses.replace(p, hip_flex=tuple(hip), knee=tuple(knee), arm_abd=(d(25), d(25)))
    elif action in ("punch_right", "punch_left"):
        k = 1 if action == "punch_right" else 0
        flex, elbow = [d(60), d(60)], [d(110), d(110)]
        flex[k], elbow[k] = d(90), d(110) * (1 - amp * pulse)
        p = dataclasses.replace(p, arm_flex=tuple(flex), elbow=tuple(elbow),
                                torso_twist=(1 if k else -1) * d(20) * pulse)
    elif action == "bow":
        p = dataclasses.replace(p, torso_bend=d(65) * amp * rise, arm_flex=(d(10),) * 2)
    elif action == "arm_circles":
        p = dataclasses.replace(p, arm_abd=(d(90) + d(40) * amp * np.cos(omega * t),) * 2,
                                arm_flex=(d(45) * amp * np.sin(omega * t),) * 2, elbow=(0.05, 0.05))
    elif action == "turn_around":
        turn = 2 * np.pi * min(t / max(duration, 1e-6), 1.0)
        p = dataclasses.replace(p, hip_flex=(d(15) * wave, -d(15) * wave), knee=(d(20) * max(0, wave),) * 2)
    else:
        raise ValueError(f"unknown SynthMV action {action!r}")
    return p, walk, turn


def idle_pose(t: float, phase: float) -> Pose:
    """Standing between actions at time `t` seconds: a slight sway of the torso and arms."""
    sway = 0.03 * np.sin(1.3 * t + phase)
    return Pose(torso_twist=sway, arm_flex=(0.1 + sway, 0.1 - sway))
