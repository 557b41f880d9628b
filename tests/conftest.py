"""Test setup: 8 fake CPU devices (set before jax is imported) and parsed absl flags (grain workers need them)."""
import os
import pathlib

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests compile the same small programs many times (API, CLI, resume): a persistent XLA cache saves minutes.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", "/tmp/vicokd_jax_test_xla_cache")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()

import pytest  # noqa: E402

_REPO = pathlib.Path(__file__).resolve().parents[1]


def fixtures_dir() -> pathlib.Path | None:
    """`$VICOKD_FIXTURES`, else `../shared/fixtures` beside the repository; None when neither exists."""
    env = os.environ.get("VICOKD_FIXTURES")
    for candidate in ([pathlib.Path(env)] if env else []) + [_REPO.parent / "shared" / "fixtures"]:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def fixtures() -> pathlib.Path:
    """The real-data fixtures folder; skips the test (with the reason) when it is absent."""
    path = fixtures_dir()
    if path is None:
        pytest.skip("real-data fixtures not found: set $VICOKD_FIXTURES or place shared/fixtures beside the repo")
    return path


@pytest.fixture
def preempt_first_call(monkeypatch):
    """`arm()`: from now on, the first multi-step call of a run sets the SIGTERM flag as it assembles its batches
    (a preemption in the middle of a stage); returns `disarm()`, to call before the rerun."""
    from vicokd_jax import parallel
    from vicokd_jax.train import preemption

    original = parallel.global_batches

    def arm():
        calls = {"n": 0}

        def preempt_in_the_first_call(batches, mesh):
            calls["n"] += 1
            if calls["n"] == 1:
                preemption.PREEMPTED.set()
            return original(batches, mesh)

        monkeypatch.setattr(parallel, "global_batches", preempt_in_the_first_call)
        return lambda: monkeypatch.setattr(parallel, "global_batches", original)

    return arm


@pytest.fixture(scope="session")
def default_student_export(tmp_path_factory):
    """(cfg, export dir) of the default ViCoKD student (experiments/synth_vicokd.py, 2 test clips) with
    trained-like variables; with its ONNX files when the edge extra is installed. Shared by the ONNX and
    predict tests: one conversion for both."""
    import jax

    from trained_like import trained_like
    from vicokd_jax import config
    from vicokd_jax import export
    from vicokd_jax.models import presets
    from vicokd_jax.train import setup

    cfg = config.from_file("experiments/synth_vicokd.py")
    cfg.data.num_test = 6
    student = presets.student_from_config(cfg)
    variables = trained_like(setup.model_init(student, cfg, "student")(jax.random.key(0)))
    return cfg, export.export_student(cfg, variables, tmp_path_factory.mktemp("student") / "export")
