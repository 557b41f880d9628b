"""ST-GCN skeleton encoder (Yan, Xiong, Lin, AAAI 2018), channels-last, as a pure functional Flax module.

Computation per block (identical in the original yysijie/st-gcn and in pyskl/mmaction2; only their parameter
names differ, which `vicokd_jax.convert.stgcn` maps):

    y = Dense_{C_in -> K*C_out}(x)                          # 1x1 conv, one slice per partition subset k
    y = sum_k sum_v y[..., v, k, :] * (A[k] * M[k])[v, w]     # graph aggregation, M = learnable edge importance
    y = ReLU(BN(y))
    y = BN(TemporalConv_{9x1, stride s}(y))                  # (+ dropout in training)
    out = ReLU(y + residual(x))                               # none (block 0) | identity | strided 1x1 conv + BN

Input `[N, M, T, J, C]` (batch, persons, frames, joints, xyz). `data_bn` normalises each (joint, channel) over
persons and frames ("VC", the default of both references) or each (person, joint, channel) ("MVC", pyskl option).

Performance (numbers: `python -m tools.benchmark stgcn-vs-torch`, docs/PERFORMANCE.md). The parameters are those
of `nn.Dense` / `nn.Conv` (same names, shapes and initialisers, so converters and checkpoints are unaffected),
but the computation is arranged for channels-last without activation transposes:

* graph convolution, aggregation first: `z[w, k, :] = sum_v A[k, v, w] x[v, :]` as one batched matmul per frame,
  then a single matmul over (k, C_in). Same FLOPs as conv-then-aggregate when C_in == C_out, fewer when C_in <
  C_out, and every contraction is over a minor dimension (conv-then-aggregate made XLA transpose the K*C_out wide
  activations forwards and backwards).
* temporal convolution with a custom VJP: the input gradient is a plain stride-1 convolution (polyphase for
  strided layers, instead of XLA's lhs-dilated convolution, which the CPU backend runs on a slow generic path),
  and the kernel gradient is one im2col matmul instead of a convolution whose window spans the whole clip,
  accumulated over batch chunks in a loop so that one chunk's im2col is alive at a time, not every layer's.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vicokd_jax.models.graph import get_graph

# Reference architecture: 10 blocks, widths and temporal strides as in both references.
DEFAULT_CHANNELS = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
DEFAULT_STRIDES = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)

# PyTorch BatchNorm: momentum 0.1 on the new statistic == flax momentum 0.9 on the running one; eps 1e-5.
_BN_MOMENTUM = 0.9
_BN_EPS = 1e-5


# ------------------------------------------------------------------------------------------------------------
# Compute kernels (pure functions; parameters are created by the modules below)
# ------------------------------------------------------------------------------------------------------------
def graph_conv(x, adjacency, kernel, bias):
    """Spatial graph convolution, aggregation first: `x [B, T, V, C_in] -> [B, T, W, C_out]`.

    Equal to `einsum("btvkc,kvw->btwc", (x @ kernel + bias).reshape(B, T, V, K, C_out), adjacency)` with
    `kernel [C_in, K*C_out]` (index k*C_out + c), `bias [K*C_out]`, `adjacency [K, V, W]`.
    """
    b, t, v, c_in = x.shape
    k, _, w = adjacency.shape
    c_out = kernel.shape[-1] // k
    # z[bt, (w, k), i] = sum_v A[k, v, w] x[bt, v, i]: a batch of [W*K, V] @ [V, C_in] products (no transposes).
    a = adjacency.transpose(2, 0, 1).reshape(w * k, v)
    if isinstance(b * t, int):
        z = lax.dot_general(jnp.broadcast_to(a, (b * t, w * k, v)), x.reshape(b * t, v, c_in),
                            (((2,), (1,)), ((0,), (0,))))
    else:
        # A symbolic batch (ONNX conversion, `vicokd_jax.export.onnx_convert`): jax2onnx cannot broadcast a
        # constant to a derived symbolic size such as b*t, so the same product is written as a matmul.
        z = jnp.matmul(a, x.reshape(b * t, v, c_in))
    kernel_kic = kernel.reshape(c_in, k, c_out).transpose(1, 0, 2).reshape(k * c_in, c_out)
    y = (z.reshape(b * t * w, k * c_in) @ kernel_kic).reshape(b, t, w, c_out)
    # The per-partition bias, aggregated: sum_k (sum_v A[k, v, w]) bias[k, c].
    return y + jnp.einsum("kw,kc->wc", adjacency.sum(1), bias.reshape(k, c_out))


def _tconv(x, kernel, stride: int):
    """'Same'-padded temporal convolution: `x [B, T, V, C_in]`, kernel `[kt, 1, C_in, C_out]`."""
    pad = (kernel.shape[0] - 1) // 2
    return lax.conv_general_dilated(x, kernel, (stride, 1), ((pad, pad), (0, 0)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def temporal_conv(x, kernel, stride: int):
    """`x [B, T, V, C_in]`, kernel `[kt, 1, C_in, C_out]` -> `[B, ceil(T / stride), V, C_out]` ('same' padding)."""
    return _tconv(x, kernel, stride)


def _temporal_conv_fwd(x, kernel, stride):
    return _tconv(x, kernel, stride), (x, kernel)


def _input_grad(dy, kernel, stride: int, frames: int):
    """dL/dx of the 'same'-padded temporal convolution: `dy [B, T', V, C_out]` -> `[B, frames, V, C_in]`.

    Stride 1: a stride-1 'same' convolution of dy with the time-flipped, in/out-swapped kernel. Stride s > 1:
    polyphase, one stride-1 convolution per output phase r (frames t = s*q + r), each with only the taps that
    reach that phase (k = s*j + r + pad). This costs the forward's FLOPs; zero-stuffing dy to `frames` and
    convolving with the whole kernel cost s times that, and XLA's own lhs-dilated convolution runs on a slow
    generic path on CPU.
    """
    kt = kernel.shape[0]
    pad = (kt - 1) // 2
    flipped = jnp.flip(kernel, 0).transpose(0, 1, 3, 2)  # [kt, 1, C_out, C_in]
    conv = functools.partial(lax.conv_general_dilated, window_strides=(1, 1), padding="VALID",
                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if stride == 1:
        return _tconv(dy, flipped, 1)
    t_out = dy.shape[1]
    phases = []
    for r in range(stride):
        # dx[s*q + r] = sum_j dy[q - j] W[s*j + r + pad]^T over the j whose tap k lies in [0, kt).
        j_lo, j_hi = -((r + pad) // stride), (kt - 1 - r - pad) // stride
        n_r = -(-(frames - r) // stride)  # frames of this phase
        # The phase's taps, k = s*j_hi + r + pad down to s*j_lo + r + pad (flipped is indexed by kt - 1 - k).
        taps = flipped[kt - 1 - (stride * j_hi + r + pad)::stride][:j_hi - j_lo + 1]
        # A correlation with them, out[q] = sum_i dy[q + i - j_hi] taps[i]: dy padded to n_r + (j_hi - j_lo) frames
        # (negative padding crops).
        dy_r = lax.pad(dy, jnp.zeros((), dy.dtype), ((0, 0, 0), (j_hi, n_r - j_lo - t_out, 0), (0, 0, 0), (0, 0, 0)))
        phases.append(conv(dy_r, taps))
    # Interleave the phases back into frame order (the later phases may be one frame shorter).
    n0 = phases[0].shape[1]
    phases = [jnp.pad(ph, ((0, 0), (0, n0 - ph.shape[1]), (0, 0), (0, 0))) for ph in phases]
    dx = jnp.stack(phases, axis=2)  # [B, n0, s, V, C_in]
    return dx.reshape(dx.shape[0], n0 * stride, *dx.shape[3:])[:, :frames]


# Batch chunks of the kernel gradient's im2col (see `kernel_grad`).
KERNEL_GRAD_CHUNKS = 4


def kernel_grad(x, dy, kt: int, stride: int, chunks: int | None = None):
    """dL/dkernel `[kt, 1, C_in, C_out]`, accumulated over `chunks` slices of the batch (a loop).

    The im2col below is 9x the size of x (184 MB per layer at B=16, M=2, T=100). Built for the whole batch, XLA:CPU
    schedules every layer's early (it depends only on the forward's x) and keeps them all alive: 1.8 GB of the
    ST-GCN step's 3.9 GB of temporaries, which the CPU client maps afresh every step (about 0.25 M page faults
    per GB). Inside a loop over batch chunks it exists once, a chunk at a time (docs/PERFORMANCE.md).
    """
    n = x.shape[0]
    # The batch may be sharded over every device: the chunk count divides each device's rows.
    rows = n // jax.device_count() if n % jax.device_count() == 0 else n
    chunks = max(1, min(chunks or KERNEL_GRAD_CHUNKS, rows))
    while rows % chunks:
        chunks -= 1
    if chunks == 1:
        return kernel_grad_im2col(x, dy, kt, stride)
    # NOTE: chunk c takes rows c, c + chunks, ... (the chunk index minor): every chunk then holds rows of every
    # device, each device loops over its own rows, and the sum is one all-reduce. Contiguous chunks (chunk index
    # major) made XLA all-gather x and dy on a data-parallel mesh. Indexing inside the loop (not a swapaxes
    # before it) and a running sum (not a stacked map) keep x, dy and the partial gradients uncopied.
    xs, dys = (a.reshape(n // chunks, chunks, *a.shape[1:]) for a in (x, dy))

    def add_chunk(c, grad):
        chunk = lambda a: lax.dynamic_index_in_dim(a, c, axis=1, keepdims=False)  # noqa: E731
        return grad + kernel_grad_im2col(chunk(xs), chunk(dys), kt, stride)

    zero = jnp.zeros((kt, 1, x.shape[-1], dy.shape[-1]), jnp.result_type(x, dy))
    return lax.fori_loop(0, chunks, add_chunk, zero)


def kernel_grad_im2col(x, dy, kt: int, stride: int):
    """dL/dkernel `[kt, 1, C_in, C_out]`: one matmul `dy^T [C_out, M] @ cols [M, kt*C_in]` over M = B*T'*V.

    `cols` is the im2col of x (tap k of row (b, t', v) = x[b, s*t' + k - pad, v]). XLA:CPU computes the autodiff
    version as a convolution whose window spans the whole clip, and one matmul per tap as `x_k^T dy` made it
    transpose every tap's slice of x; a single product with wide (kt*C_in) rows keeps every operand in its
    layout except dy (docs/PERFORMANCE.md).
    """
    pad = (kt - 1) // 2
    c_in, c_out, t_out = x.shape[-1], dy.shape[-1], dy.shape[1]
    xp = jnp.pad(x, ((0, 0), (pad, pad), (0, 0), (0, 0)))
    # NOTE: a gather with constant indices, not a concatenate of kt slices: XLA:CPU fuses it into one loop that
    # writes cols once, where the concatenate first materialised each slice (2x the memory, 1.2-1.8x the time).
    frames = stride * np.arange(t_out)[:, None] + np.arange(kt)[None]  # [T', kt]: the frame of tap k
    cols = xp[:, frames]  # [B, T', kt, V, C_in]
    cols = cols.transpose(0, 1, 3, 2, 4).reshape(-1, kt * c_in)
    grad = dy.reshape(-1, c_out).T @ cols  # [C_out, kt*C_in]
    return grad.reshape(c_out, kt, c_in).transpose(1, 2, 0)[:, None]


def _temporal_conv_bwd(stride, residuals, dy):
    x, kernel = residuals
    dx = _input_grad(dy, kernel, stride, x.shape[1])
    dkernel = kernel_grad(x, dy, kernel.shape[0], stride)
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


temporal_conv.defvjp(_temporal_conv_fwd, _temporal_conv_bwd)


class _Weights(nn.Module):
    """The `kernel` and `bias` of an `nn.Dense` / `nn.Conv` (same names, shapes, initialisers), uncomputed."""

    kernel_shape: tuple[int, ...]
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), self.kernel_shape, self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.kernel_shape[-1],), self.param_dtype)
        return kernel, bias


class STGCNBlock(nn.Module):
    """One spatial-temporal graph convolution block: `[B, T, J, C_in] -> [B, ceil(T/stride), J, C_out]`."""

    features: int
    adjacency: Any  # [K, J, J] float32 numpy array (a constant, not a parameter)
    stride: int = 1
    residual: bool = True
    temporal_kernel: int = 9
    edge_importance: bool = True
    dropout: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        k, j, _ = self.adjacency.shape
        batch, frames, joints, in_features = x.shape
        chex.assert_equal(joints, j)
        norm = lambda name: nn.BatchNorm(  # noqa: E731
            use_running_average=not train, momentum=_BN_MOMENTUM, epsilon=_BN_EPS,
            dtype=self.dtype, param_dtype=self.param_dtype, name=name)

        # Residual branch first, from the block input.
        if not self.residual:
            res = 0.0
        elif in_features == self.features and self.stride == 1:
            res = x
        else:
            # A 1x1 conv with temporal stride s reads frames 0, s, 2s, ...: slice then project.
            res = nn.Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype,
                           name="residual_conv")(x[:, ::self.stride])
            res = norm("residual_bn")(res)

        # Spatial graph convolution.
        adjacency = jnp.asarray(self.adjacency, dtype=self.param_dtype)
        if self.edge_importance:
            importance = self.param("edge_importance", nn.initializers.ones, adjacency.shape, self.param_dtype)
            adjacency = adjacency * importance
        kernel, bias = _Weights((in_features, k * self.features), self.param_dtype, name="gcn_conv")()
        y = graph_conv(x.astype(self.dtype), adjacency.astype(self.dtype), kernel.astype(self.dtype),
                       bias.astype(self.dtype))
        y = nn.relu(norm("gcn_bn")(y))

        # Temporal convolution over frames (kernel 9x1, 'same' padding, stride s).
        kernel, bias = _Weights((self.temporal_kernel, 1, self.features, self.features), self.param_dtype,
                                name="tcn_conv")()
        y = temporal_conv(y, kernel.astype(self.dtype), self.stride) + bias.astype(self.dtype)
        y = norm("tcn_bn")(y)
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        return nn.relu(y + res)


class STGCN(nn.Module):
    """ST-GCN: `apply(variables, x [N, M, T, J, C], train=False) -> logits [N, num_classes]`.

    `STGCN.encode` (via `apply(..., method="encode")`) returns every output:
        logits        [N, num_classes]   (absent when num_classes == 0: a headless encoder)
        feature       [N, C_last]        mean over frames, joints, then persons (the references' pooling)
        frame_tokens  [N, T', C_last]    mean over joints and persons, per output frame; T' = T / prod(strides)

    Attributes:
        num_classes: classifier width; 0 for an encoder without head.
        layout: skeleton layout of `vicokd_jax.models.graph` ("nturgb+d", "ntu-rgb+d", "nw-ucla", "coco").
        channels / strides: per-block widths and temporal strides (shrink them for tiny test models).
        data_bn: "VC" (per joint-channel), "MVC" (per person-joint-channel; needs `num_persons`), or "none".
        dropout: rate after each block's temporal BN in training (the original trains with 0.5; pyskl with 0).
        dtype: compute dtype (bf16 on accelerators); parameters stay `param_dtype` (f32).
    """

    num_classes: int
    layout: str = "nturgb+d"
    in_channels: int = 3
    channels: Sequence[int] = DEFAULT_CHANNELS
    strides: Sequence[int] = DEFAULT_STRIDES
    temporal_kernel: int = 9
    edge_importance: bool = True
    data_bn: str = "VC"
    num_persons: int = 2
    dropout: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        if len(self.channels) != len(self.strides):
            raise ValueError(f"STGCN: channels {tuple(self.channels)} and strides {tuple(self.strides)} differ in "
                             "length; give one stride per block")
        if self.data_bn not in ("VC", "MVC", "none"):
            raise ValueError(f"STGCN: data_bn must be 'VC', 'MVC' or 'none', got {self.data_bn!r}")
        graph = get_graph(self.layout)
        self.num_joints = graph.num_joints
        if self.data_bn != "none":
            self.data_norm = nn.BatchNorm(momentum=_BN_MOMENTUM, epsilon=_BN_EPS, dtype=self.dtype,
                                          param_dtype=self.param_dtype, name="data_bn")
        blocks = []
        for i, (features, stride) in enumerate(zip(self.channels, self.strides)):
            blocks.append(STGCNBlock(
                features=features, adjacency=graph.A, stride=stride, residual=i > 0,
                temporal_kernel=self.temporal_kernel, edge_importance=self.edge_importance,
                # The references never drop out in the first block.
                dropout=self.dropout if i > 0 else 0.0,
                dtype=self.dtype, param_dtype=self.param_dtype, name=f"block_{i}"))
        self.blocks = blocks
        if self.num_classes:
            self.head = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="fc")

    def _check_input(self, x):
        if x.ndim != 5 or x.shape[-2] != self.num_joints or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"STGCN(layout={self.layout!r}) expects x of shape [N, M, T, {self.num_joints}, "
                f"{self.in_channels}], got {tuple(x.shape)}")
        if self.data_bn == "MVC" and x.shape[1] != self.num_persons:
            raise ValueError(f"STGCN(data_bn='MVC') was built for M={self.num_persons} persons, "
                             f"got x of shape {tuple(x.shape)}")

    def _normalise_input(self, x, train: bool):
        n, m, t, j, c = x.shape
        if self.data_bn == "none":
            return x
        if self.data_bn == "VC":
            # Feature index j*C + c, statistics over (sample, person, frame): the references' BatchNorm1d(J*C).
            flat = x.reshape(n * m, t, j * c)
            return self.data_norm(flat, use_running_average=not train).reshape(n, m, t, j, c)
        # "MVC": feature index m*J*C + j*C + c, statistics over (sample, frame).
        flat = x.transpose(0, 2, 1, 3, 4).reshape(n, t, m * j * c)
        flat = self.data_norm(flat, use_running_average=not train)
        return flat.reshape(n, t, m, j, c).transpose(0, 2, 1, 3, 4)

    def encode(self, x, train: bool = False) -> dict:
        """`x [N, M, T, J, C]` -> dict(logits [N, classes], feature [N, D], frame_tokens [N, T', D])."""
        self._check_input(x)
        n, m, t, j, c = x.shape
        y = self._normalise_input(x.astype(self.dtype), train)
        y = y.reshape(n * m, t, j, c)
        for block in self.blocks:
            y = block(y, train=train)
        y = y.reshape(n, m, *y.shape[1:])  # [N, M, T', J, D]
        frame_tokens = y.mean(axis=(1, 3))  # joints and persons
        feature = frame_tokens.mean(axis=1)  # == mean over (frames, joints) then persons, as the references
        out = {"feature": feature, "frame_tokens": frame_tokens}
        if self.num_classes:
            out["logits"] = self.head(feature)
        return out

    def __call__(self, x, train: bool = False):
        """`x [N, M, T, J, C]` -> logits `[N, num_classes]`."""
        if not self.num_classes:
            raise ValueError("STGCN(num_classes=0) has no classifier: call apply(..., method='encode')")
        return self.encode(x, train=train)["logits"]

