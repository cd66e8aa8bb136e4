"""Regression tests for channel rules that used to rewrite what they should freeze (found by the
generated-graph test, tests/graphgen.py): each graph is producer 'p' -> OP -> consumer 'q', pruned with
explicit removals and compared in onnxruntime with the original whose consumer weights for the removed
channels are zero."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from graphgen import run
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.errors import OptionError
from onnxprune.report import format_analysis

RNG = np.random.default_rng(3)
C = 8


def _w(*shape):
    return (RNG.standard_normal(shape) * 0.5).astype(np.float32)


def _model(nodes, inits, x_shape, opset=17, inputs=None):
    g = helper.make_graph(nodes, "g", inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    out = onnx.shape_inference.infer_shapes(m).graph.output[0]
    if out.type.tensor_type.HasField("shape"):
        m.graph.output[0].CopyFrom(out)
    else:
        m.graph.output[0].type.tensor_type.shape.dim.add().dim_param = "any"
    onnx.checker.check_model(m, full_check=True)
    return m


def _conv_op_conv(op_nodes, extra, hw=8, opset=17, q_in="t", q_channels=C):
    """x [1,3,hw,hw] -> Conv 'p' (C ch) -> op_nodes (read 'pc', write 't') -> 1x1 Conv 'q' -> y."""
    nodes = [helper.make_node("Conv", ["x", "wp", "bp"], ["pc"], name="p", kernel_shape=[1, 1]),
             *op_nodes,
             helper.make_node("Conv", [q_in, "wq"], ["y"], name="q", kernel_shape=[1, 1])]
    inits = {"wp": _w(C, 3, 1, 1), "bp": _w(C), "wq": _w(4, q_channels, 1, 1), **extra}
    return _model(nodes, inits, [1, 3, hw, hw], opset)


def _oracle(model, consumer_weight, axis, removed):
    m = onnx.ModelProto.FromString(model.SerializeToString())
    t = next(t for t in m.graph.initializer if t.name == consumer_weight)
    w = numpy_helper.to_array(t).copy()
    idx = [slice(None)] * w.ndim
    idx[axis] = removed
    w[tuple(idx)] = 0
    t.CopyFrom(numpy_helper.from_array(w, consumer_weight))
    return m


def _feeds(model):
    x = model.graph.input[0].type.tensor_type.shape
    return {"x": RNG.standard_normal([d.dim_value for d in x.dim]).astype(np.float32)}


def _assert_removal_exact(model, removed, consumer_weight="wq", axis=1):
    pruned, report = onnxprune.prune(model, remove=["p:" + ",".join(map(str, removed))], validate=False)
    assert report["channels_removed"] == len(removed)
    feeds = _feeds(model)
    got = run(ir.to_proto(pruned), feeds)[0]
    want = run(_oracle(model, consumer_weight, axis, removed), feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def _frozen_reasons(model) -> list[str]:
    an = onnxprune.analyze(model)
    g = next(g for g in an.groups if any(p.node.name == "p" for p in g.producers))
    return g.frozen


# -- Resize / Upsample ----------------------------------------------------------------------------


def _resize(sizes=None, scales=None, ctm="half_pixel", roi=None, opset=17, **attrs):
    inputs = ["pc", "roi" if roi is not None else "", "scales" if scales is not None else "",
              "sizes" if sizes is not None else ""]
    extra = {k: np.asarray(v, dtype=dt) for k, v, dt in (("roi", roi, np.float32), ("scales", scales, np.float32),
                                                          ("sizes", sizes, np.int64)) if v is not None}
    node = helper.make_node("Resize", inputs, ["t"], name="resize", mode="nearest",
                            coordinate_transformation_mode=ctm, **attrs)
    return _conv_op_conv([node], extra, opset=opset, q_channels=(sizes[1] if sizes is not None else C))


def test_resize_sizes_that_resize_the_channel_axis_freeze():
    model = _resize(sizes=[1, 6, 16, 16])  # 8 channels resized to 6: every output mixes channels
    assert any("sizes resize the channel axis (8 -> 6)" in r for r in _frozen_reasons(model))
    with pytest.raises(OptionError, match="frozen"):
        onnxprune.prune(model, remove=["p:1"], validate=False)


def test_resize_sizes_that_keep_the_channel_count_are_rewritten_exactly():
    _assert_removal_exact(_resize(sizes=[1, C, 16, 16]), [1, 5])


def test_resize_crop_on_the_channel_axis_freezes():
    roi = [0, 0.25, 0, 0, 1, 0.75, 1, 1]
    model = _resize(scales=[1, 1, 2, 2], ctm="tf_crop_and_resize", roi=roi)
    assert any("crops the channel axis" in r for r in _frozen_reasons(model))


def test_resize_aspect_ratio_policy_freezes():
    model = _resize(sizes=[1, C, 16, 12], opset=18, keep_aspect_ratio_policy="not_larger")
    assert any("keep_aspect_ratio_policy" in r for r in _frozen_reasons(model))


@pytest.mark.parametrize("opset", [7, 8, 9])
def test_upsample_float_scales(opset):
    def model(scales):
        if opset < 9:
            node = helper.make_node("Upsample", ["pc"], ["t"], name="up", scales=scales, mode="nearest")
            return _conv_op_conv([node], {}, opset=opset)
        node = helper.make_node("Upsample", ["pc", "sc"], ["t"], name="up", mode="nearest")
        return _conv_op_conv([node], {"sc": np.array(scales, np.float32)}, opset=opset)

    assert _frozen_reasons(model([1.0, 1.0, 1.5, 2.0])) == []
    _assert_removal_exact(model([1.0, 1.0, 1.5, 2.0]), [0, 3, 4])
    assert any("scales the channel axis" in r for r in _frozen_reasons(model([1.0, 1.5, 2.0, 2.0])))


# -- Reshape with 0 entries ----------------------------------------------------------------------


def test_reshape_zero_copying_the_channel_count_elsewhere_freezes():
    """[1, 8, 8, 8] -> [8, 0, -1]: the channels land on axis 0 and the 0 copies their count into axis 1.
    Kept as a copy, removing 4 channels gives [4, 4, 16] instead of [4, 8, 8]: it runs, and the Softmax
    over the last axis reads the wrong values."""
    nodes = [helper.make_node("Reshape", ["pc", "shape"], ["r"], name="reshape"),
             helper.make_node("Softmax", ["r"], ["sm"], name="softmax", axis=-1),
             helper.make_node("Transpose", ["sm"], ["tr"], name="tr", perm=[1, 2, 0]),
             helper.make_node("MatMul", ["tr", "wq"], ["y"], name="q")]
    inits = {"wp": _w(C, 3, 1, 1), "bp": _w(C), "wq": _w(C, 5), "shape": np.array([C, 0, -1], np.int64)}
    model = _model([helper.make_node("Conv", ["x", "wp", "bp"], ["pc"], name="p", kernel_shape=[1, 1]), *nodes],
                   inits, [1, 3, 8, 8])
    assert any("copies the channel count into output axis 1" in r for r in _frozen_reasons(model))
    with pytest.raises(OptionError, match="frozen"):
        onnxprune.prune(model, remove=["p:0,1,2,3"], validate=False)


def test_reshape_zero_copying_the_channel_axis_in_place_is_exact():
    nodes = [helper.make_node("Reshape", ["pc", "shape"], ["r"], name="reshape"),
             helper.make_node("Softmax", ["r"], ["sm"], name="softmax", axis=-1),
             helper.make_node("Transpose", ["sm"], ["tr"], name="tr", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["tr", "wq"], ["y"], name="q")]
    inits = {"wp": _w(C, 3, 1, 1), "bp": _w(C), "wq": _w(C, 5), "shape": np.array([0, 0, -1], np.int64)}
    model = _model([helper.make_node("Conv", ["x", "wp", "bp"], ["pc"], name="p", kernel_shape=[1, 1]), *nodes],
                   inits, [1, 3, 8, 8])
    _assert_removal_exact(model, [2, 6], axis=0)


# -- control flow and quantized weights ----------------------------------------------------------


def test_tensor_read_inside_nested_subgraphs_names_the_outer_node():
    inner = helper.make_graph([helper.make_node("Identity", ["pc"], ["iy"], name="inner_id")], "inner", [],
                              [helper.make_tensor_value_info("iy", TensorProto.FLOAT, None)])
    then_g = helper.make_graph([helper.make_node("If", ["cond"], ["ty"], name="inner_if", then_branch=inner,
                                                 else_branch=inner)], "then", [],
                               [helper.make_tensor_value_info("ty", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("If", ["cond"], ["t"], name="outer_if", then_branch=then_g, else_branch=then_g)]
    model = _conv_op_conv(nodes, {"cond": np.array(True)})
    reasons = _frozen_reasons(model)
    assert any("inside a subgraph of If node 'outer_if'" in r for r in reasons), reasons


def test_loop_body_reading_a_tensor_names_the_loop():
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Add", ["acc", "pc"], ["acc_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("acc", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Loop", ["n", "cond", "acc0"], ["t"], name="my_loop", body=body)]
    model = _conv_op_conv(nodes, {"cond": np.array(True), "n": np.array(2, np.int64),
                                  "acc0": np.zeros([1, C, 8, 8], np.float32)})
    reasons = _frozen_reasons(model)
    assert any("inside a subgraph of Loop node 'my_loop'" in r for r in reasons), reasons


_QDQ_SCALES = np.linspace(0.005, 0.02, C).astype(np.float32)


def _qdq_model(shared: bool = False):
    """x -> Q/DQ (per tensor, uint8 with a zero point) -> Conv 'conv1' with an int8 weight per output
    channel (axis 0) and an int32 bias -> Relu -> Conv 'conv2' (per-tensor int8 weight); ``shared``: a
    second Conv reads conv1's dequantized weight too."""
    q = np.clip(np.round(_w(C, 3, 3, 3) / 0.01), -127, 127).astype(np.int8)
    q2 = np.clip(np.round(_w(4, C, 1, 1) / 0.01), -127, 127).astype(np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q0"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq0"),
             helper.make_node("DequantizeLinear", ["wq", "ws1", "wz1"], ["w"], name="dq_w", axis=0),
             helper.make_node("DequantizeLinear", ["bq", "bs"], ["b"], name="dq_b", axis=0),
             helper.make_node("Conv", ["xd", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("DequantizeLinear", ["wq2", "ws", "wz"], ["w2"], name="dq_w2"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2")]
    if shared:
        nodes[6:6] = [helper.make_node("Conv", ["xd", "w"], ["c2"], name="conv1b", pads=[1, 1, 1, 1]),
                      helper.make_node("Add", ["r", "c2"], ["r2"], name="add")]
        nodes[-1].input[0] = "r2"
    ws1 = _QDQ_SCALES
    inits = {"wq": q, "wq2": q2, "ws": np.array(0.01, np.float32), "wz": np.array(0, np.int8),
             "ws1": ws1, "wz1": np.zeros(C, np.int8), "bq": RNG.integers(-500, 500, C).astype(np.int32),
             "bs": (ws1 * 0.05).astype(np.float32), "xs": np.array(0.05, np.float32), "xz": np.array(128, np.uint8)}
    return _model(nodes, inits, [1, 3, 8, 8], opset=13)


def test_quantized_weights_are_sliced_with_their_per_channel_scales():
    """conv1's int8 filters, int32 bias and per-channel scales lose the removed channels; conv2's int8
    columns for them go: the outputs equal the model with those columns zeroed."""
    model = _qdq_model()
    an = onnxprune.analyze(model)
    assert [g.name for g in an.prunable_groups] == ["conv1"], format_analysis(an)
    pruned, report = onnxprune.prune(model, remove=["conv1:1,5"], validate=False)
    assert report["channels_removed"] == 2
    inits = pruned.graph.initializers
    assert inits["wq"].const_value.shape[0] == inits["ws1"].const_value.shape[0] == inits["bq"].const_value.shape[0] \
        == C - 2 and inits["wq2"].const_value.shape[1] == C - 2
    np.testing.assert_array_equal(inits["ws1"].const_value.numpy(), np.delete(_QDQ_SCALES, [1, 5]))
    feeds = _feeds(model)
    np.testing.assert_array_equal(run(ir.to_proto(pruned), feeds)[0], run(_oracle(model, "wq2", 1, [1, 5]), feeds)[0])


def test_shared_quantized_weight_says_why_it_is_frozen():
    an = onnxprune.analyze(_qdq_model(shared=True))
    assert an.groups and not an.prunable_groups
    text = format_analysis(an)
    assert "computed by DequantizeLinear node 'dq_w'" in text and "shared by several nodes" in text, text


# -- Expand --------------------------------------------------------------------------------------


def test_expand_shape_shorter_than_the_rank_is_aligned_from_the_right():
    """[1, 8, 8, 8] expanded by shape [8]: the entry meets the last axis (a spatial one), not the channel
    axis; read as the channel count it was rewritten to the new count and broke the graph."""
    node = helper.make_node("Expand", ["pc", "shape"], ["t"], name="expand")
    model = _conv_op_conv([node], {"shape": np.array([8], np.int64)})
    assert _frozen_reasons(model) == []
    _assert_removal_exact(model, [0, 5])


def test_expand_literal_channel_count_is_rewritten():
    node = helper.make_node("Expand", ["pc", "shape"], ["t"], name="expand")
    model = _conv_op_conv([node], {"shape": np.array([2, C, 1, 1], np.int64)})
    _assert_removal_exact(model, [3])


def test_reshape_to_the_shape_of_a_tensor_with_the_same_channels_prunes_exactly():
    """Reshape(Relu(x), Shape(x)): Shape reads x's channel count, which is Relu(x)'s too, before and after."""
    nodes = [helper.make_node("Relu", ["pc"], ["r"], name="relu"),
             helper.make_node("Shape", ["pc"], ["s"], name="shape"),
             helper.make_node("Reshape", ["r", "s"], ["t"], name="reshape")]
    model = _conv_op_conv(nodes, {})
    assert _frozen_reasons(model) == []
    _assert_removal_exact(model, [1, 2, 7])
