"""Small torch architectures exported to ONNX with both torch exporters.

Helper module for the pruning tests (not a test file itself).

Every architecture is tiny (8-32 channels), built deterministically
(``torch.manual_seed`` per architecture, inside ``torch.random.fork_rng`` so the
caller's global RNG is left alone), in ``eval()`` mode, with the running
statistics and affine parameters of every normalisation layer randomised so
that BatchNorm (LayerNorm for the transformer) is not an identity.

Public API
----------
ARCHS          name -> zero-argument builder returning an eval() ``nn.Module``
INPUT_SHAPES   name -> input shape (batch 2)
EXPORTERS      ("torchscript13", "torchscript17", "dynamo18")
export_arch(name, exporter, directory) -> Path of ``<name>_<exporter>.onnx``
reference_input(name) -> deterministic float32 input ndarray
reference_output(name) -> (input ndarray, torch output ndarray)

Notes on the exporters (measured with torch 2.13 / onnxscript 0.7):

* ``torchscript13`` / ``torchscript17``: ``torch.onnx.export(dynamo=False)``
  with ``do_constant_folding=False`` and a dynamic batch axis ``N``.
  BatchNormalization nodes stay separate from their Conv (with folding on,
  the eval-mode peephole pass fuses BN into the Conv weights), but weights are
  not pre-transposed either: a Linear on a 3-D input becomes
  ``Transpose(weight) -> MatMul -> Add``. ``chunk`` becomes a
  ``Shape/Gather/Add/Div/Mul`` + ``Constant`` subgraph feeding ``Slice``.
  Opset 13 has no HardSwish (-> ``HardSigmoid`` + ``Mul``) and no
  LayerNormalization (-> ReduceMean/Sub/Pow/Sqrt/Div decomposition).
* ``dynamo18``: ``torch.onnx.export(dynamo=True, opset_version=18,
  external_data=False)`` with the exporter's default ``optimize=True`` and a
  dynamic batch dimension ``torch.export.Dim("N")``; input/output are named
  "input"/"output" as with the torchscript exports, and the file is
  self-contained. The optimizer fuses every Conv->BatchNormalization pair:
  the Conv weight initializer keeps its torch name (e.g. ``conv1.0.weight``)
  but holds the *folded* values, with a new ``<weight>_bias`` initializer;
  BN not preceded by a Conv (pre-activation BN in ``dense_concat``) stays a
  BatchNormalization node. Linear on 3-D inputs becomes ``MatMul`` with an
  anonymous pre-transposed ``[in, out]`` initializer (``val_*``), so the torch
  weight name is lost. Shapes are initializers, not Constant nodes (flatten ->
  ``Reshape`` with ``[-1, C*H*W]``, AdaptiveAvgPool -> ``ReduceMean`` with an
  axes initializer that may be shared by several nodes). Without
  ``optimize`` the graph is full of Shape/Expand/CastLike/SplitToSequence
  nodes, so the default is kept.
"""

from __future__ import annotations

import pathlib
import warnings
import zlib
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ARCHS",
    "INPUT_SHAPES",
    "EXPORTERS",
    "export_arch",
    "build_arch",
    "reference_input",
    "reference_output",
]

EXPORTERS = ("torchscript13", "torchscript17", "dynamo18")

NUM_CLASSES = 10


# ---------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------


def _conv_bn(cin, cout, k=3, stride=1, groups=1, act: type[nn.Module] | None = nn.ReLU):
    layers = [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class _Head(nn.Module):
    """Global average pool -> flatten -> linear."""

    def __init__(self, cin, classes=NUM_CLASSES):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


# 1. residual ----------------------------------------------------------------


class _BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _conv_bn(3, 16)
        self.block1 = _BasicBlock(16, 16)
        self.block2 = _BasicBlock(16, 16)
        self.block3 = _BasicBlock(16, 32, stride=2)  # 1x1 projection shortcut
        self.head = _Head(32)

    def forward(self, x):
        return self.head(self.block3(self.block2(self.block1(self.stem(x)))))


# 2. mobilenet_se --------------------------------------------------------------


class _SqueezeExcite(nn.Module):
    def __init__(self, c, squeeze):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        s = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return x * s


class _InvertedResidual(nn.Module):
    """1x1 expand -> depthwise (multiplier ``dw_mult``) -> SE -> 1x1 project."""

    def __init__(self, cin, expand, cout, stride=1, dw_mult=1):
        super().__init__()
        dw_out = expand * dw_mult
        self.expand = _conv_bn(cin, expand, 1, act=nn.Hardswish)
        self.depthwise = _conv_bn(expand, dw_out, 3, stride=stride, groups=expand, act=nn.Hardswish)
        self.se = _SqueezeExcite(dw_out, 8)
        self.project = _conv_bn(dw_out, cout, 1, act=None)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x):
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + out if self.use_residual else out


class MobileNetSE(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _conv_bn(3, 16, 3, stride=1, act=nn.Hardswish)
        self.block1 = _InvertedResidual(16, 32, 16)  # residual add
        # depthwise with channel multiplier 2: groups=24, 24 -> 48
        self.block2 = _InvertedResidual(16, 24, 24, stride=2, dw_mult=2)
        self.head = _Head(24)

    def forward(self, x):
        return self.head(self.block2(self.block1(self.stem(x))))


# 3. dense_concat ----------------------------------------------------------------


class _DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(F.relu(self.bn(x)))], dim=1)


class DenseConcat(nn.Module):
    def __init__(self, growth=8):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        c = 16
        layers = []
        for _ in range(3):
            layers.append(_DenseLayer(c, growth))
            c += growth
        self.dense = nn.Sequential(*layers)  # 16 -> 24 -> 32 -> 40
        self.trans_bn = nn.BatchNorm2d(c)
        self.trans_conv = nn.Conv2d(c, 20, 1, bias=False)
        self.trans_pool = nn.AvgPool2d(2)
        self.head = _Head(20)

    def forward(self, x):
        x = self.dense(self.stem(x))
        x = self.trans_pool(self.trans_conv(F.relu(self.trans_bn(x))))
        return self.head(x)


# 4. channel_split -----------------------------------------------------------------


class ChannelSplit(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _conv_bn(3, 32)
        self.branch1 = _conv_bn(16, 16, 1)  # after chunk(2)
        self.branch2 = _conv_bn(24, 24, 3)  # after split([8, 24])
        self.head = _Head(32)

    def forward(self, x):
        x = self.stem(x)
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, self.branch1(b)], dim=1)
        a, b = torch.split(x, [8, 24], dim=1)
        x = torch.cat([a, self.branch2(b)], dim=1)
        return self.head(x)


# 5. grouped_conv --------------------------------------------------------------------


class GroupedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _conv_bn(3, 16)
        self.reduce = _conv_bn(16, 32, 1)
        self.grouped = _conv_bn(32, 32, 3, groups=4)
        self.expand = _conv_bn(32, 16, 1, act=None)
        self.head = _Head(16)

    def forward(self, x):
        x = self.stem(x)
        out = self.expand(self.grouped(self.reduce(x)))
        return self.head(F.relu(x + out))


# 6. flatten_gemm ----------------------------------------------------------------------


class FlattenGemm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = _conv_bn(3, 8, 3, stride=2)  # 16x16 -> 8x8
        self.conv2 = _conv_bn(8, 16, 3)
        self.pool = nn.MaxPool2d(2)  # 8x8 -> 4x4
        self.fc1 = nn.Linear(16 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, NUM_CLASSES)

    def forward(self, x):
        x = self.pool(self.conv2(self.conv1(x)))
        x = torch.flatten(x, 1)  # channel c owns features [16c, 16c + 16)
        return self.fc2(F.relu(self.fc1(x)))


# 7. convtranspose_decoder ------------------------------------------------------------


class ConvTransposeDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1 = _conv_bn(3, 16, 3, stride=2)  # 16 -> 8
        self.enc2 = _conv_bn(16, 32, 3, stride=2)  # 8 -> 4
        self.dec1 = nn.Sequential(  # 4 -> 8
            nn.ConvTranspose2d(32, 16, 2, stride=2, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.dec2 = nn.Sequential(  # 8 -> 16, with output_padding
            nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        )
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.out(self.dec2(self.dec1(self.enc2(self.enc1(x)))))


# 8. transformer_block -------------------------------------------------------------------


class TransformerBlock(nn.Module):
    def __init__(self, dim=32, hidden=64):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.scale = dim**-0.5

    def forward(self, x):  # [N, T, D]
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        x = x + self.proj(torch.matmul(attn, v))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------

_CLASSES: dict[str, type[nn.Module]] = {
    "residual": Residual,
    "mobilenet_se": MobileNetSE,
    "dense_concat": DenseConcat,
    "channel_split": ChannelSplit,
    "grouped_conv": GroupedConv,
    "flatten_gemm": FlattenGemm,
    "convtranspose_decoder": ConvTransposeDecoder,
    "transformer_block": TransformerBlock,
}

INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    name: ((2, 16, 32) if name == "transformer_block" else (2, 3, 16, 16)) for name in _CLASSES
}


def _seed(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _randomise_norms(model: nn.Module) -> None:
    """Give every BatchNorm/LayerNorm non-trivial statistics and affine params."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n) * 0.2)
                m.running_var.copy_(torch.rand(n) + 0.5)
                m.weight.copy_(torch.rand(n) + 0.5)
                m.bias.copy_(torch.randn(n) * 0.2)
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(torch.rand_like(m.weight) + 0.5)
                m.bias.copy_(torch.randn_like(m.bias) * 0.2)


def build_arch(name: str) -> nn.Module:
    """Build architecture ``name`` deterministically, randomised norms, eval mode."""
    cls = _CLASSES[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(name))
        model = cls()
        _randomise_norms(model)
    return model.eval()


def _builder(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        return build_arch(name)

    build.__name__ = f"build_{name}"
    return build


ARCHS: dict[str, Callable[[], nn.Module]] = {name: _builder(name) for name in _CLASSES}


def reference_input(name: str) -> np.ndarray:
    rng = np.random.default_rng(_seed(name))
    return rng.standard_normal(INPUT_SHAPES[name]).astype(np.float32)


def reference_output(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (input, torch output) for architecture ``name``."""
    x = reference_input(name)
    model = build_arch(name)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    return x, y


# ---------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------


def export_arch(name: str, exporter: str, directory: pathlib.Path) -> pathlib.Path:
    """Export architecture ``name`` with ``exporter`` to ``directory/<name>_<exporter>.onnx``."""
    if name not in _CLASSES:
        raise KeyError(f"unknown architecture {name!r}; known: {sorted(_CLASSES)}")
    if exporter not in EXPORTERS:
        raise KeyError(f"unknown exporter {exporter!r}; known: {EXPORTERS}")
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}_{exporter}.onnx"
    model = build_arch(name)
    x = torch.from_numpy(reference_input(name))

    with warnings.catch_warnings():
        # "legacy TorchScript-based ONNX export" deprecation, torch.export pytree chatter
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if exporter.startswith("torchscript"):
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=False,
                opset_version=int(exporter.removeprefix("torchscript")),
                do_constant_folding=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
            )
        else:
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=True,
                opset_version=18,
                external_data=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes=({0: torch.export.Dim("N")},),
                verbose=False,
            )
    return path
