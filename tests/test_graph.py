"""Skeleton layouts and the K=3 spatial partition."""
import numpy as np
import pytest

from vicokd_jax.models import graph as G

HAND_JOINTS_1BASED = {8, 12, 22, 23, 24, 25}


def test_original_ntu_partition_matches_reference_buffer(fixtures):
    reference = np.load(fixtures / "stgcn_parity" / "orig_graph_A_ntu_spatial.npy")
    np.testing.assert_array_equal(G.get_graph("ntu-rgb+d").A, reference)


def test_ntu_variants_differ_exactly_at_the_hands():
    original, pyskl = G.get_graph("ntu-rgb+d"), G.get_graph("nturgb+d")
    # 0-based: the original chains tip 22 -> thumb 23 -> hand 8; pyskl hangs tip 22 on hand 8 directly.
    assert set(original.edges) - set(pyskl.edges) == {(21, 22), (23, 24)}
    assert set(pyskl.edges) - set(original.edges) == {(21, 7), (23, 11)}
    diff = np.argwhere(original.A != pyskl.A)  # [k, source j, target i]
    assert len(diff) > 0
    hand = {j - 1 for j in HAND_JOINTS_1BASED}
    # Every changed weight flows into a hand joint (a column whose neighbourhood changed) or out of a hand tip.
    assert all(i in hand or j in hand for _, j, i in diff)
    # Away from the hands the matrices are identical.
    body = [j for j in range(25) if j not in hand]
    np.testing.assert_array_equal(original.A[:, body][:, :, body], pyskl.A[:, body][:, :, body])


@pytest.mark.parametrize("layout,joints,centre", [("ntu-rgb+d", 25, 20), ("nturgb+d", 25, 20),
                                                   ("nw-ucla", 20, 2), ("coco", 17, 0)])
def test_partition_is_column_normalised_and_k3(layout, joints, centre):
    g = G.get_graph(layout)
    assert (g.num_joints, g.center) == (joints, centre)
    assert len(g.edges) == joints - 1  # a tree
    assert g.A.shape == (3, joints, joints) and g.A.dtype == np.float32
    # Each target joint's incoming weights over all subsets sum to 1 (the neighbourhood mean).
    np.testing.assert_allclose(g.A.sum(axis=(0, 1)), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.diag(np.diag(g.A[0])), g.A[0])  # subset 0 is the joint itself
    # Every bone appears in both directions across subsets 1 and 2, nowhere else.
    support = (g.A[1] + g.A[2]) > 0
    expected = np.zeros((joints, joints), bool)
    for a, b in g.edges:
        expected[a, b] = expected[b, a] = True
    np.testing.assert_array_equal(support, expected)


def test_hand_computed_entries_of_ntu_partition():
    a = G.get_graph("ntu-rgb+d").A
    # Joint 1 (spine base, index 0) has neighbours 2, 13, 17 and itself: degree 4.
    assert a[0, 0, 0] == pytest.approx(1 / 4)
    # The centre (21, index 20) has neighbours 2, 3, 5, 9 and itself: degree 5; its neighbours point inward.
    assert a[0, 20, 20] == pytest.approx(1 / 5)
    # Message 21 -> 2 (index 20 -> 1): the source is the centre, closer than the target: centrifugal subset.
    assert a[2, 20, 1] == pytest.approx(1 / 3) and a[1, 20, 1] == 0
    # Message 2 -> 21: the source is farther from the centre: centripetal subset, weight 1/deg(21).
    assert a[1, 1, 20] == pytest.approx(1 / 5) and a[2, 1, 20] == 0


def test_truncated_hop_quirk_of_references():
    """Beyond one hop from the centre both references see 'infinite' distance, so A[2] is nearly empty."""
    assert [int((s > 0).sum()) for s in G.get_graph("ntu-rgb+d").A] == [25, 40, 8]


def test_unknown_layout_names_the_choices():
    with pytest.raises(ValueError, match="unknown skeleton layout 'openpose'.*nturgb\\+d"):
        G.get_graph("openpose")
