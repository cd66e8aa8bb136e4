"""Reductions: fine over other axes; over the channel axis they mix channels, so they freeze."""

from __future__ import annotations

from onnxprune.graph.context import NodeContext, RuleUnsupported


def reduce(ctx: NodeContext) -> None:
    d = ctx.take(0)
    if ctx.take(1) is not None:
        raise RuleUnsupported("its axes input carries channels")
    if d is None:
        return
    r = ctx.rank(ctx.input(0))
    axes = ctx.ints("axes", 1)
    if not axes:
        if ctx.attr_int("noop_with_empty_axes", 0):
            ctx.set_output(0, d.axis, d.atoms)
            return
        axes = list(range(r))
    axes = [a % r for a in axes]
    if d.axis in axes:
        raise RuleUnsupported("it reduces over the channel axis" + _norm_statistic(ctx))
    keep = ctx.attr_int("keepdims", 1)
    ctx.set_output(0, d.axis if keep else d.axis - sum(a < d.axis for a in axes), d.atoms)


def arg_reduce(ctx: NodeContext) -> None:
    d = ctx.take(0)
    if d is None:
        return
    r = ctx.rank(ctx.input(0))
    axis = ctx.attr_int("axis", 0) % r
    if axis == d.axis:
        raise RuleUnsupported("it reduces over the channel axis")
    keep = ctx.attr_int("keepdims", 1)
    ctx.set_output(0, d.axis if keep or d.axis < axis else d.axis - 1, d.atoms)


def _norm_statistic(ctx: NodeContext) -> str:
    """What a mean over the channel axis is part of, when it is a normalisation's statistic."""
    if ctx.node.op_type != "ReduceMean":
        return ""
    src = ctx.input(0).producer()
    squares = src is not None and (
        (src.op_type == "Pow" and src.inputs[1] is not None and src.inputs[1].const_value is not None
         and float(src.inputs[1].const_value.numpy().reshape(-1)[0]) == 2.0)
        or (src.op_type == "Mul" and src.inputs[0] is src.inputs[1]))
    kind = "RMSNorm's mean of squares" if squares else "a normalisation's mean (LayerNorm written out)"
    return (f" ({kind}: the hidden width of a residual stream, which every layer it feeds would have to lose "
            "together, stays whole)")
