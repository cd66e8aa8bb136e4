"""Normalisations: per-channel parameters follow the channels; statistics over channels freeze."""

from __future__ import annotations

from onnxprune.graph.context import NodeContext, RuleUnsupported


def per_channel_norm(ctx: NodeContext) -> None:
    """BatchNormalization / InstanceNormalization: channel axis 1, parameters are per channel."""
    d = ctx.take(0)
    if len([o for o in ctx.node.outputs if o.uses() or o.is_graph_output()]) > 1:
        raise RuleUnsupported("training-mode outputs are used")
    for i in range(1, len(ctx.node.inputs)):
        ctx.take(i)
        if ctx.dim(i) is not None:
            raise RuleUnsupported(f"parameter input {i} is an activation with channels")
    if d is None:
        return
    if d.axis != 1:
        raise RuleUnsupported(f"channels tracked on axis {d.axis}, not 1")
    for i in range(1, len(ctx.node.inputs)):
        if ctx.input(i) is None:
            continue
        if not ctx.is_const(i):
            raise RuleUnsupported(f"parameter '{ctx.input(i).name}' is computed at run time")
        ctx.param(i, 0, d.atoms, "param")
    ctx.set_output(0, 1, d.atoms)


def _normalised_axes_freeze(ctx: NodeContext, axes: list[int], what: str = "") -> None:
    d = ctx.take_data_input()
    if d is None:
        return
    r = ctx.rank(ctx.input(0))
    if d.axis in [a % r for a in axes]:
        if what:  # the normalised width is a residual stream: say so
            raise RuleUnsupported(f"{what} normalises over the channel axis {d.axis} (the hidden width of a "
                                  "residual stream: every layer it feeds would need the same channels removed, and "
                                  "its statistics would change)")
        raise RuleUnsupported(f"it normalises over the channel axis {d.axis}")
    for j in range(len(ctx.node.outputs)):
        if ctx.rank(ctx.node.outputs[j]) == r:
            ctx.set_output(j, d.axis, d.atoms)


def layer_norm(ctx: NodeContext) -> None:
    r = ctx.rank(ctx.input(0))
    axis = ctx.attr_int("axis", -1) % r
    _normalised_axes_freeze(ctx, list(range(axis, r)), what="LayerNormalization")


def softmax(ctx: NodeContext) -> None:
    """Softmax/LogSoftmax/Hardmax: before opset 13 they normalise over all axes from ``axis`` on."""
    r = ctx.rank(ctx.input(0))
    if ctx.opset < 13:
        axis = ctx.attr_int("axis", 1) % r
        axes = list(range(axis, r))
    else:
        axes = [ctx.attr_int("axis", -1) % r]
    _normalised_axes_freeze(ctx, axes)


def lp_norm(ctx: NodeContext) -> None:
    _normalised_axes_freeze(ctx, [ctx.attr_int("axis", -1)])


def mean_variance_norm(ctx: NodeContext) -> None:
    _normalised_axes_freeze(ctx, ctx.attr_ints("axes", [0, 2, 3]))
