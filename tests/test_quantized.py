"""Quantized models: a ResNet-like and a MobileNet-like CNN (random weights, planted dead channels), exported
by TorchScript at opset 17 and quantized by onnxruntime (static, per-channel weights), in QDQ format
(DequantizeLinear of int8 weights) and QOperator format (QLinearConv; its residual QLinearAdd is a
com.microsoft op outside the registry, so the residual stream stays frozen there).

A planted channel has a zero filter and a zero BatchNormalization shift and mean, so the float Conv (BN
folded in by the exporter) outputs exactly 0 there. Quantization keeps it exactly 0: its per-channel int8
weights are 0 with zero point 0, its int32 bias is round(0 / scale) = 0, and the activation QuantizeLinear
maps 0 to the zero point, which its DequantizeLinear maps back to exactly 0 ((zp - zp) * scale). Each
consumer then adds nothing for it, so removing it must give outputs equal to the QDQ model's.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import onnxruntime.quantization as quantization
import pytest
import torch

import onnxprune

nn = torch.nn

SIZE = 16
PLANTED = [2, 7]  # dead channels of every block's inner conv
_BATCH = {"input": {0: "n"}, "logits": {0: "n"}}


class _Basic(nn.Module):
    """ResNet basic block: inner channels are their own group, the residual sum couples the outer ones."""

    def __init__(self, c: int, mid: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid)
        self.c2, self.b2 = nn.Conv2d(mid, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))


class _Inverted(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise 3x3, 1x1 project, residual."""

    def __init__(self, c: int, mid: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.dw, self.bdw = nn.Conv2d(mid, mid, 3, padding=1, groups=mid, bias=False), nn.BatchNorm2d(mid)
        self.c2, self.b2 = nn.Conv2d(mid, c, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = nn.functional.relu6(self.bdw(self.dw(nn.functional.relu6(self.b1(self.c1(x))))))
        return x + self.b2(self.c2(y))


class _Net(nn.Module):
    def __init__(self, block: type) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(block(16, 24), block(16, 24))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def _planted(block: type) -> nn.Module:
    torch.manual_seed(0)
    net = _Net(block).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.3, 0.3)
        for b in net.blocks:
            b.c1.weight[PLANTED] = 0
            for bn in (b.b1, getattr(b, "bdw", b.b1)):  # the depthwise conv maps 0 to its (BN) bias
                bn.bias[PLANTED] = 0
                bn.running_mean[PLANTED] = 0
    return net


class _Reader(quantization.CalibrationDataReader):
    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.batches = iter([{"input": rng.standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)} for _ in range(8)])

    def get_next(self):
        return next(self.batches, None)


def _quantized(tmp, block: type, fmt) -> str:
    float_path, q_path = tmp / "float.onnx", tmp / f"{fmt.name}.onnx"
    torch.onnx.export(_planted(block), torch.randn(1, 3, SIZE, SIZE), str(float_path), opset_version=17,
                      dynamo=False, input_names=["input"], output_names=["logits"], dynamic_axes=_BATCH)
    quantization.quantize_static(str(float_path), str(q_path), _Reader(), quant_format=fmt, per_channel=True)
    return str(q_path)


_MODELS = {"resnet-qdq": (_Basic, "QDQ"), "mobilenet-qdq": (_Inverted, "QDQ"),
           "resnet-qoperator": (_Basic, "QOperator"), "mobilenet-qoperator": (_Inverted, "QOperator")}
_QDQ = [k for k, (_, fmt) in _MODELS.items() if fmt == "QDQ"]


@pytest.fixture(scope="session")
def quantized(tmp_path_factory):
    """``quantized(name)``: the path of a model of ``_MODELS``, built once per session."""
    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            block, fmt = _MODELS[name]
            built[name] = _quantized(tmp_path_factory.mktemp(name), block, getattr(quantization.QuantFormat, fmt))
        return built[name]
    return get


def _inputs() -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(1).standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)}


def _outputs(path) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, _inputs())[0]


def _inner_widths(path) -> list[int]:
    """Filters of every block's first conv (its integer weight's first dim), in graph order."""
    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    produced = {o: n for n in m.graph.node for o in n.output}
    widths = []
    for n in m.graph.node:
        if n.op_type == "QLinearConv" and "/c1/" in n.name:  # QOperator: the int8 filters are input 3
            widths.append(inits[n.input[3]].dims[0])
        elif n.op_type == "Conv" and "/c1/" in n.name:  # QDQ: a DequantizeLinear of int8 filters
            widths.append(inits[produced[n.input[1]].input[0]].dims[0])
    return widths


def _inner(path: str, block: int) -> str:
    """The group name of a block's inner conv (onnxruntime renames the node in QOperator format)."""
    return f"/blocks/blocks.{block}/c1/Conv" + ("_quant" if "qoperator" in path else "")


@pytest.mark.parametrize("name", list(_MODELS))
def test_quantized_model_has_prunable_groups(quantized, name):
    path = quantized(name)
    an = onnxprune.analyze(onnx.load(path))
    names = {g.name for g in an.prunable_groups}
    assert {_inner(path, 0), _inner(path, 1)} <= names, names
    if name in _QDQ:
        assert "/stem/stem.0/Conv" in names  # the residual stream: stem and every block's last conv


@pytest.mark.parametrize("name", _QDQ)
def test_lossless_mode_removes_exactly_the_planted_channels(quantized, name, tmp_path, cli):
    qdq, out = quantized(name), tmp_path / "lossless.onnx"
    res = cli(qdq, out, "--criterion", "lumping", "--no-validate")
    assert res.code == 0, res.err
    assert _inner_widths(out) == [24 - len(PLANTED)] * 2
    np.testing.assert_array_equal(_outputs(out), _outputs(qdq))


@pytest.mark.parametrize("name", list(_MODELS))
def test_removing_the_planted_channels_keeps_outputs_equal(quantized, name, tmp_path, cli):
    path, out = quantized(name), tmp_path / "removed.onnx"
    spec = ",".join(map(str, PLANTED))
    res = cli(path, out, "--remove", f"{_inner(path, 0)}:{spec}", "--remove", f"{_inner(path, 1)}:{spec}",
              "--no-validate")
    assert res.code == 0, res.err
    assert _inner_widths(out) == [22, 22]
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    scales = {t.name: t.dims for t in m.graph.initializer if "scale" in t.name}
    assert any(list(d) == [22] for d in scales.values()), scales  # per-channel weight scales were sliced
    np.testing.assert_array_equal(_outputs(out), _outputs(path))


@pytest.mark.parametrize("name", list(_MODELS))
def test_ratio_gives_a_running_smaller_quantized_model(quantized, name, tmp_path, cli):
    path, out = quantized(name), tmp_path / "ratio.onnx"
    res = cli(path, out, "--ratio", "0.3", "--no-validate")
    assert res.code == 0, res.err
    widths = _inner_widths(out)
    assert len(widths) == 2 and all(w < 24 for w in widths), widths
    got, want = _outputs(out), _outputs(path)
    assert got.shape == want.shape and np.isfinite(got).all()
    ops = {n.op_type for n in onnx.load(path).graph.node} - {"Constant"}  # constants become initializers
    assert {n.op_type for n in onnx.load(str(out)).graph.node} == ops  # still quantized, nothing dequantized


def test_dynamic_quantized_model_says_why_it_is_frozen(tmp_path):
    float_path, q_path = tmp_path / "float.onnx", tmp_path / "dynamic.onnx"
    torch.onnx.export(_planted(_Basic), torch.randn(1, 3, SIZE, SIZE), str(float_path), opset_version=17,
                      dynamo=False, input_names=["input"], output_names=["logits"], dynamic_axes=_BATCH)
    quantization.quantize_dynamic(str(float_path), str(q_path), op_types_to_quantize=["Conv", "MatMul", "Gemm"])
    an = onnxprune.analyze(onnx.load(str(q_path)))
    assert not an.prunable_groups
    assert any("dynamic quantization" in r for g in an.groups for r in g.frozen), [g.frozen for g in an.groups]
