"""Gemm and MatMul: the contraction axis consumes channels, a constant weight makes new ones."""

from __future__ import annotations

from onnxprune.graph.context import NodeContext, RuleUnsupported


def gemm(ctx: NodeContext) -> None:
    trans_a = ctx.attr_int("transA", 0)
    trans_b = ctx.attr_int("transB", 0)
    if not ctx.is_weight(1):
        if ctx.dim(1) is not None:
            raise RuleUnsupported("B is an activation that carries channels")
        return ctx.computed_weight(1, 1)
    bshape = ctx.weight_shape(1)
    k_axis_b, n_axis_b = (1, 0) if trans_b else (0, 1)
    d = ctx.take(0)
    ctx.take(1)
    if d is not None:
        if d.axis != (0 if trans_a else 1):
            raise RuleUnsupported("A carries channels on its row axis")
        ctx.param(1, k_axis_b, d.atoms, "consumer")
    out = ctx.new_space(bshape[n_axis_b])
    ctx.param(1, n_axis_b, out, "producer")
    if ctx.input(2) is not None:
        dc = ctx.take(2)
        cshape = ctx.shape(ctx.input(2))
        if dc is not None:
            raise RuleUnsupported("C carries channels")
        if cshape and cshape[-1] != 1:
            if ctx.is_weight(2):
                ctx.param(2, len(cshape) - 1, out, "param")
            else:
                ctx.couple(out, ctx.frozen_source(ctx.input(2), bshape[n_axis_b], "bias C is computed at run time"))
    ctx.set_output(0, 1, out)


def matmul(ctx: NodeContext, ia: int = 0, ib: int = 1) -> None:
    """A at input ``ia``, B at ``ib`` (QLinearMatMul: 0 and 3)."""
    a, b = ctx.input(ia), ctx.input(ib)
    ra, rb = ctx.rank(a), ctx.rank(b)
    if ra < 2 or rb < 2:
        if ctx.dim(ia) is not None or ctx.dim(ib) is not None:
            raise RuleUnsupported("1-D operand")
        return
    rout = ctx.rank(ctx.node.outputs[0])
    if not ctx.is_weight(ib) and ctx.dim(ib) is None and _from_constants(b):
        return ctx.computed_weight(ib, rout - 1)
    da, db = ctx.take(ia), ctx.take(ib)
    out_axis, out_atoms = None, None
    # Contraction axis: A's last and B's second to last must lose the same channels.
    ka = da.atoms if da is not None and da.axis == ra - 1 else None
    kb = db.atoms if db is not None and db.axis == rb - 2 else None
    if ka is not None or kb is not None:
        if ka is not None and kb is not None:
            ctx.couple(ka, kb)
        elif ka is not None:
            if ctx.is_weight(ib):
                ctx.param(ib, rb - 2, ka, "consumer")
            else:
                ctx.couple(ka, ctx.frozen_source(b, len(ka), "B is an activation without tracked channels"))
        else:
            if ctx.is_const(ia):
                ctx.param(ia, ra - 1, kb, "consumer")
            else:
                ctx.couple(kb, ctx.frozen_source(a, len(kb), "A is an activation without tracked channels"))
    # Row axis of A / column axis of B pass through.
    if da is not None and da.axis == ra - 2:
        out_axis, out_atoms = rout - 2, da.atoms
    if db is not None and db.axis == rb - 1:
        out_axis, out_atoms = rout - 1, db.atoms
    batch = _batch_axis(ctx, (da, db), (ra, rb), rout, (ia, ib))
    if batch is not None:
        if out_axis is not None:
            raise RuleUnsupported("channels on a batch axis and on a row or column axis")
        if ctx.is_weight(ia) or ctx.is_weight(ib):
            raise RuleUnsupported("channels on a batch axis next to a constant operand")
        out_axis, out_atoms = batch
    if ctx.is_weight(ib) and out_axis is None:
        out_atoms = ctx.new_space(ctx.weight_shape(ib)[-1])
        out_axis = rout - 1
        ctx.param(ib, rb - 1, out_atoms, "producer")
    elif ctx.is_weight(ib) and out_axis == rout - 2:
        raise RuleUnsupported("A carries channels on its rows while B makes new ones")
    if out_axis is not None:
        ctx.set_output(0, out_axis, out_atoms)


def _from_constants(v) -> bool:
    """A tensor computed from constants alone by one node (a DequantizeLinear of stored int8 weights)."""
    node = v.producer()
    return node is not None and all(x is None or x.const_value is not None for x in node.inputs)


def _batch_axis(ctx: NodeContext, dims, ranks, rout: int, inputs=(0, 1)):
    """(output axis, atoms) of channels on a batch axis (attention heads in q @ k^T, attn @ v), or None.

    Batch axes broadcast from the right: both operands' channels there are the same channels; an
    operand of size 1 there broadcasts; one that is larger but carries no channels freezes them."""
    found = None
    for d, r in zip(dims, ranks):
        if d is None or d.axis >= r - 2:
            continue
        axis = d.axis + rout - r
        if found is None:
            found = (axis, d.atoms)
        elif found[0] != axis:
            raise RuleUnsupported("A and B carry channels on different batch axes")
        else:
            ctx.couple(found[1], d.atoms)
    if found is None:
        return None
    for i, (d, r) in enumerate(zip(dims, ranks)):
        local = found[0] - (rout - r)
        if local < 0 or (d is not None and d.axis == local) or local >= r - 2:
            continue
        size = ctx.shape(ctx.input(inputs[i]))[local]
        if size == 1:
            continue
        if not isinstance(size, int):
            raise RuleUnsupported(f"operand {i} has a non-static size on the batch axis that carries channels")
        v = ctx.input(inputs[i])
        ctx.couple(found[1], ctx.frozen_source(v, size, f"'{v.name}' has channels on a batch axis that cannot be removed"))
    return found
