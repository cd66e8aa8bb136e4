"""A prune writes back only what its plan changed: IN's structure survives normalisation.

onnxruntime picks its graph rewrites from the structure it is given (a Pad spelled with a trailing
empty input is not fused into the Conv after it, the same Pad without it is, and the fused 1-D conv
ran slower), so a no-op prune must give IN's graph back and a real prune must keep IN's spelling."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from conv1d_arch import export_pitch_tracker  # noqa: E402


def _padded_convs(path: Path) -> Path:
    """x -> Pad(pads from a Constant, trailing empty value input) -> Conv -> Relu -> Conv -> y, plus
    a Constant-fed Reshape: the spellings normalisation rewrites."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 4, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((8, 16, 3)).astype(np.float32), "w2")]
    pads = helper.make_tensor("pads_value", TensorProto.INT64, [6], [0, 0, 1, 0, 0, 1])
    shape = helper.make_tensor("shape_value", TensorProto.INT64, [2], [1, -1])
    nodes = [helper.make_node("Constant", [], ["pads"], value=pads, name="pads_const"),
             helper.make_node("Pad", ["x", "pads", ""], ["p"], mode="constant", name="pad"),
             helper.make_node("Conv", ["p", "w1", "b1"], ["c1"], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
             helper.make_node("Constant", [], ["shape"], value=shape, name="shape_const"),
             helper.make_node("Reshape", ["c2", "shape"], ["y"], name="flatten")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 240])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_noop_prune_writes_in_itself(tmp_path, cli):
    model = _padded_convs(tmp_path / "in.onnx")
    res = cli(model, tmp_path / "out.onnx", "--ratio", "0")
    assert res.code == 0, res.err
    a, b = onnx.load(model), onnx.load(tmp_path / "out.onnx")
    assert list(b.graph.node) == list(a.graph.node)  # Constant nodes, the empty input, the order
    assert list(b.graph.initializer) == list(a.graph.initializer)
    assert b.ir_version == a.ir_version and list(b.graph.input) == list(a.graph.input)


def test_pruned_model_keeps_in_spelling(tmp_path, cli):
    model = _padded_convs(tmp_path / "in.onnx")
    res = cli(model, tmp_path / "out.onnx", "--ratio", "0.5")
    assert res.code == 0, res.err
    out = onnx.load(tmp_path / "out.onnx")
    assert [i.dims for i in out.graph.initializer if i.name == "w1"] == [[8, 4, 3]]  # it was pruned
    pad = next(n for n in out.graph.node if n.op_type == "Pad")
    assert list(pad.input)[2:] == [""]  # the trailing empty input is back
    declared = {i.name for i in out.graph.initializer} | {o.name for o in out.graph.output}
    assert {v.name for v in out.graph.value_info} <= declared  # no inferred intermediate shapes written


def _ort_pads(path: Path, tmp_path: Path) -> int:
    """Pad nodes left after onnxruntime's graph optimisations (the rest were fused into Convs)."""
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / f"{path.stem}.ort_opt.onnx")
    opts.log_severity_level = 4
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sum(n.op_type == "Pad" for n in onnx.load(opts.optimized_model_filepath).graph.node)


@pytest.mark.parametrize("ratio", ["0", "0.3"])
def test_pitch_tracker_gets_the_same_runtime_rewrites(tmp_path, cli, ratio):
    """The exported 1-D conv model with shape-computed pads: onnxruntime keeps the same Pads unfused
    in OUT as in IN (normalised and saved as it was, all of them were fused)."""
    model = export_pitch_tracker(tmp_path, opset=13, dynamic=False)
    res = cli(model, tmp_path / "out.onnx", "--ratio", ratio, "--no-validate")
    assert res.code == 0, res.err
    assert _ort_pads(tmp_path / "out.onnx", tmp_path) == _ort_pads(model, tmp_path) > 0
    if ratio == "0":
        assert list(onnx.load(tmp_path / "out.onnx").graph.node) == list(onnx.load(model).graph.node)
