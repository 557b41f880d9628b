"""Parity with the original ST-GCN (yysijie/st-gcn, layout ntu-rgb+d, eval mode) on real NTU samples."""
import json

import jax
import numpy as np
import pytest

import golden_stgcn
import vicokd_jax as vk


@pytest.fixture(scope="module")
def parity(fixtures):
    directory = fixtures / "stgcn_parity"
    goldens = json.loads((directory / "goldens.json").read_text())
    state_dict = golden_stgcn.golden_state_dict(directory)
    model = vk.models.STGCN(60, layout="ntu-rgb+d")
    variables = vk.convert.stgcn_from_torch(state_dict, "ntu-rgb+d", model=model)
    x = np.load(directory / "input_NMTVC.npy")
    out, inter = jax.jit(lambda v, x: model.apply(v, x, method="encode", capture_intermediates=True))(variables, x)
    return dict(dir=directory, goldens=goldens, state_dict=state_dict, variables=variables, out=out,
                blocks=[inter["intermediates"][f"block_{i}"]["__call__"][0] for i in range(10)])


def test_rebuilt_weights_are_the_reference_weights(parity):
    assert golden_stgcn.state_dict_sha256(parity["state_dict"]) == parity["goldens"]["model"]["weights_sha256"]
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(parity["variables"]["params"]))
    assert n_params == parity["goldens"]["model"]["n_params"] == 3_098_832


def test_logits_match_reference_to_1e4(parity):
    reference = np.load(parity["dir"] / "orig_stgcn_logits.npy")
    np.testing.assert_allclose(parity["out"]["logits"], reference, atol=1e-4, rtol=0)
    # The two real samples are told apart (the comparison is not trivially satisfied).
    assert np.abs(reference[0] - reference[1]).max() > 0.1


def test_pooled_feature_matches_reference(parity):
    reference = np.load(parity["dir"] / "orig_stgcn_pooled_feature.npy")
    np.testing.assert_allclose(parity["out"]["feature"], reference, atol=1e-4, rtol=0)
    assert parity["out"]["frame_tokens"].shape == (2, 75, 256)


def test_every_block_output_matches_reference_statistics(parity):
    for i, (ours, ref) in enumerate(zip(parity["blocks"], parity["goldens"]["block_outputs"])):
        ours = np.asarray(ours, np.float64)  # [N*M, T, J, C]; the reference layout is [N*M, C, T, J]
        n, c, t, j = ref["shape"]
        assert ours.shape == (n, t, j, c), f"block {i}"
        np.testing.assert_allclose(ours.mean(), ref["mean"], rtol=1e-4, err_msg=f"block {i} mean")
        np.testing.assert_allclose(ours.std(), ref["std"], rtol=1e-4, err_msg=f"block {i} std")
        np.testing.assert_allclose(np.abs(ours).max(), ref["absmax"], rtol=1e-4, err_msg=f"block {i} absmax")
        np.testing.assert_allclose(ours[0, 0, :8, 0], ref["first8"], atol=1e-4, err_msg=f"block {i} values")
