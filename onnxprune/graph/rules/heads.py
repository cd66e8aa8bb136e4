"""Attention heads in decomposed attention: when a channel-axis split [.., H*D] -> [.., H, D] is a head split.

A head split is a Reshape whose head axis reaches, through ops that only move, broadcast or normalise
values, a MatMul of two activations where it is a batch axis (q @ k^T, attn @ v), or axis 1 of a 4-D
operand of ai.onnx Attention. With the ``head``
attention unit the Reshape rule then makes each head one channel (its D positions coupled) and tracks
the head axis; MatMul couples the heads of both operands. Anywhere else (a channel shuffle feeding a
Conv) the split keeps coupling position d of every slice, which is always exact.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxprune.graph.nodes import const_ints

ATTENTION_UNITS = ("head", "dim")

# Ops a head axis passes on the way from the split to the attention MatMul: they move, broadcast or
# scale values without mixing the head axis into others (Softmax normalises over the key axis).
_MOVES = {"Transpose", "Unsqueeze", "Squeeze", "Expand", "Reshape", "Slice", "Split", "Concat", "Tile"}
_KEEPS = {"Softmax", "Cast", "Identity", "Dropout", "Neg", "Add", "Sub", "Mul", "Div", "Where", "Sqrt",
          "Reciprocal", "Tanh", "Exp", "Max", "Min"}
_MAX_HOPS = 12


def _rank(v: ir.Value) -> int | None:
    return len(v.shape) if v.shape is not None else None


def _axis_after(node: ir.Node, v: ir.Value, axis: int | None) -> int | None:
    """Where ``axis`` of input ``v`` lands in the node's outputs; None when the node reshapes it."""
    if axis is None:
        return None
    out = node.outputs[0]
    rin, rout = _rank(v), _rank(out)
    if rin is None or rout is None:
        return None
    if node.op_type == "Transpose":
        perm = node.attributes.get("perm")
        perm = list(perm.as_ints()) if perm is not None else list(reversed(range(rin)))
        return perm.index(axis) if axis in perm else None
    if node.op_type in ("Unsqueeze", "Squeeze", "Reshape"):
        return None if node.op_type == "Reshape" else _squeeze_axis(node, axis, rin, rout)
    return axis + rout - rin  # broadcasting ops align from the right


def _squeeze_axis(node: ir.Node, axis: int, rin: int, rout: int) -> int | None:
    axes = const_ints(node, "axes", 1)
    if axes is None:
        return None
    if node.op_type == "Unsqueeze":
        axes = sorted(a % rout for a in axes)
        kept = [i for i in range(rout) if i not in axes]
        return kept[axis] if axis < len(kept) else None
    axes = [a % rin for a in axes]
    return None if axis in axes else axis - sum(a < axis for a in axes)


def feeds_attention(value: ir.Value, axis: int) -> bool:
    """True if ``axis`` of ``value`` reaches a MatMul of two activations as a batch axis (or through a
    Reshape, after which the axis is not followed, any activation-by-activation MatMul)."""
    stack, seen = [(value, axis, 0)], set()
    while stack:
        v, ax, hops = stack.pop()
        if (id(v), ax) in seen:
            continue
        seen.add((id(v), ax))
        for use in v.uses():
            node, i = use.node, use.idx
            if node.op_type == "MatMul" and node.domain in ("", "ai.onnx") and i < 2:
                other = node.inputs[1 - i]
                r = _rank(v)
                if other is not None and other.const_value is None and r is not None and r >= 3 \
                        and (ax is None or ax < r - 2):
                    return True
                continue
            if node.op_type == "Attention" and node.domain in ("", "ai.onnx") and i < 3 and _rank(v) == 4 and ax == 1:
                return True  # ai.onnx Attention (opset 23) on 4-D [batch, heads, seq, head size] operands
            if hops >= _MAX_HOPS or node.domain not in ("", "ai.onnx") or node.op_type not in _MOVES | _KEEPS:
                continue
            new_ax = _axis_after(node, v, ax)
            for out in node.outputs:
                stack.append((out, new_ax, hops + 1))
    return False
