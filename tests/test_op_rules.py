"""Each op rule on a small constructed graph: the exactness oracle where it prunes, the reason where it
freezes. Graphs are conv -> OP -> conv so the rule sits between a producer and a consumer."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from oracle import assert_removed_exactly, plant_dead_channels

import onnxprune
import onnxprune.errors

RNG = np.random.default_rng(0)


def W(*shape):
    return RNG.standard_normal(shape).astype(np.float32) * 0.3


class G:
    """A tiny graph builder: x [1,8,6,6] -> conv 'c1' (16 ch) -> body -> consumer -> y."""

    def __init__(self, opset=17, cin=8, hw=6):
        self.nodes, self.inits, self.opset = [], [], opset
        self.n = 0
        self.x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])

    def const(self, arr, dtype=None):
        self.n += 1
        name = f"k{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype) if dtype else np.asarray(arr), name))
        return name

    def op(self, op, inputs, n_out=1, **attrs):
        self.n += 1
        outs = [f"t{self.n}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=f"{op.lower()}{self.n}", **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, k=1, group=1, pads=None):
        w = self.const(W(cout, cin // group, k, k))
        b = self.const(W(cout))
        return self.op("Conv", [x, w, b], group=group, pads=pads or [k // 2] * 4, kernel_shape=[k, k])

    def model(self, y, domains=()):
        g = helper.make_graph(self.nodes, "g", [self.x], [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)],
                              self.inits)
        opsets = [helper.make_opsetid("", self.opset)] + [helper.make_opsetid(d, 1) for d in domains]
        m = helper.make_model(g, opset_imports=opsets)
        inferred = onnx.shape_inference.infer_shapes(m)
        if not inferred.graph.output[0].type.tensor_type.HasField("shape"):
            m.graph.output[0].type.tensor_type.shape.dim.add().dim_param = "any"
        else:
            m.graph.output[0].CopyFrom(inferred.graph.output[0])
        return m


def _head(g, x, c):
    """Global pool + Flatten + Gemm: a consumer that ends tracking before the graph output."""
    p = g.op("GlobalAveragePool", [x])
    f = g.op("Flatten", [p])
    return g.op("Gemm", [f, g.const(W(3, c)), g.const(W(3))], transB=1)


def build(case):
    g = G()
    c1 = g.op("Relu", [g.conv("x", 8, 16)])
    if case == "split_attr":
        g = G(opset=11)
        c1 = g.op("Relu", [g.conv("x", 8, 16)])
        a, b = g.op("Split", [c1], n_out=2, axis=1, split=[6, 10])
        y = g.op("Concat", [g.conv(a, 6, 4), g.conv(b, 10, 4)], axis=1)
        return g.model(_head(g, y, 8))
    if case == "split_input":
        a, b = g.op("Split", [c1, g.const(np.array([10, 6], np.int64))], n_out=2, axis=1)
        return g.model(_head(g, g.op("Add", [g.conv(a, 10, 8), g.conv(b, 6, 8)]), 8))
    if case == "split_equal":
        g = G(opset=18)
        c1 = g.op("Relu", [g.conv("x", 8, 16)])
        a, b = g.op("Split", [c1], n_out=2, axis=1, num_outputs=2)
        return g.model(_head(g, g.op("Add", [g.conv(a, 8, 8), g.conv(b, 8, 8)]), 8))
    if case == "slice":
        s = g.op("Slice", [c1, g.const(np.array([4], np.int64)), g.const(np.array([12], np.int64)),
                           g.const(np.array([1], np.int64))])
        return g.model(_head(g, g.conv(s, 8, 8), 8))
    if case == "flatten_gemm":
        f = g.op("Flatten", [g.op("MaxPool", [c1], kernel_shape=[2, 2], strides=[2, 2])])
        return g.model(g.op("Gemm", [f, g.const(W(16 * 9, 5)), g.const(W(5))]))
    if case == "reshape_gemm":
        r = g.op("Reshape", [c1, g.const(np.array([1, 16 * 36], np.int64))])
        return g.model(g.op("MatMul", [r, g.const(W(16 * 36, 5))]))
    if case == "transpose_matmul":
        t = g.op("Transpose", [c1], perm=[0, 2, 3, 1])  # NHWC: channels last
        m = g.op("MatMul", [t, g.const(W(16, 12))])
        m = g.op("Relu", [g.op("Add", [m, g.const(W(12))])])
        m = g.op("MatMul", [m, g.const(W(12, 4))])
        return g.model(g.op("ReduceMean", [m], axes=[1, 2], keepdims=0))
    if case == "squeeze_unsqueeze":
        p = g.op("GlobalAveragePool", [c1])
        s = g.op("Squeeze", [p, g.const(np.array([2, 3], np.int64))])
        u = g.op("Unsqueeze", [g.op("Relu", [s]), g.const(np.array([2], np.int64))])
        y = g.op("Gemm", [g.op("Flatten", [u]), g.const(W(16, 3))])
        return g.model(y)
    if case == "pad_resize":
        p = g.op("Pad", [c1, g.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))])
        r = g.op("Resize", [p, "", "", g.const(np.array([1, 16, 16, 16], np.int64))], mode="nearest")
        return g.model(_head(g, g.conv(r, 16, 8), 8))
    if case == "grouped_conv":
        c2 = g.op("Relu", [g.conv(c1, 16, 16, k=3, group=4)])
        return g.model(_head(g, g.conv(c2, 16, 8), 8))
    if case == "depthwise_multiplier":
        d = g.op("Relu", [g.conv(c1, 16, 32, k=3, group=16)])
        return g.model(_head(g, g.conv(d, 32, 8), 8))
    if case == "conv_transpose":
        w = g.const(W(16, 6, 2, 2))
        t = g.op("Relu", [g.op("ConvTranspose", [c1, w, g.const(W(6))], strides=[2, 2])])
        return g.model(_head(g, g.conv(t, 6, 4), 4))
    if case == "norms_prelu":
        n = g.op("InstanceNormalization", [c1, g.const(W(16)), g.const(W(16))])
        n = g.op("BatchNormalization", [n, g.const(W(16)), g.const(W(16)), g.const(W(16)),
                                        g.const(np.abs(W(16)) + 0.5)])
        n = g.op("PRelu", [n, g.const(W(16, 1, 1))])
        n = g.op("Mul", [n, g.const(W(1, 16, 1, 1))])
        return g.model(_head(g, g.conv(n, 16, 8), 8))
    if case == "concat_residual":
        a = g.conv(c1, 16, 8)
        b = g.conv(c1, 16, 8)
        cat = g.op("Concat", [a, b], axis=1)
        res = g.op("Add", [cat, g.conv(c1, 16, 16)])
        return g.model(_head(g, g.op("Relu", [res]), 16))
    if case == "gemm_transposed_a":
        f = g.op("Flatten", [g.op("GlobalAveragePool", [c1])])
        t = g.op("Transpose", [f], perm=[1, 0])
        return g.model(g.op("Gemm", [t, g.const(W(16, 5))], transA=1))
    if case == "shape_reshape_copy":
        # Paddle-style: reshape to [N, C, -1] with N and C read from the tensor itself at run time.
        nc = g.op("Slice", [g.op("Shape", [c1]), g.const(np.array([0], np.int64)), g.const(np.array([2], np.int64))])
        target = g.op("Concat", [nc, g.const(np.array([-1], np.int64))], axis=0)
        r = g.op("Transpose", [g.op("Reshape", [c1, target])], perm=[0, 2, 1])  # [1, 36, 16]
        return g.model(g.op("MatMul", [r, g.const(W(16, 5))]))
    if case == "shape_literal_rewrite":
        # Paddle-style flatten: [N (read at run time), 16 (a literal that must follow the pruning)]
        p = g.op("GlobalAveragePool", [c1])
        n = g.op("Slice", [g.op("Shape", ["x"]), g.const(np.array([0], np.int64)), g.const(np.array([1], np.int64))])
        target = g.op("Concat", [n, g.op("Cast", [g.const(np.array([16], np.int32))], to=TensorProto.INT64)], axis=0)
        return g.model(g.op("MatMul", [g.op("Reshape", [p, target]), g.const(W(16, 5))]))
    if case == "expand_tile":
        e = g.op("Expand", [c1, g.const(np.array([2, 16, 6, 6], np.int64))])  # batch 1 -> 2
        t = g.op("Tile", [e, g.const(np.array([1, 1, 2, 1], np.int64))])  # H 6 -> 12
        return g.model(_head(g, g.conv(t, 16, 8), 8))
    # freezing cases
    if case == "shape_chunk":
        # TorchScript's torch.chunk(x, 2, dim=1): bounds (C + 1) // 2 * {1, 2} read from x at run time
        half = g.op("Div", [g.op("Add", [g.op("Gather", [g.op("Shape", [c1]), g.const(np.array([1], np.int64))],
                                                axis=0), g.const(np.array([1], np.int64))]),
                            g.const(np.array([2], np.int64))])
        e0 = g.op("Mul", [half, g.const(np.array([1], np.int64))])
        e1 = g.op("Mul", [half, g.const(np.array([2], np.int64))])
        one = g.const(np.array([1], np.int64))
        a = g.op("Slice", [c1, g.const(np.array([0], np.int64)), e0, one])
        b = g.op("Slice", [c1, e0, e1, one])
        return g.model(_head(g, g.op("Add", [g.conv(a, 8, 8), g.conv(b, 8, 8)]), 8))
    if case == "shape_arithmetic_static":
        # slice bounds computed from the (static) channel count: C // 2 as the end of a slice from 2 folds
        # to 8 before analysis, and the slice prunes as a literal range
        half = g.op("Div", [g.op("Gather", [g.op("Shape", [c1]), g.const(np.array(1, np.int64))], axis=0),
                            g.const(np.array(2, np.int64))])
        end = g.op("Unsqueeze", [half, g.const(np.array([0], np.int64))])
        s = g.op("Slice", [c1, g.const(np.array([2], np.int64)), end, g.const(np.array([1], np.int64))])
        return g.model(_head(g, g.conv(s, 6, 8), 8))
    if case == "shape_arithmetic":
        # a channel slice whose end is computed from a symbolic dim (h - h + 8): it stays a run-time read
        # (folding it would fix the height), so no rule can say which channels it keeps
        g.x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, "h", "w"])
        height = g.op("Gather", [g.op("Shape", [c1]), g.const(np.array(2, np.int64))], axis=0)
        eight = g.op("Add", [g.op("Sub", [height, height]), g.const(np.array(8, np.int64))])
        end = g.op("Unsqueeze", [eight, g.const(np.array([0], np.int64))])
        s = g.op("Slice", [c1, g.const(np.array([2], np.int64)), end, g.const(np.array([1], np.int64))])
        return g.model(_head(g, g.conv(s, 6, 8), 8))
    if case == "unknown_op":
        return g.model(_head(g, g.conv(g.op("LRN", [c1], size=3), 16, 8), 8))
    if case == "softmax_channels":
        return g.model(_head(g, g.conv(g.op("Softmax", [c1], axis=1), 16, 8), 8))
    if case == "reduce_channels":
        return g.model(g.op("ReduceMean", [c1], axes=[1], keepdims=1))
    if case == "graph_output":
        return g.model(c1)
    if case == "custom_domain":
        n = helper.make_node("MyOp", [c1], ["t_custom"], name="custom1", domain="com.example")
        g.nodes.append(n)
        return g.model(_head(g, g.conv("t_custom", 16, 8), 8), domains=["com.example"])
    if case == "control_flow":
        then_out = helper.make_tensor_value_info("then_y", TensorProto.FLOAT, None)
        then_g = helper.make_graph([helper.make_node("Identity", [c1], ["then_y"])], "then", [], [then_out])
        else_g = helper.make_graph([helper.make_node("Identity", [c1], ["else_y"])], "else", [],
                                   [helper.make_tensor_value_info("else_y", TensorProto.FLOAT, None)])
        cond = g.const(np.array(True))
        y = g.op("If", [cond], then_branch=then_g, else_branch=else_g)
        return g.model(_head(g, g.conv(y, 16, 8), 8))
    if case == "channel_shuffle":
        c1 = g.op("Relu", [g.conv(c1, 16, 16, group=4)])
        r = g.op("Reshape", [c1, g.const(np.array([1, 4, 4, 6, 6], np.int64))])
        t = g.op("Transpose", [r], perm=[0, 2, 1, 3, 4])
        r2 = g.op("Reshape", [t, g.const(np.array([1, 16, 6, 6], np.int64))])
        return g.model(_head(g, g.conv(r2, 16, 8, group=4), 8))
    if case == "attention_heads":
        g = G()
        x = g.op("Reshape", [g.op("Relu", [g.conv("x", 8, 16)]), g.const(np.array([1, 16, 36], np.int64))])
        x = g.op("Transpose", [x], perm=[0, 2, 1])  # [1, 36 tokens, 16]

        def heads(src):
            h = g.op("MatMul", [src, g.const(W(16, 24))])
            h = g.op("Reshape", [h, g.const(np.array([1, 36, 2, 12], np.int64))])
            return g.op("Transpose", [h], perm=[0, 2, 1, 3])  # [1, 2 heads, 36, 12]

        q, k, v = heads(x), heads(x), heads(x)
        att = g.op("Softmax", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])], axis=-1)
        o = g.op("Transpose", [g.op("MatMul", [att, v])], perm=[0, 2, 1, 3])
        o = g.op("Reshape", [o, g.const(np.array([1, 36, 24], np.int64))])
        return g.model(g.op("MatMul", [o, g.const(W(24, 5))]))
    if case == "shuffle_unaligned":
        c1 = g.op("Relu", [g.conv("x", 8, 24, group=4)])
        r = g.op("Reshape", [c1, g.const(np.array([1, 4, 6, 6, 6], np.int64))])
        t = g.op("Transpose", [r], perm=[0, 2, 1, 3, 4])
        r2 = g.op("Reshape", [t, g.const(np.array([1, 24, 6, 6], np.int64))])
        return g.model(_head(g, g.conv(r2, 24, 8, group=4), 8))
    if case == "reshape_regroups_channels":
        r = g.op("Reshape", [c1, g.const(np.array([1, 4, 4, 6, 6], np.int64))])
        r2 = g.op("Reshape", [r, g.const(np.array([1, 8, 2, 36], np.int64))])
        return g.model(_head(g, g.conv(g.op("Reshape", [r2, g.const(np.array([1, 16, 6, 6], np.int64))]), 16, 8), 8))
    raise KeyError(case)


PRUNABLE = ["split_attr", "split_input", "split_equal", "slice", "flatten_gemm", "reshape_gemm", "transpose_matmul",
            "squeeze_unsqueeze", "pad_resize", "grouped_conv", "depthwise_multiplier", "conv_transpose",
            "norms_prelu", "concat_residual", "gemm_transposed_a", "channel_shuffle", "attention_heads",
            "shape_reshape_copy", "shape_literal_rewrite", "shape_chunk", "expand_tile", "shape_arithmetic_static"]
FROZEN = {
    "shape_arithmetic": "(ends) is computed at run time",
    "unknown_op": "LRN node",
    "softmax_channels": "normalises over the channel axis",
    "reduce_channels": "reduces over the channel axis",
    "graph_output": "is a graph output",
    "custom_domain": "custom-domain op",
    "control_flow": "used inside a subgraph of",
    "reshape_regroups_channels": "reshapes the channel axis in a way no rule covers",
    # after the shuffle, channel j fills positions 4j..4j+3, which straddle the 6-wide conv groups
    "shuffle_unaligned": "a channel spans several of its conv groups",
}


def _save(case, tmp_path):
    m = build(case)
    onnx.checker.check_model(m, full_check=True)
    p = tmp_path / f"{case}.onnx"
    onnx.save(m, p)
    return p


@pytest.mark.parametrize("case", PRUNABLE)
def test_rule_prunes_exactly(case, tmp_path):
    path = _save(case, tmp_path)
    planted, n = plant_dead_channels(path, tmp_path / "planted.onnx", 0.4, seed=1)
    assert n > 0 and planted
    pruned, report = onnxprune.prune(tmp_path / "planted.onnx", ratio=0.4, criterion="l1", allocation="local", merge=False,
                                     output=tmp_path / "out.onnx")
    assert_removed_exactly(report, planted, 1e-5, str(case))
    onnx.checker.check_model(onnx.load(tmp_path / "out.onnx"), full_check=True)
    assert report["params_after"] < report["params_before"]


@pytest.mark.parametrize("case", sorted(FROZEN))
def test_rule_freezes_with_reason(case, tmp_path):
    path = _save(case, tmp_path)
    an = onnxprune.analyze(path)
    first = next(g for g in an.groups if any(p.node.name.startswith("conv") for p in g.producers)
                 and g.producers[0].node.inputs[0].name == "x")
    assert first.frozen, first.details()
    assert any(FROZEN[case] in r for r in first.frozen), first.frozen
    # onnxruntime cannot run a custom-domain op, so that model is pruned without validation
    _, report = onnxprune.prune(path, ratio=0.5, criterion="l1", allocation="local", merge=False,
                                output=tmp_path / "out.onnx", validate=case != "custom_domain")
    row = next(g for g in report["groups"] if g["name"] == first.name)
    assert row["removed"] == 0 and row["frozen"]


def test_grouped_conv_removal_is_balanced(tmp_path):
    path = _save("grouped_conv", tmp_path)
    an = onnxprune.analyze(path)
    c1 = an.groups[0]
    assert len(c1.blocks) == 1 and c1.blocks[0].shape == (4, 4)
    with pytest.raises(onnxprune.errors.PlanError, match="same number of channels"):
        onnxprune.prune(path, remove=[f"{c1.name}:0,1"], validate=False)
    _, rep = onnxprune.prune(path, remove=[f"{c1.name}:0,4,8,12"], output=tmp_path / "o.onnx")
    assert rep["validation"]["outputs"]


def test_same_plan_twice_is_an_error(tmp_path):
    from onnxprune.allocation import allocate_local
    from onnxprune.criteria import get_criterion
    from onnxprune.surgery import apply_plan
    an = onnxprune.analyze(_save("concat_residual", tmp_path))
    plan = allocate_local(an, get_criterion("l1")(an), 0.5)
    apply_plan(an, plan)
    with pytest.raises(onnxprune.errors.PlanError, match="already"):
        apply_plan(an, plan)


def test_shared_weight_is_copied_before_editing(tmp_path):
    """Two convs read one initializer; pruning one consumer's input must not change the other."""
    g = G()
    c1 = g.op("Relu", [g.conv("x", 8, 16)])
    c2 = g.op("Relu", [g.conv("x", 8, 16)])
    shared = g.const(W(8, 16, 1, 1))
    a = g.op("Conv", [c1, shared], kernel_shape=[1, 1])
    b = g.op("Conv", [c2, shared], kernel_shape=[1, 1])
    path = tmp_path / "shared.onnx"
    onnx.save(g.model(_head(g, g.op("Concat", [a, b], axis=1), 16)), path)
    planted, _ = plant_dead_channels(path, tmp_path / "p.onnx", 0.25)
    _, rep = onnxprune.prune(tmp_path / "p.onnx", ratio=0.25, criterion="l1", allocation="local", merge=False)
    assert {x["name"]: x["removed"] for x in rep["groups"] if x["removed"]} == planted
    assert all(o["max_rel"] <= 1e-5 for o in rep["validation"]["outputs"].values())


def test_surgery_that_leaves_the_graph_inconsistent_is_caught(tmp_path):
    """If a literal were not rewritten (here: the Split sizes), the checker after surgery must say so."""
    from onnxprune.allocation import allocate_local
    from onnxprune.criteria import get_criterion
    from onnxprune.surgery import apply_plan
    an = onnxprune.analyze(_save("split_input", tmp_path))
    an.rewrites.clear()
    plan = allocate_local(an, get_criterion("l1")(an), 0.4)
    with pytest.raises(onnxprune.errors.PlanError, match="fails onnx.checker or shape inference"):
        apply_plan(an, plan)
