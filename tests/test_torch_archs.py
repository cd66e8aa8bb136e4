"""Every architecture of ``torch_archs`` exports with every exporter, runs in
onnxruntime and matches torch."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import torch_archs  # noqa: E402
from torch_archs import ARCHS, EXPORTERS, INPUT_SHAPES, export_arch, reference_output  # noqa: E402

RTOL = 1e-4
ATOL = 1e-5


def _session(path: pathlib.Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("torch_archs")


def test_registry_consistent():
    assert set(ARCHS) == set(INPUT_SHAPES)
    assert len(ARCHS) == 8
    assert EXPORTERS == ("torchscript13", "torchscript17", "dynamo18")
    for name, shape in INPUT_SHAPES.items():
        assert shape[0] == 2, name
        model = ARCHS[name]()
        assert not model.training, name


def test_build_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    x1, y1 = reference_output("residual")
    after = torch.rand(3)
    assert torch.equal(expected, after)
    x2, y2 = reference_output("residual")
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("name", list(ARCHS))
def test_batchnorm_is_nontrivial(name):
    model = ARCHS[name]()
    norms = [
        m
        for m in model.modules()
        if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm))
    ]
    assert norms, name
    for m in norms:
        assert not torch.allclose(m.weight, torch.ones_like(m.weight))
        assert not torch.allclose(m.bias, torch.zeros_like(m.bias))
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            assert not torch.allclose(m.running_mean, torch.zeros_like(m.running_mean))
            assert not torch.allclose(m.running_var, torch.ones_like(m.running_var))


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", list(ARCHS))
def test_export_matches_torch(name, exporter, export_dir):
    path = export_arch(name, exporter, export_dir)
    assert path == export_dir / f"{name}_{exporter}.onnx"
    assert path.is_file()

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert opset == int(exporter[-2:])
    # self-contained: no external data
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)

    x, expected = reference_output(name)
    sess = _session(path)
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["output"]
    (out,) = sess.run(None, {"input": x})
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=RTOL, atol=ATOL)

    # dynamic batch: a batch of 3 also runs and matches torch
    rng = np.random.default_rng(7)
    x3 = rng.standard_normal((3, *INPUT_SHAPES[name][1:])).astype(np.float32)
    with torch.no_grad():
        expected3 = torch_archs.build_arch(name)(torch.from_numpy(x3)).numpy()
    (out3,) = sess.run(None, {"input": x3})
    np.testing.assert_allclose(out3, expected3, rtol=RTOL, atol=ATOL)


def test_output_shapes():
    expected = {name: (2, 10) for name in ARCHS}
    expected["convtranspose_decoder"] = (2, 2, 16, 16)
    expected["transformer_block"] = (2, 16, 32)
    for name in ARCHS:
        assert reference_output(name)[1].shape == expected[name], name


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_export_is_deterministic(exporter, tmp_path):
    a = export_arch("flatten_gemm", exporter, tmp_path / "a")
    b = export_arch("flatten_gemm", exporter, tmp_path / "b")
    assert a.name == b.name == f"flatten_gemm_{exporter}.onnx"
    ma, mb = onnx.load(str(a)), onnx.load(str(b))
    assert [n.op_type for n in ma.graph.node] == [n.op_type for n in mb.graph.node]
    ia = {t.name: onnx.numpy_helper.to_array(t) for t in ma.graph.initializer}
    ib = {t.name: onnx.numpy_helper.to_array(t) for t in mb.graph.initializer}
    assert ia.keys() == ib.keys()
    for k in ia:
        np.testing.assert_array_equal(ia[k], ib[k])
