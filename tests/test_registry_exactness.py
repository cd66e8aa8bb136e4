"""Lossless lumping asks the op registry what each op computes: one regression test per defect class
where the meaning of an op used to be assumed (Pad/Resize fill values, channels of one producer that a
later op couples, routes through different ops, Gemm alpha/beta, dead channels behind zero-preserving
activations). Each builds a tiny graph, lumps it, and compares original and pruned in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune

RNG = np.random.default_rng(7)


def _model(nodes, inits: dict, x_shape, y_shape, opset: int) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(_typed(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _typed(v) -> np.ndarray:
    """Floats as float32, integers (shape constants) as int64."""
    v = np.asarray(v)
    return v.astype(np.int64) if v.dtype.kind in "iu" else v.astype(np.float32)


def _run(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _lump(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    pruned, report = onnxprune.prune(model, criterion="lumping", validate=False)
    return ir.serde.serialize_model(pruned), report


def _assert_exact(model: onnx.ModelProto, pruned: onnx.ModelProto, x_shape) -> None:
    """Outputs agree within 1e-5 relative to their scale on several seeded inputs."""
    for seed in range(3):
        x = (np.random.default_rng(seed).standard_normal(x_shape) * (1 + seed)).astype(np.float32)
        want, got = _run(model, x), _run(pruned, x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max())))


def _width(proto: onnx.ModelProto, name: str, axis: int = 0) -> int:
    """Size of initializer ``name`` (or the copy surgery made of it) along ``axis``."""
    (init,) = [i for i in proto.graph.initializer if i.name == name or i.name.startswith(name + "__")]
    return init.dims[axis]


def _conv_weights(c_out=8, c_in=3, k=3):
    return RNG.standard_normal((c_out, c_in, k, k)), RNG.standard_normal(c_out)


# -- fill values read from attributes and inputs ------------------------------------------------------
def _pad_model(value: float) -> onnx.ModelProto:
    """Conv (channel 3 dead, channel 5 = 2 x channel 1) -> Relu -> Pad (opset 10: value attribute) -> Conv."""
    w1, b1 = _conv_weights()
    w1[3], b1[3] = 0, 0
    w1[5], b1[5] = 2 * w1[1], 2 * b1[1]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Pad", ["r"], ["p"], mode="constant", pads=[0, 0, 1, 1, 0, 0, 1, 1], value=value),
             helper.make_node("Conv", ["p", "w2"], ["y"], kernel_shape=[3, 3])]
    return _model(nodes, {"w1": w1, "b1": b1, "w2": RNG.standard_normal((4, 8, 3, 3))}, [1, 3, 8, 8], [1, 4, 6, 6], 10)


def test_pad_value_attribute_other_than_zero_keeps_dead_and_proportional_channels():
    model = _pad_model(1.5)
    pruned, _ = _lump(model)
    assert _width(pruned, "w1") == 8  # the pad writes 1.5 into channel 3 and into both 1 and 5
    _assert_exact(model, pruned, [1, 3, 8, 8])


def test_pad_value_attribute_zero_lets_them_go():
    model = _pad_model(0.0)
    pruned, _ = _lump(model)
    assert _width(pruned, "w1") == 6
    _assert_exact(model, pruned, [1, 3, 8, 8])


def _crop_resize_model(extrapolation: float) -> onnx.ModelProto:
    """Conv (channel 2 dead, 6 = 3 x channel 0) -> Resize tf_crop_and_resize past the border -> Conv."""
    w1, b1 = _conv_weights()
    w1[2], b1[2] = 0, 0
    w1[6], b1[6] = 3 * w1[0], 3 * b1[0]
    roi = np.array([0, 0, -0.25, -0.25, 1, 1, 1.25, 1.25], np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Resize", ["c", "roi", "scales"], ["u"], mode="linear",
                              coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=extrapolation),
             helper.make_node("Conv", ["u", "w2"], ["y"], kernel_shape=[1, 1])]
    inits = {"w1": w1, "b1": b1, "roi": roi, "scales": np.array([1.0, 1.0, 2.0, 2.0]),
             "w2": RNG.standard_normal((4, 8, 1, 1))}
    return _model(nodes, inits, [1, 3, 8, 8], [1, 4, 12, 12], 13)


@pytest.mark.parametrize("extrapolation, width", [(2.0, 8), (0.0, 6)])
def test_resize_crop_extrapolation_value_decides_whether_zero_stays_zero(extrapolation, width):
    model = _crop_resize_model(extrapolation)
    pruned, _ = _lump(model)
    assert _width(pruned, "w1") == width
    _assert_exact(model, pruned, [1, 3, 8, 8])


# -- channels of one producer coupled by a later op ----------------------------------------------------
def _shuffle_model() -> onnx.ModelProto:
    """Conv 8 -> Relu -> channel shuffle (Reshape [2, 4], Transpose, Reshape) -> 1x1 Conv: channels k
    and k + 4 are one class. Planted: 4 = -0 (not dead), 1 and 5 constants (different values: not one
    constant), 2 and 6 both dead (removable together)."""
    w1, b1 = _conv_weights()
    w1[4], b1[4] = -w1[0], -b1[0]
    w1[1], b1[1], w1[5], b1[5] = 0, 0.5, 0, 0.3
    w1[2], b1[2], w1[6], b1[6] = 0, 0, 0, 0
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Reshape", ["r", "s5"], ["r5"]),
             helper.make_node("Transpose", ["r5"], ["t5"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t5", "s4"], ["sh"]),
             helper.make_node("Conv", ["sh", "w2", "b2"], ["y"], kernel_shape=[1, 1])]
    inits = {"w1": w1, "b1": b1, "s5": np.array([1, 2, 4, 6, 6]), "s4": np.array([1, 8, 6, 6]),
             "w2": RNG.standard_normal((4, 8, 1, 1)), "b2": RNG.standard_normal(4)}
    return _model(nodes, inits, [1, 3, 8, 8], [1, 4, 6, 6], 13)


def test_channel_shuffle_pair_is_one_class_whose_filters_are_never_added():
    model = _shuffle_model()
    pruned, _ = _lump(model)
    assert _width(pruned, "w1") == 6  # only the dead pair 2 and 6 goes
    _assert_exact(model, pruned, [1, 3, 8, 8])


def _split_add_model() -> onnx.ModelProto:
    """Conv 8 -> Relu -> Split [4, 4] -> Add of the halves -> 1x1 Conv: relu(a) + relu(-a) = |a| is not 0."""
    w1, b1 = _conv_weights()
    w1[4], b1[4] = -w1[0], -b1[0]
    w1[1], b1[1], w1[5], b1[5] = 0, 0, 0, 0  # truly dead pair
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Split", ["r"], ["h1", "h2"], axis=1),
             helper.make_node("Add", ["h1", "h2"], ["s"]),
             helper.make_node("Conv", ["s", "w2"], ["y"], kernel_shape=[1, 1])]
    return _model(nodes, {"w1": w1, "b1": b1, "w2": RNG.standard_normal((4, 4, 1, 1))}, [1, 3, 8, 8], [1, 4, 6, 6], 13)


def test_add_of_a_tensors_own_halves_keeps_a_channel_and_its_negative():
    model = _split_add_model()
    pruned, _ = _lump(model)
    assert _width(pruned, "w1") == 6
    _assert_exact(model, pruned, [1, 3, 8, 8])


def test_head_split_reshape_couples_channels_of_one_matmul():
    """MatMul 8 -> Reshape [T, 2, 4] -> Relu -> Reshape [T, 8] -> MatMul: column 5 = -column 1 and a
    constant pair 2/6 of different values; the dead pair 3/7 goes."""
    w1 = RNG.standard_normal((6, 8))
    w1[:, 5] = -w1[:, 1]
    w1[:, 3] = w1[:, 7] = 0
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m"]),
             helper.make_node("Reshape", ["m", "s3"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Reshape", ["r", "s2"], ["f"]),
             helper.make_node("MatMul", ["f", "w2"], ["y"])]
    inits = {"w1": w1, "w2": RNG.standard_normal((8, 3)), "s3": np.array([5, 2, 4]), "s2": np.array([5, 8])}
    model = _model(nodes, inits, [5, 6], [5, 3], 13)
    pruned, _ = _lump(model)
    assert _width(pruned, "w1", axis=1) == 6
    _assert_exact(model, pruned, [5, 6])


# -- a route through a different op --------------------------------------------------------------------
def test_split_maxpool_concat_channels_on_different_routes_are_not_merged():
    """Conv 8 -> Split [4, 4] -> MaxPool on the first piece -> Concat -> 1x1 Conv. Channel 5 = 2 x
    channel 1 but 1 went through the MaxPool: not proportional. Channel 7 = 3 x channel 6 (both
    untouched): merged."""
    w1, b1 = _conv_weights()
    w1[5], b1[5] = 2 * w1[1], 2 * b1[1]
    w1[7], b1[7] = 3 * w1[6], 3 * b1[6]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Split", ["c"], ["a", "b"], axis=1),
             helper.make_node("MaxPool", ["a"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["ap", "b"], ["cat"], axis=1),
             helper.make_node("Conv", ["cat", "w2"], ["y"], kernel_shape=[1, 1])]
    model = _model(nodes, {"w1": w1, "b1": b1, "w2": RNG.standard_normal((4, 8, 1, 1))}, [1, 3, 8, 8], [1, 4, 6, 6], 13)
    pruned, _ = _lump(model)
    assert _width(pruned, "w1") == 7
    _assert_exact(model, pruned, [1, 3, 8, 8])


# -- Gemm alpha and beta -----------------------------------------------------------------------------
@pytest.mark.parametrize("bias_shape", [(8,), (1, 8)])
def test_gemm_alpha_beta_scale_constant_folds(bias_shape):
    """Gemm(alpha 0.5, beta 2) -> Relu -> Gemm(alpha 1.5, beta 0.25): channel 3 is the constant
    relu(2 * 0.7), folded into the consumer's bias through its alpha and beta; channel 5 = 2 x 1."""
    w1, b1 = RNG.standard_normal((6, 8)), RNG.standard_normal(8)
    w1[:, 3], b1[3] = 0, 0.7
    w1[:, 5], b1[5] = 2 * w1[:, 1], 2 * b1[1]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["g"], alpha=0.5, beta=2.0),
             helper.make_node("Relu", ["g"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], alpha=1.5, beta=0.25)]
    inits = {"w1": w1, "b1": b1.reshape(bias_shape), "w2": RNG.standard_normal((8, 3)), "b2": RNG.standard_normal(3)}
    model = _model(nodes, inits, [5, 6], [5, 3], 13)
    pruned, report = _lump(model)
    assert _width(pruned, "w1", axis=1) == 6
    assert "1 constant" in " ".join(g["why"] for g in report["groups"])
    _assert_exact(model, pruned, [5, 6])


# -- dead channels behind zero-preserving activations ------------------------------------------------
def _act_nodes(kind: str) -> tuple[list, dict, int]:
    """Nodes from 'c' to 'a' computing the activation, their constants, and the opset they need."""
    if kind == "silu":
        return [helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "s"], ["a"])], {}, 13
    if kind == "hardswish":
        return [helper.make_node("HardSwish", ["c"], ["a"])], {}, 14
    if kind == "hardswish_decomposed":  # x * relu6(x + 3) / 6
        return [helper.make_node("Add", ["c", "three"], ["t"]), helper.make_node("Clip", ["t", "zero", "six"], ["k"]),
                helper.make_node("Mul", ["c", "k"], ["m"]), helper.make_node("Div", ["m", "six"], ["a"])], \
            {"three": np.array(3.0), "zero": np.array(0.0), "six": np.array(6.0)}, 13
    if kind == "prelu":
        return [helper.make_node("PRelu", ["c", "slope"], ["a"])], {"slope": RNG.uniform(0.1, 0.3, (8, 1, 1))}, 13
    if kind == "gelu":
        return [helper.make_node("Gelu", ["c"], ["a"])], {}, 20
    if kind == "gelu_erf":  # x * 0.5 * (1 + erf(x / sqrt 2))
        return [helper.make_node("Div", ["c", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
                helper.make_node("Add", ["e", "one"], ["e1"]), helper.make_node("Mul", ["c", "e1"], ["m"]),
                helper.make_node("Mul", ["m", "half"], ["a"])], \
            {"sqrt2": np.array(np.sqrt(2.0)), "one": np.array(1.0), "half": np.array(0.5)}, 13
    if kind == "mish":
        return [helper.make_node("Mish", ["c"], ["a"])], {}, 18
    if kind == "mish_decomposed":  # x * tanh(softplus(x))
        return [helper.make_node("Softplus", ["c"], ["sp"]), helper.make_node("Tanh", ["sp"], ["th"]),
                helper.make_node("Mul", ["c", "th"], ["a"])], {}, 13
    raise AssertionError(kind)


ACTIVATIONS = ["silu", "hardswish", "hardswish_decomposed", "prelu", "gelu", "gelu_erf", "mish", "mish_decomposed"]


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_dead_channels_behind_zero_preserving_activations_are_removed_exactly(kind):
    """Conv (channels 1 and 6 dead, 3 and 4 zero filters with biases) -> activation -> MaxPool ->
    3x3 padded Conv: the dead ones go, the biased ones stay (the activation of a constant is read
    with padding), and nothing refuses the model."""
    act, consts, opset = _act_nodes(kind)
    w1, b1 = _conv_weights()
    w1[1], b1[1], w1[6], b1[6] = 0, 0, 0, 0
    w1[3], b1[3], w1[4], b1[4] = 0, 0.8, 0, 1.6
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], kernel_shape=[3, 3]), *act,
             helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p", "w2", "b2"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    inits = {"w1": w1, "b1": b1, "w2": RNG.standard_normal((4, 8, 3, 3)), "b2": RNG.standard_normal(4), **consts}
    model = _model(nodes, inits, [1, 3, 10, 10], [1, 4, 4, 4], opset)
    pruned, report = _lump(model)
    assert _width(pruned, "w1") == 6, report["groups"]
    _assert_exact(model, pruned, [1, 3, 10, 10])


@pytest.mark.parametrize("head_pads, width", [(0, 5), (1, 6)])
def test_two_constant_channels_in_one_group_fold_or_merge_without_refusing(head_pads, width):
    """Conv (channels 3 and 4: zero filters, biases 0.8 and 1.6; channel 1 dead) -> Relu -> Conv. An
    unpadded consumer takes both constants into its bias; a padded one cannot, but 4 = 2 x 3 merges."""
    w1, b1 = _conv_weights()
    w1[1], b1[1] = 0, 0
    w1[3], b1[3], w1[4], b1[4] = 0, 0.8, 0, 1.6
    k = 1 + 2 * head_pads
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["a"]),
             helper.make_node("Conv", ["a", "w2", "b2"], ["y"], kernel_shape=[k, k], pads=[head_pads] * 4)]
    inits = {"w1": w1, "b1": b1, "w2": RNG.standard_normal((4, 8, k, k)), "b2": RNG.standard_normal(4)}
    model = _model(nodes, inits, [1, 3, 8, 8], [1, 4, 6, 6], 13)
    pruned, report = _lump(model)
    assert _width(pruned, "w1") == width, report["groups"]
    _assert_exact(model, pruned, [1, 3, 8, 8])


# -- channels read by something other than consumer weights --------------------------------------------
def test_attention_contraction_reads_query_key_channels():
    """q = x Wq, k = x Wk, v = x Wv; softmax(q k^T) v Wo. Query/key channel j is read by the q k^T
    contraction only (no consumer weight reads it): never 'unread'. Query column 2 = 0 makes q_2 k_2 = 0,
    so channel 2 of q and k goes; value channel 3 is unread (row 3 of Wo is 0) and goes."""
    wq, wk, wv, wo = (RNG.standard_normal(s) for s in ((6, 8), (6, 8), (6, 8), (8, 4)))
    wq[:, 2] = 0
    wo[3] = 0
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"]), helper.make_node("MatMul", ["x", "wk"], ["k"]),
             helper.make_node("MatMul", ["x", "wv"], ["v"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[1, 0]),
             helper.make_node("MatMul", ["q", "kt"], ["s"]), helper.make_node("Softmax", ["s"], ["a"], axis=-1),
             helper.make_node("MatMul", ["a", "v"], ["o"]), helper.make_node("MatMul", ["o", "wo"], ["y"])]
    model = _model(nodes, {"wq": wq, "wk": wk, "wv": wv, "wo": wo}, [5, 6], [5, 4], 13)
    pruned, _ = _lump(model)
    assert (_width(pruned, "wq", 1), _width(pruned, "wk", 1), _width(pruned, "wv", 1)) == (7, 7, 7)
    _assert_exact(model, pruned, [5, 6])


def test_dead_channels_before_a_grouped_conv_go_in_equal_numbers_per_conv_group():
    """Conv 8 -> Relu -> Conv with 2 groups: channels 1, 2 (first conv group) and 6 (second) are dead;
    one per conv group can go while the groups stay equal."""
    w1, b1 = _conv_weights()
    for j in (1, 2, 6):
        w1[j], b1[j] = 0, 0
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], kernel_shape=[1, 1], group=2)]
    model = _model(nodes, {"w1": w1, "b1": b1, "w2": RNG.standard_normal((4, 4, 1, 1))}, [1, 3, 8, 8], [1, 4, 6, 6], 13)
    pruned, report = _lump(model)
    assert _width(pruned, "w1") == 6, report["groups"]
    _assert_exact(model, pruned, [1, 3, 8, 8])


def test_constants_followed_through_scalar_affine_activations_and_residual_adds():
    """Conv a + Conv b (residual) -> x * 1.5 + 0.2 -> HardSwish -> GlobalAveragePool -> Flatten -> Gemm.
    Channel 2 has zero filters in both convs (biases 0.3 and -0.1): it is hardswish(1.5 * 0.2 + 0.2)
    everywhere, folded into the Gemm bias. Channel 5 has zero filters and biases: 0.2 is added, so it
    is a constant too, not dead."""
    wa, ba = _conv_weights()
    wb, bb = _conv_weights(k=1)
    wa[2], ba[2], wb[2], bb[2] = 0, 0.3, 0, -0.1
    wa[5], ba[5], wb[5], bb[5] = 0, 0, 0, 0
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["ca"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "wb", "bb"], ["cb"], kernel_shape=[1, 1]),
             helper.make_node("Add", ["ca", "cb"], ["s"]),
             helper.make_node("Mul", ["s", "k"], ["m"]), helper.make_node("Add", ["m", "off"], ["o"]),
             helper.make_node("HardSwish", ["o"], ["h"]),
             helper.make_node("GlobalAveragePool", ["h"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], transB=1)]
    inits = {"wa": wa, "ba": ba, "wb": wb, "bb": bb, "k": np.array([1.5]), "off": np.array([0.2]),
             "wg": RNG.standard_normal((4, 8)), "bg": RNG.standard_normal(4)}
    model = _model(nodes, inits, [1, 3, 8, 8], [1, 4], 14)
    pruned, report = _lump(model)
    assert (_width(pruned, "wa"), _width(pruned, "wb")) == (6, 6), report["groups"]
    assert "2 constant" in " ".join(g["why"] for g in report["groups"])
    _assert_exact(model, pruned, [1, 3, 8, 8])


# -- exported architectures: dead channels planted on the producer side only ----------------------------
@pytest.mark.parametrize("arch, exporter", [("mobilenet_se", "torchscript17"), ("transformer_block", "dynamo18")])
def test_planted_dead_channels_behind_hardswish_se_and_gelu_are_all_removed(arch, exporter, tmp_path):
    """Producer filters, biases and BN shifts of chosen channels are zeroed; the weights that read them
    are not. HardSwish, the squeeze-excite gate (x * HardSigmoid(.)), depthwise convs and GELU keep them
    0, so lumping must find every one and leave the outputs unchanged."""
    import torch_archs
    from oracle import plant_dead_channels

    path = torch_archs.export_arch(arch, exporter, tmp_path)
    planted_path = tmp_path / "planted.onnx"
    planted, _ = plant_dead_channels(path, planted_path, 0.3, zero_consumers=False)
    _, report = onnxprune.prune(planted_path, criterion="lumping")
    assert report["channels_removed"] == sum(planted.values()) > 0
    assert max(o["max_rel"] for o in report["validation"]["outputs"].values()) <= 1e-5


# -- the registry's answers on single nodes ---------------------------------------------------------------
def _node_traits(op: str, inputs: list, opset: int = 13, consts: dict | None = None, **attrs):
    """optable.traits of one node whose inputs named in ``consts`` are constants."""
    from onnxprune.graph import optable

    consts = consts or {}
    values = [None if name == "" else ir.Value(name=name, const_value=ir.tensor(np.asarray(consts[name]))
                                                if name in consts else None) for name in inputs]
    node = ir.Node("", op, values, attributes=[ir.convenience.convert_attribute(k, v) for k, v in attrs.items()])
    return optable.traits(node, opset)


@pytest.mark.parametrize("op, inputs, opset, consts, attrs, zero, homogeneous", [
    ("Pad", ["x"], 10, {}, {"pads": [0, 0, 1, 1], "value": 0.5}, False, False),
    ("Pad", ["x"], 10, {}, {"pads": [0, 0, 1, 1]}, True, True),
    ("Pad", ["x", "p", "v"], 13, {"p": np.zeros(4, np.int64), "v": np.float32(2.0)}, {}, False, False),
    ("Pad", ["x", "p", "v"], 13, {"p": np.zeros(4, np.int64)}, {}, False, False),  # value computed at run time
    ("Pad", ["x", "p", "v"], 13, {"p": np.zeros(4, np.int64), "v": np.float32(2.0)}, {"mode": "edge"}, True, True),
    ("Resize", ["x", "r", "s"], 13, {}, {"coordinate_transformation_mode": "tf_crop_and_resize",
                                          "extrapolation_value": 1.0}, False, False),
    ("Resize", ["x", "r", "s"], 13, {}, {"mode": "cubic"}, True, True),
    ("Clip", ["x", "lo", "hi"], 13, {"lo": np.float32(0), "hi": np.float32(6)}, {}, True, False),
    ("Clip", ["x", "lo"], 13, {"lo": np.float32(0)}, {}, True, True),
    ("Clip", ["x", "lo"], 13, {"lo": np.float32(0.5)}, {}, False, False),
    ("Div", ["x", "d"], 13, {"d": np.float32(6)}, {}, True, True),
    ("Div", ["x", "d"], 13, {}, {}, False, False),  # 0 / 0 is NaN
    ("Mul", ["x", "s"], 13, {"s": np.float32(2)}, {}, True, True),
    ("Mul", ["x", "s"], 13, {}, {}, True, False),
    ("Add", ["x", "b"], 13, {"b": np.float32(1)}, {}, True, False),  # 0 here, if b is 0 at the channel
    ("Sigmoid", ["x"], 13, {}, {}, False, False),
    ("HardSwish", ["x"], 14, {}, {}, True, False),
    ("Softmax", ["x"], 13, {}, {}, False, False),
    ("MyCustomOp", ["x"], 13, {}, {}, False, False),
])
def test_registry_reads_attributes_and_constant_inputs(op, inputs, opset, consts, attrs, zero, homogeneous):
    t = _node_traits(op, inputs, opset, consts, **attrs)
    assert (t.maps_zero_to_zero(), t.positively_homogeneous()) == (zero, homogeneous)


def test_registry_gemm_affine_coefficients_and_macs():
    t = _node_traits("Gemm", ["a", "b", "c"], consts={"b": np.zeros((6, 8), np.float32), "c": np.zeros(8, np.float32)},
                     alpha=0.5, beta=2.0, transB=1)
    aff = t.affine()
    assert (aff.weight, aff.bias, aff.weight_scale, aff.bias_scale, aff.weight_out_axis) == (1, 2, 0.5, 2.0, 0)
    assert aff.reads_every_position
    assert _node_traits("Relu", ["x"]).affine() is None
