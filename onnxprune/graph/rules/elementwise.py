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
        if ctx.analysis.attention_unit == "dim":
            _constant_source(ctx, out_rank)
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


def _constant_source(ctx: NodeContext, out_rank: int) -> None:
    """A per-dimension constant broadcast over everything else (RoPE's inverse frequencies times the
    positions): its axis becomes channels whose values are the constant's entries, so the rotary angles,
    and the cos/sin that multiply q and k, are sliced with the head dimensions they meet. Only where every
    other input has size 1 on that axis: the output's entries there come from the constant alone."""
    consts = [i for i, v in enumerate(ctx.node.inputs) if v is not None and v.const_value is not None
              and sum(s > 1 for s in v.const_value.shape) == 1]
    if len(consts) != 1:
        return
    (i,) = consts
    shape = list(ctx.input(i).const_value.shape)
    local = next(k for k, s in enumerate(shape) if s > 1)
    axis = local + out_rank - len(shape)
    for j, v in enumerate(ctx.node.inputs):
        if j == i or v is None:
            continue
        other = ctx.shape(v)
        if other is None:
            return
        k = axis - (out_rank - len(other))
        if k >= 0 and other[k] != 1:
            return
    atoms = ctx.new_space(shape[local])
    ctx.param(i, local, atoms, "param")
    ctx.set_output(0, axis, atoms)
