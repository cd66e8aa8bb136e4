"""THE op table: (domain, op type, opset range) -> the rule that maps its channel axes.

An op not listed here freezes every channel group that reaches it; nothing is assumed element-wise.
Ranges are inclusive; ``None`` means open-ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import onnx_ir as ir

from onnxprune.graph import contrib_shapes as cs
from onnxprune.graph.rules import (
    attention,
    contrib,
    conv,
    elementwise,
    layout,
    linear,
    norm,
    pool,
    recurrent,
    reduce,
    shapes,
)
from onnxprune.graph.rules import quant as quantized
from onnxprune.graph.traits import SPECS, UNARY, UNKNOWN, Spec, Traits


@dataclass(frozen=True)
class Entry:
    """The channel rule of an op over an opset range, and what the op computes (``graph.traits``)."""

    op: str
    rule: Callable
    since: int = 1
    until: int | None = None
    domain: str = ""
    traits: Spec | None = None  # None: the op's spec in ``traits.SPECS`` (UNKNOWN if it has none)

    def __post_init__(self) -> None:
        if self.traits is None:
            object.__setattr__(self, "traits", SPECS.get(self.op, UNKNOWN) if not self.domain else UNKNOWN)


_UNARY = [
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu",
    "Gelu", "Erf", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Shrink", "Identity", "Dropout",
    "Cast", "CastLike", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round",
    "Sign", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
    "Not", "IsNaN", "IsInf",
]
_BROADCAST = [
    "Add", "Sub", "Mul", "Div", "Pow", "Sum", "Max", "Min", "Mean", "PRelu", "Where", "Mod",
    "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Xor",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor",
]
MS = "com.microsoft"
_POOL = ["MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"]
_REDUCE = [
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
]

TABLE: list[Entry] = [
    *(Entry(op, elementwise.passthrough) for op in _UNARY),
    *(Entry(op, elementwise.broadcast) for op in _BROADCAST),
    Entry("Conv", conv.conv),
    Entry("ConvTranspose", conv.conv_transpose),
    Entry("Gemm", linear.gemm),
    Entry("MatMul", linear.matmul),
    Entry("BatchNormalization", norm.per_channel_norm),
    Entry("InstanceNormalization", norm.per_channel_norm),
    Entry("LayerNormalization", norm.layer_norm, since=17),
    Entry("Softmax", norm.softmax),
    Entry("LogSoftmax", norm.softmax),
    Entry("Hardmax", norm.softmax),
    Entry("LpNormalization", norm.lp_norm),
    Entry("MeanVarianceNormalization", norm.mean_variance_norm),
    *(Entry(op, pool.pool) for op in _POOL),
    Entry("Pad", pool.pad),
    Entry("Resize", pool.resize, since=10),
    Entry("Upsample", pool.resize, until=9),
    Entry("Concat", layout.concat),
    Entry("Split", layout.split),
    Entry("Slice", layout.slice_),
    Entry("Gather", layout.gather),
    Entry("Transpose", layout.transpose),
    Entry("Squeeze", layout.squeeze),
    Entry("Unsqueeze", layout.unsqueeze),
    Entry("Flatten", layout.flatten),
    Entry("Reshape", layout.reshape, since=5),
    Entry("Expand", layout.expand, since=8),
    Entry("Tile", layout.tile, since=6),
    Entry("Shape", shapes.shape_of),
    Entry("Size", shapes.shape_of),
    *(Entry(op, reduce.reduce) for op in _REDUCE),
    Entry("ArgMax", reduce.arg_reduce),
    Entry("ArgMin", reduce.arg_reduce),
    # hidden units as channels; layout (opset 14+) keeps them on the last axis
    *(Entry(op, recurrent.recurrent, since=7, traits=Spec(macs=recurrent.recurrent_macs)) for op in ("LSTM", "GRU", "RNN")),
    # quantized models (QDQ format: DequantizeLinear of stored integers feeds weights; see rules/quant.py)
    Entry("QuantizeLinear", quantized.quantize_linear, since=10,
          traits=Spec(UNARY, zero_ok=quantized.quantize_keeps_zero, channel_local=True)),
    Entry("DequantizeLinear", quantized.quantize_linear, since=10,
          traits=Spec(UNARY, zero_ok=quantized.dequantize_keeps_zero, channel_local=True, stored_weight=0)),
    Entry("QLinearConv", quantized.qlinear_conv, since=10, traits=Spec(stored_weight=3)),
    Entry("QLinearMatMul", quantized.qlinear_matmul, since=10, traits=Spec(stored_weight=3)),
    Entry("DynamicQuantizeLinear", quantized.dynamic_quantize, since=11),
    Entry("ConvInteger", quantized.conv_integer, since=10),
    Entry("MatMulInteger", quantized.matmul_integer, since=10),
    Entry("Attention", attention.onnx_attention, since=23, traits=Spec(macs=cs.onnx_attention_macs)),
    # onnxruntime's fused transformer ops (its transformer optimizer writes them); ONNX inference does not
    # know their shapes, so the registry states them
    Entry("Attention", attention.ms_attention, domain=MS, traits=Spec(shapes=cs.ms_attention,
                                                                      macs=cs.ms_attention_macs)),
    Entry("MultiHeadAttention", attention.ms_multi_head_attention, domain=MS,
          traits=Spec(shapes=cs.ms_multi_head_attention, macs=cs.ms_multi_head_attention_macs)),
    Entry("GroupQueryAttention", attention.ms_group_query_attention, domain=MS,
          traits=Spec(shapes=cs.ms_group_query_attention, macs=cs.ms_group_query_attention_macs)),
    Entry("RotaryEmbedding", attention.ms_rotary_embedding, domain=MS, traits=Spec(shapes=cs.same_as_input(0))),
    *(Entry(op, contrib.bias_gelu, domain=MS, traits=Spec(shapes=cs.same_as_input(0)))
      for op in ("BiasGelu", "FastGelu", "QuickGelu")),
    # com.microsoft Gelu is the erf Gelu of the default domain
    Entry("Gelu", contrib.bias_gelu, domain=MS, traits=replace(SPECS["Gelu"], shapes=cs.same_as_input(0))),
    *(Entry(op, contrib.skip_layer_norm, domain=MS, traits=Spec(shapes=cs.same_as_input(0, 3)))
      for op in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization")),
    Entry("EmbedLayerNormalization", contrib.embed_layer_norm, domain=MS, traits=Spec(shapes=cs.embed_layer_norm)),
]

_INDEX: dict[tuple[str, str], list[Entry]] = {}
for _e in TABLE:
    _INDEX.setdefault((_e.domain, _e.op), []).append(_e)


def entry(domain: str, op: str, opset: int) -> Entry | None:
    """The registry entry of this op at this opset, or None."""
    domain = "" if domain == "ai.onnx" else domain
    for e in _INDEX.get((domain, op), ()):
        if e.since <= opset and (e.until is None or opset <= e.until):
            return e
    return None


def lookup(domain: str, op: str, opset: int) -> Callable | None:
    """The rule for this op at this opset, or None (the caller freezes what reaches the node)."""
    e = entry(domain, op, opset)
    return e.rule if e is not None else None


def node_opset(node: ir.Node, model_opset: int) -> int:
    """The opset a node is read at: the model's default-domain opset (custom domains: 1)."""
    return model_opset if node.domain in ("", "ai.onnx") else 1


def traits(node: ir.Node, opset: int) -> Traits:
    """What ``node`` computes, as far as the registry knows (conservative answers for unknown ops)."""
    e = entry(node.domain, node.op_type, node_opset(node, opset))
    return Traits(node, e.traits if e is not None else UNKNOWN)
