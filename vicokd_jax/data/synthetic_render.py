"""SynthMV's cameras and rasteriser: pinhole cameras around the room, capsules drawn with a z-buffer, backgrounds.

Used by `vicokd_jax.data.synthetic` (which re-exports `Camera` and `make_cameras`).
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from vicokd_jax.data.synthetic_motion import unit

if TYPE_CHECKING:
    from vicokd_jax.data.synthetic import SynthConfig


@dataclasses.dataclass(frozen=True)
class Camera:
    """A pinhole camera of a square image: world -> camera coordinates -> pixels."""

    position: np.ndarray  # [3] world
    rotation: np.ndarray  # [3, 3] world -> camera (rows: right, up, forward)
    focal: float  # pixels

    def to_camera(self, points):
        """World points [..., 3] -> camera coordinates [..., 3] (x right, y up, z forward)."""
        return (points - self.position) @ self.rotation.T

    def project(self, cam_points, size):
        """Camera points [..., 3] -> pixel coordinates [..., 2] (u right, v down) for a size x size image."""
        z = np.maximum(cam_points[..., 2], 1e-3)
        u = self.focal * cam_points[..., 0] / z + size / 2
        v = -self.focal * cam_points[..., 1] / z + size / 2
        return np.stack([u, v], -1)


def _look_at(position, target, fov_deg, size) -> Camera:
    forward = unit(np.asarray(target, float) - position)
    right = unit(np.cross(np.array([0.0, 1.0, 0.0]), forward))
    up = np.cross(forward, right)
    focal = (size / 2) / np.tan(np.deg2rad(fov_deg) / 2)
    return Camera(np.asarray(position, float), np.stack([right, up, forward]), focal)


def make_cameras(num_views: int, cfg: SynthConfig, size: int) -> list[Camera]:
    """V cameras around the room. Partial overlap: near the corners/walls, each aimed at its own side of the
    room with a limited field of view. Full overlap: far back, wide lenses, aimed at the room centre."""
    cams = []
    h = cfg.room_half
    for v in range(num_views):
        angle = 2 * np.pi * v / num_views + np.pi / 4
        corner = np.array([np.cos(angle), 0.0, np.sin(angle)])
        if cfg.overlap == "full":
            position = corner * h * 2.2 + np.array([0.0, 3.0, 0.0])
            cams.append(_look_at(position, [0.0, 0.8, 0.0], 62.0, size))
            continue
        position = corner * h * 1.05 + np.array([0.0, cfg.camera_height, 0.0])
        # Aim past the centre towards the camera's own side (rotated), so neighbours overlap only partly.
        side = np.array([np.cos(angle + 0.9), 0.0, np.sin(angle + 0.9)])
        target = 0.15 * h * corner + cfg.aim_offset * h * side + np.array([0.0, 0.6, 0.0])
        cams.append(_look_at(position, target, cfg.fov_deg, size))
    return cams


PART_COLOURS = {  # base colours; per example they are jittered (clothing)
    "torso": (180, 60, 50), "left_arm": (60, 170, 60), "right_arm": (60, 90, 200), "left_leg": (200, 180, 50),
    "right_leg": (160, 70, 180), "head": (230, 190, 160),
}


class Coverage(NamedTuple):
    """The pixels that capsules cover, one entry per covered pixel (sorted by image, then pixel): [K] each."""

    image: np.ndarray  # int: which of the N images
    pixel: np.ndarray  # int: y * size + x
    capsule: np.ndarray  # int: which of the S capsules is the nearest there
    cover: np.ndarray  # that capsule's coverage, in (0, 1]
    depth: np.ndarray  # that capsule's depth


def rasterise(a, b, za, zb, radius, size, dtype=np.float64) -> Coverage:
    """Capsules with a z-buffer on N size x size images, evaluated only at the pixels near each capsule.

    a, b [N, S, 2] pixel endpoints; za, zb [N, S] depths; radius [N, S] pixels. Endpoints, depths and radii are
    rounded to float32; the arithmetic at the pixel centres (x + 0.5, y + 0.5) is in `dtype`. A pixel's coverage
    is clip(radius + 0.5 - distance to the segment, 0, 1); capsules with an end behind the camera (depth <= 0.2)
    are not drawn. Where several capsules cover a pixel the nearest wins (the first in S order among equals).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    n, s = np.shape(za)
    if a.shape != (n, s, 2) or b.shape != (n, s, 2):
        raise ValueError(f"rasterise: endpoints a {a.shape} and b {b.shape} must be [N, S, 2] = [{n}, {s}, 2]")
    f32 = lambda x: np.asarray(x, np.float32).reshape(-1)  # noqa: E731  [N * S]
    za32, zb32, radius32 = f32(za), f32(zb), f32(radius)
    caps = np.flatnonzero((za32 > 0.2) & (zb32 > 0.2))  # [C] the capsules drawn (index image * S + capsule)
    a, b = a.reshape(-1, 2)[caps], b.reshape(-1, 2)[caps]
    count, x, y = _pixels_near(a, b, np.asarray(radius, float).reshape(-1)[caps], size)  # [C], [E], [E]
    t, margin = _along_and_inside(a, b, radius32[caps] + 0.5, count, x, y, dtype)
    hit = np.flatnonzero(margin > 0)  # covered: clip(margin, 0, 1) > 0
    entry = np.repeat(np.arange(len(caps)), count)[hit]  # [H] which drawn capsule
    za32, zb32 = za32[caps][entry], zb32[caps][entry]
    depth = za32.astype(dtype) + t[hit] * (zb32 - za32).astype(dtype)
    capsule, pixel = caps[entry], y[hit] * size + x[hit]  # capsule: image * S + capsule
    nearest = _nearest_per_slot((capsule // s) * (size * size) + pixel, depth)  # sorted by slot
    capsule = capsule[nearest]
    return Coverage(capsule // s, pixel[nearest], capsule % s, np.clip(margin[hit[nearest]], 0.0, 1.0),
                    depth[nearest])


def _along_and_inside(a, b, reach, count, x, y, dtype):
    """Each (capsule, pixel) entry's position along the segment and how far inside the capsule its centre is.

    a, b [C, 2] float64 endpoints, reach [C] float32 (radius + 0.5); count [C] entries per capsule, x, y [E] their
    pixels. -> (t [E] in [0, 1] of the nearest point of a-b, reach - distance [E]), in `dtype`. The endpoints are
    rounded to float32 first, as the arithmetic of the dense form, so that every entry gets the same numbers.
    """
    f32 = lambda v: v.astype(np.float32)  # noqa: E731
    ax, ay, dx, dy = f32(a[:, 0]), f32(a[:, 1]), f32(b[:, 0] - a[:, 0]), f32(b[:, 1] - a[:, 1])
    length2 = np.maximum(dx * dx + dy * dy, 1e-9)
    per_entry = lambda v: np.repeat(v.astype(dtype), count)  # noqa: E731  [C] -> [E]
    rx = (x + 0.5).astype(dtype, copy=False) - per_entry(ax)
    ry = (y + 0.5).astype(dtype, copy=False) - per_entry(ay)
    dx, dy = per_entry(dx), per_entry(dy)
    t = rx * dx
    t += ry * dy
    t /= per_entry(length2)
    np.clip(t, 0.0, 1.0, out=t)
    rx -= t * dx  # now the offset from the nearest point of the segment
    ry -= t * dy
    rx *= rx
    ry *= ry
    rx += ry
    return t, per_entry(reach) - np.sqrt(rx, out=rx)


def _pixels_near(a, b, radius, size):
    """The pixels whose centre may lie within radius + 0.5 of segment a-b: -> (count [C], x [E], y [E]).

    a, b [C, 2] pixel endpoints, radius [C]; each capsule's bounding box (0.05 pixels of slack for the rounding
    of the endpoints) clipped to the image, enumerated row by row, capsule after capsule: count[c] pixels each.
    """
    reach = (radius + 0.55)[:, None]
    lo = np.clip(np.ceil(np.minimum(a, b) - reach - 0.5), 0, size)  # [C, 2] first x, y
    hi = np.clip(np.floor(np.maximum(a, b) + reach - 0.5) + 1, 0, size)  # [C, 2] past the last
    width, height = np.maximum(hi - lo, 0).T
    count = (width * height).astype(np.int64)
    start = np.cumsum(count) - count
    local = np.arange(start[-1] + count[-1] if len(count) else 0) - np.repeat(start, count)  # within the box
    width = np.repeat(width, count)
    row = np.floor((local + 0.5) / width)  # exact: (local + 0.5) / width is >= 1 / (2 size) from an integer
    x = (np.repeat(lo[:, 0], count) + (local - row * width)).astype(np.int64)
    y = (np.repeat(lo[:, 1], count) + row).astype(np.int64)
    return count, x, y


def _nearest_per_slot(slot, depth):
    """Index of the smallest `depth` per distinct `slot` (the first among equals), in increasing slot order.

    slot [K] int in [0, 2^31), depth [K]. A sort of (slot, index) pairs, then per-slot minima (`reduceat`).
    """
    index = np.arange(len(slot))
    order = np.sort((slot.astype(np.int64) << 32) | index) & 0xFFFFFFFF  # by slot, then by index
    slot, depth = slot[order], depth[order]
    first = np.flatnonzero(np.diff(slot, prepend=-1))  # where each slot's run starts
    run = np.cumsum(np.diff(slot, prepend=-1) != 0) - 1  # [K] which run
    nearest = depth == np.minimum.reduceat(depth, first)[run]
    return order[np.minimum.reduceat(np.where(nearest, index, len(slot)), first)]


def background(rng_view, size, wall, floor, light):
    """Per-view wall/floor with a fixed low-frequency texture: [size, size, 3] float."""
    rows = np.linspace(0, 1, size)[:, None, None]
    horizon = 0.45 + 0.1 * rng_view.random()
    wall_img = np.asarray(wall)[None, None] * (0.85 + 0.3 * rows)
    floor_img = np.asarray(floor)[None, None] * (0.7 + 0.4 * rows)
    img = np.where(rows < horizon, wall_img, floor_img) * np.ones((size, size, 1))
    coarse = rng_view.normal(0, 12, (4, 4, 1))
    img = img + np.kron(coarse, np.ones((size // 4 + 1, size // 4 + 1, 1)))[:size, :size]
    return img * light
