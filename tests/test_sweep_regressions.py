"""Minimal graphs for what the timm sweep (tools/sweep_timm.py, docs/timm_sweep.md) found broken."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import onnxprune


def _split_model(weak_part: bool = True, dead_part: bool = False) -> onnx.ModelProto:
    """x[1,2,6,6] -> Conv(8) -> Relu -> Split [4, 4] -> a 1x1 Conv on each part -> Add (Res2Net's split).
    ``weak_part``: the second part's filters are the smallest, so l1 at ratio 0.5 ranks all of it
    lowest; ``dead_part``: they are zero (lossless mode finds all of them removable)."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 2, 1, 1)).astype(np.float32)
    b1 = rng.standard_normal(8).astype(np.float32)
    if weak_part:
        w1[4:] *= 1e-3
        b1[4:] *= 1e-3
    if dead_part:
        w1[4:] = 0
        b1[4:] = -1  # Relu(-1) = 0: dead
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
             numpy_helper.from_array(np.array([4, 4], np.int64), "split"),
             numpy_helper.from_array(rng.standard_normal((3, 4, 1, 1)).astype(np.float32), "wa"),
             numpy_helper.from_array(rng.standard_normal((3, 4, 1, 1)).astype(np.float32), "wb")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Split", ["r1", "split"], ["p1", "p2"], name="split", axis=1),
             helper.make_node("Conv", ["p1", "wa"], ["a"], name="conv_a"),
             helper.make_node("Conv", ["p2", "wb"], ["b"], name="conv_b"),
             helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "split", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 6, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _split_sizes(model) -> list[int]:
    m = onnx.shape_inference.infer_shapes(onnx.load(model) if not isinstance(model, onnx.ModelProto) else model)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in m.graph.value_info}
    return [dims[name][1] for name in ("p1", "p2")]


def test_ratio_never_empties_a_split_output(tmp_path):
    """Res2Net: the lowest-scored channels of a group were all of one Split output; removing them left a
    0-channel tensor, which onnxruntime's optimiser refused. Each part now keeps its best channel."""
    src, out = tmp_path / "split.onnx", tmp_path / "pruned.onnx"
    onnx.save(_split_model(), src)
    _, report = onnxprune.prune(src, ratio=0.5, criterion="l1", allocation="local", merge=False, output=out)
    assert [g["removed"] for g in report["groups"] if g["channels"] == 8] == [4]
    sizes = _split_sizes(out)
    assert min(sizes) >= 1 and sum(sizes) == 4, sizes
    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": np.ones((1, 2, 6, 6), np.float32)})


def test_lossless_keeps_one_channel_of_a_dead_split_output(tmp_path):
    src, out = tmp_path / "split.onnx", tmp_path / "pruned.onnx"
    onnx.save(_split_model(dead_part=True), src)
    _, report = onnxprune.prune(src, criterion="lumping", output=out)
    assert _split_sizes(out) == [4, 1]
    assert all(o["max_rel"] <= 1e-6 for o in report["validation"]["outputs"].values())


def test_remove_that_empties_a_split_output_is_refused(cli, tmp_path):
    src = tmp_path / "split.onnx"
    onnx.save(_split_model(), src)
    cli(src, tmp_path / "out.onnx", "--remove", "conv1:4,5,6,7").assert_refused("'p2'", "keep at least one")
    assert not (tmp_path / "out.onnx").exists()
