"""Sharding by rules (`config.mesh.rules`), the size-heuristic fallback, optimizer state mirroring the parameters,
hybrid (DCN) meshes, ViT-B memory per device under FSDP rules, and a rule-sharded step equal to the 1-device step.

No ViT-B weights are ever created: per-device bytes come from `jax.eval_shape` trees and `sharding.shard_shape`.
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, PartitionSpec as P

import vicokd_jax as vk
from vicokd_jax import parallel
from vicokd_jax.models import presets
from vicokd_jax.train import setup
from vicokd_jax.train import step as step_lib
from vicokd_jax.train.state import create_state, make_optimizer, state_shardings

# Rules whose specs differ from what the size heuristic would give the same tensors (fsdp = 4, min_size = 1).
MICRO_RULES = (
    ("rgb_encoder/encoder/block_0/mlp/fc1/kernel$", ("fsdp", None)),  # heuristic: (None, 'fsdp') on the 128
    ("mlp/fc1/kernel$", (("data", "fsdp"), None)),                     # the other blocks' fc1: both axes
    ("patch_embed/kernel$", (None, "fsdp", None, None, None)),        # heuristic: the last (64) dimension
    ("heads/head/kernel$", ()),                                        # heuristic: sharded
)
# FSDP rules for ViT-B: the large kernels over the fsdp axis; everything else by the heuristic.
VIT_FSDP_RULES = (
    ("/(query|key|value)/kernel$", ("fsdp", None, None)),
    ("/out/kernel$", (None, None, "fsdp")),
    ("mlp/fc1/kernel$", (None, "fsdp")),
    ("mlp/fc2/kernel$", ("fsdp", None)),
    ("patch_embed/kernel$", (None, None, None, None, "fsdp")),
    ("tcn_conv/kernel$", (None, None, None, "fsdp")),
    ("(bias|scale)$", ()),
)


def _abstract(model, shapes: dict):
    """`jax.eval_shape` of `model.init` on ShapeDtypeStructs: variables as shapes, nothing allocated."""
    args = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in shapes]
    return jax.eval_shape(model.init, jax.random.key(0), *args)


def _micro_student_params():
    sh = presets.example_shapes("micro", 1, 2)
    return _abstract(presets.build_student("micro", 12), [(sh["rgb"], jnp.uint8), (sh["view_mask"], jnp.bool_)])


def _specs(shardings) -> dict:
    """{"/"-joined path: PartitionSpec} of a tree of NamedShardings."""
    return {parallel.key_path(p): s.spec for p, s in jax.tree_util.tree_flatten_with_path(shardings)[0]}


def _per_device_bytes(tree, shardings) -> int:
    return int(sum(np.prod(s.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
                   for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings))))


# ------------------------------------------------------------------------------------------------------------
# Rules
# ------------------------------------------------------------------------------------------------------------
def test_rules_shard_exactly_the_parameters_they_name_and_the_rest_falls_back():
    mesh = parallel.make_mesh(2, 4)
    params = _micro_student_params()["params"]
    specs = _specs(parallel.variable_shardings(mesh, params, MICRO_RULES, min_size=1))
    shapes = {parallel.key_path(p): x.shape for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    hits = [0] * len(MICRO_RULES)
    for path, shape in shapes.items():
        rule = next((i for i, (regex, _) in enumerate(MICRO_RULES) if re.search(regex, path)), None)
        fallback = parallel.fallback_spec(shape, 4, 1)
        if rule is None:
            assert specs[path] == fallback, path
            continue
        hits[rule] += 1
        assert specs[path] == P(*MICRO_RULES[rule][1]), (path, specs[path])
        assert specs[path] != fallback, f"{path}: the rule gives what the heuristic would; the test proves nothing"
    assert hits == [1, 1, 1, 1], hits  # micro has 2 blocks: block_0's fc1 by the first rule, block_1's by the second
    assert sum(1 for s in specs.values() if "fsdp" in tuple(s)) > 4  # the fallback did shard the others


def test_optimizer_state_follows_the_rule_of_the_parameter_it_mirrors():
    """adamw's mu/nu under clip + chain wrappers take each parameter's sharding; the step counts are replicated."""
    mesh = parallel.make_mesh(2, 4)
    tx, _ = make_optimizer(vk.config.default_config().train, 10, 1e-3)  # clip_by_global_norm + adamw

    def init(seed):
        variables = presets.build_student("micro", 12).init(
            jax.random.key(seed), jnp.zeros((1, 2, 16, 32, 32, 3), jnp.uint8), jnp.ones((1, 2), bool))
        return variables["params"], tx.init(variables["params"])

    params, opt_state = jax.eval_shape(init, 0)
    param_sh = parallel.variable_shardings(mesh, params, MICRO_RULES, min_size=1)
    opt_specs = _specs(parallel.mirrored_shardings(mesh, opt_state, params, param_sh, min_size=1))
    param_specs = _specs(param_sh)
    mirrored = 0
    for path, spec in opt_specs.items():
        owner = [p for p in param_specs if path.endswith("/" + p)]
        if owner:
            assert spec == param_specs[max(owner, key=len)], path
            mirrored += 1
        else:
            assert path.endswith("count") and spec == P(), (path, spec)
    assert mirrored == 2 * len(param_specs)  # mu and nu
    assert opt_specs["1/0/mu/heads/head/kernel"] == P()  # replicated by its rule, although the heuristic shards it
    assert opt_specs["1/0/nu/rgb_encoder/patch_embed/kernel"] == P(None, "fsdp", None, None, None)


def test_state_shardings_without_rules_are_todays_heuristic_and_rules_reach_create_state():
    mesh = parallel.make_mesh(1, 8)
    tx = optax.adamw(1e-3)
    model = presets.build_student("micro", 12)
    init = lambda key: model.init(key, jnp.zeros((1, 2, 16, 32, 32, 3), jnp.uint8), jnp.ones((1, 2), bool))  # noqa
    state, shardings = create_state(init, tx, 0, mesh, 1, rules=MICRO_RULES[3:])  # the head replicated
    assert state.params["heads"]["head"]["kernel"].sharding.spec == P()
    assert shardings.opt_state[0].mu["heads"]["head"]["kernel"].spec == P()
    abstract = jax.eval_shape(lambda s: s, state)
    plain = state_shardings(abstract, mesh, 1)
    for x, sh in zip(jax.tree.leaves(abstract), jax.tree.leaves(plain)):
        assert sh.spec == parallel.fallback_spec(x.shape, 8, 1)


def test_a_rule_that_does_not_fit_its_tensor_names_path_rule_and_shape():
    mesh = parallel.make_mesh(2, 4)
    params = _micro_student_params()["params"]
    with pytest.raises(ValueError, match=r"rule 0 .*patch_embed/kernel.*\(2, 8, 8, 3, 64\).*2 entries for a rank-5"):
        parallel.variable_shardings(mesh, params, (("patch_embed/kernel$", (None, "fsdp")),))
    with pytest.raises(ValueError, match=r"rule 1 .*heads/head/kernel.*\(64, 12\): dimension 12 does not divide .*"
                                         r"\('data', 'fsdp'\) \(size 8\)"):
        parallel.variable_shardings(mesh, params, (("nothing$", ()), ("heads/head/kernel$", (None, ("data", "fsdp")))))


@pytest.mark.parametrize("rules, message", [
    ((("enc(", ()),), r"config\.mesh\.rules\[0\].*bad regex"),
    ((("a", ()), ("b", (None, "model"))), r"config\.mesh\.rules\[1\].*unknown mesh axis 'model'"),
    ((("a", ("fsdp", "fsdp")),), r"config\.mesh\.rules\[0\].*'fsdp' is used twice"),
    ((("a", "fsdp"),), r"config\.mesh\.rules\[0\].*spec must be a tuple"),
    (("a",), r"config\.mesh\.rules\[0\].*\(regex, spec\) pair"),
])
def test_bad_rules_fail_config_validation_naming_the_rule(rules, message):
    cfg = vk.config.default_config()
    cfg.mesh.rules = rules
    with pytest.raises(ValueError, match=message):
        vk.config.validate(cfg)


def test_rules_from_a_string_override():
    cfg = vk.config.default_config()
    vk.config.apply_override(cfg, 'mesh.rules=(("encoder/.*/kernel$", (None, "fsdp")), (".*", ()))')
    assert cfg.mesh.rules == (("encoder/.*/kernel$", (None, "fsdp")), (".*", ()))
    vk.config.validate(cfg)
    checked = parallel.check_rules(cfg.mesh.rules)
    assert [spec for _, spec in checked] == [P(None, "fsdp"), P()]
    vk.config.apply_override(cfg, "mesh.rules=((r'fc1/kernel$', ('fsdp', 'data')),)")
    assert cfg.mesh.rules == (("fc1/kernel$", ("fsdp", "data")),)
    assert vk.config.default_config().mesh.rules == ()


# ------------------------------------------------------------------------------------------------------------
# ViT-B under FSDP rules: memory per device, computed from shapes only
# ------------------------------------------------------------------------------------------------------------
def test_vit_b_student_and_teacher_hold_a_sixth_of_the_replicated_bytes_per_device_on_fsdp8():
    mesh = parallel.make_mesh(1, 8)
    sh = presets.example_shapes("vit_b16", 1, 2)
    rgb, skeleton, mask = (sh["rgb"], jnp.uint8), (sh["skeleton"], jnp.float32), (sh["view_mask"], jnp.bool_)
    tx = optax.adamw(1e-3)

    def student_state():
        params = presets.build_student("vit_b16", 60).init(
            jax.random.key(0), *[jnp.zeros(s, d) for s, d in (rgb, mask)])["params"]
        return params, tx.init(params)

    params, opt_state = jax.eval_shape(student_state)
    teacher = _abstract(presets.build_teacher("vit_b16", 60), [skeleton, rgb, mask])
    param_sh = parallel.variable_shardings(mesh, params, VIT_FSDP_RULES)
    trees = [(params, param_sh), (opt_state, parallel.mirrored_shardings(mesh, opt_state, params, param_sh)),
             (teacher, parallel.variable_shardings(mesh, teacher, VIT_FSDP_RULES))]
    sharded = sum(_per_device_bytes(tree, shardings) for tree, shardings in trees)
    replicated = sum(_per_device_bytes(tree, jax.tree.map(lambda _: parallel.replicated(mesh), tree))
                     for tree, _ in trees)
    assert replicated > 1.2e9  # ~87 M student + 2 x 87 M adam moments + ~91 M teacher, float32
    assert sharded <= replicated / 6, (sharded / 2**20, replicated / 2**20)
    specs = _specs(param_sh)
    assert specs["rgb_encoder/encoder/block_3/attn/query/kernel"] == P("fsdp", None, None)
    assert specs["rgb_encoder/encoder/block_3/mlp/fc2/kernel"] == P("fsdp", None)
    assert specs["rgb_encoder/encoder/block_3/norm1/scale"] == P()
    teacher_specs = _specs(trees[2][1])
    assert teacher_specs["params/skeleton_encoder/block_9/tcn_conv/kernel"] == P(None, None, None, "fsdp")


# ------------------------------------------------------------------------------------------------------------
# Meshes
# ------------------------------------------------------------------------------------------------------------
class _OnProcess:
    """A device seen as belonging to another process (only `process_index` differs)."""

    def __init__(self, device, process_index):
        self.device, self.process_index = device, process_index

    def __getattr__(self, name):
        return getattr(self.device, name)


def test_without_dcn_axes_the_mesh_is_todays_and_the_hybrid_layout_agrees():
    cfg = vk.config.default_config()
    vk.config.apply_override(cfg, "mesh.fsdp=4")
    mesh = parallel.mesh_from_config(cfg.mesh)
    today = jax.make_mesh((2, 4), parallel.AXES, axis_types=(AxisType.Auto,) * 2, devices=jax.devices())
    assert mesh.shape == today.shape and mesh.axis_names == ("data", "fsdp")
    assert (mesh.devices == today.devices).all()
    assert mesh.axis_types == (AxisType.Auto,) * 2
    # One process is one granule: the hybrid layout with dcn (1, 1) is the same grid.
    assert (parallel.hybrid_device_array((2, 4), (1, 1), jax.devices()) == today.devices).all()


@pytest.mark.parametrize("dcn, granule_of", [((1, 2), lambda grid: grid[:, :2]), ((2, 1), lambda grid: grid[:1])])
def test_hybrid_layout_puts_each_process_in_one_block_of_the_dcn_axis(dcn, granule_of):
    """Two processes of 4 devices each (simulated): the dcn axis is split between them, the rest stays inside."""
    fake = [_OnProcess(d, d.id // 4) for d in jax.devices()]
    grid = parallel.hybrid_device_array((2, 4), dcn, fake)
    assert grid.shape == (2, 4)
    first = granule_of(grid)
    assert {d.process_index for d in first.flat} == {0} and first.size == 4
    mesh = jax.sharding.Mesh(np.vectorize(lambda d: d.device, otypes=[object])(grid), parallel.AXES,
                             axis_types=(AxisType.Auto,) * 2)
    assert mesh.shape == {"data": 2, "fsdp": 4}


def test_dcn_sizes_that_cannot_be_met_are_clear_errors():
    with pytest.raises(ValueError, match=r"dcn_data=2 x config\.mesh\.dcn_fsdp=1 = 2 granules.*1 process"):
        parallel.make_mesh(4, 2, dcn_data=2)
    with pytest.raises(ValueError, match=r"config\.mesh\.dcn_fsdp=3 must be >= 1 and divide the mesh's fsdp axis"):
        parallel.make_mesh(2, 4, dcn_fsdp=3)
    cfg = vk.config.default_config()
    vk.config.apply_override(cfg, "mesh.data=4")
    vk.config.apply_override(cfg, "mesh.dcn_data=3")
    with pytest.raises(ValueError, match=r"config\.mesh\.dcn_data=3 does not divide config\.mesh\.data=4"):
        vk.config.validate(cfg)


# ------------------------------------------------------------------------------------------------------------
# A rule-sharded step equals the 1-device step
# ------------------------------------------------------------------------------------------------------------
STEP_RULES = (
    ("/(query|key|value)/kernel$", ("fsdp", None, None)),
    ("mlp/fc1/kernel$", ("fsdp", None)),
    ("gcn_conv/kernel$", (None, "fsdp")),                  # a teacher (ST-GCN) parameter
    ("(bias|scale)$", ()),
)


def _random_batch(cfg, rng) -> dict:
    out = {}
    for key, spec in setup.input_specs(cfg, cfg.train.batch_size).items():
        if key == "rgb":
            out[key] = rng.integers(0, 256, spec.shape, np.uint8)
        elif spec.dtype == jnp.bool_:
            out[key] = np.ones(spec.shape, bool)
        elif np.issubdtype(spec.dtype, np.integer):
            out[key] = rng.integers(0, cfg.data.num_classes, spec.shape).astype(np.int32)
        else:
            out[key] = rng.uniform(0, 1, spec.shape).astype(np.float32)
    return out


def test_a_step_sharded_by_rules_equals_the_single_device_step():
    """A kd student step with its frozen teacher, both sharded by rules on a (2, 4) mesh, equals one device."""
    cfg = vk.config.smoke(vk.config.default_config("kd"))
    for override in ("model.teacher_modalities=('skeleton',)", "data.num_views=2", f"mesh.rules={STEP_RULES!r}"):
        vk.config.apply_override(cfg, override)
    vk.config.validate(cfg)
    student, teacher = presets.student_from_config(cfg), presets.teacher_from_config(cfg)
    tx, schedule = make_optimizer(cfg.train, cfg.train.steps, cfg.train.lr)
    teacher_vars = jax.jit(setup.model_init(teacher, cfg, "teacher"))(jax.random.key(7))
    host = _random_batch(cfg, np.random.default_rng(0))
    results = []
    for mesh in (parallel.make_mesh(1, 1, devices=jax.devices()[:1]), parallel.make_mesh(2, 4)):
        state, shardings = create_state(setup.model_init(student, cfg, "student"), tx, 0, mesh, 1,
                                        rules=cfg.mesh.rules)
        teacher_sh = parallel.variable_shardings(mesh, teacher_vars, cfg.mesh.rules, 1)
        step = step_lib.make_train_step("student", student, tx, schedule, cfg, mesh, shardings, teacher, teacher_sh)
        if mesh.size > 1:  # the rules really shard the student, its optimizer state and the teacher
            assert shardings.params["rgb_encoder"]["encoder"]["block_0"]["attn"]["query"]["kernel"].spec == \
                P("fsdp", None, None)
            assert shardings.opt_state[1][0].mu["rgb_encoder"]["encoder"]["block_1"]["mlp"]["fc1"]["kernel"].spec \
                == P("fsdp", None)
            assert any(s.spec == P(None, "fsdp") and "gcn_conv" in parallel.key_path(p)
                       for p, s in jax.tree_util.tree_flatten_with_path(teacher_sh)[0])
        state, metrics = step(state, parallel.global_batch(host, mesh), jax.device_put(teacher_vars, teacher_sh))
        results.append((float(metrics["loss/total"]), jax.device_get(state.params)))
    (loss1, params1), (loss8, params8) = results
    assert loss8 == pytest.approx(loss1, rel=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6), params1, params8)
