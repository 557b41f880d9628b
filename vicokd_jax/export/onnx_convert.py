"""JAX function -> ONNX graph (jax2onnx, no TensorFlow) and its int8 quantisation (ONNX Runtime's quantiser).

    onnx_convert.convert(fn, input_spec, ("logits", "view_logits"), "model.onnx")
    onnx_convert.quantize_int8("model.onnx", "model_int8.onnx")

`fn(*inputs) -> dict` closes over its weights, which become the graph's initialisers; every input gets the
symbolic leading batch dimension `files.BATCH_DIM`. Needs the edge extra (requirements-edge.txt); importing this
module does not, so that an export without it still works (`missing_extra` says what is absent).
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import pathlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from vicokd_jax.export.files import BATCH_DIM, ONNX_FILE, ONNX_INT8_FILE

OPSET = 21  # ONNX Runtime 1.20+ runs it; old enough for most edge runtimes
EDGE_MODULES = ("jax2onnx", "onnx", "onnxruntime")


def missing_extra() -> str | None:
    """Why ONNX files cannot be written here (a module of the edge extra is not installed), or None."""
    absent = [m for m in EDGE_MODULES if importlib.util.find_spec(m) is None]
    if absent:
        return (f"the edge extra is not installed (no module {', '.join(absent)}): "
                "pip install -r requirements-edge.txt")
    return None


def versions() -> dict[str, str]:
    return {m: importlib.metadata.version(m) for m in EDGE_MODULES}


@contextlib.contextmanager
def _quiet_converter():
    """jax2onnx's IR serialiser warns once per untyped shape constant: noise, not a problem of the graph."""
    logger = logging.getLogger("onnx_ir.serde")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def convert(fn: Callable[..., Mapping], input_spec: Mapping[str, Mapping], output_keys: Sequence[str],
            path) -> pathlib.Path:
    """Write `fn` as the ONNX graph `path`: inputs named and typed as `input_spec` (per-example shapes, plus the
    symbolic batch dimension), outputs `output_keys` of `fn`'s dict, in that order."""
    import jax
    import onnx
    from jax2onnx import to_onnx

    def positional(*inputs):
        out = fn(*inputs)
        return tuple(out[k] for k in output_keys)

    avals = [jax.ShapeDtypeStruct((BATCH_DIM, *spec["shape"]), np.dtype(spec["dtype"]))
             for spec in input_spec.values()]
    with _quiet_converter():
        model = to_onnx(positional, avals, model_name="vicokd_jax", opset=OPSET, input_names=list(input_spec),
                        output_names=list(output_keys))
    onnx.checker.check_model(model)
    path = pathlib.Path(path)
    onnx.save(model, str(path))
    return path


# Only the matrix products, and not the first ones: the first layer (the tubelet patch embedding, over frame
# differences whose few large values set a per-tensor activation scale that crushes the rest) stays float32.
# Quantising it too moved a trained student's SynthMV test top-1 by -1.0 to -1.2 points; without it, by at most 0.4.
QUANTIZED_OPS = ("MatMul",)
PRODUCT_OPS = ("MatMul", "Gemm", "Einsum", "Conv")


def first_products(model) -> list[str]:
    """Names of the product nodes (PRODUCT_OPS) of the ONNX `model` with no product upstream of them: the first
    layer on each input's path, whatever op the converter wrote it as. Nodes are in topological order (ONNX)."""
    downstream, first = set(), []
    for node in model.graph.node:
        after_product = any(name in downstream for name in node.input)
        if node.op_type in PRODUCT_OPS and not after_product:
            first.append(node.name)
        if after_product or node.op_type in PRODUCT_OPS:
            downstream.update(node.output)
    return first


def quantize_int8(src, dst) -> pathlib.Path:
    """Post-training dynamic int8 quantisation of the ONNX model `src` -> `dst`: the weights of every matrix
    product after the first layer (dense layers and attention projections: QUANTIZED_OPS) stored as int8 per
    output channel, activations quantised per call; no calibration data needed."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantiser logs a hint to pre-process first (shape inference); our graphs carry their shapes.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=list(QUANTIZED_OPS),
                         nodes_to_exclude=first_products(onnx.load(str(src))))
    finally:
        root.setLevel(level)
    return pathlib.Path(dst)


def example_inputs(input_spec: Mapping[str, Mapping], batch_size: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded batch matching `input_spec`: uint8 uniform over 0..255, bool with the last entry of each row
    False (so masking is exercised when there are several), floats standard normal."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, spec in input_spec.items():
        shape, dtype = (batch_size, *spec["shape"]), np.dtype(spec["dtype"])
        if dtype == np.uint8:
            out[key] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif dtype == np.bool_:
            x = np.ones(shape, bool)
            if shape[-1] > 1:
                x[1:, ..., -1] = False
            out[key] = x
        else:
            out[key] = rng.standard_normal(shape).astype(dtype)
    return out


def run(path, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs of the ONNX model `path` on `inputs`, by output name (ONNX Runtime, CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(inputs))))


def max_abs_diff(path, reference: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per output: the largest |ONNX Runtime - reference| on `inputs` (`reference`: the JAX outputs on them)."""
    return {k: float(np.max(np.abs(v - np.asarray(reference[k])))) for k, v in run(path, inputs).items()}


def write_models(directory, fn: Callable[..., Mapping], input_spec: Mapping[str, Mapping],
                 output_keys: Sequence[str]) -> dict:
    """`directory/model.onnx` and `directory/model_int8.onnx` from `fn`; returns what config.json records:
    versions, opset, and the max |ONNX - JAX| of each on a seeded random batch (`example_inputs`)."""
    directory = pathlib.Path(directory)
    fp32 = convert(fn, input_spec, output_keys, directory / ONNX_FILE)
    int8 = quantize_int8(fp32, directory / ONNX_INT8_FILE)
    inputs = example_inputs(input_spec)
    import jax

    reference = jax.jit(fn)(*inputs.values())  # compiled once: op by op, the student took 3.7 s per call
    return {"files": {"fp32": ONNX_FILE, "int8": ONNX_INT8_FILE}, "opset": OPSET, "versions": versions(),
            "batch_dim": BATCH_DIM, "inputs": list(input_spec), "outputs": list(output_keys),
            "max_abs_diff_random_batch": {"fp32": max_abs_diff(fp32, reference, inputs),
                                          "int8": max_abs_diff(int8, reference, inputs)}}
