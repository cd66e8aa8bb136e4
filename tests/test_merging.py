"""Relaxed lumping: removed channels fold into the kept channel they are most nearly proportional to
(c > 0 only), the nearest-to-proportional go first, and the stated error bound holds."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.criteria.merging import fold_removed, merge_scores
from onnxprune.plan import Plan

ROOT = Path(__file__).resolve().parents[1]


def _model(bn: bool = False, noise: float = 1e-3, seed: int = 0):
    """x[1,6,8,8] -> conv1 (12, bias) [-> BN] -> Relu -> conv2 (1x1, 4) -> y.
    Channel 4 is 1.5 x channel 0 (+ noise) after the BN; channel 9 is -2 x channel 2."""
    rng = np.random.default_rng(seed)
    w1, b1 = rng.standard_normal((12, 6, 3, 3)), rng.standard_normal(12)
    gamma, beta = rng.uniform(0.5, 2, 12), rng.standard_normal(12)
    mean, var = rng.standard_normal(12), rng.uniform(0.5, 2, 12)
    s = gamma / np.sqrt(var + 1e-5) if bn else np.ones(12)
    post_w = w1[0] * s[0]
    post_b = ((b1[0] - mean[0]) * s[0] + beta[0]) if bn else b1[0]
    w1[4] = 1.5 * post_w / s[4] + noise * rng.standard_normal(w1[4].shape)
    if bn:  # choose beta[4] so the BN output of channel 4 is 1.5 x channel 0's
        beta[4] = 1.5 * post_b - (b1[4] - mean[4]) * s[4]
    else:
        b1[4] = 1.5 * post_b
    w1[9], b1[9] = -2 * w1[2], -2 * b1[2]
    inits = {"w1": w1, "b1": b1, "w2": rng.standard_normal((4, 12, 1, 1))}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4)]
    last = "c1"
    if bn:
        inits.update(gamma=gamma, beta=beta, mean=mean, var=var)
        nodes.append(helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"], name="bn"))
        last = "n1"
    nodes += [helper.make_node("Relu", [last], ["a"], name="relu"),
              helper.make_node("Conv", ["a", "w2"], ["y"], name="conv2", kernel_shape=[1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _outputs(model, x):
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_the_nearly_proportional_channel_goes_first_and_is_folded():
    for bn in (False, True):
        model = _model(bn=bn)
        pruned, report = onnxprune.prune(model, criterion="lumping", ratio=1 / 12 + 1e-9)
        (row,) = [g for g in report["groups"] if g["name"] == "conv1"]
        assert row["removed"] == 1 and "1 of 1 folded" in row["why"]
        gone = [int(s) for s in report["remove"][0].split(":")[1].split(",")]
        assert gone in ([0], [4])
        x = np.random.default_rng(1).standard_normal((1, 6, 8, 8)).astype(np.float32)
        ref, out = _outputs(model, x), _outputs(ir.to_proto(pruned).SerializeToString(), x)
        err = float(np.linalg.norm(out - ref))
        # the stated bound: consumer outputs move by at most B x ||[x; 1]|| per position
        bound = float(row["why"].split("at most ")[1].split(" x")[0])
        patches = np.lib.stride_tricks.sliding_window_view(np.pad(x[0], ((0, 0), (1, 1), (1, 1))), (6, 3, 3))
        xnorm = np.sqrt((patches.reshape(64, -1) ** 2).sum(axis=1) + 1)
        assert err <= bound * float(np.linalg.norm(xnorm)) + 1e-4
        assert err / np.linalg.norm(ref) < 1e-2  # the planted noise is 1e-3 of the filter


def test_exact_copies_through_a_batchnorm_fold_losslessly():
    model = _model(bn=True, noise=0.0)
    _, report = onnxprune.prune(model, criterion="lumping", ratio=1 / 12 + 1e-9)
    assert report["channels_removed"] == 1
    assert max(o["max_rel"] for o in report["validation"]["outputs"].values()) <= 1e-5


def test_a_negative_partner_is_never_folded():
    model = onnxprune.api.load_normalized(_model())
    an = onnxprune.analyze(model)
    (g,) = an.prunable_groups
    plan = Plan(removed={g.id: np.array([9])})
    fold_removed(an, plan)
    assert all(i != 2 for _, i, _ in plan.merges.get(g.id, []))  # channel 9 = -2 x channel 2
    assert all(c > 0 for _, _, c in plan.merges.get(g.id, []))


def test_greedy_scores_lock_the_partner_of_a_fold():
    an = onnxprune.analyze(_model(noise=0.0))
    (g,) = an.prunable_groups
    score = merge_scores(an)[g.id]
    low, high = sorted((score[0], score[4]))
    assert low < 1e-6 * score.max()  # the exact pair costs nothing (up to rounding) ...
    # ... and the partner it folds into is locked: scored after every channel the greedy removed
    picked = np.sort(score)[: len(score) // 2]
    assert high > picked.max()


def test_merge_makes_a_trained_cnn_more_accurate_at_the_same_ratio():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import digits_models as dm
    finally:
        sys.path.pop(0)
    test = np.load(ROOT / "models" / "digits_test.npz")
    acc = {}
    for merge in (False, True):
        pruned, report = onnxprune.prune(ROOT / "models" / "digits_cnn.onnx", ratio=0.2, criterion="l1",
                                         allocation="local", merge=merge, validate=False)
        acc[merge] = dm.onnx_accuracy(ir.to_proto(pruned).SerializeToString(), test["input"], test["labels"])
        assert ("folded into nearly proportional" in " ".join(g["why"] for g in report["groups"])) == merge
    assert acc[True] >= acc[False] + 0.01


def test_lumping_tolerance_folds_near_copies_only():
    model = _model(noise=1e-3)
    _, exact = onnxprune.prune(model, criterion="lumping")
    assert exact["channels_removed"] == 0  # nothing is exactly proportional
    _, relaxed = onnxprune.prune(model, criterion="lumping", lumping_tolerance=1e-3)
    (row,) = [g for g in relaxed["groups"] if g["name"] == "conv1"]
    assert row["removed"] == 1 and "within cosine 0.999" in row["why"] and "at most" in row["why"]
    assert max(o["max_rel"] for o in relaxed["validation"]["outputs"].values()) < 1e-2
    with pytest.raises(onnxprune.errors.OptionError, match="lumping-tolerance"):
        onnxprune.prune(model, criterion="l1", lumping_tolerance=0.1)
