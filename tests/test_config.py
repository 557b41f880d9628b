"""The config is the single truth of a run: names select presets, nothing is silently ignored, impossible
combinations are refused before any work (naming the field)."""
import json
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

import vicokd_jax as vk
from vicokd_jax import config as config_lib
from vicokd_jax import methods
from vicokd_jax.data import datasets
from vicokd_jax.models import presets
from vicokd_jax.train import setup

REPO = pathlib.Path(__file__).resolve().parents[1]
VICOKD = str(REPO / "experiments" / "synth_vicokd.py")


def _method(cfg) -> dict:
    return cfg.method.to_dict()


# ------------------------------------------------------------------------------------------------------------
# A method and its ablation are chosen by name wherever a config can be changed
# ------------------------------------------------------------------------------------------------------------
def test_method_name_override_selects_every_preset_field():
    cfg = config_lib.from_file(VICOKD, ["method.name=kd"])
    assert _method(cfg) == methods.method_config("kd").to_dict()
    assert cfg.method.weights.vc == 0.0 and cfg.method.weights.feat == 0.0 and not cfg.method.student.adapter


@pytest.mark.parametrize("order", [("method.name=kd", "method.weights.sup=2"), ("method.weights.sup=2", "method.name=kd")])
def test_field_overrides_given_with_the_name_apply_on_top_in_any_order(order):
    cfg = config_lib.from_file(VICOKD, list(order))
    expected = methods.method_config("kd")
    expected.weights.sup = 2.0
    assert _method(cfg) == expected.to_dict()


def test_method_name_set_in_python_selects_the_preset():
    cfg = config_lib.default_config("vicokd")
    cfg.method.name = "dkd"
    assert _method(cfg) == methods.method_config("dkd").to_dict()
    cfg.method.weights.sup = 3.0  # set afterwards: applies on top
    assert cfg.method.weights.sup == 3.0 and cfg.method.weights.dkd == 1.0


def test_ablation_selected_by_name():
    cfg = config_lib.from_file(VICOKD, ["method.ablation=no_adapter"])
    assert _method(cfg) == methods.method_config("vicokd", "no_adapter").to_dict()
    assert cfg.method.weights.feat == 0.0 and not cfg.method.student.adapter
    cfg = config_lib.from_file(VICOKD, ["method.ablation=vc_kl", "method.name=vicokd_semi"])
    assert _method(cfg) == methods.method_config("vicokd_semi", "vc_kl").to_dict()
    with pytest.raises(ValueError, match="applies to vicokd"):
        config_lib.from_file(VICOKD, ["method.name=kd", "method.ablation=no_vc"])


def test_cli_method_flag_selects_the_preset():
    from vicokd_jax import launch

    args, overrides = launch.parse_cli(["--config", VICOKD, "--workdir", "w", "--config.method.name=student_only"])
    cfg = config_lib.from_file(args.config, overrides)
    assert _method(cfg) == methods.method_config("student_only").to_dict()


# ------------------------------------------------------------------------------------------------------------
# A prepared SynthMV copy records how it was generated
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from vicokd_jax.data.builders.synth_mv import SynthMv, SynthMvConfig

    data_dir = tmp_path_factory.mktemp("tfds")
    config = SynthMvConfig(name="tiny", num_train=4, num_test=2, num_frames=8, image_size=16, num_views=3,
                           room_half=1.5)
    SynthMv(config=config, data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return data_dir


def _prepared_cfg(data_dir, **fields):
    cfg = config_lib.default_config("vicokd")
    cfg.data.tfds_config, cfg.data.data_dir = "tiny", str(data_dir)
    values = dict(num_train=4, num_test=2, num_frames=8, image_size=16, num_views=3, room_half=1.5)
    for key, value in {**values, **fields}.items():
        cfg.data[key] = value
    return cfg


def test_a_prepared_copy_read_with_its_own_generator_fields_opens(prepared):
    source = datasets.make_source(_prepared_cfg(prepared), "train")
    assert len(source) == 4


def test_a_prepared_copy_read_with_other_generator_fields_is_an_error_naming_each(prepared):
    cfg = _prepared_cfg(prepared, room_half=2.0, noise_std=5.0)
    with pytest.raises(ValueError) as info:
        datasets.make_source(cfg, "train")
    message = str(info.value)
    assert "data.room_half=2.0 (the copy has 1.5)" in message and "data.noise_std=5.0 (the copy has 2.0)" in message
    assert "data.seed" not in message


def test_launch_refuses_a_mismatched_prepared_copy_before_any_work(prepared, tmp_path):
    cfg = _prepared_cfg(prepared, seed=7)
    with pytest.raises(ValueError, match=r"data.seed=7 \(the copy has 0\)"):
        vk.launch.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_copy_without_recorded_fields_is_checked_against_its_builder_config(tmp_path):
    # A copy written before the metadata was recorded: the named builder config fixed every field.
    version = tmp_path / "synth_mv" / "partial" / "1.1.0"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text("{}")
    cfg = config_lib.default_config("vicokd")
    cfg.data.tfds_config, cfg.data.data_dir = "partial", str(tmp_path)
    with pytest.raises(ValueError, match=r"data.num_test=400 \(the copy has 500\)"):
        datasets.check_prepared(cfg)


# ------------------------------------------------------------------------------------------------------------
# A student of another preset aligns to the teacher's width
# ------------------------------------------------------------------------------------------------------------
def test_a_student_preset_other_than_the_teachers_aligns_to_the_teachers_tokens():
    cfg = config_lib.from_file(VICOKD + ":smoke", ["model.student_preset=synth"])
    assert presets.get_preset("synth").width != presets.get_preset(cfg.model.preset).width  # the case under test
    teacher, student = presets.teacher_from_config(cfg), presets.student_from_config(cfg)
    specs = setup.input_specs(cfg, 2)
    zeros = {k: jnp.zeros(s.shape, s.dtype) for k, s in specs.items()}
    t_vars = jax.eval_shape(setup.model_init(teacher, cfg, "teacher"), jax.random.key(0))
    s_vars = jax.eval_shape(setup.model_init(student, cfg, "student"), jax.random.key(0))
    t_out = jax.eval_shape(lambda v: teacher.apply(v, *setup.model_inputs("teacher", cfg, zeros)), t_vars)
    s_out = jax.eval_shape(lambda v: student.apply(v, *setup.model_inputs("student", cfg, zeros)), s_vars)
    assert s_out["skeleton_tokens"].shape == t_out["skeleton_tokens"].shape
    assert s_out["frame_logits"].shape == t_out["frame_logits"].shape
    loss, _ = jax.eval_shape(lambda s, t: methods.total_loss(s, t, zeros, cfg.method), s_out, t_out)
    assert loss.shape == ()


# ------------------------------------------------------------------------------------------------------------
# A method with no teacher term needs no teacher
# ------------------------------------------------------------------------------------------------------------
def test_stages_follow_the_method():
    assert config_lib.stages_of(config_lib.default_config("student_only")) == ("student",)
    assert config_lib.stages_of(config_lib.default_config("kd")) == ("teacher", "student")
    cfg = config_lib.from_file(VICOKD, ["method.name=student_only"])
    assert config_lib.stages_of(cfg) == ("student",)
    cfg = config_lib.from_file(VICOKD, ["stages=('student',)", "method.name=student_only"])  # no checkpoint needed
    with pytest.raises(ValueError, match="set config.teacher.checkpoint"):
        config_lib.from_file(VICOKD, ["stages=('student',)"])


# ------------------------------------------------------------------------------------------------------------
# A model that needs a modality the dataset lacks is refused before any work
# ------------------------------------------------------------------------------------------------------------
def test_a_teacher_modality_the_dataset_lacks_is_refused_naming_both():
    with pytest.raises(ValueError) as info:
        config_lib.from_file(str(REPO / "experiments" / "msh1_vicokd.py"),
                             ["model.teacher_modalities=('skeleton', 'rgb')"])
    message = str(info.value)
    assert "'skeleton'" in message and "multisensor_home/home1" in message and "teacher" in message
    with pytest.raises(ValueError, match="'rgb'.*ntu_rgbd/ntu60_xsub_skeleton"):
        config_lib.from_file(str(REPO / "experiments" / "ntu60_xsub_vicokd.py"),
                             ["data.tfds_config=ntu60_xsub_skeleton"])


# ------------------------------------------------------------------------------------------------------------
# Programmatic launching from a program read on standard input, and a student-only run end to end
# ------------------------------------------------------------------------------------------------------------
def test_launch_from_standard_input_loads_in_process_and_a_student_only_run_has_no_teacher(tmp_path):
    script = textwrap.dedent(f"""
        import json, vicokd_jax as vk
        cfg = vk.config.from_file({VICOKD + ':smoke'!r}, ["method.name=student_only", "data.num_workers=1",
                                  "data.num_train=16", "data.num_test=16", "train.steps=2", "train.log_every=1",
                                  "train.checkpoint_every=2"])
        summary = vk.launch.run(cfg, {str(tmp_path)!r})
        print("SUMMARY", json.dumps({{k: summary[k] for k in summary if k in ("teacher", "student")}}))
        """)
    out = subprocess.run([sys.executable, "-"], input=script, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "data load in this process" in out.stderr and "FileNotFoundError" not in out.stderr
    summary = json.loads(out.stdout.split("SUMMARY", 1)[1])
    assert "teacher" not in summary and not (tmp_path / "teacher").exists()
    assert 0.0 <= summary["student"]["top1"] <= 100.0 and "agreement" not in summary["student"]
    assert (tmp_path / "export" / "predictor.jaxexport").exists()


def test_a_run_made_before_a_key_existed_is_compared_with_what_it_did():
    """A config.json without the camera-layout or teacher-input keys was made with v1's values: against today's
    defaults that is a change; against v1's values it is none."""
    old = json.loads(json.dumps(config_lib.to_dict(config_lib.default_config("kd"))))
    for group, key in (("data", "fov_deg"), ("data", "aim_offset"), ("data", "camera_height"),
                       ("model", "teacher_rgb_input")):
        del old[group][key]
    changes = config_lib.result_changes(old, config_lib.default_config("kd"))
    assert [c.split(":")[0] for c in changes] == ["data.aim_offset", "data.camera_height", "data.fov_deg",
                                                   "model.teacher_rgb_input"], changes
    v1 = config_lib.default_config("kd")
    config_lib.apply_overrides(v1, ["data.fov_deg=62.0", "data.aim_offset=0.45", "data.camera_height=2.6",
                                    "model.teacher_rgb_input=rgb"])
    assert config_lib.result_changes(old, v1) == []


def test_a_run_made_before_a_key_existed_had_its_default():
    """Any other key missing from an old config.json stands for its default (what reproduces the run): a new
    config that sets it to something else changes the result (a student starting from a pretrained encoder is
    not the run made before the pretrain stage existed)."""
    old = json.loads(json.dumps(config_lib.to_dict(config_lib.default_config("kd"))))
    del old["pretrain"]
    assert config_lib.result_changes(old, config_lib.default_config("kd")) == []
    new = config_lib.default_config("kd")
    config_lib.apply_overrides(new, ["pretrain.checkpoint=runs/pretrained"])
    assert config_lib.result_changes(old, new) == ["pretrain.checkpoint: '' -> 'runs/pretrained'"]


def test_a_run_config_saved_before_read_ahead_existed_still_builds_its_pipelines():
    import ml_collections

    saved = config_lib.default_config("vicokd").to_dict()
    del saved["data"]["read_ahead"]  # config.json of a run made before the field (evaluate, predict read these)
    old = ml_collections.ConfigDict(saved)
    import grain

    # grain's default, what those runs used
    assert datasets.pipeline_config(old, False, 4).read_ahead == grain.ReadOptions().prefetch_buffer_size == 500
    cfg = config_lib.default_config("vicokd")
    cfg.data.read_ahead = 8
    assert datasets.pipeline_config(cfg, True, 4).read_ahead == 8
    cfg.data.read_ahead = 0
    with pytest.raises(ValueError, match="config.data.read_ahead=0"):
        config_lib.validate(cfg)
