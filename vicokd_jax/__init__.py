"""vicokd_jax: multi-view action recognition with cross-modal knowledge distillation, in JAX/Flax.

Public entry points (see README.md), imported on first use so that e.g. loading an export needs no model code:
    vk.config       experiment configs: default_config, from_file
    vk.launch       run(config, workdir) -> Summary; the CLI
    vk.models       STGCN, VideoTransformer, CrossModalAttention, Teacher, Student, presets
    vk.convert      stgcn_from_torch (original st-gcn / pyskl), video_transformer_from_hf (VideoMAE, ...)
    vk.losses       every objective of METHOD.md, masked and normalised
    vk.methods      method presets (chosen by name) and total_loss(student_out, teacher_out, batch, method_cfg)
    vk.views        view operations shared by losses, steps and metrics
    vk.data         SynthMV, NTU RGB+D, MultiSensor-Home, TFDS builders, grain pipelines, datasets of a config
    vk.train        setup (stage assembly), loop, step, state, checkpoint, metrics, report
    vk.export       export(workdir, out_dir) / load(out_dir) -> predictor; load_onnx(out_dir) (ONNX Runtime)
    vk.predict      videos in -> action out, from an export (the CLI; --onnx without JAX)
    vk.sweep        studies: grids of runs, shared teachers, resumable, tables and plots

Every package of vicokd_jax reaches its submodules by attribute (`vk.data.synthetic.SynthMV`, `vk.train.loop`):
a submodule is imported on its first access (`lazy_submodules`), so `import vicokd_jax` stays light.
"""
import importlib
import importlib.util
import pkgutil

__version__ = "0.1.0"
__all__ = ["config", "convert", "data", "evaluate", "export", "launch", "losses", "methods", "models", "parallel",
           "predict", "sweep", "train", "views"]


def lazy_submodules(package: str, namespace: dict):
    """PEP 562 hooks for the package `package` whose module globals are `namespace` -> (__getattr__, __dir__).

    `__getattr__(name)` imports and returns the submodule `package.name` when one exists (found by name, so
    modules added later need no list); any other name raises AttributeError naming the package. `__dir__()`
    lists the package's globals and all its submodules. Usage, in a package's `__init__.py`:

        __getattr__, __dir__ = lazy_submodules(__name__, globals())
    """

    def __getattr__(name: str):
        if not name.startswith("__") and name.isidentifier():
            full_name = f"{package}.{name}"
            if importlib.util.find_spec(full_name) is not None:
                return importlib.import_module(full_name)
        raise AttributeError(f"module {package!r} has no attribute {name!r} (and no submodule {package}.{name})")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | {m.name for m in pkgutil.iter_modules(namespace["__path__"])})

    return __getattr__, __dir__


__getattr__, __dir__ = lazy_submodules(__name__, globals())
