"""LSTM / GRU / RNN hidden units as channel groups (graph/rules/recurrent.py), on small CRNNs (two convs,
the feature map read as a sequence, a recurrent stack, a Linear per step) exported by both torch exporters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch
from oracle import assert_removed_exactly, plant_dead_channels, zero_positions

import onnxprune
from onnxprune.api import load_normalized
from onnxprune.graph import analyze_groups, optable

RATIO = 0.3
TOL = 1e-5
HIDDEN = 16
_CELLS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
_OPS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


class CRNN(torch.nn.Module):
    def __init__(self, cell: str, bidirectional: bool, layers: int, state_input: bool = False) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 12, 3, padding=1)
        self.rnn = _CELLS[cell](12 * 4, HIDDEN, num_layers=layers, bidirectional=bidirectional)
        self.fc = torch.nn.Linear(HIDDEN * (2 if bidirectional else 1), 10)
        self.state_input = state_input

    def forward(self, x, *state):
        x = torch.relu(self.c2(torch.relu(self.c1(x))))  # [N, 12, 4, W]
        n, c, h, w = x.shape
        x = x.reshape(n, c * h, w).permute(2, 0, 1)  # [W, N, 12 * 4]: a sequence over the width
        y, _ = self.rnn(x, *state)
        return self.fc(y)


# (cell, bidirectional, layers, exporter); torch's dynamo exporter writes nn.RNN as plain ops, not RNN
CASES = [("lstm", True, 2, "ts"), ("lstm", True, 2, "dynamo"), ("lstm", False, 2, "ts"), ("gru", True, 2, "ts"),
         ("gru", False, 1, "dynamo"), ("rnn", True, 1, "ts")]
IDS = [f"{c}_{'bi' if b else 'uni'}{n}_{e}" for c, b, n, e in CASES]
# ... which unrolls it into MatMul/Add/Tanh per step: its units prune through those rules
ALL_CASES, ALL_IDS = [*CASES, ("rnn", True, 1, "dynamo")], [*IDS, "rnn_bi1_dynamo_unrolled"]


def _export(case, folder: Path) -> Path:
    cell, bi, layers, exporter = case
    path = folder / f"{cell}_{'bi' if bi else 'uni'}{layers}_{exporter}.onnx"
    if not path.exists():
        torch.manual_seed(0)
        model = CRNN(cell, bi, layers).eval()
        torch.onnx.export(model, (torch.randn(2, 1, 4, 10),), str(path), dynamo=exporter == "dynamo", opset_version=17,
                          **({"verbose": False} if exporter == "dynamo" else {}))
        onnx.save(onnx.load(path), path)  # the dynamo exporter writes external data: keep one file
    return path


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recurrent")
    return lambda case: _export(case, folder)


def _recurrent_nodes(model: ir.Model, cell: str) -> list[ir.Node]:
    return [n for n in model.graph if n.op_type == _OPS[cell]]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hidden_units_are_prunable_groups(case, exports):
    cell, bi, layers, _ = case
    model = load_normalized(exports(case))
    an = analyze_groups(model)
    nodes = _recurrent_nodes(model, cell)
    assert len(nodes) == layers
    for node in nodes:
        group = next(g for g in an.groups if any(p.node is node for p in g.producers))
        assert group.prunable and group.size == HIDDEN, group.details()
        roles = {(p.input_index, p.axis, p.role) for p in group.producers + group.params if p.node is node}
        # W and R rows make the units, R's columns read them back, B holds them per bias block
        assert {(1, 1, "producer"), (2, 1, "producer"), (2, 2, "consumer"), (3, 1, "param")} <= roles
        # the layer before (conv channels or the previous layer's units) is read by W's columns
        fed = [g for g in an.groups if any(p.node is node and p.input_index == 1 and p.role == "consumer"
                                           for p in g.params)]
        assert fed and all(g.prunable for g in fed)
        # the registry counts its MACs: seq * batch * dirs * gates*H * (features + H)
        w = node.inputs[1].const_value.shape
        assert optable.traits(node, an.opset).macs() == 10 * 2 * w[0] * w[1] * (w[2] + HIDDEN)


def _units_plan(an, group, count: int) -> list[int]:
    rng = np.random.default_rng(1)
    return sorted(rng.choice(group.size, count, replace=False).tolist())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_units_nothing_reads_are_removed_exactly(case, exports, tmp_path):
    """Plant units that nothing reads: zero every consumer column of them (R's columns in every unit's
    rows, the next layer's or the Linear's columns) but keep their own weights, so they still compute
    something. Removing them (gate rows, bias blocks, initial states, R columns) must not move the output."""
    cell = case[0]
    model = load_normalized(exports(case))
    an = analyze_groups(model)
    removals = []
    for node in _recurrent_nodes(model, cell):
        group = next(g for g in an.groups if any(p.node is node for p in g.producers))
        units = _units_plan(an, group, 5)
        dead_root = np.zeros(len(an.roots), dtype=bool)
        dead_root[group.classes[units]] = True
        for p in group.params:
            if p.role == "consumer":
                zero_positions(p, dead_root[an.roots[p.atoms]])
        removals.append(f"{group.name}:{','.join(map(str, units))}")
    planted = tmp_path / "planted.onnx"
    ir.save(model, planted)
    out = tmp_path / "pruned.onnx"
    _, report = onnxprune.prune(planted, remove=removals, output=out)
    removed = {g["name"]: g["removed"] for g in report["groups"] if g["removed"]}
    assert sorted(removed.values()) == [5] * len(removals)
    for name, o in report["validation"]["outputs"].items():
        assert o["max_rel"] <= TOL, f"output {name}: {o}"
    assert all(n.attributes["hidden_size"].as_int() == HIDDEN - 5 for n in _recurrent_nodes(ir.load(out), cell))


@pytest.mark.parametrize("case", ALL_CASES, ids=ALL_IDS)
def test_oracle_planted_units_are_found_and_removed_exactly(case, exports, tmp_path):
    """The suite's oracle: planted dead channels and units in every group, found by l1, removed exactly."""
    planted_path = tmp_path / "planted.onnx"
    planted, n_prunable = plant_dead_channels(exports(case), planted_path, RATIO)
    assert n_prunable >= 2 + case[2]
    _, report = onnxprune.prune(planted_path, ratio=RATIO, criterion="l1", allocation="local", merge=False)
    assert_removed_exactly(report, planted, TOL)


@pytest.mark.parametrize("case", ALL_CASES, ids=ALL_IDS)
def test_ratio_prune_runs_and_rewrites_hidden_size(case, exports, tmp_path):
    cell, bi, layers, _ = case
    out = tmp_path / "pruned.onnx"
    _, report = onnxprune.prune(exports(case), ratio=RATIO, output=out)
    onnx.checker.check_model(onnx.load(out), full_check=True)
    assert report["params_after"] < report["params_before"] and report["flops_after"] < report["flops_before"]
    pruned = ir.load(out)
    dirs = 2 if bi else 1
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    for node in _recurrent_nodes(pruned, cell):
        h = node.attributes["hidden_size"].as_int()
        assert 0 < h < HIDDEN
        assert node.inputs[1].const_value.shape[:2] == (dirs, gates * h)
        assert node.inputs[2].const_value.shape == (dirs, gates * h, h)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: np.random.default_rng(0).standard_normal((2, 1, 4, 10),
                                                                                           dtype=np.float32)})[0]
    assert y.shape == (10, 2, 10) and np.isfinite(y).all()


def test_initial_state_from_a_graph_input_freezes_the_units(tmp_path):
    torch.manual_seed(0)
    model = CRNN("gru", False, 1).eval()
    path = tmp_path / "gru_h0.onnx"
    torch.onnx.export(model, (torch.randn(2, 1, 4, 10), torch.zeros(1, 2, HIDDEN)), str(path), dynamo=False,
                      opset_version=17, input_names=["x", "h0"])
    an = onnxprune.analyze(path)
    units = next(g for g in an.groups if g.producers and g.producers[0].node.op_type == "GRU")
    assert units.frozen and any("initial state 'h0'" in r for r in units.frozen), units.details()
    # the convs before it still prune: the GRU's W columns read them
    assert any(g.prunable and g.producers[0].node.op_type == "Conv" for g in an.groups if g.producers)


def _batch_first_model(op: str, gates: int, dead: list[int]) -> onnx.ModelProto:
    """x [batch, seq, 6] -> MatMul -> ``op`` with layout 1 (Y [batch, seq, dirs, H]) -> Reshape [batch, seq,
    dirs * H] -> MatMul. Units ``dead`` are read by nothing: their R columns and the last MatMul's rows
    (one per direction) are 0, their own weights are not."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(3)
    h, dirs, c = 5, 2, 6
    w = {"P": rng.standard_normal((c, c)), "W": rng.standard_normal((dirs, gates * h, c)) * 0.5,
         "R": rng.standard_normal((dirs, gates * h, h)) * 0.5, "B": rng.standard_normal((dirs, 2 * gates * h)) * 0.5,
         "H0": rng.standard_normal((2, dirs, h)), "Q": rng.standard_normal((dirs * h, 3)),
         "shape": np.array([2, 4, dirs * h])}
    w["R"][:, :, dead] = 0
    for d in range(dirs):
        w["Q"][[d * h + u for u in dead]] = 0
    inits = [numpy_helper.from_array(v.astype(np.int64 if k == "shape" else np.float32), k) for k, v in w.items()]
    nodes = [helper.make_node("MatMul", ["x", "P"], ["p"], name="p"),
             helper.make_node(op, ["p", "W", "R", "B", "", "H0"], ["y"], name="rec", hidden_size=h, layout=1,
                              direction="bidirectional"),
             helper.make_node("Reshape", ["y", "shape"], ["y2"]),
             helper.make_node("MatMul", ["y2", "Q"], ["out"], name="q")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4, c])],
                              [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [2, 4, 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=9)


@pytest.mark.parametrize("op,gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_batch_first_layout_removes_units_exactly(op, gates, tmp_path):
    """layout 1 keeps the units on the last axis (onnxruntime does not run it: compared in ONNX's reference
    evaluator); the constant initial state [batch, dirs, H] is sliced with them."""
    from onnx.reference import ReferenceEvaluator

    path, out = tmp_path / "m.onnx", tmp_path / "pruned.onnx"
    onnx.save(_batch_first_model(op, gates, [1, 3]), path)
    onnxprune.prune(path, remove=["rec:1,3"], validate=False, output=out)
    pruned = onnx.load(out)
    onnx.checker.check_model(pruned, full_check=True)
    rec = next(n for n in pruned.graph.node if n.op_type == op)
    assert next(a.i for a in rec.attribute if a.name == "hidden_size") == 3
    x = np.random.default_rng(0).standard_normal((2, 4, 6)).astype(np.float32)
    want = ReferenceEvaluator(onnx.load(path)).run(None, {"x": x})[0]
    got = ReferenceEvaluator(pruned).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
