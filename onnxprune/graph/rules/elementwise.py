"""Ops that keep every channel where it is: unary maps and broadcasting n-ary maps."""

from __future__ import annotations

from onnxprune.graph.context import NodeContext, RuleUnsupported
from onnxprune.graph.rules import shapes


def passthrough(ctx: NodeContext) -> None:
    """Output j carries input 0's channel axis unchanged (unary activations, casts, Dropout)."""
    if ctx.node.op_type in ("Cast", "CastLike", "Identity") and shapes.is_vector_op(ctx):
        return shapes.same(ctx)
    d = ctx.take(0)
    if d is not None:
        for j in range(len(ctx.node.outputs)):
            ctx.set_output(j, d.axis, d.atoms)
    for i in range(1, len(ctx.node.inputs)):
        if ctx.dim(i) is not None:
            raise RuleUnsupported(f"input {i} carries channels")
        ctx.take(i)  # scalars such as Clip's min/max


def broadcast(ctx: NodeContext) -> None:
    """Add/Mul/Where...: numpy broadcasting; tracked inputs couple, per-channel constants follow."""
    if shapes.is_vector_op(ctx):
        return shapes.arith(ctx)
    out = ctx.node.outputs[0]
    out_rank = ctx.rank(out)
    axis = None
    atoms = None
    for i, v in enumerate(ctx.node.inputs):
        d = ctx.take(i)
        if d is None:
            continue
        aligned = d.axis + out_rank - ctx.rank(v)
        if axis is None:
            axis, atoms = aligned, d.atoms
        elif aligned != axis:
            raise RuleUnsupported("inputs carry channels on different axes")
        else:
            ctx.couple(atoms, d.atoms)
    if axis is None:
        return
    for i, v in enumerate(ctx.node.inputs):
        if v is None or ctx.dim(i) is not None:
            continue
        shape = ctx.shape(v)
        if shape is None:
            raise RuleUnsupported(f"shape of input '{v.name}' is unknown")
        local = axis - (out_rank - len(shape))
        if local < 0 or shape[local] == 1:
            continue  # broadcast along the channel axis: the same value for every channel
        if not isinstance(shape[local], int):
            raise RuleUnsupported(f"input '{v.name}' has a non-static size on the channel axis")
        if ctx.is_const(i):
            ctx.param(i, local, atoms, "param")
        else:
            ctx.couple(atoms, ctx.frozen_source(v, shape[local], f"input '{v.name}' carries channels that cannot be removed"))
    ctx.set_output(0, axis, atoms)
