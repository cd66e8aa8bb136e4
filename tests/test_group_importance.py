"""Group-level importance (``--criterion group``) reads every member of a channel group."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.criteria import get_criterion

C = 6  # channels of the group under test


def _model(nodes: list, inits: dict[str, np.ndarray], cin: int, cout: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, 5, 5])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _bn(name: str, x: str, out: str, gamma: np.ndarray, inits: dict) -> onnx.NodeProto:
    n = len(gamma)
    inits.update({f"{name}_g": gamma, f"{name}_b": np.zeros(n), f"{name}_m": np.zeros(n), f"{name}_v": np.ones(n)})
    return helper.make_node("BatchNormalization", [x, f"{name}_g", f"{name}_b", f"{name}_m", f"{name}_v"], [out],
                            name=name)


def _conv(name: str, x: str, w: str, out: str, k: int = 1, group: int = 1) -> onnx.NodeProto:
    return helper.make_node("Conv", [x, w], [out], name=name, kernel_shape=[k, k], pads=[k // 2] * 4, group=group)


def _group_scores(model: onnx.ModelProto, producer: str) -> tuple[np.ndarray, object]:
    an = onnxprune.analyze(model)
    (g,) = [g for g in an.prunable_groups if any(p.node.name == producer for p in g.producers)]
    return get_criterion("group")(an)[g.id], g


def _chain(w1: np.ndarray, gamma: np.ndarray, w2: np.ndarray) -> onnx.ModelProto:
    """x -> Conv(w1) -> BN(gamma) -> Relu -> Conv(w2, 1x1) -> y"""
    inits = {"w1": w1, "w2": w2}
    nodes = [_conv("conv1", "x", "w1", "c", k=3), _bn("bn", "c", "n", gamma, inits),
             helper.make_node("Relu", ["n"], ["r"], name="relu"), _conv("head", "r", "w2", "y")]
    return _model(nodes, inits, w1.shape[1], w2.shape[0])


def test_a_channel_its_consumer_ignores_scores_lowest_despite_a_large_filter():
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((C, 3, 3, 3))
    w1[2] *= 10  # by far the largest filter and BN scale ...
    gamma = np.ones(C)
    gamma[2] = 5.0
    w2 = rng.standard_normal((4, C, 1, 1))
    w2[:, 2] = 0.0  # ... but nothing reads it
    model = _chain(w1, gamma, w2)
    scores, _ = _group_scores(model, "conv1")
    assert np.argmin(scores) == 2 and scores[2] == 0.0
    an = onnxprune.analyze(model)
    assert np.argmax(get_criterion("l1")(an)[an.prunable_groups[0].id]) == 2  # producer norms keep it first
    _, report = onnxprune.prune(model, ratio=1 / C, criterion="group", validate=False)
    assert report["channels_removed"] == 1


def test_each_member_is_normalised_by_its_own_mean():
    """Scaling one member (a filter, a BN scale, a consumer) leaves the scores unchanged: no member's
    units dominate."""
    rng = np.random.default_rng(1)
    w1, gamma, w2 = rng.standard_normal((C, 3, 3, 3)), rng.uniform(0.2, 2, C), rng.standard_normal((4, C, 1, 1))
    base, _ = _group_scores(_chain(w1, gamma, w2), "conv1")
    for scaled in (_chain(w1 * 100, gamma, w2), _chain(w1, gamma * 0.01, w2), _chain(w1, gamma, w2 * 50)):
        np.testing.assert_allclose(_group_scores(scaled, "conv1")[0], base, rtol=1e-5)
    # A BN scale ranks channels: halving one channel's gamma lowers its score alone.
    gamma2 = gamma.copy()
    gamma2[4] *= 0.5
    lowered, _ = _group_scores(_chain(w1, gamma2, w2), "conv1")
    assert lowered[4] < base[4]


def test_a_residual_group_aggregates_every_producer_and_consumer():
    """x -> ConvA, ConvB -> Add -> Relu -> ConvC (y) and ConvD (z): one group, two producers, two
    consumers; score = sqrt(mean(a, b) * mean(c, d)) with each member divided by its mean."""
    rng = np.random.default_rng(2)
    wa, wb = rng.standard_normal((C, 3, 1, 1)), rng.standard_normal((C, 3, 3, 3))
    wc, wd = rng.standard_normal((4, C, 1, 1)), rng.standard_normal((2, C, 3, 3))
    inits = {"wa": wa, "wb": wb, "wc": wc, "wd": wd}
    nodes = [_conv("convA", "x", "wa", "a"), _conv("convB", "x", "wb", "b", k=3),
             helper.make_node("Add", ["a", "b"], ["s"], name="add"), helper.make_node("Relu", ["s"], ["r"], name="relu"),
             _conv("convC", "r", "wc", "y"), _conv("convD", "r", "wd", "z", k=3)]
    model = _model(nodes, inits, 3, 4)
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2, 5, 5]))
    scores, g = _group_scores(model, "convA")
    assert {p.node.name for p in g.producers} == {"convA", "convB"}
    assert {p.node.name for p in g.params if p.role == "consumer"} == {"convC", "convD"}

    def norm(v):
        return v / v.mean()

    def rows(w):
        return np.sqrt((w.reshape(len(w), -1) ** 2).sum(1))
    def cols(w):
        return np.sqrt((np.moveaxis(w, 1, 0).reshape(w.shape[1], -1) ** 2).sum(1))
    made = (norm(rows(wa)) + norm(rows(wb))) / 2
    read = (norm(cols(wc)) + norm(cols(wd))) / 2
    np.testing.assert_allclose(scores, np.sqrt(made * read), rtol=1e-5)


def test_grouped_and_depthwise_convs_are_read_per_channel():
    """conv1 (C) -> depthwise (C) -> grouped conv (2 groups) -> y: a zero depthwise filter or zero
    grouped-conv columns silence a channel, and it scores zero."""
    rng = np.random.default_rng(3)
    w1, wdw, wg = rng.standard_normal((C, 3, 1, 1)), rng.standard_normal((C, 1, 3, 3)), rng.standard_normal((4, C // 2, 1, 1))
    wdw[1] = 0.0
    wg[2:, 1] = 0.0  # conv group 1 reads channels 3..5: its column 1 is channel 4
    inits = {"w1": w1, "wdw": wdw, "wg": wg}
    nodes = [_conv("conv1", "x", "w1", "a"), _conv("dw", "a", "wdw", "d", k=3, group=C),
             _conv("gconv", "d", "wg", "y", group=2)]
    scores, _ = _group_scores(_model(nodes, inits, 3, 4), "conv1")
    assert scores[1] == 0.0 and scores[4] == 0.0
    assert np.all(np.delete(scores, [1, 4]) > 0)
