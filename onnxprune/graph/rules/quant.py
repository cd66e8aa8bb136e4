"""Quantized graphs: QuantizeLinear/DequantizeLinear (QDQ format), QOperator and dynamic-quantized ops.

QDQ weights: a Conv/Gemm/MatMul whose weight (or bias) is ``DequantizeLinear(stored integers, scale,
zero point)`` of constants is treated like a constant weight; the channel rules record it as usual
(``NodeContext.param``) and the surgery slices the stored integers, and the per-channel scale and zero
point when they run along the sliced axis (``stored_slices``). Activations: a QuantizeLinear or
DequantizeLinear maps every element on its own (per tensor, or per channel along one axis), so channels
pass through and per-channel scales and zero points are sliced with them.

QOperator format: QLinearConv and QLinearMatMul are a Conv and a MatMul on integers (their integer
weights, per-channel scales and zero points and int32 bias are sliced, ``Quantized``). Dynamic
quantization (DynamicQuantizeLinear, whose scale is computed from the whole tensor, and the integer ops
it feeds) is frozen with a reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxprune.graph.context import NodeContext, RuleUnsupported
from onnxprune.graph.rules import conv, linear


def _attr(node: ir.Node, name: str, default: int) -> int:
    a = node.attributes.get(name)
    return a.as_int() if a is not None else default


def _const(node: ir.Node, i: int) -> np.ndarray | None:
    v = node.inputs[i] if i < len(node.inputs) else None
    return None if v is None or v.const_value is None else v.const_value.numpy()


def _per_tensor(scale: np.ndarray) -> bool:
    return scale.size == 1 and scale.ndim <= 1


@dataclass(frozen=True)
class Quantized:
    """Stored integers at input ``data`` of ``node``, read as (integers - zero point) * scale, the scale and
    zero point (inputs of ``node``) per tensor, per channel along ``axis``, or in blocks along it."""

    node: ir.Node
    data: int
    scale: int
    zero_point: int | None
    axis: int
    block: int = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.node.inputs[self.data].const_value.shape)


def dequantize_view(dq: ir.Node) -> Quantized:
    """The stored integers of a DequantizeLinear of constants."""
    rank = len(dq.inputs[0].const_value.shape)
    zp = 2 if len(dq.inputs) > 2 and dq.inputs[2] is not None else None
    return Quantized(dq, 0, 1, zp, _attr(dq, "axis", 1) % max(rank, 1), _attr(dq, "block_size", 0))


def stored_weight(v: ir.Value | None) -> ir.Node | None:
    """The DequantizeLinear that computes ``v`` from constants alone, read by one node (so slicing its
    integers changes nothing else), or None."""
    node = v.producer() if v is not None else None
    if node is None or node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx"):
        return None
    if not all(x is None or x.const_value is not None for x in node.inputs):
        return None
    if v.is_graph_output() or len(v.uses()) != 1:
        return None
    return node


def not_sliceable(node: ir.Node, v: ir.Value) -> str:
    """Why a quantized weight computed by ``node`` is not a weight the surgery can slice."""
    if not all(x is None or x.const_value is not None for x in node.inputs):
        return "its quantized weight's integers, scale or zero point are computed at run time"
    return f"its quantized weight '{v.name}' is also read elsewhere (shared by several nodes)"


def stored_slices(q: Quantized, axis: int) -> list[tuple[ir.Node, int, int]]:
    """(node, input, axis) of each stored constant that loses entries when the integers lose entries along
    ``axis``: the integers, and the scale and zero point where they run along ``axis`` (per channel on
    that axis, or blocked along another). Raises RuleUnsupported for blocks along ``axis`` itself (a
    block would mix kept and removed channels)."""
    slots = [(q.node, q.data, axis)]
    scale = _const(q.node, q.scale)
    if q.block:
        if q.axis == axis and q.block != 1:
            raise RuleUnsupported(f"{q.node.op_type} node '{q.node.name}' quantizes blocks of {q.block} "
                                  "along the pruned axis")
        extra = axis
    elif _per_tensor(scale) or q.axis != axis:
        return slots
    else:
        extra = 0
    return slots + [(q.node, i, extra) for i in (q.scale, q.zero_point) if i is not None]


def _per_element(q: Quantized, arr: np.ndarray) -> np.ndarray:
    """A scale or zero point repeated to the shape of the stored integers."""
    if _per_tensor(arr):
        return np.broadcast_to(arr.reshape(()), q.shape)
    if q.block:
        return np.repeat(arr, q.block, axis=q.axis).take(range(q.shape[q.axis]), axis=q.axis)
    return np.broadcast_to(arr.reshape([-1 if a == q.axis else 1 for a in range(len(q.shape))]), q.shape)


def zero_points(q: Quantized) -> np.ndarray:
    """The zero point of every stored integer (the integer that reads as exactly 0)."""
    x = q.node.inputs[q.data].const_value.numpy()
    zp = _const(q.node, q.zero_point) if q.zero_point is not None else None
    return np.zeros_like(x) if zp is None else _per_element(q, zp).astype(x.dtype)


def dequantized(q: Quantized) -> np.ndarray:
    """The float values the stored integers stand for: (x - zero point) * scale."""
    x = q.node.inputs[q.data].const_value.numpy().astype(np.float64)
    scale = _per_element(q, _const(q.node, q.scale).astype(np.float64))
    return ((x - zero_points(q).astype(np.float64)) * scale).astype(np.float32)


def quantize_linear(ctx: NodeContext) -> None:
    """QuantizeLinear / DequantizeLinear of an activation: element by element, channels stay in place;
    a per-channel scale and zero point along the channel axis are sliced with it. A DequantizeLinear
    of constants is a weight: the consumer's rule records it (``NodeContext.param``)."""
    d = ctx.take(0)
    for i in (1, 2):
        if ctx.take(i) is not None:
            raise RuleUnsupported(f"input {i} (scale or zero point) carries channels")
    if d is None:
        return
    for i in (1, 2):
        if ctx.input(i) is not None and not ctx.is_const(i):
            raise RuleUnsupported(f"its {'scale' if i == 1 else 'zero point'} is computed at run time")
    if ctx.attr_int("block_size", 0):
        raise RuleUnsupported("blocked quantization of an activation")
    scale = ctx.const(1)
    if not _per_tensor(scale) and ctx.attr_int("axis", 1) % ctx.rank(ctx.input(0)) == d.axis:
        for i in (1, 2):
            if ctx.input(i) is not None:
                ctx.param(i, 0, d.atoms, "param")
    ctx.set_output(0, d.axis, d.atoms)


def frozen(why: str, out_axis: Callable[[NodeContext], int] | None = None) -> Callable[[NodeContext], None]:
    """A rule for quantized ops not pruned: channels reaching the node freeze, and its output channels
    (on ``out_axis``) become a frozen group, so the analysis says why instead of showing no group."""
    def rule(ctx: NodeContext) -> None:
        ctx.freeze_inputs(why)
        if out_axis is None:
            return
        out = ctx.node.outputs[0]
        shape = ctx.shape(out)
        axis = out_axis(ctx) if shape else 0
        if shape and axis < len(shape) and isinstance(shape[axis], int):
            ctx.set_output(0, axis, ctx.frozen_source(out, shape[axis], why))
    return rule


def _channel_axis(_ctx: NodeContext) -> int:
    return 1


def _last_axis(ctx: NodeContext) -> int:
    return len(ctx.shape(ctx.node.outputs[0])) - 1


# no static weights: DynamicQuantizeLinear's scale and zero point are computed per run (they feed the
# integer ops' scales), so nothing it reaches can be sliced exactly
DYNAMIC = "dynamic quantization: the scale is computed from the whole tensor at run time, so removing a " \
          "channel changes the quantization of every other one (prune the float model, then quantize)"


def _per_tensor_constants(ctx: NodeContext, inputs: tuple[int, ...]) -> None:
    for i in inputs:
        v = ctx.input(i)
        if v is not None and (not ctx.is_const(i) or not _per_tensor(ctx.const(i))):
            raise RuleUnsupported(f"input {i} ('{v.name}', an activation's scale or zero point) is not one "
                                  "constant for the whole tensor")


def qlinear_conv(ctx: NodeContext) -> None:
    """QLinearConv (QOperator format): a Conv on integers, requantized per tensor. Its int8 filters (input
    3), per-channel scale and zero point (4, 5) and int32 bias (8) go with its output channels, its filters'
    columns with its input channels."""
    _per_tensor_constants(ctx, (1, 2, 6, 7))
    for i in (3, 4, 5, 8):
        if ctx.input(i) is not None and not ctx.is_const(i):
            raise RuleUnsupported(f"input {i} ('{ctx.input(i).name}') is computed at run time")
    ctx.quantized[3] = Quantized(ctx.node, 3, 4, 5 if ctx.input(5) is not None else None, 0)
    conv.conv(ctx, w=3, b=8)


def qlinear_matmul(ctx: NodeContext) -> None:
    """QLinearMatMul (QOperator format): a MatMul on integers, requantized per tensor; a constant B's
    per-column scale and zero point go with its columns."""
    _per_tensor_constants(ctx, (1, 2, 6, 7))
    for i in (4, 5):
        if ctx.input(i) is not None and not ctx.is_const(i):
            raise RuleUnsupported(f"input {i} ('{ctx.input(i).name}', B's scale or zero point) is computed at run time")
    if ctx.is_const(3):
        ctx.quantized[3] = Quantized(ctx.node, 3, 4, 5 if ctx.input(5) is not None else None,
                                     len(ctx.input(3).const_value.shape) - 1)
    elif not _per_tensor(ctx.const(4)):
        raise RuleUnsupported("B is an activation with per-column scales")
    if ctx.is_const(0):
        ctx.quantized[0] = Quantized(ctx.node, 0, 1, 2 if ctx.input(2) is not None else None, 0)
    linear.matmul(ctx, ia=0, ib=3)


dynamic_quantize = frozen(DYNAMIC)
conv_integer = frozen(DYNAMIC, _channel_axis)
matmul_integer = frozen(DYNAMIC, _last_axis)


# -- traits ---------------------------------------------------------------------------------------
def _zero_point_zero(node: ir.Node) -> bool:
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return True
    zp = _const(node, 2)
    return zp is not None and not np.any(zp.astype(np.float64))


def _same_params(q: ir.Node, dq: ir.Node) -> bool:
    """DequantizeLinear ``dq`` undoes QuantizeLinear ``q``'s offset: the same constant scale, zero point,
    axis and blocks, so the integer Q makes of 0 (the zero point) comes back as exactly 0."""
    if dq.op_type != "DequantizeLinear" or dq.inputs[0] is not q.outputs[0]:
        return False
    for i in (1, 2):
        a, b = _const(q, i), _const(dq, i)
        present = (i < len(q.inputs) and q.inputs[i] is not None, i < len(dq.inputs) and dq.inputs[i] is not None)
        if present[0] != present[1] or (present[0] and (a is None or b is None or a.dtype != b.dtype
                                                         or not np.array_equal(a, b))):
            return False
    return all(_attr(q, k, d) == _attr(dq, k, d) for k, d in (("axis", 1), ("block_size", 0)))


def _q_pairs_with_dequantize(q: ir.Node) -> bool:
    out = q.outputs[0]
    uses = list(out.uses())
    return bool(uses) and not out.is_graph_output() and all(_same_params(q, u.node) for u in uses)


def quantize_keeps_zero(node: ir.Node) -> bool:
    """QuantizeLinear: 0 becomes the zero point; it reads as 0 when the zero point is 0, or when every
    reader is a DequantizeLinear with the same constants (the pair maps 0 to exactly 0: round(0 / s) = 0,
    (zp - zp) * s = 0). The integer in between is not 0 then, but nothing but that pair reads it."""
    return _zero_point_zero(node) or _q_pairs_with_dequantize(node)


def dequantize_keeps_zero(node: ir.Node) -> bool:
    """DequantizeLinear: (0 - zp) * s is 0 for a zero point of 0; after its paired QuantizeLinear the
    'zero' it reads is that pair's zero point (``quantize_keeps_zero``)."""
    if _zero_point_zero(node):
        return True
    q = node.inputs[0].producer()
    return q is not None and q.op_type == "QuantizeLinear" and _q_pairs_with_dequantize(q)
