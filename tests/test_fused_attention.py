"""Fused attention operators: whole heads (and KV groups) removed exactly, head counts rewritten.

(a) A random-weight BERT encoder exported by TorchScript and fused by onnxruntime's transformer optimizer
(com.microsoft Attention or MultiHeadAttention, SkipLayerNormalization, EmbedLayerNormalization,
BiasGelu or FastGelu). (b) Graphs built with onnx.helper around MultiHeadAttention, GroupQueryAttention
and ai.onnx Attention (opset 23), with q/k/v/o projections as MatMul (+ Add). Planted dead heads
(zeroed q, k, v projections and o-projection rows) must be removed with outputs within 1e-5 of
onnxruntime on the planted model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from oracle import plant_dead_channels

import onnxprune
from onnxprune.api import load_normalized
from onnxprune.graph import analyze_groups

TOL = 1e-5
B, S, E = 2, 6, 32  # batch, sequence, model width of the helper-built graphs
BERT_SHAPES = {"input_ids": (2, 8), "attention_mask": (2, 8)}


# -- (a) an onnxruntime-fused BERT encoder -------------------------------------------------------------
def export_bert(path: Path, dynamo: bool = False) -> Path:
    """A 2-layer, 4-head, width-64 BertModel with random weights: (input_ids, attention_mask) ->
    last_hidden_state. TorchScript at opset 17 with eager attention (which onnxruntime's optimizer fuses),
    or the dynamo exporter at opset 23, which writes SDPA as ai.onnx Attention."""
    import torch
    import transformer_archs

    torch.manual_seed(0)
    encoder = transformer_archs.bert_encoder(attention="sdpa" if dynamo else "eager", std=0.2)
    ids = torch.randint(0, 100, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.int64)
    names = {"input_names": ["input_ids", "attention_mask"], "output_names": ["last_hidden_state"]}
    if dynamo:
        torch.onnx.export(encoder, (ids, mask), str(path), dynamo=True, opset_version=23, verbose=False, **names)
        return path
    dyn = {0: "batch", 1: "seq"}
    torch.onnx.export(encoder, (ids, mask), str(path), dynamo=False, opset_version=17,
                      dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "last_hidden_state": dyn}, **names)
    return path


FUSIONS = {  # variant -> FusionOptions settings
    "attention": {},
    "mha_fastgelu": {"use_multi_head_attention": True, "enable_gelu_approximation": True},
}


@pytest.fixture(scope="module")
def fused_bert(tmp_path_factory) -> dict[str, Path]:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    d = tmp_path_factory.mktemp("fused_bert")
    raw = export_bert(d / "bert.onnx")
    out = {}
    for name, settings in FUSIONS.items():
        options = FusionOptions("bert")
        for k, v in settings.items():
            setattr(options, k, v)
        model = optimize_model(str(raw), model_type="bert", num_heads=4, hidden_size=64, optimization_options=options)
        out[name] = d / f"bert_{name}.onnx"
        model.save_model_to_file(str(out[name]))
    return out


def _ops(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in onnx.load(path).graph.node:
        if n.domain == "com.microsoft":
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


def _attr(node: onnx.NodeProto, name: str):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def _nodes(model: onnx.ModelProto, op: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == op]


def _prune_planted(path: Path, tmp: Path, ratio: float, input_shapes=None,
                   attention_unit: str = "head") -> tuple[dict, onnx.ModelProto, dict]:
    """Plant dead channels, prune them with l1: exactly the planted ones go and the outputs stay within
    TOL (onnxruntime, planted vs pruned). Returns (planted per group, pruned model, report)."""
    planted_path = tmp / f"{path.stem}_planted.onnx"
    planted, n_prunable = plant_dead_channels(path, planted_path, ratio, attention_unit=attention_unit)
    assert n_prunable and planted
    out = tmp / f"{path.stem}_pruned.onnx"
    _, report = onnxprune.prune(planted_path, ratio=ratio, criterion="l1", allocation="local", merge=False,
                                input_shapes=input_shapes, output=out, attention_unit=attention_unit)
    removed = {g["name"]: g["removed"] for g in report["groups"] if g["removed"]}
    assert removed == planted
    outputs = report["validation"]["outputs"]
    assert outputs
    for name, o in outputs.items():
        assert o["max_abs"] <= TOL, (name, o)
    return planted, onnx.load(out), report


@pytest.mark.parametrize("variant", list(FUSIONS))
def test_fused_bert_heads_and_ffn_prunable(fused_bert, variant):
    path = fused_bert[variant]
    ops = _ops(path)
    attention = "Attention" if variant == "attention" else "MultiHeadAttention"
    gelu = "BiasGelu" if variant == "attention" else "FastGelu"
    assert ops.get(attention) == 2 and ops.get(gelu) == 2 and ops.get("SkipLayerNormalization") == 4
    an = analyze_groups(load_normalized(path))
    sizes = sorted(g.size for g in an.prunable_groups)
    assert sizes == [4, 4, 128, 128]  # heads of each layer, FFN widths
    frozen = [g for g in an.groups if g.frozen]
    assert frozen and all("SkipLayerNormalization" in g.frozen[0] for g in frozen)


@pytest.mark.parametrize("variant", list(FUSIONS))
def test_fused_bert_planted_heads_removed_exactly(fused_bert, variant, tmp_path):
    planted, pruned, _ = _prune_planted(fused_bert[variant], tmp_path, 0.5, BERT_SHAPES)
    op = "Attention" if variant == "attention" else "MultiHeadAttention"
    heads = [_attr(n, "num_heads") for n in _nodes(pruned, op)]
    assert heads == [2, 2]  # 2 of 4 planted dead in each layer
    assert sorted(planted.values()) == [2, 2, 64, 64]


@pytest.mark.parametrize("variant", list(FUSIONS))
def test_fused_bert_ratio_runs(fused_bert, variant, tmp_path):
    out = tmp_path / "pruned.onnx"
    _, report = onnxprune.prune(fused_bert[variant], ratio=0.3, criterion="l1", allocation="local",
                                input_shapes=BERT_SHAPES, output=out)
    pruned = onnx.load(out)
    onnx.checker.check_model(pruned, full_check=True)
    op = "Attention" if variant == "attention" else "MultiHeadAttention"
    assert [_attr(n, "num_heads") for n in _nodes(pruned, op)] == [3, 3]
    assert report["validation"]["outputs"]["last_hidden_state"]["cosine"] > 0.5  # ran, and is not garbage
    # MACs are counted through the fused ops: per layer q|k|v projection, q.k and p.v, o-projection, FFN
    b, s, e, f = *BERT_SHAPES["input_ids"], 64, 128
    assert report["flops_before"] == 2 * (b * s * e * 3 * e + b * s * s * 2 * e + b * s * e * e + 2 * b * s * e * f)
    assert report["flops_after"] < report["flops_before"]


def test_dynamo_opset23_bert_attention_prunes_exactly(tmp_path):
    """The dynamo exporter at opset 23 writes SDPA as ai.onnx Attention on 4-D [B, heads, S, D] operands."""
    path = export_bert(tmp_path / "bert23.onnx", dynamo=True)
    assert len(_nodes(onnx.load(path), "Attention")) == 2
    planted, _, _ = _prune_planted(path, tmp_path, 0.5, BERT_SHAPES)
    assert len(planted) == 4  # per layer: the FFN width and whole heads (the Reshape before Attention splits heads)
    head_groups = [g for g in onnxprune.analyze(path).prunable_groups if g.size == 4]
    assert len(head_groups) == 2, [g.details() for g in onnxprune.analyze(path).prunable_groups]
    out = tmp_path / "ratio.onnx"
    _, report = onnxprune.prune(path, ratio=0.3, criterion="l1", input_shapes=BERT_SHAPES, output=out)
    onnx.checker.check_model(onnx.load(out), full_check=True)
    assert report["validation"]["outputs"]["last_hidden_state"]["cosine"] > 0.5


# -- (b) helper-built graphs --------------------------------------------------------------------------
def _model(nodes, inits, opset: int, extra_outputs=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S, E])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [B, S, E]), *extra_outputs],
                              inits)
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    return model


class _Weights:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.inits: list[onnx.TensorProto] = []

    def __call__(self, name: str, *shape, scale: float = 0.3) -> str:
        self.inits.append(numpy_helper.from_array((self.rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array, name))
        return name


def _projections(w: _Weights, widths: dict[str, int]) -> list[onnx.NodeProto]:
    """x -> MatMul -> Add(bias) per named projection."""
    nodes = []
    for name, width in widths.items():
        nodes.append(helper.make_node("MatMul", ["x", w(f"w{name}", E, width)], [f"{name}_mm"]))
        nodes.append(helper.make_node("Add", [f"{name}_mm", w(f"b{name}", width, scale=0.1)], [name]))
    return nodes


def _o_projection(w: _Weights, src: str, width: int) -> list[onnx.NodeProto]:
    return [helper.make_node("MatMul", [src, w("wo", width, E)], ["o_mm"]),
            helper.make_node("Add", ["o_mm", w("bo", E, scale=0.1)], ["y"])]


def mha_model(runtime_bias: bool = False, rotary: bool = False) -> onnx.ModelProto:
    """MultiHeadAttention, 4 heads of 8, packed q|k|v bias, a constant per-head attention_bias; with
    ``rotary`` q and k pass through RotaryEmbedding first (num_heads on q, head size from the cache on k)."""
    w = _Weights(1)
    nodes = [helper.make_node("MatMul", ["x", w(f"w{n}", E, E)], [n]) for n in "qkv"]
    if rotary:
        pos = w.const("pos", np.tile(np.arange(S, dtype=np.int64), (B, 1)))
        cos, sin = w("cos", 16, 4), w("sin", 16, 4)
        for name, attrs in (("q", {"num_heads": 4}), ("k", {})):
            nodes.append(helper.make_node("RotaryEmbedding", [f"{name}", pos, cos, sin], [f"{name}_rot"],
                                          domain="com.microsoft", **attrs))
        nodes.append(helper.make_node("Identity", ["v"], ["v_rot"]))
    bias = "ab_rt" if runtime_bias else w("ab", 1, 4, S, S)
    if runtime_bias:  # a per-head bias computed at run time (from x): the heads cannot be cut
        nodes.append(helper.make_node("ReduceMean", ["x"], ["ab_m"], axes=[1, 2]))
        nodes.append(helper.make_node("Unsqueeze", ["ab_m", w.const("ab_ax", np.array([3], np.int64))], ["ab_u"]))
        nodes.append(helper.make_node("Mul", ["ab_u", w("ab", 1, 4, S, S)], ["ab_rt"]))
    qkv = ["q_rot", "k_rot", "v_rot"] if rotary else ["q", "k", "v"]
    nodes.append(helper.make_node("MultiHeadAttention", [*qkv, w("bqkv", 3 * E, scale=0.1), "", bias],
                                  ["a"], domain="com.microsoft", num_heads=4))
    return _model(nodes + _o_projection(w, "a", E), w.inits, 17)


def gqa_model(packed: bool, past: bool = False, kvn: int = 2) -> onnx.ModelProto:
    """GroupQueryAttention, 2 * kvn query heads in kvn KV groups, head size 16, rotary embeddings; separate
    q/k/v projections (with a head_sink, smooth softmax) or one packed q|k|v projection."""
    w = _Weights(2)
    n, d = 2 * kvn, 16
    if packed:
        nodes = _projections(w, {"qkv": (n + 2 * kvn) * d})
        qkv = ["qkv", "", ""]
    else:
        nodes = _projections(w, {"q": n * d, "k": kvn * d, "v": kvn * d})
        qkv = ["q", "k", "v"]
    past_inputs = [w("past_k", B, kvn, 3, d), w("past_v", B, kvn, 3, d)] if past else ["", ""]
    total = S + 3 if past else S
    inputs = [*qkv, *past_inputs, w.const("seqlens", np.full(B, total - 1, np.int32)),
              w.const("total", np.array(total, np.int32)), w("cos", 16, d // 2), w("sin", 16, d // 2)]
    attrs = {"num_heads": n, "kv_num_heads": kvn, "do_rotary": 1}
    if not packed:
        inputs += ["", "", w("sink", n)]
        attrs["smooth_softmax"] = 1
    nodes.append(helper.make_node("GroupQueryAttention", inputs, ["a"], domain="com.microsoft", **attrs))
    return _model(nodes + _o_projection(w, "a", n * d), w.inits, 17)


def onnx_attention_model(four_d: bool, kvn: int = 2) -> onnx.ModelProto:
    """ai.onnx Attention (opset 23), 2 * kvn query heads, kvn KV heads, head size 8. 3-D inputs with
    q_num_heads/kv_num_heads and a constant per-head mask; or 4-D [B, heads, S, D] made by Reshape +
    Transpose."""
    w = _Weights(3)
    n, d = 2 * kvn, 8
    nodes = _projections(w, {"q": n * d, "k": kvn * d, "v": kvn * d})
    if not four_d:
        nodes.append(helper.make_node("Attention", ["q", "k", "v", w("mask", 1, n, S, S)], ["a"],
                                      q_num_heads=n, kv_num_heads=kvn))
        return _model(nodes + _o_projection(w, "a", n * d), w.inits, 23)
    for name, heads in (("q", n), ("k", kvn), ("v", kvn)):
        shape = w.const(f"{name}_shape", np.array([0, 0, heads, d], np.int64))
        nodes.append(helper.make_node("Reshape", [name, shape], [f"{name}_split"]))
        nodes.append(helper.make_node("Transpose", [f"{name}_split"], [f"{name}4"], perm=[0, 2, 1, 3]))
    nodes.append(helper.make_node("Attention", ["q4", "k4", "v4"], ["a4"], is_causal=1))
    nodes.append(helper.make_node("Transpose", ["a4"], ["a_t"], perm=[0, 2, 1, 3]))
    nodes.append(helper.make_node("Reshape", ["a_t", w.const("a_shape", np.array([0, 0, n * d], np.int64))], ["a"]))
    return _model(nodes + _o_projection(w, "a", n * d), w.inits, 23)


def onnx_attention_head_axis_model() -> onnx.ModelProto:
    """ai.onnx Attention with 4-D operands whose axis 1 holds one channel per head: x [B, S, D, E] times a
    per-head weight [E, heads] moved to axis 1 ([B, heads, S, D]); 4 query heads, 2 KV heads, a constant
    per-head mask; the output moves the heads back last and an o-projection reads them."""
    w = _Weights(5)
    n, kvn, d = 4, 2, 8
    x4 = [helper.make_node("Reshape", ["x", w.const("x_shape", np.array([B, S, d, E // d], np.int64))], ["x4"])]
    nodes = x4
    for name, heads in (("q", n), ("k", kvn), ("v", kvn)):
        nodes.append(helper.make_node("MatMul", ["x4", w(f"w{name}", E // d, heads)], [f"{name}_mm"]))
        nodes.append(helper.make_node("Transpose", [f"{name}_mm"], [f"{name}4"], perm=[0, 3, 1, 2]))
    nodes.append(helper.make_node("Attention", ["q4", "k4", "v4", w("mask", 1, n, S, S)], ["a4"]))
    nodes.append(helper.make_node("Transpose", ["a4"], ["a_t"], perm=[0, 2, 3, 1]))  # [B, S, D, heads]
    nodes.append(helper.make_node("MatMul", ["a_t", w("wo", n, E // d)], ["o4"]))
    nodes.append(helper.make_node("Reshape", ["o4", w.const("y_shape", np.array([B, S, E], np.int64))], ["y"]))
    return _model(nodes, w.inits, 23)


def ms_attention_model(**attrs) -> onnx.ModelProto:
    """com.microsoft Attention with unequal widths (qkv_hidden_sizes 32, 32, 48: 4 heads, q/k head size 8,
    v head size 12) and a constant per-head attention_bias; ``attrs`` are added to the node."""
    w = _Weights(4)
    sizes = [32, 32, 48]
    past = attrs.pop("past", False)
    inputs = ["x", w("wqkv", E, sum(sizes)), w("bqkv", sum(sizes), scale=0.1), "",
              w("past", 2, B, 4, 3, 8) if past else "", w("ab", 1, 4, S, S)]
    node = helper.make_node("Attention", inputs, ["a"], domain="com.microsoft", num_heads=4,
                            qkv_hidden_sizes=sizes, **attrs)
    return _model([node, *_o_projection(w, "a", sizes[2])], w.inits, 17)


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, path)
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # onnxruntime accepts the graph
    return path


def test_ms_attention_unequal_widths_planted_heads(tmp_path):
    planted, pruned, _ = _prune_planted(_save(ms_attention_model(unidirectional=1), tmp_path / "att.onnx"),
                                        tmp_path, 0.5)
    (node,) = _nodes(pruned, "Attention")
    assert _attr(node, "num_heads") == 2 and _attr(node, "qkv_hidden_sizes") == [16, 16, 24]
    ab = next(i for i in pruned.graph.initializer if i.name == node.input[5])
    assert list(ab.dims) == [1, 2, S, S] and list(planted.values()) == [2]


@pytest.mark.parametrize(("attrs", "reason"), [({"do_rotary": 1}, "rotary"), ({"past": True}, "past key/value cache")])
def test_ms_attention_unproven_configurations_freeze(tmp_path, attrs, reason):
    an = analyze_groups(load_normalized(_save(ms_attention_model(**attrs), tmp_path / "att.onnx")))
    heads = [g for g in an.groups if g.name == "Attention" or g.size == 4]
    assert heads and all(any(reason in r for r in g.frozen) for g in heads)
    assert not an.prunable_groups


@pytest.mark.parametrize("rotary", [False, True], ids=["plain", "rotary"])
def test_mha_planted_heads(tmp_path, rotary):
    planted, pruned, _ = _prune_planted(_save(mha_model(rotary=rotary), tmp_path / "mha.onnx"), tmp_path, 0.5)
    (node,) = _nodes(pruned, "MultiHeadAttention")
    assert _attr(node, "num_heads") == 2 and list(planted.values()) == [2]
    assert [_attr(n, "num_heads") for n in _nodes(pruned, "RotaryEmbedding")] == ([2, None] if rotary else [])
    ab = next(i for i in pruned.graph.initializer if i.name == node.input[5])
    assert list(ab.dims) == [1, 2, S, S]  # the per-head attention_bias lost the removed heads' slices


def test_mha_runtime_per_head_bias_freezes(tmp_path):
    an = analyze_groups(load_normalized(_save(mha_model(runtime_bias=True), tmp_path / "m.onnx")))
    heads = [g for g in an.groups if g.size == 4]
    assert heads and all(any("computed at run time" in r for r in g.frozen) for g in heads)


@pytest.mark.parametrize("packed", [False, True], ids=["separate", "packed"])
def test_gqa_planted_kv_groups(tmp_path, packed):
    planted, pruned, _ = _prune_planted(_save(gqa_model(packed), tmp_path / "gqa.onnx"), tmp_path, 0.5)
    (node,) = _nodes(pruned, "GroupQueryAttention")
    assert (_attr(node, "num_heads"), _attr(node, "kv_num_heads")) == (2, 1)
    assert list(planted.values()) == [1]  # one KV group of two (with its two query heads)


def test_gqa_with_past_freezes(tmp_path):
    an = analyze_groups(load_normalized(_save(gqa_model(False, past=True), tmp_path / "g.onnx")))
    assert not an.prunable_groups
    assert any("past key cache" in r for g in an.groups for r in g.frozen)


def test_onnx_attention_3d_planted_heads(tmp_path):
    planted, pruned, _ = _prune_planted(_save(onnx_attention_model(False), tmp_path / "a3.onnx"), tmp_path, 0.5)
    (node,) = _nodes(pruned, "Attention")
    assert (_attr(node, "q_num_heads"), _attr(node, "kv_num_heads")) == (2, 1)
    mask = next(i for i in pruned.graph.initializer if i.name == node.input[3])
    assert list(mask.dims) == [1, 2, S, S]


def test_onnx_attention_4d_planted_heads_on_axis_1(tmp_path):
    planted, pruned, _ = _prune_planted(_save(onnx_attention_head_axis_model(), tmp_path / "ah.onnx"), tmp_path, 0.5)
    assert list(planted.values()) == [1]  # one KV head of two, with its two query heads
    (node,) = _nodes(pruned, "Attention")
    shapes = {i.name: list(i.dims) for i in pruned.graph.initializer}
    assert shapes[node.input[3]] == [1, 2, S, S]  # the mask lost the removed query heads
    assert [shapes[n] for n in ("wq", "wk", "wv", "wo")] == [[4, 2], [4, 1], [4, 1], [2, 4]]


def test_onnx_attention_4d_planted_head_dims(tmp_path):
    """With --attention-unit dim the head size is pruned instead of whole heads."""
    planted, pruned, _ = _prune_planted(_save(onnx_attention_model(True), tmp_path / "a4.onnx"), tmp_path, 0.5,
                                        attention_unit="dim")
    (node,) = _nodes(pruned, "Attention")
    assert _attr(node, "scale") == pytest.approx(1 / np.sqrt(8))  # the original head size's scale, stated
    assert sorted(planted.values()) == [4, 4]  # q.k and v head dimensions, 4 of 8 each


@pytest.mark.parametrize(("builder", "op", "heads"), [
    (mha_model, "MultiHeadAttention", {"num_heads": 3}),
    (ms_attention_model, "Attention", {"num_heads": 3}),
    (lambda: gqa_model(True, kvn=4), "GroupQueryAttention", {"num_heads": 6, "kv_num_heads": 3}),
    (lambda: onnx_attention_model(False, kvn=4), "Attention", {"q_num_heads": 6, "kv_num_heads": 3}),
], ids=["mha", "ms_attention", "gqa", "onnx_attention"])
def test_ratio_prunes_heads_and_runs(tmp_path, builder, op, heads):
    """Default criterion and allocation at ratio 0.3: a head (KV group) of each attention goes."""
    out = tmp_path / "pruned.onnx"
    _, report = onnxprune.prune(_save(builder(), tmp_path / "m.onnx"), ratio=0.3, output=out)
    pruned = onnx.load(out)
    onnx.checker.check_model(pruned, full_check=True)
    (node,) = _nodes(pruned, op)
    assert {k: _attr(node, k) for k in heads} == heads
    assert report["validation"]["outputs"]["y"]["cosine"] > 0.5
    assert report["flops_after"] < report["flops_before"]


def test_onnx_attention_4d_head_split_gives_whole_heads(tmp_path):
    """By default the Reshape that splits heads in front of a 4-D ai.onnx Attention makes whole heads the unit:
    planted dead heads go, and the projections lose whole heads' rows and columns."""
    planted, pruned, _ = _prune_planted(_save(onnx_attention_model(True), tmp_path / "a4h.onnx"), tmp_path, 0.5)
    assert planted and all(n >= 1 for n in planted.values())
    an = analyze_groups(load_normalized(_save(onnx_attention_model(True), tmp_path / "a4h2.onnx")))
    # one group of 2 KV heads (each with its query heads); in dim mode: q.k and v dims, 8 each
    assert [g.size for g in an.prunable_groups] == [2]
    assert sorted(g.size for g in analyze_groups(load_normalized(tmp_path / "a4h2.onnx"), "dim").prunable_groups) == [8, 8]
