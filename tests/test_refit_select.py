"""--refit chooses which channels go by refit cost (onnxprune.refit_select)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from conftest import tiny_attention
from onnx import TensorProto, helper, numpy_helper
from oracle import assert_removed_exactly, plant_dead_channels

import onnxprune
import onnxprune.refit
from onnxprune.errors import OptionError
from onnxprune.graph import Group
from onnxprune.refit_select import ConsumerCost, ConsumerGram, greedy_removal
from onnxprune.runtime import session


def _redundant_mlp() -> onnx.ModelProto:
    """x[N,8] -> fc1 (6) -> fc2 (3), no activation between: hidden channel 5 is planted as 0.5 h0 + 2 h1
    (weights and bias), with the largest filters; channel 3 has the smallest (l1 removes it first) but large
    weights in fc2."""
    rng = np.random.default_rng(0)
    w1, b1 = rng.standard_normal((8, 6)), rng.standard_normal(6) * 0.1
    w1[:, 3] *= 0.3
    w1[:, 5], b1[5] = 0.5 * w1[:, 0] + 2 * w1[:, 1], 0.5 * b1[0] + 2 * b1[1]
    w2, b2 = rng.standard_normal((6, 3)), rng.standard_normal(3) * 0.1
    w2[3] *= 3  # channel 3 matters downstream: small filters, large consumer weights
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in
             (("w1", w1.T), ("b1", b1), ("w2", w2.T), ("b2", b2))]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], name="fc2", transB=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _calib(tmp_path, n: int = 200):
    path = tmp_path / "calib.npz"
    np.savez(path, x=np.random.default_rng(3).standard_normal((n, 8)).astype(np.float32))
    return path


def _removed(report: dict, group: str) -> list[str]:
    return next(g["remove"] for g in report["groups"] if g["name"] == group)


# -- the cost is the least-squares error the refit cannot put back ---------------------------------
def _direct_cost(x: np.ndarray, w: np.ndarray, removed: list[int]) -> float:
    """min over W' of ||X_kept W' - X W||^2 / ||X W||^2, by lstsq."""
    kept = [j for j in range(x.shape[1]) if j not in removed]
    y = x @ w
    fit = np.linalg.lstsq(x[:, kept], y, rcond=None)[0]
    return float(np.sum((x[:, kept] @ fit - y) ** 2) / np.sum(y ** 2))


def test_costs_and_greedy_updates_match_least_squares(monkeypatch):
    monkeypatch.setattr(onnxprune.refit, "RIDGE", 1e-12)  # the unregularised cost, to compare with lstsq
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 7)) @ rng.standard_normal((7, 7))
    w = rng.standard_normal((7, 4))
    gram = ConsumerGram(x.T @ x, bias=False, rows=300)
    cost = ConsumerCost(gram, w, np.arange(7)[:, None])
    first = cost.costs(np.arange(7))
    direct = [_direct_cost(x, w, [j]) for j in range(7)]
    np.testing.assert_allclose(first, direct, rtol=1e-6)
    # after removing the cheapest, each further cost is what removing the pair costs beyond it
    j0 = int(np.argmin(first))
    cost.remove(np.array([j0]))
    rest = np.array([j for j in range(7) if j != j0])
    np.testing.assert_allclose(cost.costs(rest), [_direct_cost(x, w, [j0, j]) - direct[j0] for j in rest],
                               rtol=1e-6, atol=1e-12)
    # and the updated weights are the refit of the kept columns
    fit = np.linalg.lstsq(x[:, rest], x @ w, rcond=None)[0]
    np.testing.assert_allclose(cost.w[rest], fit, rtol=1e-6, atol=1e-9)


def test_greedy_keeps_each_blocks_count_and_takes_dead_channels_first():
    """Two balanced blocks of 4 (a chunk): each loses its own count; an all-zero channel goes first even
    where a live one would cost nothing either (an exact copy)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((100, 8))
    x[:, 1] = x[:, 0]  # a copy: free to remove, but not dead
    x[:, 3] = 0.0  # dead
    x[:, 6] = x[:, 5]
    group = Group(0, "g", np.arange(8), blocks=[np.array([[0, 1, 2, 3], [4, 5, 6, 7]])])
    cost = ConsumerCost(ConsumerGram(x.T @ x, False, 100), rng.standard_normal((8, 3)), np.arange(8)[:, None])
    assert cost.costs(np.array([0, 1]))[0] < 1e-3  # the copy costs next to nothing
    chosen = greedy_removal(group, [cost], [np.array([1, 1])])
    assert chosen.tolist() in ([3, 5], [3, 6])


# -- through the pipeline ------------------------------------------------------------------------------
def test_planted_redundant_channel_goes_and_the_refit_recovers_it(tmp_path):
    """Channels 0, 1 and 5 are linearly dependent (any one is the others' combination): one of them goes,
    and the refit puts it back; l1 would remove channel 3, which nothing else predicts."""
    model, calib = _redundant_mlp(), _calib(tmp_path)
    plain, plain_report = onnxprune.prune(model, ratio=0.2, validate=False)
    assert _removed(plain_report, "fc1") == ["fc1:3"]  # l1: the smallest filter
    pruned, report = onnxprune.prune(model, ratio=0.2, refit=True, data=str(calib), validate=False)
    assert _removed(report, "fc1")[0] in ("fc1:0", "fc1:1", "fc1:5")
    assert report["params_after"] == plain_report["params_after"]
    (layer,) = report["refit"]["layers"]
    assert layer["error_after"] < 1e-2  # the ridge's shrinkage alone
    # l1's choice, refit the same way: the refit cannot put channel 3 back
    _, l1_report = onnxprune.prune(model, remove=["fc1:3"], refit=True, data=str(calib), validate=False)
    assert l1_report["refit"]["layers"][0]["error_after"] > 0.05
    x = np.random.default_rng(9).standard_normal((64, 8)).astype(np.float32)  # held out
    ref = session(model.SerializeToString()).run(None, {"x": x})[0]
    got = session(ir.to_proto(pruned).SerializeToString()).run(None, {"x": x})[0]
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-2


@pytest.mark.parametrize("zero_consumers", [True, False])
def test_planted_dead_channels_still_removed_exactly_under_refit(zero_consumers, tiny_files, tmp_path):
    """Dead channels cost 0: both where nothing reads them and where they are 0 on every input."""
    model, data = tiny_files
    planted_path = tmp_path / "planted.onnx"
    planted, _ = plant_dead_channels(model, planted_path, 0.5, seed=2, zero_consumers=zero_consumers)
    _, report = onnxprune.prune(str(planted_path), ratio=0.5, criterion="l1", allocation="local", refit=True,
                                refit_selects=True, data=str(data))
    assert_removed_exactly(report, planted)
    assert all("by refit cost" in g["why"] for g in report["groups"] if g["removed"])


def test_planted_dead_heads_and_ffn_channels_removed_exactly_under_refit(transformer_export, tmp_path):
    path, data = transformer_export("llama", "torchscript17")
    planted_path = tmp_path / "planted.onnx"
    planted, _ = plant_dead_channels(path, planted_path, 0.3)
    _, report = onnxprune.prune(planted_path, ratio=0.3, criterion="l1", allocation="local", merge=False,
                                data=data, refit=True, refit_selects=True)
    assert_removed_exactly(report, planted, 1e-5)


def test_group_without_a_refit_consumer_keeps_the_criterions_choice():
    """Head dimensions: v/o ones are read by o_proj (refit: chosen by refit cost), q/k ones only by the
    scores MatMul of two activations (no layer to refit: the criterion's choice, and the reason says so)."""
    model = tiny_attention()
    _, report = onnxprune.prune(model, ratio=0.5, refit=True, attention_unit="dim", validate=False)
    groups = {g["name"]: g for g in report["groups"]}
    assert groups["v_proj"]["why"].startswith("2 of 4 by refit cost")
    assert groups["q_proj"]["why"].startswith("lowest 2 of 4 by score")
    assert "chosen by the criterion, not by refit cost: it has no consumer layer to refit" in groups["q_proj"]["why"]
    _, plain = onnxprune.prune(model, ratio=0.5, attention_unit="dim", validate=False)
    assert _removed(plain, "q_proj") == _removed(report, "q_proj")
    # where every pruned group fell back, the report does not claim a selection
    _, only_qk = onnxprune.prune(model, ratio=0.5, refit=True, attention_unit="dim", ignore=["v_proj"], validate=False)
    assert "the kept ones predict best" in report["refit"]["selection"]
    assert only_qk["refit"]["selection"].startswith("applied to no group")


def test_cli_refit_selection(cli, tmp_path):
    path, rep = tmp_path / "mlp.onnx", tmp_path / "report.json"
    onnx.save(_redundant_mlp(), path)
    res = cli(path, tmp_path / "out.onnx", "--ratio", "0.2", "--refit", "--data", _calib(tmp_path), "--report", rep)
    assert res.code == 0, res.err
    report = json.loads(rep.read_text())
    assert report["remove"][0] in ("fc1:0", "fc1:1", "fc1:5")
    (fc1,) = [g for g in report["groups"] if g["removed"]]
    assert fc1["why"].startswith("1 of 6 by refit cost (")
    assert "the kept ones predict best" in report["refit"]["selection"]
    # explicit removals are the user's choice: no selection, none claimed
    res = cli(path, tmp_path / "out2.onnx", "--remove", "fc1:3", "--refit", "--data", _calib(tmp_path),
              "--report", rep)
    assert res.code == 0, res.err
    report = json.loads(rep.read_text())
    assert report["remove"] == ["fc1:3"] and "selection" not in report["refit"]


def test_a_named_criterion_keeps_its_choice_under_refit(tiny_files):
    """--criterion given: its channels are refit (the option is not ignored); unnamed: refit cost chooses.
    refit_selects without a refit is refused."""
    model, data = tiny_files
    _, named = onnxprune.prune(model, ratio=0.5, criterion="l2", refit=True, data=str(data), validate=False)
    assert not any("by refit cost" in g["why"] for g in named["groups"] if g["removed"])
    _, default = onnxprune.prune(model, ratio=0.5, refit=True, data=str(data), validate=False)
    assert all("by refit cost" in g["why"] for g in default["groups"] if g["removed"])
    with pytest.raises(OptionError, match="needs --refit"):
        onnxprune.prune(model, ratio=0.5, refit_selects=True, validate=False)
    with pytest.raises(OptionError, match="not --remove"):
        onnxprune.prune(model, remove=["fc1:3"], refit=True, refit_selects=True, data=str(data), validate=False)
