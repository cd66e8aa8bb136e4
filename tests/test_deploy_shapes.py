"""Deploy shapes: MACs, latency and validation run at the shapes the model will run at (--data, else
--input-shape, else what the graph implies), and the report says which shapes, values and why."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.shapes import deploy_shapes

C1, C2 = 8, 8


def conv_net(spatial=("H", "W"), head: int | None = None, imgsz: str | None = None) -> onnx.ModelProto:
    """x[N, 3, *spatial] -> Conv(C1, 3x3, stride 2, pad 1) -> Relu -> Conv(C2, 3x3, pad 1) -> Relu, then
    GlobalAveragePool -> Flatten -> Gemm(4); or with ``head`` = S, Flatten -> Gemm reading C2 * S * S
    features (the graph then accepts only inputs of 2 S x 2 S)."""
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, *spatial])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    feats = C2 * head * head if head else C2
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in (
        ("w1", (C1, 3, 3, 3)), ("b1", (C1,)), ("w2", (C2, C1, 3, 3)), ("b2", (C2,)), ("wf", (4, feats)), ("bf", (4,)))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"])]
    if head:
        nodes.append(helper.make_node("Flatten", ["r2"], ["f"]))
    else:
        nodes += [helper.make_node("GlobalAveragePool", ["r2"], ["g"]), helper.make_node("Flatten", ["g"], ["f"])]
    nodes.append(helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1))
    model = helper.make_model(helper.make_graph(nodes, "net", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    if imgsz:
        helper.set_model_props(model, {"imgsz": imgsz})
    return model


def conv_macs(side: int, head: int | None = None) -> int:
    """MACs of conv_net at a side x side input, batch 1."""
    half = (side + 1) // 2
    return C1 * 3 * 9 * half * half + C2 * C1 * 9 * half * half + 4 * (C2 * head * head if head else C2)


@pytest.fixture
def symbolic_net(tmp_path):
    path = tmp_path / "net.onnx"
    onnx.save(conv_net(), path)
    return path


def _report(path) -> dict:
    return json.loads(path.read_text())


def test_data_at_320_gives_macs_latency_and_validation_at_320(cli, symbolic_net, tmp_path):
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.random.default_rng(1).uniform(-1, 1, (4, 3, 320, 320)).astype(np.float32))
    res = cli(symbolic_net, tmp_path / "out.onnx", "--ratio", "0.25", "--data", data, "--report", tmp_path / "r.json",
              "--latency", "--latency-runs", "5")
    assert res.code == 0, res.err
    rep = _report(tmp_path / "r.json")
    assert rep["flops_before"] == conv_macs(320)
    shape = rep["shapes"]["inputs"]["x"]
    assert shape["shape"] == [1, 3, 320, 320]
    assert shape["source"].startswith("--data") and shape["values"] == "the data's values"
    assert "--input-shape" in rep["shapes"]["note"]
    assert rep["latency"]["batch"]["x"] == [1, 3, 320, 320]
    assert rep["validation"]["inputs"]["x"]["shape"] == [4, 3, 320, 320]
    assert -1 <= rep["validation"]["inputs"]["x"]["min"] < rep["validation"]["inputs"]["x"]["max"] <= 1
    # the terminal summary says the same, and how to change it
    assert "shapes  x [1, 3, 320, 320] from --data" in res.out and "--input-shape NAME:D,D,... changes them" in res.out


def test_input_shape_changes_them_and_may_not_contradict_data(cli, symbolic_net, tmp_path):
    res = cli(symbolic_net, tmp_path / "out.onnx", "--ratio", "0.25", "--input-shape", "x:1,3,128,96",
              "--report", tmp_path / "r.json", "--quiet")
    assert res.code == 0, res.err
    rep = _report(tmp_path / "r.json")
    assert rep["shapes"]["inputs"]["x"] == {"shape": [1, 3, 128, 96], "source": "--input-shape",
                                            "values": "synthetic: N(0, 1) noise"}
    assert rep["flops_before"] == C1 * 27 * 64 * 48 + C2 * C1 * 9 * 64 * 48 + 4 * C2
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.zeros((2, 3, 64, 64), np.float32))
    res = cli(symbolic_net, tmp_path / "out2.onnx", "--ratio", "0.25", "--data", data, "--input-shape", "x:1,3,128,96")
    res.assert_refused("--input-shape x:1,3,128,96 contradicts the data")
    assert not (tmp_path / "out2.onnx").exists()


def test_free_dims_nothing_implies_default_stated(cli, symbolic_net, tmp_path):
    res = cli(symbolic_net, tmp_path / "out.onnx", "--ratio", "0.25", "--report", tmp_path / "r.json", "--quiet")
    assert res.code == 0, res.err
    rep = _report(tmp_path / "r.json")
    assert rep["flops_before"] == conv_macs(64)
    assert "default: free dims 64" in rep["shapes"]["inputs"]["x"]["source"]
    assert rep["validation"]["inputs"]["x"]["shape"] == [8, 3, 64, 64]


def test_graph_fixed_dims_imply_the_size(cli, tmp_path):
    """Flatten -> Gemm of 8 * 20 * 20 features: only 40x40 inputs fit; 64 contradicts the graph."""
    path = tmp_path / "fixed.onnx"
    onnx.save(conv_net(head=20), path)
    shapes = deploy_shapes(ir.load(path))
    assert shapes.shapes["x"] == (0, 3, 40, 40)
    assert "contradict fixed dims" in shapes.sources["x"] and "40" in shapes.sources["x"]
    res = cli(path, tmp_path / "out.onnx", "--ratio", "0.25", "--report", tmp_path / "r.json", "--quiet")
    assert res.code == 0, res.err
    rep = _report(tmp_path / "r.json")
    assert rep["flops_before"] == conv_macs(40, head=20)
    assert rep["validation"]["inputs"]["x"]["shape"] == [8, 3, 40, 40]


def test_metadata_size_and_declared_dims(tmp_path):
    shapes = deploy_shapes(ir.from_proto(conv_net(imgsz="[96, 96]")))
    assert shapes.shapes["x"] == (0, 3, 96, 96) and "metadata" in shapes.sources["x"]
    # a metadata size the graph contradicts is not taken: the graph decides
    shapes = deploy_shapes(ir.from_proto(conv_net(head=20, imgsz="[96, 96]")))
    assert shapes.shapes["x"] == (0, 3, 40, 40)
    fixed = deploy_shapes(ir.from_proto(conv_net(spatial=(48, 48))))
    assert fixed.shapes["x"] == (0, 3, 48, 48) and fixed.sources["x"] == "declared"


def test_validate_command_measures_at_data_shapes(cli, symbolic_net, tmp_path):
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.ones((2, 3, 160, 160), np.float32))
    res = cli("validate", symbolic_net, symbolic_net, "--data", data, "--json", tmp_path / "v.json", "--latency-runs", "5")
    assert res.code == 0, res.err
    rep = _report(tmp_path / "v.json")
    assert rep["flops_before"] == conv_macs(160) == rep["flops_after"]
    assert rep["latency"]["batch"]["x"] == [1, 3, 160, 160]
    assert rep["shapes"]["inputs"]["x"]["source"].startswith("--data")


def token_model(positions: int = 32) -> onnx.ModelProto:
    """input_ids [N, S] -> word table + a position table (arange buffer sliced to S) + a token-type table
    (a buffer of zeros sliced to S), as BERT exports read them."""
    rng = np.random.default_rng(0)
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", "S"])
    out = helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", "S", 8])
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("words", (100, 8)), ("pos", (positions, 8)), ("types", (2, 8)))]
    inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("zero", [0]), ("one", [1]))]
    buffers = [helper.make_node("Constant", [], [n], value=numpy_helper.from_array(v.reshape(1, -1), n + "_t"))
               for n, v in (("arange", np.arange(positions, dtype=np.int64)), ("zeros", np.zeros(positions, np.int64)))]
    nodes = buffers + [
        helper.make_node("Shape", ["input_ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["len"]),
        helper.make_node("Slice", ["arange", "zero", "len", "one"], ["pos_ids"]),
        helper.make_node("Slice", ["zeros", "zero", "len", "one"], ["type_ids"]),
        helper.make_node("Gather", ["words", "input_ids"], ["w"]),
        helper.make_node("Gather", ["pos", "pos_ids"], ["p"]),
        helper.make_node("Gather", ["types", "type_ids"], ["t"]),
        helper.make_node("Add", ["w", "p"], ["wp"]),
        helper.make_node("Add", ["wp", "t"], ["h"])]
    return helper.make_model(helper.make_graph(nodes, "tokens", [ids], [out], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def test_position_table_bounds_the_sequence_but_a_token_type_table_does_not():
    shapes = deploy_shapes(ir.from_proto(token_model(32)))
    assert shapes.shapes["input_ids"] == (0, 32) and "position table has 32 rows" in shapes.sources["input_ids"]
    assert shapes.values["input_ids"] == "synthetic: integers the graph allows"
    # a position table longer than the default: the default stands
    assert deploy_shapes(ir.from_proto(token_model(512))).shapes["input_ids"] == (0, 64)
