"""Spatial ops that work channel by channel: pools, Pad, Resize."""

from __future__ import annotations

import numpy as np

from onnxprune.graph.context import NodeContext, RuleUnsupported
from onnxprune.graph.edit import set_constant_input


def pool(ctx: NodeContext) -> None:
    d = ctx.take(0)
    if d is None:
        return
    if d.axis != 1:
        raise RuleUnsupported(f"channels tracked on axis {d.axis}, not 1")
    if len(ctx.node.outputs) > 1 and (ctx.node.outputs[1].uses() or ctx.node.outputs[1].is_graph_output()):
        raise RuleUnsupported("its Indices output encodes the channel count")
    ctx.set_output(0, 1, d.atoms)


def pad(ctx: NodeContext) -> None:
    d = ctx.take_data_input()
    if d is None:
        return
    r = ctx.rank(ctx.input(0))
    pads = ctx.ints("pads", 1)
    axes = ctx.ints("axes", 3) if len(ctx.node.inputs) > 3 and ctx.input(3) is not None else None
    axes = [a % r for a in axes] if axes is not None else list(range(r))
    n = len(axes)
    if pads is None or len(pads) != 2 * n:
        raise RuleUnsupported("pads are missing or malformed")
    if d.axis in axes:
        k = axes.index(d.axis)
        if pads[k] != 0 or pads[k + n] != 0:
            raise RuleUnsupported("it pads the channel axis")
    ctx.set_output(0, d.axis, d.atoms)


def resize(ctx: NodeContext) -> None:
    """Resize/Upsample: the channel scale must be 1; a literal channel size is rewritten."""
    d = ctx.take_data_input()
    if d is None:
        return
    r = ctx.rank(ctx.input(0))
    axes = ctx.attr_ints("axes")
    axes = [a % r for a in axes] if axes else list(range(r))
    if d.axis not in axes:
        ctx.set_output(0, d.axis, d.atoms)
        return
    k = axes.index(d.axis)
    if ctx.node.op_type == "Upsample" or ctx.opset < 11:
        scales = ctx.attr_ints("scales") if "scales" in ctx.node.attributes else None
        if scales is None:
            scales = ctx.node.attributes["scales"].as_floats() if "scales" in ctx.node.attributes else (
                ctx.const(1).tolist() if ctx.const(1) is not None else None)
        if scales is None:
            raise RuleUnsupported("scales are computed at run time")
        if float(scales[k]) != 1.0:
            raise RuleUnsupported("it scales the channel axis")
        ctx.set_output(0, d.axis, d.atoms)
        return
    scales = ctx.input(2)
    sizes = ctx.input(3)
    if scales is not None and scales.name and (scales.const_value is None or scales.const_value.size > 0):
        arr = ctx.const(2)
        if arr is None:
            raise RuleUnsupported("scales are computed at run time")
        if arr.size and float(arr[k]) != 1.0:
            raise RuleUnsupported("it scales the channel axis")
    if sizes is not None and sizes.name:
        arr = ctx.const(3)
        if arr is None:
            raise RuleUnsupported("sizes are computed at run time")
        if arr.size:
            atoms = d.atoms
            node = ctx.node

            def _rewrite(keep, node=node, arr=arr, k=k, atoms=atoms):
                new = np.array(arr, copy=True)
                new[k] = int(keep(atoms).sum())
                set_constant_input(node, 3, new)

            ctx.rewrite("Resize sizes", _rewrite)
    ctx.set_output(0, d.axis, d.atoms)
