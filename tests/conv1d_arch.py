"""A pitch-tracker-like 1-D conv model (CREPE-style) exported with the TorchScript exporter.

Helper module for tests and tools/bench_noop_latency.py (not a test file itself). Each block pads
"same" with ``F.pad`` amounts computed from ``x.shape``, so the exported graph carries
Shape -> Gather -> arithmetic -> Concat chains feeding every Pad, as real exported audio models do.
"""

from __future__ import annotations

import pathlib
import warnings

import torch
import torch.nn.functional as F
from torch import nn

FRAME = 1024


class _SameConv1d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, k, stride)
        self.bn = nn.BatchNorm1d(cout)
        self.k, self.stride = k, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        out_len = (length + self.stride - 1) // self.stride
        total = (out_len - 1) * self.stride + self.k - length
        x = F.pad(x, (total // 2, total - total // 2))
        return F.max_pool1d(self.bn(F.relu(self.conv(x))), 2)


class PitchTracker(nn.Module):
    """Frames [N, 1024] -> 360 pitch bins, like CREPE (small capacity)."""

    def __init__(self) -> None:
        super().__init__()
        widths = [1, 64, 16, 16, 16, 32, 64]
        kernels = [512, 64, 64, 64, 64, 64]
        strides = [4, 1, 1, 1, 1, 1]
        self.blocks = nn.Sequential(*(_SameConv1d(widths[i], widths[i + 1], kernels[i], strides[i])
                                      for i in range(6)))
        self.fc = nn.Linear(64 * 4, 360)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x.unsqueeze(1))
        return torch.sigmoid(self.fc(x.flatten(1)))


def build_pitch_tracker(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PitchTracker()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                with torch.no_grad():
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def export_pitch_tracker(directory: pathlib.Path, opset: int = 13, dynamic: bool = True) -> pathlib.Path:
    """``pitch_ts<opset>[_static].onnx``: TorchScript export (``dynamo=False``), dynamic batch or fixed."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"pitch_ts{opset}{'' if dynamic else '_static'}.onnx"
    x = torch.randn(1, FRAME)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(build_pitch_tracker(), (x,), str(path), dynamo=False, opset_version=opset,
                          input_names=["frames"], output_names=["pitch"],
                          dynamic_axes={"frames": {0: "N"}, "pitch": {0: "N"}} if dynamic else None)
    return path
