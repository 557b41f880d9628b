"""Skeleton layouts and the ST-GCN spatial-configuration partition (Yan et al., AAAI 2018).

A layout is a set of undirected bones between joints plus a centre joint. The partition splits each joint's
1-hop neighbourhood (self included) into K=3 subsets by distance to the centre:

    A[0]  root      the joint itself
    A[1]  centripetal+root-distance neighbours   (hop 1, neighbour no farther from the centre than the joint)
    A[2]  centrifugal neighbours                  (hop 1, neighbour farther from the centre)

Each entry is taken from the column-normalised adjacency (self-loops included): column i is divided by the degree
of joint i, so aggregation `out[w] = sum_v x[v] A[k, v, w]` averages over the neighbourhood of w. This is the
convention of both reference implementations (yysijie/st-gcn `net/utils/graph.py` and pyskl `utils/graph.py`),
whose matrices are identical for the same edge list.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

# Bones as 1-based (child, parent) pairs, the way the NTU and Kinect documentation number joints.
_NTU_TRUNK_AND_LIMBS = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
    (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
)

# NOTE: the two NTU variants differ only at the hands. The original st-gcn chains hand tip -> thumb -> hand
# (22->23->8, 24->25->12); pyskl/mmaction2 attach both tip and thumb to the hand (22->8, 23->8, 24->12, 25->12).
# Checkpoints trained with one graph are only correct with that graph.
_LAYOUT_BONES_1BASED = {
    "ntu-rgb+d": _NTU_TRUNK_AND_LIMBS + ((22, 23), (23, 8), (24, 25), (25, 12)),
    "nturgb+d": _NTU_TRUNK_AND_LIMBS + ((22, 8), (23, 8), (24, 12), (25, 12)),
    # NW-UCLA: Kinect v1, 20 joints (hip centre 1, spine 2, shoulder centre 3, head 4, ...).
    "nw-ucla": (
        (1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10), (12, 11),
        (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
    ),
    # COCO-17 keypoints (0 nose, 1-4 eyes/ears, 5-10 arms, 11-16 legs), written 1-based here for uniformity.
    "coco": tuple((a + 1, b + 1) for a, b in (
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8), (8, 6),
        (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2),
    )),
}
_NUM_JOINTS = {"ntu-rgb+d": 25, "nturgb+d": 25, "nw-ucla": 20, "coco": 17}
# 1-based centre joints: NTU spine-shoulder (21, as both references), NW-UCLA shoulder centre (3), COCO nose (1).
_CENTRE_1BASED = {"ntu-rgb+d": 21, "nturgb+d": 21, "nw-ucla": 3, "coco": 1}

LAYOUTS = tuple(_LAYOUT_BONES_1BASED)


@dataclasses.dataclass(frozen=True)
class Graph:
    """A skeleton layout: joint count, 0-based bones, centre joint, and the K=3 partitioned adjacency."""

    layout: str
    num_joints: int
    edges: tuple[tuple[int, int], ...]  # 0-based (child, parent)
    center: int  # 0-based

    @property
    def A(self) -> np.ndarray:
        """[3, J, J] float32 spatial-configuration partition (see the module docstring)."""
        return spatial_partition(self.num_joints, self.edges, self.center)


@functools.cache
def get_graph(layout: str) -> Graph:
    """The `Graph` of a named layout: one of `LAYOUTS`."""
    if layout not in _LAYOUT_BONES_1BASED:
        raise ValueError(f"unknown skeleton layout {layout!r}; expected one of {list(LAYOUTS)}")
    edges = tuple((a - 1, b - 1) for a, b in _LAYOUT_BONES_1BASED[layout])
    return Graph(layout=layout, num_joints=_NUM_JOINTS[layout], edges=edges, center=_CENTRE_1BASED[layout] - 1)


def hop_distance(num_joints: int, edges, max_hop: int = 1) -> np.ndarray:
    """[J, J] hop distance between joints, `inf` beyond `max_hop`."""
    adjacency = np.eye(num_joints, dtype=bool)
    for i, j in edges:
        adjacency[i, j] = adjacency[j, i] = True
    dist = np.full((num_joints, num_joints), np.inf)
    reach = np.eye(num_joints, dtype=bool)
    dist[reach] = 0
    for hop in range(1, max_hop + 1):
        reach = (reach.astype(np.int64) @ adjacency.astype(np.int64)) > 0
        dist[reach & np.isinf(dist)] = hop
    return dist


def normalize_columns(adjacency: np.ndarray) -> np.ndarray:
    """Divide each column by its sum (joints with no neighbours stay zero): `A @ diag(1/deg)`."""
    degree = adjacency.sum(axis=0)
    inv = np.where(degree > 0, 1.0 / np.where(degree > 0, degree, 1.0), 0.0)
    return adjacency * inv[None, :]


def spatial_partition(num_joints: int, edges, center: int) -> np.ndarray:
    """[3, J, J] float32: the root / centripetal / centrifugal split of the normalised 1-hop adjacency.

    Entry [k, j, i] weights the message from joint j to joint i; the centre distance of the *source* j is compared
    with that of the *target* i, as in the references.

    NOTE: as in both references, distances to the centre are hop distances truncated at max_hop=1, so every joint
    more than one bone from the centre is "infinitely" far: inf >= inf puts most neighbour pairs in A[1], and only
    the pairs touching the centre's neighbourhood land in A[2] (8 entries for NTU). Pretrained weights depend on it.
    """
    hops = hop_distance(num_joints, edges, max_hop=1)
    norm = normalize_columns((hops <= 1).astype(np.float64))
    to_centre = hops[:, center]
    root = np.where(hops == 0, norm, 0.0)
    neighbour = hops == 1
    closer_or_equal = to_centre[:, None] >= to_centre[None, :]  # [j, i]: source j no closer to the centre than i
    centripetal = np.where(neighbour & closer_or_equal, norm, 0.0)
    centrifugal = np.where(neighbour & ~closer_or_equal, norm, 0.0)
    return np.stack([root, centripetal, centrifugal]).astype(np.float32)
