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
"""
from __future__ import annotations

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax.numpy as jnp

from vicokd_jax.models.graph import get_graph

# Reference architecture: 10 blocks, widths and temporal strides as in both references.
DEFAULT_CHANNELS = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
DEFAULT_STRIDES = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)

# PyTorch BatchNorm: momentum 0.1 on the new statistic == flax momentum 0.9 on the running one; eps 1e-5.
_BN_MOMENTUM = 0.9
_BN_EPS = 1e-5


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
        y = nn.Dense(k * self.features, dtype=self.dtype, param_dtype=self.param_dtype, name="gcn_conv")(x)
        y = y.reshape(batch, frames, joints, k, self.features)
        y = jnp.einsum("btvkc,kvw->btwc", y, adjacency.astype(y.dtype))
        y = nn.relu(norm("gcn_bn")(y))

        # Temporal convolution over frames (kernel 9x1, 'same' padding, stride s).
        pad = (self.temporal_kernel - 1) // 2
        y = nn.Conv(self.features, kernel_size=(self.temporal_kernel, 1), strides=(self.stride, 1),
                    padding=((pad, pad), (0, 0)), dtype=self.dtype, param_dtype=self.param_dtype,
                    name="tcn_conv")(y)
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

