"""Each criterion ranks a constructed case the way its definition says."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.criteria import get_criterion


def _conv_model(w: np.ndarray, gamma: np.ndarray | None = None) -> onnx.ModelProto:
    """x -> Conv(w) [-> BN(gamma)] -> Relu -> Conv(1x1 to 2) -> y"""
    m = w.shape[0]
    inits = [numpy_helper.from_array(w.astype(np.float32), "w"),
             numpy_helper.from_array(np.ones((2, m, 1, 1), np.float32), "w2")]
    pads = [k // 2 for k in w.shape[2:]] * 2
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=list(w.shape[2:]), pads=pads)]
    last = "c"
    if gamma is not None:
        for name, arr in (("g", gamma), ("b", np.zeros(m)), ("mu", np.zeros(m)), ("var", np.ones(m))):
            inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        nodes.append(helper.make_node("BatchNormalization", ["c", "g", "b", "mu", "var"], ["n"], name="bn"))
        last = "n"
    nodes += [helper.make_node("Relu", [last], ["r"], name="relu"),
              helper.make_node("Conv", ["r", "w2"], ["y"], name="head", kernel_shape=[1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w.shape[1], 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 5, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _scores(model, name):
    an = onnxprune.analyze(model)
    (group,) = an.prunable_groups
    return get_criterion(name)(an)[group.id]


def test_fpgm_removes_the_filter_at_the_median_and_l1_does_not():
    rng = np.random.default_rng(0)
    center = rng.standard_normal((3, 3, 3)) * 3  # a large common part: the median filter is not small
    w = center + rng.standard_normal((8, 3, 3, 3))
    w[5] = center  # exactly the geometric median of a symmetric cloud around center
    model = _conv_model(w)
    assert np.argmin(_scores(model, "fpgm")) == 5
    assert np.argmin(_scores(model, "l1")) != 5


def test_l1_and_l2_rank_by_norm():
    w = np.ones((6, 2, 1, 1)) * np.arange(1, 7)[:, None, None, None]
    w[3] *= 0.01
    for name in ("l1", "l2"):
        s = _scores(_conv_model(w), name)
        assert np.argmin(s) == 3 and np.all(np.argsort(s)[1:] == [0, 1, 2, 4, 5])


def test_bn_ranks_by_gamma_and_says_when_it_falls_back():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 2, 3, 3))
    gamma = np.array([1.0, 0.9, -0.01, 1.2, -0.8, 0.7])
    model = _conv_model(w, gamma)
    assert np.argmin(_scores(model, "bn")) == 2  # |gamma| smallest, sign ignored
    an = onnxprune.analyze(_conv_model(w))  # no BN: falls back to l2, with a note
    scores = get_criterion("bn")(an)
    (group,) = an.prunable_groups
    assert "no BatchNormalization" in scores.notes[group.id]
    np.testing.assert_allclose(scores[group.id], get_criterion("l2")(an)[group.id])
    _, report = onnxprune.prune(_conv_model(w), ratio=0.5, criterion="bn", validate=False)
    assert any("scored by l2" in g["why"] for g in report["groups"])


def test_model_whose_declared_shapes_contradict_inference_still_prunes():
    """An exporter's wrong value_info is the model's, not a surgery bug: lenient checks apply."""
    model = _conv_model(np.random.default_rng(2).standard_normal((6, 2, 3, 3)))
    model.graph.output[0].type.tensor_type.shape.dim[2].dim_value = 4  # really 5
    _, report = onnxprune.prune(model, ratio=0.5, validate=False)
    assert report["channels_removed"] == 3


def test_weight_statistics_tell_gaussian_layers_from_spread_ones():
    from onnxprune.criteria.distribution import weight_statistics
    rng = np.random.default_rng(3)
    iid = rng.standard_normal((64, 16, 3, 3))
    (rec,) = weight_statistics(onnxprune.analyze(_conv_model(iid)))
    assert rec["weights_per_filter"] == 144 and rec["normality_p"] > 0.01
    assert abs(rec["l2_cv"] - rec["gaussian_cv"]) < 0.3 * rec["gaussian_cv"]
    assert rec["spearman"]["l1~l2"] > 0.9
    assert "too concentrated" in rec["verdict"] and abs(rec["mean_cosine"]) < 0.05
    spread = iid * rng.uniform(0.1, 3.0, (64, 1, 1, 1))  # filters of very different scales
    (rec,) = weight_statistics(onnxprune.analyze(_conv_model(spread)))
    assert rec["normality_p"] < 1e-6 and rec["l2_cv"] > 5 * rec["gaussian_cv"]
    assert "too concentrated" not in rec["verdict"]


def test_analyze_cli_reports_weight_distribution():
    import json
    import subprocess
    import sys
    from pathlib import Path
    model = Path(__file__).resolve().parents[1] / "models" / "digits_cnn.onnx"
    res = subprocess.run([sys.executable, "-m", "onnxprune", "analyze", str(model)], capture_output=True, text=True)
    assert res.returncode == 0 and "weight distribution per layer" in res.stdout
    data = json.loads(subprocess.run([sys.executable, "-m", "onnxprune", "analyze", str(model), "--json"],
                                     capture_output=True, text=True).stdout)
    assert len(data["layers"]) == data["groups_prunable"]
    assert {"normality_p", "l2_cv", "gaussian_cv", "spearman", "mean_cosine", "verdict"} <= set(data["layers"][0])


def test_gaussian_prunes_inside_the_interval_and_keeps_the_tails():
    rng = np.random.default_rng(4)
    # l1 features: a central bulk plus two distinctive filters far out on either side
    scale = np.concatenate([rng.normal(1.0, 0.05, 18), [0.2, 3.0]])
    w = np.sign(rng.standard_normal((20, 4, 3, 3))) * scale[:, None, None, None]
    model = _conv_model(w)
    _, report = onnxprune.prune(model, criterion="gaussian", gaussian_k=1.0, validate=False)
    (row,) = [g for g in report["groups"] if g["removed"]]
    feats = np.abs(w).reshape(20, -1).sum(axis=1)
    z = np.abs(feats - feats.mean()) / feats.std()
    assert row["removed"] == int(np.sum(z < 1.0)) and "l1 within 1 sigma of the layer mean" in row["why"]
    an = onnxprune.analyze(model)
    from onnxprune.criteria.gaussian import gaussian_scores
    (gid,) = [g.id for g in an.prunable_groups]
    inside = gaussian_scores("l1")(an)[gid]
    assert set(np.argsort(inside)[-2:]) == {18, 19}  # the tails score highest: kept
    outside = gaussian_scores("l1", outside=True)(an)[gid]
    assert set(np.argsort(outside)[:2]) == {18, 19}  # read the other way they go first
    _, report = onnxprune.prune(model, criterion="gaussian", ratio=0.5, validate=False)
    assert sum(g["removed"] for g in report["groups"]) == 10


def test_energy_sees_a_channel_its_batchnorm_silences():
    """energy = ||W_next[:, j]|| * sqrt(E[a_j^2]) from the BN statistics: a big filter whose BN gamma is
    ~0 feeds nothing and goes first, where l1 would keep it longest."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 3, 3, 3))
    w[2] *= 10
    gamma = np.array([1.0, 0.8, 1e-3, 1.2, 0.9, 1.1])
    model = _conv_model(w, gamma)
    energy, l1 = _scores(model, "energy"), _scores(model, "l1")
    assert energy.argmin() == 2 and l1.argmax() == 2
    # with beta = 0 the BN output is N(0, gamma^2): after ReLU E[a^2] = gamma^2 / 2, head columns are 1
    assert np.allclose(energy, np.sqrt(2 * gamma ** 2 / 2), rtol=1e-5)
