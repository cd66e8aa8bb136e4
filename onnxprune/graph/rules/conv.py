"""Conv and ConvTranspose: consumers of their input channels, producers of new output channels."""

from __future__ import annotations

import numpy as np

from onnxprune.graph.context import NodeContext, RuleUnsupported
from onnxprune.graph.edit import set_int_attr


def conv(ctx: NodeContext, w: int = 1, b: int = 2) -> None:
    """Weight at input ``w`` [out, in / group, *kernel], bias at ``b`` (QLinearConv: 3 and 8)."""
    if not ctx.is_weight(w):
        return ctx.computed_weight(w, 1)
    wshape = ctx.weight_shape(w)
    m, cin_per_group = wshape[0], wshape[1]
    g = ctx.attr_int("group", 1)
    cin = cin_per_group * g
    d = ctx.take(0)
    if d is not None and d.axis != 1:
        raise RuleUnsupported(f"input channels tracked on axis {d.axis}, not 1")
    for i in range(1, len(ctx.node.inputs)):
        ctx.take(i)  # weights, bias, quantization constants: constants, no channels
    if g == 1:
        if d is not None:
            ctx.param(w, 1, d.atoms, "consumer")
        out = ctx.new_space(m)
    elif g == cin and cin_per_group == 1:
        # Depthwise: output channel o is computed from input channel o // (m / cin) alone.
        if d is None:
            return  # nothing upstream can be pruned; leave the outputs untracked
        out = np.repeat(d.atoms, m // cin)
        atoms_in = d.atoms
        ctx.rewrite("group", lambda keep, node=ctx.node: set_int_attr(node, "group", int(keep(atoms_in).sum())))
        ctx.param(w, 0, out, "param")
        if ctx.input(b) is not None:
            ctx.param(b, 0, out, "param")
        ctx.set_output(0, 1, out)
        return
    else:
        # Grouped: every conv group must keep the same number of input and of output channels.
        if d is not None:
            ctx.param(w, 1, d.atoms, "consumer", blocks=g)
            ctx.balance(d.atoms, g)
        out = ctx.new_space(m)
        ctx.balance(out, g)
    ctx.param(w, 0, out, "producer")
    if ctx.input(b) is not None:
        ctx.param(b, 0, out, "param")
    ctx.set_output(0, 1, out)


def conv_transpose(ctx: NodeContext) -> None:
    if not ctx.is_weight(1):
        return ctx.computed_weight(1, 1)
    wshape = ctx.weight_shape(1)
    cin, m_per_group = wshape[0], wshape[1]
    g = ctx.attr_int("group", 1)
    d = ctx.take(0)
    if d is not None and d.axis != 1:
        raise RuleUnsupported(f"input channels tracked on axis {d.axis}, not 1")
    ctx.take(1)
    ctx.take(2)
    if "output_shape" in ctx.node.attributes and len(ctx.attr_ints("output_shape")) > len(wshape) - 2:
        raise RuleUnsupported("output_shape states the channel count")
    if g == 1:
        if d is not None:
            ctx.param(1, 0, d.atoms, "consumer")
        out = ctx.new_space(m_per_group)
        ctx.param(1, 1, out, "producer")
    elif g == cin and m_per_group == 1:
        if d is None:
            return
        out = d.atoms
        ctx.rewrite("group", lambda keep, node=ctx.node: set_int_attr(node, "group", int(keep(out).sum())))
        ctx.param(1, 0, out, "param")
    else:
        raise RuleUnsupported(f"grouped ConvTranspose (group={g}) is not supported")
    if ctx.input(2) is not None:
        ctx.param(2, 0, out, "param")
    ctx.set_output(0, 1, out)
