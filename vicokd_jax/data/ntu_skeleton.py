"""The raw NTU RGB+D `.skeleton` text format (Kinect v2, 25 joints) and the choice of the people to keep.

`read_skeleton` parses one camera file, tracking bodies by their Kinect tracking id; `select_bodies` keeps the
most active ones in fixed person slots. Re-exported by `vicokd_jax.data.ntu`.
"""
from __future__ import annotations

import os

import numpy as np

NUM_JOINTS = 25
# One joint line: x y z depthX depthY colorX colorY orientationW orientationX orientationY orientationZ trackingState.
JOINT_VALUES = 12
# One body line: trackingId clippedEdges handLeftConfidence handLeftState handRightConfidence handRightState
# isRestricted leanX leanY trackingState.
BODY_VALUES = 10


# ----------------------------------------------------------------------------------------------------------------
# The .skeleton text format
# ----------------------------------------------------------------------------------------------------------------

class EmptySkeletonError(ValueError):
    """A `.skeleton` file that declares 0 frames (a recording without skeleton data)."""


class _Lines:
    """Cursor over the lines of one file; its errors name the file and the 1-based line number."""

    def __init__(self, path: str, lines: list[str]):
        self.path, self.lines, self.pos = path, lines, 0

    def error(self, lineno: int, message: str, cls=ValueError) -> ValueError:
        if lineno == len(self.lines):
            message += " (this is the last line of the file: is it truncated?)"
        return cls(f"{self.path}, line {lineno}: {message}")

    def eof_error(self, what: str) -> ValueError:
        return ValueError(f"{self.path}, line {len(self.lines) + 1}: the file ends after {len(self.lines)} lines, "
                          f"expected {what}: the file is truncated")

    def next(self, what: str) -> tuple[int, str]:
        """(line number, text) of the next line; raises the truncation error when there is none."""
        if self.pos >= len(self.lines):
            raise self.eof_error(what)
        self.pos += 1
        return self.pos, self.lines[self.pos - 1]

    def read_int(self, what: str) -> int:
        lineno, text = self.next(what)
        try:
            value = int(text.strip())
        except ValueError:
            raise self.error(lineno, f"expected {what} (a non-negative integer), found {text.strip()!r}") from None
        if value < 0:
            raise self.error(lineno, f"expected {what} (a non-negative integer), found {value}")
        return value


def _parse_numbers(reader: _Lines, start: int, count: int, width: int, what) -> np.ndarray:
    """Parse lines [start, start+count) (0-based) of `width` numbers each -> float64 [count, width].

    `what(k)` describes line k in errors. Fast path: one numpy conversion of the whole block; on failure, line
    by line to name the bad line.
    """
    block = reader.lines[start:start + count]
    try:
        values = np.array(" ".join(block).split(), dtype=np.float64)
        if values.size == count * width and len(block) == count:
            return values.reshape(count, width)
    except ValueError:
        pass
    for k, text in enumerate(block):
        lineno = start + k + 1
        fields = text.split()
        if len(fields) != width:
            raise reader.error(lineno, f"expected {width} values for {what(k)}, found {len(fields)}: {text.strip()!r}")
        for field in fields:
            try:
                np.float64(field)
            except ValueError:
                raise reader.error(lineno, f"expected a number in {what(k)}, found {field!r}") from None
    if len(block) < count:
        raise reader.eof_error(what(len(block)))
    raise reader.error(start + 1, f"cannot parse {count} lines of {width} numbers from here ({what(0)} onwards)")


def _read_body(reader: _Lines, frame: int, body: int, num_frames: int) -> tuple[int, np.ndarray]:
    """Read one body record -> (tracking id, joint values float64 [25, 12])."""
    where = f"body {body + 1} of frame {frame + 1}/{num_frames}"
    lineno, text = reader.next(f"the body line of {where}")
    fields = text.split()
    if len(fields) != BODY_VALUES:
        raise reader.error(lineno, f"expected {BODY_VALUES} values in the body line of {where} "
                                   f"(trackingId, clippedEdges, ...), found {len(fields)}: {text.strip()!r}")
    try:
        tracking_id = int(fields[0])
        np.array(fields[1:], dtype=np.float64)
    except ValueError:
        raise reader.error(lineno, f"expected an integer tracking id and 9 numbers in the body line of {where}, "
                                   f"found {text.strip()!r}") from None
    joint_line = reader.pos + 1
    num_joints = reader.read_int(f"the joint count of {where}")
    if num_joints != NUM_JOINTS:
        raise reader.error(joint_line, f"expected {NUM_JOINTS} joints for {where} (Kinect v2), found {num_joints}")
    start = reader.pos
    values = _parse_numbers(reader, start, NUM_JOINTS, JOINT_VALUES, lambda k: f"joint {k + 1} of {where}")
    reader.pos += NUM_JOINTS
    bad = ~np.isfinite(values[:, :3]).all(axis=1)
    if bad.any():
        k = int(np.argmax(bad))
        raise reader.error(start + k + 1, f"joint {k + 1} of {where} has x y z = {values[k, :3].tolist()}; "
                                          "expected finite numbers")
    return tracking_id, values


def read_skeleton(path: str | os.PathLike) -> dict:
    """Read one raw NTU RGB+D `.skeleton` file, tracking bodies by their Kinect tracking id across frames.

    Returns a dict:
        joints      [M, T, 25, 3] float32  camera-space x, y, z (metres); 0 in frames where a body is absent
        color_xy    [M, T, 25, 2] float32  joint positions in the 1920x1080 RGB frame (colorX, colorY)
        present     [M, T] bool            body m is listed in frame t
        num_bodies  [T] int32              number of bodies listed in each frame (may be 0)
        body_ids    list[int]              Kinect tracking id of each body, in order of first appearance
        num_frames  int                    T, as declared by the file's first line
        path        str

    M is the number of distinct bodies (0 when no frame lists one). A tracking id listed twice in one frame
    (not produced by the Kinect SDK) becomes two bodies. Raises ValueError naming the file and the line for a
    truncated file, a non-numeric value, a wrong value or joint count, non-finite coordinates or trailing data,
    and EmptySkeletonError (a ValueError) for a file that declares 0 frames.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8", errors="replace").splitlines()  # CRLF or LF
    reader = _Lines(path, lines)
    num_frames = reader.read_int("the frame count")
    if num_frames == 0:
        raise reader.error(1, "the frame count is 0; expected at least 1 frame (no skeleton data recorded)",
                           EmptySkeletonError)
    keys: dict[tuple[int, int], int] = {}  # (tracking id, repeat index within the frame) -> body index
    records: list[tuple[int, int, np.ndarray]] = []  # (body index, frame, values [25, 12])
    num_bodies = np.zeros(num_frames, np.int32)
    for t in range(num_frames):
        num_bodies[t] = reader.read_int(f"the body count of frame {t + 1}/{num_frames}")
        seen: dict[int, int] = {}
        for b in range(num_bodies[t]):
            tracking_id, values = _read_body(reader, t, b, num_frames)
            key = (tracking_id, seen.get(tracking_id, 0))
            seen[tracking_id] = key[1] + 1
            records.append((keys.setdefault(key, len(keys)), t, values))
    for lineno in range(reader.pos + 1, len(lines) + 1):
        if lines[lineno - 1].strip():
            raise reader.error(lineno, f"expected the end of the file after frame {num_frames}/{num_frames}, "
                                       f"found more data: {lines[lineno - 1].strip()[:60]!r}")
    return _assemble_bodies(path, keys, records, num_bodies)


def _assemble_bodies(path: str, keys: dict, records: list, num_bodies: np.ndarray) -> dict:
    num_frames, m = len(num_bodies), len(keys)
    joints = np.zeros((m, num_frames, NUM_JOINTS, 3), np.float32)
    color = np.zeros((m, num_frames, NUM_JOINTS, 2), np.float32)
    present = np.zeros((m, num_frames), bool)
    for body, t, values in records:
        joints[body, t] = values[:, 0:3]  # float64 text value -> float32, as the reference tools do
        color[body, t] = values[:, 5:7]
        present[body, t] = True
    return {"joints": joints, "color_xy": color, "present": present, "num_bodies": num_bodies,
            "body_ids": [tracking_id for tracking_id, _ in keys], "num_frames": num_frames, "path": path}


# ----------------------------------------------------------------------------------------------------------------
# Body selection
# ----------------------------------------------------------------------------------------------------------------

def body_activity(joints: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Motion of each body: sum over joints and x/y/z of the temporal variance over the frames it is present.

    joints [M, T, J, 3], present [M, T] bool (default: any non-zero coordinate) -> [M] float64.
    A body present in fewer than 2 frames has activity 0.
    """
    joints = np.asarray(joints, np.float64)
    if present is None:
        present = np.any(joints != 0, axis=(2, 3))
    activity = np.zeros(joints.shape[0])
    for m in range(joints.shape[0]):
        frames = joints[m, present[m]]
        if len(frames) > 1:
            activity[m] = frames.var(axis=0).sum()
    return activity


def assign_bodies(joints: np.ndarray, present: np.ndarray | None = None, max_bodies: int = 2) -> list[list[int]]:
    """Assign tracked bodies to at most `max_bodies` person slots; returns the body indices of each slot.

    Bodies are taken by decreasing `body_activity` (ties: first appearance). Each goes to the first slot whose
    frames it does not overlap (so a person whose tracking id changed mid-clip is stitched back into one slot),
    else to a new slot while fewer than `max_bodies` exist, else it is dropped (the least active extra people
    or spurious detections). Slot 0 therefore holds the most active body.

    This is the motion ranking of CTR-GCN's / pyskl's NTU preprocessing (by tracking id, most moving first),
    without their extra noise filters (minimum track length, body spread). When every frame lists the same
    bodies in the same order (the usual case) the result equals st-gcn's per-frame `read_xyz` up to the order
    of the slots.
    """
    if present is None:
        present = np.any(np.asarray(joints) != 0, axis=(2, 3))
    activity = body_activity(joints, present)
    order = sorted(range(len(activity)), key=lambda m: (-activity[m], m))
    slots: list[list[int]] = []
    occupied: list[np.ndarray] = []
    for m in order:
        if not present[m].any():
            continue
        for slot, frames in zip(slots, occupied):
            if not np.any(frames & present[m]):
                slot.append(m)
                frames |= present[m]
                break
        else:
            if len(slots) < max_bodies:
                slots.append([m])
                occupied.append(present[m].copy())
    return slots


def select_bodies(joints: np.ndarray, max_bodies: int = 2, present: np.ndarray | None = None) -> np.ndarray:
    """Keep the `max_bodies` most active people (rule of `assign_bodies`): [M, T, J, 3] -> [max_bodies, T, J, 3].

    Slots with no body are zero. `present` [M, T] bool defaults to "any non-zero coordinate".
    """
    joints = np.asarray(joints, np.float32)
    if present is None:
        present = np.any(joints != 0, axis=(2, 3))
    out = np.zeros((max_bodies,) + joints.shape[1:], np.float32)
    for slot, bodies in enumerate(assign_bodies(joints, present, max_bodies)):
        for m in bodies:
            out[slot, present[m]] = joints[m, present[m]]
    return out
