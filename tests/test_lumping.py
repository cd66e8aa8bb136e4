"""Lossless lumping: unread, dead and proportional channels go and the outputs stay the same; merges
that would be wrong (c < 0, a non-homogeneous activation on the way) are not made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune

ROOT = Path(__file__).resolve().parents[1]


def _model(act="Relu", residual=False, head="conv", constant=False, head_pads=0):
    """x[1,6,8,8] -> conv1 (12, bias) [+ conv1b (12, bias)] -> act -> MaxPool -> consumer -> y"""
    rng = np.random.default_rng(0)
    w1, b1 = rng.standard_normal((12, 6, 3, 3)), rng.standard_normal(12)
    w1[3], b1[3] = 2.5 * w1[1], 2.5 * b1[1]  # proportional, c > 0: folded into channel 1
    w1[5], b1[5] = 0, 0  # dead
    w1[9], b1[9] = -2 * w1[2], -2 * b1[2]  # proportional with c < 0: must stay
    if constant:
        w1[10], b1[10] = 0, 0.7  # constant relu(0.7) everywhere: into the consumer's bias
        w1[11], b1[11] = 0, -0.4  # constant relu(-0.4) = 0: dead in effect, also folded (adds 0)
    inits = {"w1": w1, "b1": b1}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4)]
    last = "c1"
    if residual:
        w1b, b1b = rng.standard_normal((12, 6, 1, 1)), rng.standard_normal(12)
        w1b[3], b1b[3] = 2.5 * w1b[1], 2.5 * b1b[1]
        w1b[5], b1b[5] = 0, 0
        inits.update(w1b=w1b, b1b=b1b)
        nodes += [helper.make_node("Conv", ["x", "w1b", "b1b"], ["c1b"], name="conv1b", kernel_shape=[1, 1]),
                  helper.make_node("Add", ["c1", "c1b"], ["sum"], name="add")]
        last = "sum"
    nodes += [helper.make_node(act, [last], ["a"], name="act"),
              helper.make_node("MaxPool", ["a"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2])]
    if head == "concat":  # the consumer reads conv1's channels after 4 channels of another conv
        w3 = rng.standard_normal((4, 6, 2, 2))
        w2 = rng.standard_normal((4, 16, 1, 1))
        w2[:, 4 + 7] = 0
        inits.update(w2=w2, w3=w3)
        nodes += [helper.make_node("Conv", ["x", "w3"], ["c3"], name="conv3", kernel_shape=[2, 2], strides=[2, 2]),
                  helper.make_node("Concat", ["c3", "p"], ["cat"], name="cat", axis=1),
                  helper.make_node("Conv", ["cat", "w2"], ["y"], name="conv2", kernel_shape=[1, 1])]
        y_shape = [1, 4, 4, 4]
    elif head == "conv":
        k = 1 + 2 * head_pads
        w2 = rng.standard_normal((4, 12, k, k))
        w2[:, 7] = 0  # nobody reads channel 7
        inits.update(w2=w2)
        nodes.append(helper.make_node("Conv", ["p", "w2"], ["y"], name="conv2", kernel_shape=[k, k],
                                      pads=[head_pads] * 4))
        y_shape = [1, 4, 4, 4]
    else:
        w2 = rng.standard_normal((12 * 16, 5))
        w2[7 * 16:8 * 16] = 0
        inits.update(w2=w2, b2=rng.standard_normal(5))
        nodes += [helper.make_node("Flatten", ["p"], ["f"], name="flat"),
                  helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc")]
        y_shape = [1, 5]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _lump(model):
    _, report = onnxprune.prune(model, criterion="lumping")
    (row,) = [g for g in report["groups"] if g["name"] in ("conv1", "conv1b")]
    worst = max(o["max_rel"] for o in report["validation"]["outputs"].values())
    return row, worst


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("head", ["conv", "flatten_gemm", "concat"])
def test_unread_dead_and_proportional_channels_go_losslessly(residual, head):
    row, worst = _lump(_model(residual=residual, head=head))
    assert row["removed"] == 3 and row["kept"] == 9, row  # 3 (folded), 5 (dead), 7 (unread); 9 (c < 0) stays
    assert "1 folded" in row["why"] and "1 dead" in row["why"] and "1 unread" in row["why"]
    assert worst <= 1e-5


def test_non_homogeneous_activation_blocks_merges_but_not_unread_channels():
    row, worst = _lump(_model(act="Sigmoid"))
    # channel 7 (unread), and channel 5, which reads sigmoid(0) = 0.5 everywhere: a constant, folded
    assert row["removed"] == 2 and "1 unread" in row["why"] and "1 constant" in row["why"], row
    assert worst <= 1e-5


def test_residual_with_one_proportional_producer_is_not_merged():
    model = _model(residual=True)
    w1b = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w1b")).copy()
    w1b[3] = -w1b[3]  # conv1b no longer proportional for channel 3 (nor dead for 5)
    w1b[5] = 1.0
    for i, init in enumerate(model.graph.initializer):
        if init.name == "w1b":
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(w1b, "w1b"))
    row, worst = _lump(model)
    assert row["removed"] == 1 and worst <= 1e-5  # channel 7 only


def test_trained_cnn_with_planted_proportional_channels_keeps_its_accuracy(tmp_path):
    """The bundled digits CNN (Conv -> BN -> ReLU): channel j becomes c * channel i through the BN
    (folded first); lumping must remove exactly the planted channels, with the same predictions."""
    model = onnx.load(ROOT / "models" / "digits_cnn.onnx")
    inits = {i.name: numpy_helper.to_array(i).copy() for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    bns = {n.input[0]: n for n in model.graph.node if n.op_type == "BatchNormalization"}
    planted = 0
    for conv in convs:
        bn = bns[conv.output[0]]
        w, gamma, beta, mean, var = (inits[k] for k in (conv.input[1], *bn.input[1:5]))
        for j, i, c in ((5, 2, 1.5), (9, 2, 0.5)):
            # same filter and statistics, gamma and beta scaled by c: BN output j = c * BN output i
            w[j], var[j], mean[j], gamma[j], beta[j] = w[i], var[i], mean[i], c * gamma[i], c * beta[i]
            planted += 1
    model.graph.ClearField("initializer")
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items())
    path = tmp_path / "planted.onnx"
    onnx.save(model, path)
    _, report = onnxprune.prune(path, criterion="lumping", output=tmp_path / "lumped.onnx")
    assert report["channels_removed"] == planted
    data = np.load(ROOT / "models" / "digits_test.npz")
    import onnxruntime as ort
    outs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": data["input"]})[0]
            for p in (path, tmp_path / "lumped.onnx")]
    np.testing.assert_array_equal(outs[0].argmax(1), outs[1].argmax(1))
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-4 * np.abs(outs[0]).max())


@pytest.mark.parametrize("head", ["conv", "flatten_gemm"])
def test_constant_channels_fold_into_the_consumer_bias(head):
    row, worst = _lump(_model(head=head, constant=True))
    # 3, 5, 7 as before, 10 (constant relu(0.7), folded) and 11 (relu(-0.4) = 0 wherever it is read: dead)
    assert row["removed"] == 5 and "1 constant" in row["why"] and "2 dead" in row["why"], row
    assert worst <= 1e-5


def test_constant_channel_is_kept_before_a_padded_conv():
    """A zero-padded 3x3 consumer sees the constant only inside the border: not foldable exactly (but
    channel 11, relu(-0.4) = 0 everywhere, is dead and goes)."""
    row, worst = _lump(_model(constant=True, head_pads=1))
    assert row["removed"] == 4 and "constant" not in row["why"] and "2 dead" in row["why"], row
    assert worst <= 1e-5


def test_non_homogeneous_op_after_a_concat_blocks_merges():
    """The group's channels reach the consumer through Concat and then a Sigmoid: the path check must
    see the Sigmoid although the Concat output also holds another group's channels."""
    model = _model(head="concat")
    conv2 = next(n for n in model.graph.node if n.name == "conv2")
    conv2.input[0] = "cat_sig"
    model.graph.node.insert(list(model.graph.node).index(conv2),
                            helper.make_node("Sigmoid", ["cat"], ["cat_sig"], name="sig"))
    row, worst = _lump(model)
    # channel 7 (unread) and 5, the constant sigmoid(0) = 0.5 everywhere, folded into conv2's bias
    assert row["removed"] == 2 and "1 unread" in row["why"] and "1 constant" in row["why"], row
    assert "folded into proportional" not in row["why"]
    assert worst <= 1e-5
