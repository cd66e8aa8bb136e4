"""LSTM, GRU and RNN: hidden units are channels; the input features are consumed by W's columns.

Each node makes one space of ``hidden_size`` units. Unit i owns, in every direction, row i of each gate
block of W [dirs, gates*H, in] and R [dirs, gates*H, H] (gates: LSTM i, o, f, c; GRU z, r, h; RNN one),
position i of each of the 2*gates bias blocks of B [dirs, 2*gates*H], of each peephole block of P
[dirs, 3*H] (LSTM) and of the initial states [dirs, batch, H], and column i of R: R reads the hidden
state, so a removed unit must also stop feeding every kept unit's gates.

Bidirectional nodes: unit i of the forward and unit i of the backward direction are one channel. The
weights stack the directions on axis 0 and the units on axis 1, so only a removal that is the same in
both directions keeps them rectangular; it also matches how the output is usually read (Y [seq, dirs,
batch, H] transposed and reshaped to [seq, batch, dirs*H], where the reshape rule lays the units out
once per direction). Removing a unit is exact: the units of one direction only meet through R, whose
column of that unit goes with it.

The units sit on the last axis of every tensor that holds them, whatever ``layout`` is (layout 0: Y
[seq, dirs, batch, H], Y_h/Y_c/initial states [dirs, batch, H]; layout 1: Y [batch, seq, dirs, H],
[batch, dirs, H]), and X's features on its last axis. ``hidden_size`` is rewritten to the kept count.
The other attributes (activations and their alpha/beta, clip, input_forget, GRU's linear_before_reset)
act unit by unit and need nothing. An initial state that is a constant is sliced; one that is zeros
made at run time (an exporter's Expand or ConstantOfShape of 0 to [dirs, batch, H]) is dropped, which
the op reads as zeros too; any other run-time initial state freezes the units. A unit's output is not
0 when its weights are (sigmoid(0) = 0.5 gates, biases), so the registry claims nothing about zeros.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxprune.graph.context import NodeContext, RuleUnsupported
from onnxprune.graph.edit import set_int_attr

_COMMON = {"activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "layout"}
# op -> (gates, peephole input or None, initial-state inputs, attributes read)
_OPS = {
    "LSTM": (4, 7, (5, 6), _COMMON | {"input_forget"}),
    "GRU": (3, None, (5,), _COMMON | {"linear_before_reset"}),
    "RNN": (1, None, (5,), _COMMON),
}


def recurrent(ctx: NodeContext) -> None:
    gates, peephole, states, known = _OPS[ctx.node.op_type]
    unknown = sorted(set(ctx.node.attributes) - known)
    if unknown:
        raise RuleUnsupported(f"attribute(s) {', '.join(unknown)} are not read by its rule")
    for i, name in ((1, "W"), (2, "R"), (3, "B"), (peephole, "P")):
        if i is not None and ctx.input(i) is not None and not ctx.is_const(i):
            raise RuleUnsupported(f"its weight {name} '{ctx.input(i).name}' is computed at run time, not a constant")
    w_shape = ctx.input(1).const_value.shape
    hidden = ctx.input(2).const_value.shape[2]
    if w_shape[1] != gates * hidden or ctx.attr_int("hidden_size", hidden) != hidden:
        raise RuleUnsupported(f"W has {w_shape[1]} rows for {gates} gates of hidden_size {hidden}")
    d = ctx.take(0)
    if d is not None:
        if d.axis != ctx.rank(ctx.input(0)) - 1:
            raise RuleUnsupported(f"X carries channels on axis {d.axis}, not on its feature axis")
        ctx.param(1, 2, d.atoms, "consumer")
    for i in range(1, len(ctx.node.inputs)):
        if i not in states and ctx.take(i) is not None:
            raise RuleUnsupported(f"input {i} carries channels")
    units = ctx.new_space(hidden)
    ctx.param(1, 1, np.tile(units, gates), "producer")
    ctx.param(2, 1, np.tile(units, gates), "producer")
    ctx.param(2, 2, units, "consumer")
    if ctx.input(3) is not None:
        ctx.param(3, 1, np.tile(units, 2 * gates), "param")
    if peephole is not None and ctx.input(peephole) is not None:
        ctx.param(peephole, 1, np.tile(units, 3), "param")
    for i in states:
        _initial_state(ctx, i, units)
    ctx.rewrite("hidden_size", lambda keep, node=ctx.node: set_int_attr(node, "hidden_size", int(keep(units).sum())))
    for j, out in enumerate(ctx.node.outputs):
        if out is not None and out.name:
            ctx.set_output(j, 3 if j == 0 else 2, units)


def _initial_state(ctx: NodeContext, i: int, units: np.ndarray) -> None:
    """initial_h / initial_c: sliced (a constant), coupled (units tracked from a producer), dropped (zeros
    made at run time) or the reason the units freeze."""
    v = ctx.input(i)
    if v is None:
        return
    d = ctx.take(i)
    if d is not None:
        if d.axis != 2:
            raise RuleUnsupported(f"initial state '{v.name}' carries channels on axis {d.axis}, not its units axis")
        ctx.couple(units, d.atoms)
    elif ctx.is_const(i):
        ctx.param(i, 2, units, "param")
    elif _runtime_zeros(v):
        ctx.rewrite(f"initial state {i}", lambda _keep, node=ctx.node: node.replace_input_with(i, None))
    else:
        ctx.couple(units, ctx.frozen_source(v, len(units), f"its initial state '{v.name}' is computed at run time"))


def _runtime_zeros(v: ir.Value) -> bool:
    """A tensor of zeros whose shape is computed at run time: Expand of an all-zero constant, or
    ConstantOfShape with value 0."""
    node = v.producer()
    if node is None:
        return False
    if node.op_type == "Expand" and node.domain in ("", "ai.onnx"):
        src = node.inputs[0]
        return src is not None and src.const_value is not None and not np.any(src.const_value.numpy())
    if node.op_type == "ConstantOfShape" and node.domain in ("", "ai.onnx"):
        a = node.attributes.get("value")
        return a is None or not np.any(a.as_tensor().numpy())
    return False


def recurrent_macs(node: ir.Node) -> int | None:
    """seq * batch * dirs * gates*H * (input + H) multiply-accumulates; None if a shape is not static."""
    x, w, r = (node.inputs[i].shape if node.inputs[i] is not None else None for i in (0, 1, 2))
    dims = [list(s) if s is not None else None for s in (x, w, r)]
    if any(s is None or not all(isinstance(e, int) for e in s) for s in dims):
        return None
    x, w, r = dims
    return int(x[0] * x[1] * w[0] * w[1] * (w[2] + r[2]))
