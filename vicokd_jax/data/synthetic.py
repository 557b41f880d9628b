"""SynthMV: a procedural multi-view action benchmark, generated on the fly (no download).

An NTU-25-joint actor performs one action (or two, `multi_label=True`) in a room watched by V cameras with limited
fields of view, so an action is seen by only some views and can enter or leave a view mid-clip. Example `i` of
`(seed, split)` is a pure function of those three values: `SynthMV(...)[i]` always returns the same arrays.

Per example (the layout of `vicokd_jax.data.schema`):
    rgb [V,T,H,W,3] uint8, skeleton [V,1,T,25,3] float32 (camera coordinates, metres; 0 where the view does not
    see the actor), human_score [V,T] (simulated person detector), view_mask [V] (all True), label / labels,
    frame_labels [T] (-1 = background before / after the action) or [T,C] multi-hot, id; with `audio=True` also
    audio [V,T,F,M] float32 (each camera's microphone: per frame the AST log-mel window of the frame's
    3.2 / T s of sound) and audio_mask [V] (all True).

How it is made:
* Motion: forward kinematics of a 25-joint skeleton from joint angles (shoulder flexion/abduction, elbow, hip,
  knee, torso bend/twist, root height and translation). Each action is a periodic "motion primitive" of those
  angles; per example the actor's size, position, heading, speed, amplitude, phase, drift, start/end frames and
  colours are random.
* Cameras: pinhole cameras near the room's corners, looking at off-centre points with a limited horizontal field
  of view (`SynthConfig.fov_deg`); `overlap="full"` moves them back with wide lenses so each sees the whole room.
* Rendering: limbs are capsules rasterised with a z-buffer (depth order), head a sphere, optional pillars as
  occluders; per-view wall/floor colours and texture, per-example lighting, depth shading and sensor noise.
* Detector: the score follows the fraction of joints that are inside the image and not occluded, with missed
  detections (short bursts of low scores) and false alarms (high scores in empty views).
* Sound (`synthetic_audio`): every camera has an omnidirectional microphone. Each action makes sounds driven by
  its own kinematics (swishes whose loudness follows a limb's speed, claps where the hands' distance is
  smallest, footfalls and landing thumps where a foot comes down, creaks at the bottom of a squat or bow); sound
  types are shared between actions (footfalls for walk, kicks and turns; left and right alike), so audio alone
  is informative but far from perfect. Coloured room noise and distractors (knock, tone, clatter at random
  times and places) fill the rest; each source reaches each microphone with gain 1 / max(d, 0.5) after d / 343
  s, whatever the camera sees. The sound has its own random stream, so turning it on or off changes no other
  array.

Difficulty knobs (`SynthConfig`): `image_size`, `room_half`, `noise_std`, `limb_radius`, `occluders`, `fov_deg`,
`aim_offset`, `camera_height`, `miss_rate`, `false_alarm_rate`, `skeleton_noise`, `lighting_jitter`,
`amplitude_range`; for the sound `room_noise` (rms range of the room's noise) and `distractor_rate` (distractor
sounds per clip). The aim (checked by the study in docs/RESULTS.md): single RGB views are often right, so an RGB
student has something to learn from each view and the views something to agree on, while the papers' partial
overlap holds (>= 10% of samples seen by exactly one view, <= 25% by all; tests/test_synthetic.py). The defaults
(v2: a 3x3 m room, 52-degree lenses aimed 0.40 x room_half off-centre from 2.2 m, 0.14 m limbs, noise 2) see 1 /
all 4 views in about 32% / 10% of the samples, and a tracked actor is 24 pixels tall (median over views and
clips at 32^2) against 14 in v1.1 (4x4 m, 62 degrees, 0.45, 2.6 m, 0.1 m, noise 3: 4% / 11% seen by one / all
views, and the RGB student alone reached 36% with every label).
v1.0's 8x8 m room (0.06 m limbs, noise 6, 2 pillars) made actors of ~3x8 pixels that no RGB student learned.
Audio alone is a partial cue: a linear classifier on the mean and spread of the log-mel bins gets 55-60% of 12
classes (tests/test_synthetic_audio.py), about as much from a camera that does not see the actor.

The parts: the actor (skeleton, kinematics, motion primitives) is `synthetic_motion`, the cameras and the
rasteriser are `synthetic_render`, the soundtrack is `synthetic_audio`; this module holds the knobs and the
source, and re-exports (`__all__`) `ACTIONS`, the joint indices, `Camera` and `make_cameras`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from vicokd_jax.data.synthetic_motion import (
    ACTIONS, BONES, HEAD, L_ANKLE, L_ELBOW, L_FOOT, L_HAND, L_HIP, L_KNEE, L_SHOULDER, L_THUMB, L_TIP, L_WRIST, NECK,
    R_ANKLE, R_ELBOW, R_FOOT, R_HAND, R_HIP, R_KNEE, R_SHOULDER, R_THUMB, R_TIP, R_WRIST, SPINE_BASE, SPINE_MID,
    SPINE_SHOULDER, Pose, action_pose, forward_kinematics, idle_pose, rot_y, stack_poses)
from vicokd_jax.data.synthetic_audio import soundtrack
from vicokd_jax.data.synthetic_render import PART_COLOURS, Camera, Coverage, background, make_cameras, rasterise

__all__ = [
    "ACTIONS", "Camera", "SynthConfig", "SynthMV", "make_cameras",
    # NTU joint indices (0-based), from synthetic_motion
    "SPINE_BASE", "SPINE_MID", "NECK", "HEAD", "L_SHOULDER", "L_ELBOW", "L_WRIST", "L_HAND", "R_SHOULDER", "R_ELBOW",
    "R_WRIST", "R_HAND", "L_HIP", "L_KNEE", "L_ANKLE", "L_FOOT", "R_HIP", "R_KNEE", "R_ANKLE", "R_FOOT",
    "SPINE_SHOULDER", "L_TIP", "L_THUMB", "R_TIP", "R_THUMB",
]

_SPLIT_IDS = {"train": 0, "test": 1, "validation": 2}
_CLIP_SECONDS = 3.2  # the T frames span this much time: fps = T / 3.2 (5 fps at T = 16)
_AUDIO_STREAM = 1601  # the sound's random stream: [seed, split, index, this], apart from the images'
_BONE_A, _BONE_B = (np.array([bone[k] for bone in BONES]) for k in (0, 1))  # the joints at each capsule's ends


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Scene and difficulty knobs (see the module docstring)."""

    room_half: float = 1.5  # the floor is [-room_half, room_half]^2 metres
    overlap: str = "partial"  # "partial" (corner cameras, limited FOV) | "full" (every camera sees the room)
    fov_deg: float = 52.0  # horizontal field of view of the partial-overlap cameras
    aim_offset: float = 0.40  # how far off-centre (x room_half) each partial-overlap camera aims
    camera_height: float = 2.2  # metres above the floor of the partial-overlap cameras
    occluders: int = 0  # pillars in the room
    scene_seed: int = 0  # the room layout (pillars, per-view wall/floor): part of the benchmark, not of `seed`
    limb_radius: float = 0.14  # metres
    noise_std: float = 2.0  # sensor noise, in uint8 levels
    lighting_jitter: float = 0.25  # per-example, per-view brightness variation
    skeleton_noise: float = 0.01  # metres, Kinect-like jitter
    miss_rate: float = 0.08  # chance a visible frame starts a missed-detection burst
    false_alarm_rate: float = 0.04  # chance an empty frame gets a high score
    amplitude_range: tuple[float, float] = (0.7, 1.2)
    speed_range: tuple[float, float] = (0.7, 1.4)
    action_fraction: tuple[float, float] = (0.55, 0.9)  # share of the clip the action occupies
    room_noise: tuple[float, float] = (0.002, 0.012)  # rms of the room's noise (log-uniform per example)
    distractor_rate: float = 1.5  # distractor sounds (knock, tone, clatter) per clip, on average

    def __post_init__(self):
        if self.overlap not in ("partial", "full"):
            raise ValueError(f"SynthConfig.overlap must be 'partial' or 'full', got {self.overlap!r}")
        if not 0 < self.room_noise[0] <= self.room_noise[1] or self.distractor_rate < 0:
            raise ValueError(f"SynthConfig: need 0 < room_noise[0] <= room_noise[1] and distractor_rate >= 0, got "
                             f"room_noise={self.room_noise}, distractor_rate={self.distractor_rate}")


# ------------------------------------------------------------------------------------------------------------
# The dataset
# ------------------------------------------------------------------------------------------------------------
class SynthMV:
    """Random-access source: `len(ds)`, `ds[i] -> example dict` (see the module docstring).

    Args:
        split: "train", "test" or "validation" (examples differ across splits).
        num_examples: length of the split.
        seed: generation seed (examples differ across seeds).
        num_views, num_frames, image_size: V, T and H = W.
        num_classes: the first `num_classes` of `ACTIONS` (at most 14; default 12).
        multi_label: two actions per clip, one after the other; `labels [C]` and `frame_labels [T, C]`.
        config: scene and difficulty knobs (`SynthConfig`).
        audio: add `audio [V, T, audio_frames, audio_mel_bins]` (each camera's microphone) and `audio_mask [V]`.
        audio_frames, audio_mel_bins: F (10-ms log-mel frames per video frame) and M of the audio windows.
    """

    def __init__(self, split: str = "train", num_examples: int = 1000, seed: int = 0, num_views: int = 4,
                 num_frames: int = 16, image_size: int = 32, num_classes: int = 12, multi_label: bool = False,
                 config: SynthConfig | None = None, audio: bool = False, audio_frames: int = 16,
                 audio_mel_bins: int = 32):
        if split not in _SPLIT_IDS:
            raise ValueError(f"SynthMV split must be one of {list(_SPLIT_IDS)}, got {split!r}")
        if not 2 <= num_classes <= len(ACTIONS):
            raise ValueError(f"SynthMV num_classes must be in [2, {len(ACTIONS)}], got {num_classes}")
        if num_views < 1 or num_frames < 2 or image_size < 8 or num_examples < 0:
            raise ValueError(f"SynthMV: need num_views >= 1, num_frames >= 2, image_size >= 8 and "
                             f"num_examples >= 0; got {num_views}, {num_frames}, {image_size}, {num_examples}")
        for name, value in (("audio_frames", audio_frames), ("audio_mel_bins", audio_mel_bins)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SynthMV {name} must be an integer >= 1, got {value!r}")
        self.split, self.num_examples, self.seed = split, num_examples, seed
        self.audio, self.audio_frames, self.audio_mel_bins = bool(audio), int(audio_frames), int(audio_mel_bins)
        self.num_views, self.num_frames, self.image_size = num_views, num_frames, image_size
        self.num_classes, self.multi_label = num_classes, multi_label
        self.config = config or SynthConfig()
        self.class_names = ACTIONS[:num_classes]
        self.cameras = make_cameras(num_views, self.config, image_size)
        scene = np.random.default_rng([self.config.scene_seed, 7919])
        h = self.config.room_half
        self.pillars = [np.array([scene.uniform(-0.6, 0.6) * h, 0.0, scene.uniform(-0.6, 0.6) * h])
                        for _ in range(self.config.occluders)]
        self.view_style = [(scene.uniform(60, 200, 3), scene.uniform(40, 140, 3), int(scene.integers(2**31)))
                           for _ in range(num_views)]
        # The static part of every view, rendered once: walls, floor and pillars [V, H * W, 3] and the pillars'
        # depth [V, H * W] (inf where none).
        layers = [self._pillar_layer(cam) for cam in self.cameras]
        self._scenes = np.stack([self._scene(v, *layer) for v, layer in enumerate(layers)])
        self._pillar_depth = np.stack([depth for _, _, depth in layers])

    def __len__(self) -> int:
        return self.num_examples

    def __repr__(self) -> str:
        return (f"SynthMV(split={self.split!r}, num_examples={self.num_examples}, seed={self.seed}, "
                f"views={self.num_views}, frames={self.num_frames}, size={self.image_size}, "
                f"classes={self.num_classes}, multi_label={self.multi_label}, overlap={self.config.overlap!r}, "
                f"audio={self.audio})")

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < self.num_examples:
            raise IndexError(f"SynthMV index {index} out of range [0, {self.num_examples})")
        rng = np.random.default_rng([self.seed, _SPLIT_IDS[self.split], index])
        actions, spans = self._sample_actions(rng)
        world = self._animate(rng, actions, spans)  # [T, 25, 3]
        rgb, visible = self._render(rng, world)
        score = self._detector(rng, visible)
        example = {
            "id": f"synth_mv/{self.split}/{self.seed}/{index}",
            "rgb": rgb,
            "skeleton": self._camera_skeleton(rng, world, visible),
            "human_score": score,
            "view_mask": np.ones(self.num_views, bool),
        }
        if self.audio:
            sound = np.random.default_rng([self.seed, _SPLIT_IDS[self.split], index, _AUDIO_STREAM])
            example["audio"] = soundtrack(world, [ACTIONS[a] for a in actions], spans, self.cameras, sound,
                                          clip_seconds=_CLIP_SECONDS, config=self.config,
                                          num_mel_bins=self.audio_mel_bins, max_length=self.audio_frames)
            example["audio_mask"] = np.ones(self.num_views, bool)
        t = self.num_frames
        if self.multi_label:
            labels = np.zeros(self.num_classes, np.float32)
            frames = np.zeros((t, self.num_classes), np.float32)
            for action, (start, end) in zip(actions, spans):
                labels[action] = 1.0
                frames[start:end, action] = 1.0
            example["labels"], example["frame_labels"] = labels, frames
        else:
            frames = np.full(t, -1, np.int32)
            frames[spans[0][0]:spans[0][1]] = actions[0]
            example["label"], example["frame_labels"] = np.int32(actions[0]), frames
        return example

    # -------------------------------------------------------------------------------------------- sampling
    def _sample_actions(self, rng):
        """Actions and their [start, end) frame spans; background frames before and after."""
        t = self.num_frames
        if not self.multi_label:
            length = int(round(t * rng.uniform(*self.config.action_fraction)))
            length = min(max(length, 2), t)
            start = int(rng.integers(0, t - length + 1))
            return [int(rng.integers(self.num_classes))], [(start, start + length)]
        first, second = rng.choice(self.num_classes, size=2, replace=False)
        cut = int(rng.integers(t // 3, 2 * t // 3 + 1))
        return [int(first), int(second)], [(0, cut), (cut, t)]

    def _animate(self, rng, actions, spans):
        """World joints [T, 25, 3] for the sampled actions and actor."""
        cfg = self.config
        t_frames = self.num_frames
        dt = _CLIP_SECONDS / t_frames
        size = rng.uniform(0.85, 1.15)
        speed = rng.uniform(*cfg.speed_range)
        amp = rng.uniform(*cfg.amplitude_range)
        phase = rng.uniform(0, 2 * np.pi)
        omega = 2 * np.pi * 0.6 * speed
        heading = rng.uniform(0, 2 * np.pi)
        position = self._sample_position(rng, size)
        drift = rng.normal(0, 0.25, 2) if rng.random() < 0.5 else np.zeros(2)
        poses, turns, walks = [], np.zeros(t_frames), np.zeros(t_frames)
        for f in range(t_frames):
            now = f * dt
            current = next((k for k, (s, e) in enumerate(spans) if s <= f < e), None)
            if current is None:
                pose = idle_pose(now, phase)
            else:
                start, end = spans[current]
                pose, walks[f], turns[f] = action_pose(ACTIONS[actions[current]], (f - start) * dt + phase / omega,
                                                       omega, amp, (end - start) * dt)
            poses.append(pose)
        facing = heading + turns  # [T]
        steps = np.stack([np.sin(facing), np.cos(facing)], -1) * 0.9 * speed * walks[:, None] + drift  # [T, 2]
        positions = np.zeros((t_frames, 3))  # the root on the floor: x, 0, z
        bound = cfg.room_half * 0.95
        for f in range(t_frames):
            position = np.clip(position + steps[f] * dt, -bound, bound)
            positions[f, [0, 2]] = position
        body = forward_kinematics(stack_poses(poses), size)  # [T, 25, 3]
        return body @ rot_y(facing).swapaxes(-1, -2) + positions[:, None]

    def _sample_position(self, rng, size):
        """A floor position from which at least one camera sees the standing actor (a few tries)."""
        h = self.config.room_half
        standing = forward_kinematics(Pose(), size)
        for _ in range(20):
            pos = rng.uniform(-0.85 * h, 0.85 * h, 2)
            body = standing + np.array([pos[0], 0.0, pos[1]])
            if any(self._inside_fraction(cam, body) >= 0.8 for cam in self.cameras):
                return pos
        return pos

    def _inside_fraction(self, cam, joints):
        p = cam.to_camera(joints)
        uv = cam.project(p, self.image_size)
        inside = (p[..., 2] > 0.2) & np.all((uv >= 0) & (uv < self.image_size), -1)
        return inside.mean()

    # -------------------------------------------------------------------------------------------- rendering
    def _pillar_layer(self, cam):
        """The static occluders as seen by `cam`: (colour [P, 3], coverage [P], depth [P]; inf where none)."""
        pixels = self.image_size ** 2
        rgb, cover = np.zeros((pixels, 3), np.float32), np.zeros(pixels, np.float32)
        depth = np.full(pixels, np.inf, np.float32)
        if not self.pillars:
            return rgb, cover, depth
        bottoms = np.stack(self.pillars)
        tops = bottoms + np.array([0.0, 2.6, 0.0])
        pb, pt = cam.to_camera(bottoms), cam.to_camera(tops)
        radius = cam.focal * 0.25 / np.maximum((pb[:, 2] + pt[:, 2]) / 2, 0.05)
        one = lambda x: x[None]  # noqa: E731  a single image
        seen = rasterise(one(cam.project(pb, self.image_size)), one(cam.project(pt, self.image_size)),
                         one(pb[:, 2]), one(pt[:, 2]), one(radius), self.image_size, np.float32)
        rgb[seen.pixel], cover[seen.pixel], depth[seen.pixel] = 90.0, seen.cover, seen.depth
        return rgb, cover, depth

    def _scene(self, view, pillar_rgb, pillar_cover, pillar_depth):
        """View `view`'s walls, floor and pillars before lighting: [H * W, 3] float64."""
        wall, floor, style_seed = self.view_style[view]
        scene = background(np.random.default_rng(style_seed), self.image_size, wall, floor, 1.0).reshape(-1, 3)
        return scene * (1 - pillar_cover[:, None]) + pillar_rgb * pillar_cover[:, None]

    def _render(self, rng, world):
        """-> rgb [V, T, H, W, 3] uint8 and per-joint visibility [V, T, 25] bool (in the image, not occluded)."""
        colours = {k: np.clip(np.asarray(c) + rng.normal(0, 25, 3), 20, 255) for k, c in PART_COLOURS.items()}
        bone_rgb = np.stack([colours[p] for _, _, p in BONES]).astype(np.float32)  # [S, 3]
        cam_pts = np.stack([cam.to_camera(world) for cam in self.cameras])  # [V, T, 25, 3]
        uv = np.stack([cam.project(p, self.image_size) for cam, p in zip(self.cameras, cam_pts)])  # [V, T, 25, 2]
        z = cam_pts[..., 2]
        rgb = self._compose(rng, self._draw_actor(uv, z), bone_rgb)
        return rgb, self._visibility(uv, z)

    def _draw_actor(self, uv, z):
        """The actor's capsules in every view and frame, in front of the pillars: `Coverage` of V * T images.

        uv [V, T, 25, 2] pixel and z [V, T, 25] camera depth of the joints.
        """
        cfg = self.config
        bone_r = np.array([0.11 if p == "head" else cfg.limb_radius * (1.3 if p == "torso" else 1.0)
                           for _, _, p in BONES])
        seg_za, seg_zb = z[..., _BONE_A], z[..., _BONE_B]  # [V, T, S]
        focal = np.array([cam.focal for cam in self.cameras])[:, None, None]
        seg_r = focal * bone_r / np.maximum((seg_za + seg_zb) / 2, 0.2)
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731  [V * T, ...]
        seen = rasterise(flat(uv[:, :, _BONE_A]), flat(uv[:, :, _BONE_B]), flat(seg_za), flat(seg_zb), flat(seg_r),
                         self.image_size)
        front = seen.depth < self._pillar_depth[seen.image // self.num_frames, seen.pixel]
        return Coverage(*(field[front] for field in seen))

    def _compose(self, rng, seen, bone_rgb):
        """Lit scenes, the actor where `seen` (V * T images) and sensor noise: rgb [V, T, H, W, 3] uint8.

        bone_rgb [S, 3] float32 capsule colours. Draws each view's lighting, then its noise, from `rng`.
        """
        cfg, size, t, v_count = self.config, self.image_size, self.num_frames, self.num_views
        view, frame = np.divmod(seen.image, t)
        bounds = np.searchsorted(view, np.arange(v_count + 1))  # view v's entries: bounds[v]:bounds[v + 1]
        shade = np.clip(1.25 - 0.06 * seen.depth, 0.5, 1.2)[:, None]  # [K, 1] nearer is brighter
        rgb = np.empty((v_count, t, size * size, 3), np.uint8)
        img = np.empty((t, size * size, 3))  # [T, P, 3] one view, reused
        for v in range(v_count):
            light = 1.0 + rng.uniform(-cfg.lighting_jitter, cfg.lighting_jitter)
            rng.standard_normal(out=img)
            img *= cfg.noise_std  # = rng.normal(0, noise_std, ...): the same numbers from the same stream
            k = slice(bounds[v], bounds[v + 1])
            at, cover = (frame[k], seen.pixel[k]), seen.cover[k, None]
            noise = img[at]
            lit = self._scenes[v] * light  # [P, 3]
            img += lit
            actor = bone_rgb[seen.capsule[k]] * light * shade[k] * cover
            img[at] = lit[seen.pixel[k]] * (1 - cover) + actor + noise
            rgb[v] = np.clip(img, 0, 255, out=img)
        return rgb.reshape(v_count, t, size, size, 3)

    def _visibility(self, uv, z):
        """[V, T, 25] bool: the joint is in front of the camera, inside the image and not behind a pillar."""
        size = self.image_size
        inside = (z > 0.2) & np.all((uv >= 0) & (uv < size), -1)
        pixel = np.clip(uv.astype(int), 0, size - 1)
        pixel = (pixel[..., 1] * size + pixel[..., 0]).reshape(self.num_views, -1)  # [V, T * 25]
        behind_pillar = np.take_along_axis(self._pillar_depth, pixel, 1).reshape(z.shape) < z
        return inside & ~behind_pillar

    # -------------------------------------------------------------------------------------------- outputs
    def _detector(self, rng, visible):
        """Simulated person detector: [V, T] float32 scores from joint visibility, with misses and false alarms."""
        cfg = self.config
        fraction = visible.mean(-1)  # [V, T]
        score = 1 / (1 + np.exp(-12 * (fraction - 0.45)))
        score = np.clip(score * rng.uniform(0.85, 1.0, score.shape) + rng.normal(0, 0.03, score.shape), 0, 1)
        v, t = score.shape
        for view in range(v):
            f = 0
            while f < t:
                if score[view, f] >= 0.5 and rng.random() < cfg.miss_rate:
                    burst = int(rng.integers(1, 4))
                    score[view, f:f + burst] = rng.uniform(0.0, 0.35, len(score[view, f:f + burst]))
                    f += burst
                    continue
                if score[view, f] < 0.5 and rng.random() < cfg.false_alarm_rate:
                    score[view, f] = rng.uniform(0.5, 0.85)
                f += 1
        return score.astype(np.float32)

    def _camera_skeleton(self, rng, world, visible):
        """[V, 1, T, 25, 3] camera-space joints with Kinect-like noise; 0 on frames the view does not see."""
        out = []
        for v, cam in enumerate(self.cameras):
            pts = cam.to_camera(world) + rng.normal(0, self.config.skeleton_noise, world.shape)
            tracked = visible[v].mean(-1) >= 0.5  # the sensor tracks a body it mostly sees
            out.append(np.where(tracked[:, None, None], pts, 0.0))
        return np.stack(out)[:, None].astype(np.float32)
