"""Constant folding before analysis (passes/fold.py): what depends only on weights and static shapes becomes
an initializer, so the groups it used to freeze prune.

Two models built here and exported by both torch exporters:
* a pitch tracker like CREPE: frames [N, 1024] -> 1-D convs written as Conv2d with (k, 1) kernels, 'same'
  padding computed from ``x.shape`` with ``F.pad``, ReLU, BN, MaxPool, and a Linear after the
  ``permute(0, 2, 1, 3).reshape(-1, features)`` flatten. TorchScript writes the pads as run-time arithmetic
  on Shape (and torch's own folder cannot fold its reversed Slice), which froze every conv.
* an NF-ResNet-like net whose convs standardise their weights at run time (weight -> ReduceMean / Sub /
  Div / Mul by a gain -> Conv weight): the Conv weights were not constants, so nothing pruned.

Dead channels are planted in the exported file itself (not in a folded copy), so pruning it exercises the
folding: the oracle's choice of channels is made on the folded model, then written back into the raw
parameters the folded weights come from."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from oracle import assert_removed_exactly, plant_dead_channels

import onnxprune
from onnxprune.api import load_normalized
from onnxprune.graph import analyze_groups

RATIO = 0.3
TOL = 1e-5
EXPORTERS = ("ts", "dynamo")


class PitchNet(torch.nn.Module):
    """CREPE's layout at a small size: (channels, kernel, stride) per layer, 'same' pads from the shape."""

    LAYERS = ((24, 64, 4), (12, 16, 1), (12, 16, 1), (16, 16, 1))

    def __init__(self) -> None:
        super().__init__()
        chans = [1] + [c for c, _, _ in self.LAYERS]
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(ci, co, (k, 1), (s, 1))
                                         for ci, (co, k, s) in zip(chans, self.LAYERS))
        self.bns = torch.nn.ModuleList(torch.nn.BatchNorm2d(c) for c, _, _ in self.LAYERS)
        self.features = chans[-1] * 16  # 1024 samples / 4 (stride) / 2**4 (pools) = 16 steps
        self.fc = torch.nn.Linear(self.features, 20)

    def forward(self, frames):
        x = frames[:, None, :, None]
        for conv, bn in zip(self.convs, self.bns):
            k, s = conv.kernel_size[0], conv.stride[0]
            length = x.shape[2]
            total = ((length + s - 1) // s - 1) * s + k - length  # 'same' padding from the run-time length
            x = F.pad(x, (0, 0, total // 2, total - total // 2))
            x = F.max_pool2d(bn(F.relu(conv(x))), (2, 1), (2, 1))
        x = x.permute(0, 2, 1, 3).reshape(-1, self.features)  # CREPE's flatten: time-major
        return torch.sigmoid(self.fc(x))


class StdConv(torch.nn.Conv2d):
    """NF-ResNet's scaled weight standardisation, computed from the parameters at every call."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1) -> None:
        super().__init__(cin, cout, k, stride, padding=k // 2)
        self.gain = torch.nn.Parameter(torch.rand(cout, 1, 1, 1) + 0.5)
        self.scale = (cin * k * k) ** -0.5

    def forward(self, x):
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = ((w - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)
        w = (w - mean) / torch.sqrt(var + 1e-5) * (self.gain * self.scale)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class NFNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = StdConv(3, 16, 3, 2)
        self.conv1 = StdConv(16, 24, 3)
        self.conv2 = StdConv(24, 16, 3)
        self.conv3 = StdConv(16, 32, 3, 2)
        self.fc = torch.nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.conv2(F.gelu(self.conv1(F.gelu(x))))
        x = x + 0.2 * y  # NF-ResNet's alpha-scaled residual
        x = F.gelu(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3)))


MODELS = {"pitch": (PitchNet, (2, 1024)), "nfnet": (NFNet, (2, 3, 16, 16))}
CASES = [(name, exporter) for name in MODELS for exporter in EXPORTERS]
IDS = [f"{n}_{e}" for n, e in CASES]


def _export(name: str, exporter: str, path: Path) -> Path:
    cls, shape = MODELS[name]
    torch.manual_seed(0)
    net = cls().eval()
    with torch.no_grad():  # BN statistics that are not the identity
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(*shape)
    if exporter == "ts":
        # the NF net: torch's own folder would evaluate the weight standardisation; the point is ours
        torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                          do_constant_folding=name != "nfnet")
    else:
        # the NF net: the dynamo exporter's optimizer would fold the standardisation (optimize=False keeps it)
        torch.onnx.export(net, (x,), str(path), dynamo=True, verbose=False, input_names=["x"], output_names=["y"],
                          dynamic_shapes=({0: torch.export.Dim("batch", min=2)},), optimize=name != "nfnet")
        onnx.save(onnx.load(path), path)  # one file, no external data
    return path


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("folding")
    cache: dict = {}

    def get(name: str, exporter: str) -> Path:
        if (name, exporter) not in cache:
            cache[name, exporter] = _export(name, exporter, folder / f"{name}_{exporter}.onnx")
        return cache[name, exporter]

    return get


def _inputs(path: Path, batch: int = 3) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    return {i.name: rng.standard_normal([batch if not isinstance(d, int) else d for d in i.shape]).astype(np.float32)
            for i in sess.get_inputs()}


def _run(path: Path, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def _runtime_ops(path: Path) -> Counter:
    """Node count per op type, Constant nodes aside (they are initializers by another spelling)."""
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node if n.op_type != "Constant")


def _conv_weights_computed(path: Path) -> int:
    """Convs whose weight is computed by nodes (not an initializer or a Constant)."""
    g = onnx.load(str(path)).graph
    constant = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    return sum(n.op_type == "Conv" and n.input[1] not in constant for n in g.node)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_group_prunes_after_folding(case, exports):
    """Every conv group is prunable (only the graph output's stays whole); the batch stays symbolic."""
    path = exports(*case)
    if case == ("pitch", "ts"):  # what froze it: pads computed at run time from the shape
        assert _runtime_ops(path)["Shape"] + _runtime_ops(path)["ConstantOfShape"] > 0
    if case[0] == "nfnet":
        assert _conv_weights_computed(path) == 4
    model = load_normalized(path)
    an = analyze_groups(model)
    convs = [g for g in an.groups if g.producers and g.producers[0].node.op_type == "Conv"]
    assert len(convs) == (4 if case[0] == "pitch" else 3)  # NF: stem and conv2 are one group (the residual)
    assert all(g.prunable for g in convs), [g.details() for g in convs if not g.prunable]
    assert not {n.op_type for n in model.graph} & {"Shape", "ConstantOfShape"}
    assert all(n.inputs[1].const_value is not None for n in model.graph if n.op_type == "Conv")
    batch = model.graph.inputs[0].shape[0]
    assert not isinstance(batch, int), "the batch dim became a constant"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_ratio_prune_is_valid_and_not_slower_in_structure(case, exports, tmp_path):
    path = exports(*case)
    out = tmp_path / "pruned.onnx"
    _, report = onnxprune.prune(path, ratio=RATIO, output=out)
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    assert report["params_after"] < report["params_before"]
    before, after = _runtime_ops(path), _runtime_ops(out)
    assert not set(after) - set(before), f"new run-time ops: {set(after) - set(before)}"
    assert sum(after.values()) <= sum(before.values())
    assert after["Conv"] == before["Conv"] and _conv_weights_computed(out) == 0
    feeds = _inputs(out, batch=5)  # a batch the export never saw: the batch dim is still free
    (y,) = _run(out, feeds)
    assert y.shape[0] == 5 and np.isfinite(y).all()
    for name, o in report["validation"]["outputs"].items():
        assert o["cosine"] > 0.5, f"output {name}: {o}"


def _plant_in_export(path: Path, out: Path) -> dict[str, int]:
    """Dead channels chosen by the oracle on the folded model, written into the exported file's raw
    parameters: a plain parameter (bias, BN, Linear, a conv weight read as it is) takes the oracle's
    zeros; a standardised conv weight cannot (its rows are re-standardised), so a dead output channel
    gets a zero gain, and a dead input column the mean of its row's live entries, which standardises to 0."""
    folded = out.with_suffix(".folded.onnx")
    planted, _ = plant_dead_channels(path, folded, RATIO)
    dead_model = ir.load(folded)
    raw = ir.load(path)
    raw_inits = raw.graph.initializers
    for name, value in dead_model.graph.initializers.items():
        if name in raw_inits and raw_inits[name].const_value.shape == value.const_value.shape:
            raw_inits[name].const_value = ir.tensor(value.const_value.numpy(), name=name)
    dead_convs = {n.name: n for n in dead_model.graph if n.op_type == "Conv"}
    for conv in raw.graph:
        if conv.op_type != "Conv" or conv.inputs[1].const_value is not None:
            continue
        w_dead = dead_convs[conv.name].inputs[1].const_value.numpy()
        rows = np.all(w_dead.reshape(w_dead.shape[0], -1) == 0, axis=1)
        cols = np.all(np.moveaxis(w_dead, 1, 0).reshape(w_dead.shape[1], -1) == 0, axis=1)
        params = _parameters_of(conv.inputs[1])
        weight = next(v for v in params if v.const_value.shape == w_dead.shape)
        gain = next(v for v in params if v.const_value.shape == (w_dead.shape[0], 1, 1, 1))
        g = np.array(gain.const_value.numpy(), copy=True)
        g[rows] = 0
        gain.const_value = ir.tensor(g, name=gain.name)
        w = np.array(weight.const_value.numpy(), copy=True)
        for o in range(w.shape[0]):
            w[o, cols] = w[o, ~cols].mean(dtype=np.float64).astype(w.dtype)
        weight.const_value = ir.tensor(w, name=weight.name)
    ir.save(raw, out)
    return planted


def _parameters_of(value: ir.Value) -> list[ir.Value]:
    """The initializers a computed value is made from."""
    seen, stack, found = set(), [value], []
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        if v.const_value is not None and v.producer() is None:
            found.append(v)
        elif v.producer() is not None:
            stack.extend(i for i in v.producer().inputs if i is not None)
    return found


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_planted_dead_channels_are_removed_exactly(case, exports, tmp_path):
    planted_path = tmp_path / "planted.onnx"
    planted = _plant_in_export(exports(*case), planted_path)
    assert planted
    if case[0] == "nfnet":  # the planted file still standardises its weights at run time
        assert _conv_weights_computed(planted_path) == 4
    _, report = onnxprune.prune(planted_path, ratio=RATIO, criterion="l1", allocation="local", merge=False)
    assert_removed_exactly(report, planted, TOL)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_nothing_pruned_writes_in_bit_for_bit(case, exports, tmp_path):
    """Every group left whole: the file written is IN's graph, run-time shape arithmetic and all."""
    path = exports(*case)
    out = tmp_path / "same.onnx"
    _, report = onnxprune.prune(path, ratio=RATIO, ignore=[".*"], output=out, validate=False)
    assert report["channels_removed"] == 0
    written, given = onnx.load(str(out)).graph, onnx.load(str(path)).graph
    assert list(written.node) == list(given.node) and list(written.initializer) == list(given.initializer)
    feeds = _inputs(path)
    for a, b in zip(_run(path, feeds), _run(out, feeds)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_folded_model_computes_what_in_computes(case, exports, tmp_path):
    """The model the analysis reads: shape arithmetic folds to the same bits; a folded weight
    standardisation is evaluated in numpy, so it matches onnxruntime's to float32 rounding."""
    path = exports(*case)
    folded = tmp_path / "folded.onnx"
    ir.save(load_normalized(path), folded)
    feeds = _inputs(path)
    for a, b in zip(_run(path, feeds), _run(folded, feeds)):
        if case[0] == "pitch":
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-6 * np.abs(a).max())
