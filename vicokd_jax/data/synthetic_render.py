"""SynthMV's cameras and rasteriser: pinhole cameras around the room, capsules drawn with a z-buffer, backgrounds.

Used by `vicokd_jax.data.synthetic` (which re-exports `Camera` and `make_cameras`).
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

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
        position = corner * h * 1.05 + np.array([0.0, 2.6, 0.0])
        # Aim past the centre towards the camera's own side (rotated), so neighbours overlap only partly.
        side = np.array([np.cos(angle + 0.9), 0.0, np.sin(angle + 0.9)])
        target = 0.15 * h * corner + cfg.aim_offset * h * side + np.array([0.0, 0.6, 0.0])
        cams.append(_look_at(position, target, cfg.fov_deg, size))
    return cams


PART_COLOURS = {  # base colours; per example they are jittered (clothing)
    "torso": (180, 60, 50), "left_arm": (60, 170, 60), "right_arm": (60, 90, 200), "left_leg": (200, 180, 50),
    "right_leg": (160, 70, 180), "head": (230, 190, 160),
}


def rasterise(a, b, za, zb, radius, colour, px, py):
    """Capsules with a z-buffer, evaluated at pixel centres `(px, py)` [P].

    a, b [N, S, 2] pixel endpoints; za, zb [N, S] depths; radius [N, S] pixels; colour [N, S, 3].
    -> (rgb [N, P, 3] of the nearest capsule per pixel, coverage [N, P] in [0, 1], depth [N, P]).
    """
    # NOTE: x and y are kept as separate float32 arrays; reductions over a trailing axis of size 2 are what made
    # a vectorised version slow.
    f32 = lambda x: np.asarray(x, np.float32)[..., None]  # noqa: E731  [N, S, 1]: broadcasts against pixels
    ax, ay, dx, dy = f32(a[..., 0]), f32(a[..., 1]), f32(b[..., 0] - a[..., 0]), f32(b[..., 1] - a[..., 1])
    rx, ry = px - ax, py - ay  # [N, S, P]
    t = np.clip((rx * dx + ry * dy) / np.maximum(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    ex, ey = rx - t * dx, ry - t * dy
    dist = np.sqrt(ex * ex + ey * ey)
    za32, zb32 = f32(za), f32(zb)
    depth = za32 + t * (zb32 - za32)
    cover = np.clip(f32(radius) + 0.5 - dist, 0.0, 1.0)
    cover *= (za32 > 0.2) & (zb32 > 0.2)  # capsules with an end behind the camera are not drawn
    zbuf = np.where(cover > 0, depth, np.inf)
    nearest = zbuf.argmin(1)  # [N, P]
    take = lambda x: np.take_along_axis(x, nearest[:, None], 1)[:, 0]  # noqa: E731
    rgb = np.take_along_axis(np.asarray(colour, np.float32), nearest[..., None], 1)  # [N, P, 3]
    return rgb, take(cover), take(zbuf)


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
