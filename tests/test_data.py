"""Synthetic inputs read what the graph allows: embedding indices within the table, attention masks all
ones, sequences no longer than the position table; so a BERT-style model validates by default."""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import pytest
from conftest import run_subprocess
from onnx import TensorProto, helper, numpy_helper

from onnxprune.data import synthetic_arrays
from onnxprune.graph.inputs import ALL_ONES, integer_input_ranges, position_table_rows
from onnxprune.runtime import graph_input_hints, session, synthetic_inputs


def _graph(nodes, inputs: dict, inits: dict, outputs: list[str]) -> ir.Model:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, t, ["B", "S"]) for n, t in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _table(rows: int) -> np.ndarray:
    return np.zeros((rows, 4), np.float32)


def test_an_index_into_embedding_tables_is_sampled_below_the_smallest_table():
    nodes = [helper.make_node("Gather", ["words", "ids"], ["e1"]),
             helper.make_node("Cast", ["ids"], ["ids32"], to=TensorProto.INT32),  # a cast keeps the values
             helper.make_node("Gather", ["small", "ids32"], ["e2"])]
    m = _graph(nodes, {"ids": TensorProto.INT64}, {"words": _table(50), "small": _table(7)}, ["e1", "e2"])
    assert integer_input_ranges(m) == {"ids": (0, 7)}


def test_gathers_that_do_not_index_rows_of_a_constant_table_say_nothing():
    nodes = [helper.make_node("Gather", ["words", "ids"], ["e1"], axis=1),  # columns, not rows
             helper.make_node("Add", ["ids", "ids"], ["twice"]),  # changes the values: not followed
             helper.make_node("Gather", ["words", "twice"], ["e2"])]
    m = _graph(nodes, {"ids": TensorProto.INT64}, {"words": _table(50)}, ["e1", "e2"])
    assert integer_input_ranges(m) == {}


@pytest.mark.parametrize("how", ["float arithmetic", "bool logic", "fused attention"])
def test_an_attention_mask_is_all_ones(how):
    if how == "float arithmetic":  # (1 - float(mask)) * -10000, through an Unsqueeze
        nodes = [helper.make_node("Unsqueeze", ["mask", "axes"], ["m4"]),
                 helper.make_node("Cast", ["m4"], ["mf"], to=TensorProto.FLOAT),
                 helper.make_node("Sub", ["one", "mf"], ["inv"]),
                 helper.make_node("Mul", ["inv", "big"], ["y"])]
        inits = {"axes": np.array([1, 2], np.int64), "one": np.ones(1, np.float32),
                 "big": np.full(1, -1e4, np.float32)}
    elif how == "bool logic":  # bool(mask) & causal
        nodes = [helper.make_node("Cast", ["mask"], ["mb"], to=TensorProto.BOOL),
                 helper.make_node("And", ["mb", "causal"], ["both"]),
                 helper.make_node("Cast", ["both"], ["y"], to=TensorProto.FLOAT)]
        inits = {"causal": np.ones((1, 1), bool)}
    else:  # onnxruntime's fused Attention reads it as mask_index (input 3)
        nodes = [helper.make_node("Attention", ["h", "w", "b", "mask"], ["y"], domain="com.microsoft", num_heads=1)]
        inits = {"h": np.zeros((1, 1, 4), np.float32), "w": np.zeros((4, 12), np.float32),
                 "b": np.zeros(12, np.float32)}
    m = _graph(nodes, {"mask": TensorProto.INT64}, inits, ["y"])
    assert integer_input_ranges(m) == {"mask": ALL_ONES}


def test_a_position_table_bounds_the_sequence():
    """positions = Slice(arange buffer, 0, Shape(ids)[1]) -> Gather(position table): computed from a shape,
    not from the input's values; a Gather indexed by the input's values is not a position table."""
    nodes = [helper.make_node("Shape", ["ids"], ["shape"]),
             helper.make_node("Gather", ["shape", "one"], ["seq"]),
             helper.make_node("Slice", ["buffer", "zero", "seq", "one"], ["pos"]),
             helper.make_node("Gather", ["positions", "pos"], ["p"]),
             helper.make_node("Gather", ["words", "ids"], ["w"])]
    inits = {"buffer": np.arange(24, dtype=np.int64), "zero": np.zeros(1, np.int64), "one": np.ones(1, np.int64),
             "positions": _table(24), "words": _table(9)}
    m = _graph(nodes, {"ids": TensorProto.INT64}, inits, ["p", "w"])
    assert position_table_rows(m) == 24
    assert integer_input_ranges(m) == {"ids": (0, 9)}


def test_synthetic_arrays_use_the_ranges_given_and_the_old_default_elsewhere():
    feeds = synthetic_arrays({"ids": (["N", "S"], np.int64), "mask": (["N", "S"], np.int64),
                              "other": (["N", "S"], np.int32)}, batch=64,
                             ranges={"ids": (0, 3), "mask": ALL_ONES}, free=5)
    assert feeds["ids"].shape == (64, 5) and set(np.unique(feeds["ids"])) == {0, 1, 2}
    assert (feeds["mask"] == 1).all()
    assert feeds["other"].min() >= 0 and feeds["other"].max() == 9  # [0, 10), as before


def test_bert_inputs_come_from_its_graph(tiny_bert_file):
    sess = session(tiny_bert_file)
    ranges, positions = graph_input_hints(sess)
    assert ranges == {"input_ids": (0, 100), "attention_mask": ALL_ONES, "token_type_ids": (0, 2)}
    assert positions == 32
    feeds = synthetic_inputs(sess, batch=4)
    assert feeds["input_ids"].shape == (4, 32) and feeds["input_ids"].max() > 10
    assert set(np.unique(feeds["token_type_ids"])) == {0, 1}
    sess.run(None, feeds)  # in range: the original runs


def test_bert_prunes_and_validates_by_default_without_onnxruntime_noise(tiny_bert_file, tmp_path):
    out, rep = tmp_path / "out.onnx", tmp_path / "r.json"
    res = run_subprocess(tiny_bert_file, out, "--ratio", "0.3", "--report", rep)
    assert res.code == 0, res.err
    assert res.err.strip() == "", res.err  # no onnxruntime log lines, no warnings
    report = json.loads(rep.read_text())
    assert report["passed"] is not False and report["channels_removed"] > 0
    v = report["validation"]
    assert v["input_source"].startswith("synthetic") and v["inputs"]["input_ids"]["shape"] == [8, 32]
    assert v["outputs"]["last_hidden_state"]["cosine"] > 0.9
