"""Importing PyTorch ST-GCN weights: both key schemes, round trips, torch parity, errors, the CLI tool."""
import jax
import numpy as np
import pytest

import golden_stgcn
import vicokd_jax as vk
from vicokd_jax.convert import stgcn as conv
from vicokd_jax.models import STGCN, get_graph

CHANNELS = (8, 8, 8, 8, 16, 16, 16, 32, 32, 32)
STRIDES = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)


def pyskl_state_dict(num_classes=5, layout="nturgb+d", channels=CHANNELS, seed=0):
    """A pyskl STGCN + GCNHead state dict written from pyskl's documented names and shapes (not from our table)."""
    rng = np.random.default_rng(seed)
    a = get_graph(layout).A
    k, j = a.shape[0], a.shape[1]
    sd = {}

    def bn(prefix, width):
        sd[prefix + ".weight"] = 1 + 0.1 * rng.standard_normal(width)
        sd[prefix + ".bias"] = 0.1 * rng.standard_normal(width)
        sd[prefix + ".running_mean"] = 0.1 * rng.standard_normal(width)
        sd[prefix + ".running_var"] = 0.5 + rng.random(width)
        sd[prefix + ".num_batches_tracked"] = np.array(7)

    def conv_(prefix, cout, cin, kt):
        sd[prefix + ".weight"] = rng.standard_normal((cout, cin, kt, 1)) / np.sqrt(cin * kt)
        sd[prefix + ".bias"] = 0.1 * rng.standard_normal(cout)

    bn("backbone.data_bn", 3 * j)
    cin = 3
    for i, (cout, stride) in enumerate(zip(channels, STRIDES)):
        b = f"backbone.gcn.{i}."
        sd[b + "gcn.A"] = a.copy()
        sd[b + "gcn.PA"] = 1 + 0.1 * rng.standard_normal(a.shape)
        conv_(b + "gcn.conv", k * cout, cin, 1)
        bn(b + "gcn.bn", cout)
        conv_(b + "tcn.conv", cout, cout, 9)
        bn(b + "tcn.bn", cout)
        if i > 0 and (cin != cout or stride != 1):
            conv_(b + "residual.conv", cout, cin, 1)
            bn(b + "residual.bn", cout)
        cin = cout
    sd["cls_head.fc_cls.weight"] = rng.standard_normal((num_classes, cin)) / np.sqrt(cin)
    sd["cls_head.fc_cls.bias"] = 0.1 * rng.standard_normal(num_classes)
    return {key: np.asarray(v, np.float32) if v.dtype.kind == "f" else v for key, v in sd.items()}


def pyskl_to_original_names(sd):
    """The same weights under the original st-gcn names (as its repository's Model.state_dict())."""
    out = {}
    for key, value in sd.items():
        if key.endswith(".gcn.A"):
            continue
        new = key.replace("backbone.", "").replace("cls_head.fc_cls", "fcn")
        if key.startswith("backbone.gcn."):
            _, _, i, rest = key.split(".", 3)
            rest = (rest.replace("gcn.bn", "tcn.0").replace("tcn.conv", "tcn.2").replace("tcn.bn", "tcn.3")
                    .replace("residual.conv", "residual.0").replace("residual.bn", "residual.1"))
            new = f"edge_importance.{i}" if rest == "gcn.PA" else f"st_gcn_networks.{i}.{rest}"
        if new == "fcn.weight":
            value = value[:, :, None, None]
        out[new] = value
    out["A"] = get_graph("nturgb+d").A
    return out


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).standard_normal((2, 2, 24, 25, 3)).astype(np.float32)


def _logits(model, variables, x):
    return np.asarray(jax.jit(model.apply)(variables, x))


def test_pyskl_state_dict_converts_and_runs(x):
    sd = pyskl_state_dict()
    model = conv.infer_model(sd, "nturgb+d")
    assert (model.num_classes, tuple(model.channels), model.data_bn) == (5, CHANNELS, "VC")
    variables = vk.convert.stgcn_from_torch(sd, "nturgb+d")
    np.testing.assert_array_equal(variables["params"]["block_4"]["residual_conv"]["kernel"],
                                  sd["backbone.gcn.4.residual.conv.weight"][:, :, 0, 0].T)
    np.testing.assert_array_equal(variables["batch_stats"]["block_2"]["tcn_bn"]["var"],
                                  sd["backbone.gcn.2.tcn.bn.running_var"])
    logits = _logits(model, variables, x)
    assert logits.shape == (2, 5) and np.isfinite(logits).all() and logits.std() > 1e-3


def test_both_key_schemes_give_the_same_model(x):
    sd = pyskl_state_dict()
    from_pyskl = vk.convert.stgcn_from_torch(sd, "nturgb+d")
    from_original = vk.convert.stgcn_from_torch(pyskl_to_original_names(sd), "nturgb+d")
    jax.tree.map(np.testing.assert_array_equal, from_pyskl, from_original)
    # Keys may come without the backbone prefix, with a DataParallel prefix, and with a bare fc_cls head.
    bare = {"module." + k.replace("backbone.", "").replace("cls_head.", ""): v for k, v in sd.items()}
    jax.tree.map(np.testing.assert_array_equal, from_pyskl, vk.convert.stgcn_from_torch(bare, "nturgb+d"))


@pytest.mark.parametrize("scheme", conv.SCHEMES)
def test_export_then_import_is_the_identity(scheme):
    sd = pyskl_state_dict(seed=3)
    model = conv.infer_model(sd, "nturgb+d")
    variables = vk.convert.stgcn_from_torch(sd, "nturgb+d")
    exported = vk.convert.stgcn_to_torch(variables, model, scheme=scheme)
    assert ("fcn.weight" in exported) == (scheme == "original")
    jax.tree.map(np.testing.assert_array_equal, variables, vk.convert.stgcn_from_torch(exported, "nturgb+d"))


def test_original_reference_weights_reproduce_via_pyskl_names(fixtures):
    """The golden original checkpoint, renamed to pyskl keys by our exporter, imports to the same variables."""
    sd = golden_stgcn.golden_state_dict(fixtures / "stgcn_parity")
    model = STGCN(60, layout="ntu-rgb+d")
    variables = vk.convert.stgcn_from_torch(sd, "ntu-rgb+d", model=model)
    as_pyskl = vk.convert.stgcn_to_torch(variables, model, scheme="pyskl")
    assert "backbone.gcn.9.gcn.PA" in as_pyskl and "cls_head.fc_cls.weight" in as_pyskl
    jax.tree.map(np.testing.assert_array_equal, variables, vk.convert.stgcn_from_torch(as_pyskl, "ntu-rgb+d"))


def test_wrong_layout_is_caught_from_the_graph_buffer(fixtures):
    sd = golden_stgcn.golden_state_dict(fixtures / "stgcn_parity")
    with pytest.raises(ValueError, match="graph buffer 'A'.*differs from layout 'nturgb\\+d'.*'ntu-rgb\\+d'"):
        vk.convert.stgcn_from_torch(sd, "nturgb+d")


def test_missing_unexpected_and_misshapen_keys_are_all_named():
    sd = pyskl_state_dict()
    del sd["backbone.gcn.3.tcn.bn.running_mean"]
    sd["backbone.gcn.3.extra.weight"] = np.zeros(3, np.float32)
    sd["backbone.gcn.1.tcn.conv.weight"] = np.zeros((8, 8, 5, 1), np.float32)
    with pytest.raises(ValueError) as err:
        vk.convert.stgcn_from_torch(sd, "nturgb+d")
    message = str(err.value)
    assert "missing key: backbone.gcn.3.tcn.bn.running_mean (8,)" in message
    assert "unexpected key: backbone.gcn.3.extra.weight" in message
    assert "wrong shape: backbone.gcn.1.tcn.conv.weight: expected (8, 8, 9, 1), got (8, 8, 5, 1)" in message


def test_headless_state_dict_and_foreign_dicts():
    sd = {k: v for k, v in pyskl_state_dict().items() if not k.startswith("cls_head")}
    assert conv.infer_model(sd, "nturgb+d").num_classes == 0
    with pytest.raises(ValueError, match="needs a classifier"):
        vk.convert.stgcn_from_torch(sd, "nturgb+d", model=STGCN(5, channels=CHANNELS))
    with pytest.raises(ValueError, match="not an ST-GCN state dict.*'conv1.weight'"):
        vk.convert.stgcn_from_torch({"conv1.weight": np.zeros((3, 3))}, "nturgb+d")


@pytest.mark.torch
def test_matches_a_pytorch_pyskl_style_stgcn(x):
    torch = pytest.importorskip("torch")
    from tools.torch_stgcn import TorchSTGCN, randomize_

    reference = randomize_(TorchSTGCN(7, channels=CHANNELS), seed=5).eval()
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    variables = vk.convert.stgcn_from_torch(reference.state_dict(), "nturgb+d")  # torch tensors accepted
    model = conv.infer_model(reference.state_dict(), "nturgb+d")
    np.testing.assert_allclose(_logits(model, variables, x), expected, atol=1e-5, rtol=0)


@pytest.mark.torch
def test_convert_checkpoint_tool_round_trip(tmp_path, x, capsys):
    torch = pytest.importorskip("torch")
    from tools import convert_checkpoint
    from tools.torch_stgcn import TorchSTGCN, randomize_

    reference = randomize_(TorchSTGCN(4, channels=CHANNELS), seed=2).eval()
    pth = tmp_path / "stgcn.pth"
    torch.save({"meta": {"epoch": 80}, "state_dict": reference.state_dict()}, pth)  # mmcv-style nesting
    out = tmp_path / "converted"
    assert convert_checkpoint.main(["--input", str(pth), "--output", str(out), "--layout", "nturgb+d"]) == 0
    assert "pyskl keys, 4 classes" in capsys.readouterr().out
    model, variables = conv.load_stgcn(out)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_logits(model, variables, x), expected, atol=1e-5, rtol=0)

    # A second conversion into the same place is refused and leaves the first intact.
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert convert_checkpoint.main(["--input", str(pth), "--output", str(out), "--layout", "nturgb+d"]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    conv.load_stgcn(out)

    # A file that is not a checkpoint is reported by name.
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="junk.pth: cannot be read as a PyTorch checkpoint"):
        convert_checkpoint.main(["--input", str(junk), "--output", str(tmp_path / "o2"), "--layout", "nturgb+d"])
