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
    """Resize/Upsample: the channel axis must come out as it went in (scale 1, size unchanged, no crop
    on it, no aspect-ratio policy that rescales it); a literal channel size is then rewritten."""
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
        # Upsample-7/8 state scales as a float attribute; Upsample-9 and Resize-10 as input 1.
        a = ctx.node.attributes.get("scales")
        scales = list(a.as_floats()) if a is not None else None
        if scales is None:
            arr = ctx.const(1)
            if arr is None:
                raise RuleUnsupported("scales are computed at run time")
            scales = arr.astype(np.float64).ravel().tolist()
        if len(scales) != r:
            raise RuleUnsupported(f"{len(scales)} scales for a rank-{r} input")
        if float(scales[k]) != 1.0:
            raise RuleUnsupported("it scales the channel axis")
        ctx.set_output(0, d.axis, d.atoms)
        return
    if _string_attr(ctx, "keep_aspect_ratio_policy", "stretch") != "stretch":
        raise RuleUnsupported("its keep_aspect_ratio_policy rescales every resized axis, the channel axis among them")
    if _string_attr(ctx, "coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize":
        roi = ctx.const(1) if ctx.input(1) is not None and ctx.input(1).name else None
        if roi is None and ctx.input(1) is not None and ctx.input(1).name:
            raise RuleUnsupported("roi is computed at run time")
        if roi is None or roi.size != 2 * len(axes) or (float(roi[k]), float(roi[k + len(axes)])) != (0.0, 1.0):
            raise RuleUnsupported("tf_crop_and_resize crops the channel axis (its roi is not [0, 1] there)")
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
            n = ctx.size(ctx.input(0), d.axis)
            if int(arr[k]) != n:
                raise RuleUnsupported(f"its sizes resize the channel axis ({n} -> {int(arr[k])})")
            atoms = d.atoms
            node = ctx.node

            def _rewrite(keep, node=node, arr=arr, k=k, atoms=atoms):
                new = np.array(arr, copy=True)
                new[k] = int(keep(atoms).sum())
                set_constant_input(node, 3, new)

            ctx.rewrite("Resize sizes", _rewrite)
    ctx.set_output(0, d.axis, d.atoms)


def _string_attr(ctx: NodeContext, name: str, default: str) -> str:
    a = ctx.node.attributes.get(name)
    return a.as_string() if a is not None else default
