"""A PyTorch ST-GCN with pyskl's module names, for parity tests and `tools/benchmark/` (needs the torch extra).

Written for this project from the published architecture; its `state_dict()` keys are pyskl's
(`backbone.gcn.N.gcn.{A,PA,conv,bn}`, `backbone.gcn.N.tcn.{conv,bn}`, `backbone.gcn.N.residual.{conv,bn}`,
`cls_head.fc_cls`), so it stands in for a pyskl checkpoint. Input `[N, M, T, V, C]` like pyskl.
"""
from __future__ import annotations

import torch
from torch import nn

from vicokd_jax.models.graph import get_graph
from vicokd_jax.models.stgcn import DEFAULT_CHANNELS, DEFAULT_STRIDES


class _TemporalUnit(nn.Module):
    """Conv (k x 1, stride s, same padding) then BatchNorm: pyskl's `unit_tcn`."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, (kernel, 1), stride=(stride, 1), padding=((kernel - 1) // 2, 0))
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class _GraphUnit(nn.Module):
    """1x1 conv to K*C_out, aggregation with A * PA, BatchNorm, ReLU: pyskl's `unit_gcn(adaptive='importance')`."""

    def __init__(self, cin: int, cout: int, adjacency: torch.Tensor):
        super().__init__()
        self.register_buffer("A", adjacency.clone())
        self.PA = nn.Parameter(torch.ones_like(adjacency))
        self.conv = nn.Conv2d(cin, cout * adjacency.shape[0], 1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        n, _, t, v = x.shape
        y = self.conv(x).view(n, self.A.shape[0], -1, t, v)
        y = torch.einsum("nkctv,kvw->nctw", y, self.A * self.PA)
        return torch.relu(self.bn(y))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, adjacency: torch.Tensor, stride: int, residual: bool):
        super().__init__()
        self.gcn = _GraphUnit(cin, cout, adjacency)
        self.tcn = _TemporalUnit(cout, cout, 9, stride)
        self.residual_kind = "none" if not residual else ("identity" if cin == cout and stride == 1 else "conv")
        if self.residual_kind == "conv":
            self.residual = _TemporalUnit(cin, cout, 1, stride)

    def forward(self, x):
        res = 0 if self.residual_kind == "none" else x if self.residual_kind == "identity" else self.residual(x)
        return torch.relu(self.tcn(self.gcn(x)) + res)


class _Backbone(nn.Module):
    def __init__(self, layout: str, in_channels: int, channels, strides):
        super().__init__()
        graph = get_graph(layout)
        adjacency = torch.tensor(graph.A)
        self.data_bn = nn.BatchNorm1d(in_channels * graph.num_joints)
        cins = [in_channels] + list(channels[:-1])
        self.gcn = nn.ModuleList(_Block(ci, co, adjacency, s, residual=i > 0)
                                 for i, (ci, co, s) in enumerate(zip(cins, channels, strides)))

    def forward(self, x):  # [N, M, T, V, C] -> [N, M, C', T', V]
        n, m, t, v, c = x.shape
        x = x.permute(0, 1, 3, 4, 2).reshape(n * m, v * c, t)
        x = self.data_bn(x).view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        for block in self.gcn:
            x = block(x)
        return x.reshape(n, m, *x.shape[1:])


class _Head(nn.Module):
    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.fc_cls = nn.Linear(width, num_classes)

    def forward(self, x):  # [N, M, C, T, V] -> [N, classes]
        return self.fc_cls(x.mean(dim=(3, 4)).mean(dim=1))


class TorchSTGCN(nn.Module):
    """pyskl-named ST-GCN recogniser: `forward(x [N, M, T, V, C]) -> logits [N, classes]`."""

    def __init__(self, num_classes: int, layout: str = "nturgb+d", in_channels: int = 3,
                 channels=DEFAULT_CHANNELS, strides=DEFAULT_STRIDES):
        super().__init__()
        self.backbone = _Backbone(layout, in_channels, tuple(channels), tuple(strides))
        self.cls_head = _Head(channels[-1], num_classes)

    def forward(self, x):
        return self.cls_head(self.backbone(x))


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial values in every parameter and BN statistic, so parity tests exercise all of them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith("num_batches_tracked") or name.endswith(".A"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith("PA") or (name.endswith("weight") and tensor.ndim == 1):
                tensor.copy_(1.0 + 0.2 * (torch.rand(tensor.shape, generator=gen) - 0.5))
            elif tensor.ndim >= 2:
                fan_in = tensor[0].numel()
                tensor.copy_((torch.rand(tensor.shape, generator=gen) - 0.5) * 2 * (3.0 / fan_in) ** 0.5)
            else:
                tensor.copy_(0.1 * (torch.rand(tensor.shape, generator=gen) - 0.5))
    return model
