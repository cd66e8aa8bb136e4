"""Ops that move, cut, join or reshape the channel axis; literal sizes they state are rewritten."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxprune.graph.context import NodeContext, RuleUnsupported
from onnxprune.graph.edit import set_constant_input, set_ints, set_ints_attr
from onnxprune.graph.rules import heads, shapes


def transpose(ctx: NodeContext) -> None:
    d = ctx.take_data_input()
    if d is None:
        return
    r = ctx.rank(ctx.input(0))
    perm = ctx.attr_ints("perm", list(reversed(range(r))))
    ctx.set_output(0, perm.index(d.axis), d.atoms)


def squeeze(ctx: NodeContext) -> None:
    if shapes.is_vector_op(ctx, 0):
        return shapes.same(ctx)
    d = ctx.take_data_input()
    if d is None:
        return
    shape = ctx.known_shape(ctx.input(0))
    r = len(shape)
    axes = ctx.ints("axes", 1)
    if axes is None:
        if any(not isinstance(s, int) for s in shape):
            raise RuleUnsupported("squeezed axes depend on run-time sizes")
        axes = [i for i, s in enumerate(shape) if s == 1]
    axes = [a % r for a in axes]
    if d.axis in axes:
        raise RuleUnsupported("it squeezes the channel axis")
    ctx.set_output(0, d.axis - sum(a < d.axis for a in axes), d.atoms)


def unsqueeze(ctx: NodeContext) -> None:
    if shapes.is_vector_op(ctx, 0):
        return shapes.same(ctx)
    d = ctx.take_data_input()
    if d is None:
        return
    rout = ctx.rank(ctx.node.outputs[0])
    axes = sorted(a % rout for a in ctx.ints("axes", 1))
    kept = [i for i in range(rout) if i not in axes]
    ctx.set_output(0, kept[d.axis], d.atoms)


def flatten(ctx: NodeContext) -> None:
    """A channel owns a block of inner-size consecutive features, repeated outer-size times."""
    d = ctx.take_data_input()
    if d is None:
        return
    shape = ctx.known_shape(ctx.input(0))
    r = len(shape)
    axis = ctx.attr_int("axis", 1) % r if r else 0
    if d.axis < axis:
        if all(s == 1 for i, s in enumerate(shape[:axis]) if i != d.axis):
            ctx.set_output(0, 0, d.atoms)
            return
        raise RuleUnsupported("it merges the channel axis into the leading axis with other axes")
    inner = _static_prod(shape[d.axis + 1:])
    outer = _static_prod(shape[axis:d.axis])
    ctx.set_output(0, 1, np.tile(np.repeat(d.atoms, inner), outer))


def _static_prod(dims) -> int:
    if any(not isinstance(s, int) for s in dims):
        raise RuleUnsupported("the axes merged with the channels are not static")
    return int(np.prod(dims)) if dims else 1


def reshape(ctx: NodeContext) -> None:
    """Reshape that keeps the channel axis whole, merges it with neighbouring static axes, or splits
    it into [outer, inner] (channel shuffle, attention heads)."""
    if shapes.is_vector_op(ctx, 0):
        return shapes.reshape_vector(ctx)
    d = ctx.take_data_input()
    if d is None:
        return
    s = ctx.known_shape(ctx.input(0))
    spec = shapes.reshape_target(ctx, s)
    t = _target_dims(s, spec)
    a = d.axis
    out = ctx.node.outputs[0]
    if ctx.shape(out) is None and all(x is not None for x in t):
        out.shape = ir.Shape(t)  # ONNX inference gives up on Shape-derived targets; later rules need it
        out.dtype = out.dtype or ctx.input(0).dtype
        ctx.analysis.filled_shapes += 1

    def rewrite_literal(j: int, atoms: np.ndarray) -> None:
        if spec[j].literal:
            write = shapes.writer_of(spec[j])
            ctx.rewrite("Reshape shape", lambda keep, w=write, atoms=atoms: w(int(keep(atoms).sum())))

    # Find the output axis j whose span of input axes [a0, a1) contains the channel axis:
    # prod(s[:a0]) == prod(t[:j]) and s[a0:a1] multiplies to t[j].
    for j in range(len(t)):
        for a0 in range(a, -1, -1):  # tightest span first: size-1 axes make several spans match
            if not _same_prod(s[:a0], t[:j]):
                continue
            for a1 in range(a + 1, len(s) + 1):
                if _same_prod(s[a0:a1], [t[j]]):
                    break
            else:
                continue
            inner = _static_prod(s[a + 1:a1])
            outer = _static_prod(s[a0:a])
            atoms = np.tile(np.repeat(d.atoms, inner), outer)
            if spec[j].kind in ("copy", "dim") and not (j == a and a0 == a and a1 == a + 1):
                raise RuleUnsupported("a copied entry stands for a merged channel axis")
            if spec[j].kind == "chan" and not (outer == 1 and shapes.holds_channels(spec[j], atoms)):
                raise RuleUnsupported("its target reads a channel count for an axis holding other channels")
            _check_chan_entries(spec, j)
            _check_copies(spec, a, j)
            rewrite_literal(j, atoms)
            ctx.set_output(0, j, atoms)
            return
    # Split of the channel axis into [outer..., inner]. An attention head split [.., H, D] (its head
    # axis reaches a MatMul batch axis) with the "head" unit: each head is one channel, the head axis
    # is tracked. Otherwise the inner axis stays tracked and position j of every outer slice is
    # coupled (head-dim pruning, channel shuffle), so removal stays rectangular.
    for j in range(len(t)):
        if not _same_prod(s[:a], t[:j]):
            continue
        for k in range(j + 2, len(t) + 1):
            if _same_prod(t[j:k], [s[a]]) and isinstance(t[k - 1], int):
                _check_chan_entries(spec, None)
                grid = d.atoms.reshape(-1, t[k - 1])
                if k - j == 2 and ctx.analysis.attention_unit == "head" and heads.feeds_attention(out, k - 2):
                    if spec[k - 2].kind in ("copy", "dim"):
                        raise RuleUnsupported("a copied entry stands for the split head axis")
                    _check_copies(spec, a, k - 2)
                    for col in grid.T[1:]:
                        ctx.couple(grid[:, 0], col)
                    rewrite_literal(k - 2, grid[:, 0])
                    ctx.set_output(0, k - 2, grid[:, 0])
                    return
                if spec[k - 1].kind in ("copy", "dim"):
                    raise RuleUnsupported("a copied entry stands for the split channel axis")
                _check_copies(spec, a, k - 1)
                for row in grid[1:]:
                    ctx.couple(grid[0], row)
                rewrite_literal(k - 1, grid[0])
                ctx.set_output(0, k - 1, grid[0])
                return
    raise RuleUnsupported(f"it reshapes the channel axis in a way no rule covers ({s} -> {t})")


def _check_chan_entries(spec: list, j: int | None) -> None:
    """A target entry computed from a channel count is right only at the output channel axis ``j``."""
    if any(e.kind == "chan" for i, e in enumerate(spec) if i != j):
        raise RuleUnsupported("its target reads a channel count at another position")


def _check_copies(spec: list, a: int, j: int) -> None:
    """A target entry that copies input axis ``a`` (a 0, or the Shape of it) anywhere but at the output
    channel axis ``j`` would carry the new channel count into an axis that is not the channel axis."""
    if a < len(spec) and a != j and spec[a].kind == "copy":
        raise RuleUnsupported(f"target entry {a} copies the channel count into output axis {a}, "
                              f"but the channels land on axis {j}")


def _target_dims(s: list, spec: list) -> list:
    """Reshape's output dims from its input dims and target: ints, symbolic names, or None."""
    t = [e.size if e.kind != "infer" else None for e in spec]
    infer = [j for j, e in enumerate(spec) if e.kind == "infer"]
    if len(infer) == 1:
        total, rest = _split_prod(s), _split_prod([d for j, d in enumerate(t) if j != infer[0]])
        if total is not None and rest is not None and rest[0] and total[0] % rest[0] == 0:
            names = list(total[1])
            for n in rest[1]:
                if n not in names:
                    break
                names.remove(n)
            else:
                k = total[0] // rest[0]
                # a product of symbolic dims is named by its factors ("2*H*W"), which _split_prod reads back
                t[infer[0]] = "*".join(([str(k)] if k != 1 else []) + names) if names else k
    return t


def _split_prod(dims):
    """(product of the static dims, sorted symbolic names), or None if a dim is unknown."""
    n, names = 1, []
    for v in dims:
        if isinstance(v, int):
            n *= v
        elif v is None:
            return None
        else:
            for factor in v.split("*"):
                if factor.isdigit():
                    n *= int(factor)
                else:
                    names.append(factor)
    return n, sorted(names)


def _same_prod(x, y) -> bool:
    """Products of dims equal, symbolic dims matched by name (unknown dims never match)."""
    a, b = _split_prod(x), _split_prod(y)
    return a is not None and a == b


def concat(ctx: NodeContext) -> None:
    if shapes.is_vector_op(ctx):
        return shapes.concat(ctx)
    out = ctx.node.outputs[0]
    r = ctx.rank(out)
    axis = ctx.attr_int("axis", 0) % r
    dims = [ctx.take(i) for i in range(len(ctx.node.inputs))]
    tracked_axes = {d.axis for d in dims if d is not None}
    if not tracked_axes:
        return
    if len(tracked_axes) > 1:
        raise RuleUnsupported("inputs carry channels on different axes")
    (taxis,) = tracked_axes
    if taxis == axis:
        parts = []
        for v, d in zip(ctx.node.inputs, dims):
            if d is not None:
                parts.append(d.atoms)
            else:
                parts.append(ctx.frozen_source(v, ctx.size(v, axis), f"input '{v.name}' is concatenated without tracked channels"))
        ctx.set_output(0, axis, np.concatenate(parts))
        return
    atoms = next(d.atoms for d in dims if d is not None)
    for v, d in zip(ctx.node.inputs, dims):
        if d is not None:
            ctx.couple(atoms, d.atoms)
        else:
            ctx.couple(atoms, ctx.frozen_source(v, ctx.size(v, taxis), f"input '{v.name}' has channels that cannot be removed"))
    ctx.set_output(0, taxis, atoms)


def split(ctx: NodeContext) -> None:
    d = ctx.take_data_input()
    if d is None:
        return
    r = ctx.rank(ctx.input(0))
    axis = ctx.attr_int("axis", 0) % r
    outs = ctx.node.outputs
    if d.axis != axis:
        for j in range(len(outs)):
            ctx.set_output(j, d.axis, d.atoms)
        return
    sizes = ctx.ints("split", 1)
    n = len(d.atoms)
    if sizes is None:
        k = len(outs)
        chunk = -(-n // k)
        sizes = [min(chunk, n - i * chunk) for i in range(k)]
    if sum(sizes) != n:
        raise RuleUnsupported(f"split sizes {sizes} do not add up to {n} channels")
    bounds = np.cumsum([0] + list(sizes))
    pieces = [d.atoms[bounds[j]:bounds[j + 1]] for j in range(len(outs))]
    node, sizes_as_input = ctx.node, ctx.opset >= 13

    def _rewrite(keep, node=node, pieces=pieces, sizes_as_input=sizes_as_input):
        # Always explicit sizes: an equal split may become unequal.
        new = [int(keep(p).sum()) for p in pieces]
        if "num_outputs" in node.attributes:
            del node.attributes["num_outputs"]
        if sizes_as_input:
            set_constant_input(node, 1, np.array(new, dtype=np.int64))
        else:
            set_ints_attr(node, "split", new)

    ctx.rewrite("Split sizes", _rewrite)
    for j, p in enumerate(pieces):
        ctx.set_output(j, axis, p)


def slice_(ctx: NodeContext) -> None:
    if shapes.is_vector_op(ctx, 0):
        return shapes.slice_(ctx)
    d = ctx.take_data_input()
    if d is None:
        return
    r = ctx.rank(ctx.input(0))
    starts, ends = shapes.bounds(ctx, "starts", 1), shapes.bounds(ctx, "ends", 2)
    axes = ctx.ints("axes", 3) if ("axes" in ctx.node.attributes or ctx.input(3) is not None) else None
    steps = ctx.ints("steps", 4) if ctx.input(4) is not None else None
    axes = [a % r for a in axes] if axes is not None else list(range(len(starts)))
    if d.axis not in axes:
        ctx.set_output(0, d.axis, d.atoms)
        return
    k = axes.index(d.axis)
    if steps is not None and steps[k] != 1:
        raise RuleUnsupported("it slices the channel axis with a step other than 1")
    n = len(d.atoms)
    if starts[k].literal is None or ends[k].literal is None:
        ctx.set_output(0, d.axis, _chunk_piece(ctx, d, starts[k], ends[k]))
        return
    start, stop, _ = slice(starts[k].literal, ends[k].literal).indices(n)
    stop = max(stop, start)
    before, piece = d.atoms[:start], d.atoms[start:stop]
    if any(e.literal is None for e in starts + ends):
        if (start, stop) != (0, n):
            raise RuleUnsupported("literal channel bounds next to bounds computed at run time")
        ctx.set_output(0, d.axis, piece)
        return
    node = ctx.node
    lit_starts, lit_ends = [e.literal for e in starts], [e.literal for e in ends]

    def _rewrite(keep, node=node, before=before, piece=piece, k=k, starts=lit_starts, ends=lit_ends):
        new_start = int(keep(before).sum())
        new_starts, new_ends = list(starts), list(ends)
        new_starts[k] = new_start
        new_ends[k] = new_start + int(keep(piece).sum())
        set_ints(node, "starts", 1, new_starts)
        set_ints(node, "ends", 2, new_ends)

    ctx.rewrite("Slice bounds", _rewrite)
    ctx.set_output(0, d.axis, piece)


def _chunk_piece(ctx: NodeContext, d, start, end) -> np.ndarray:
    """torch.chunk's Slice: bounds m * C / k computed from this tensor's own channel count C. The
    bounds stay right after pruning when each of the k chunks loses the same number of channels."""
    n = len(d.atoms)
    chunks, pos = set(), []
    for e in (start, end):
        if e.literal is not None:
            if 0 < e.literal < n or e.literal < 0:  # only "from the start" and "to the end" stay right
                raise RuleUnsupported("a literal channel bound next to a bound computed at run time")
            pos.append(min(max(e.literal, 0), n))
            continue
        form = e.chunk_of(n) if e.value is ctx.input(0) and e.axis == d.axis else None
        if form is None:
            raise RuleUnsupported("its channel bounds are computed at run time in a form no rule covers")
        m, k = form
        chunks.add(k)
        pos.append(m * n // k)
    if len(chunks) != 1:
        raise RuleUnsupported("its channel bounds come from different chunk counts")
    ctx.balance(d.atoms, chunks.pop(), unit="chunks")
    return d.atoms[pos[0]:max(pos[1], pos[0])]


def gather(ctx: NodeContext) -> None:
    if shapes.is_vector_op(ctx, 0):
        return shapes.gather(ctx)
    d = ctx.take_data_input()
    if d is None:
        return
    r = ctx.rank(ctx.input(0))
    axis = ctx.attr_int("axis", 0) % r
    if axis == d.axis:
        raise RuleUnsupported("it gathers along the channel axis")
    ri = ctx.rank(ctx.input(1))
    ctx.set_output(0, d.axis if d.axis < axis else d.axis + ri - 1, d.atoms)


def expand(ctx: NodeContext) -> None:
    """Expand broadcasts other axes; a literal channel count in its shape follows the pruning."""
    d = ctx.take_data_input()
    if d is None:
        return
    rin, rout = ctx.rank(ctx.input(0)), ctx.rank(ctx.node.outputs[0])
    axis = d.axis + rout - rin
    spec = shapes.reshape_target(ctx, [None] * (rout - rin) + ctx.known_shape(ctx.input(0)))
    k = axis - (rout - len(spec))  # the shape broadcasts from the right: its entry k meets output axis ``axis``
    entry = spec[k] if k >= 0 else None
    _check_chan_entries(spec, k)
    if entry is None:
        pass  # shorter shape: broadcast leaves the channel axis as it is
    elif entry.literal and entry.size not in (1, len(d.atoms)):
        raise RuleUnsupported(f"it expands the channel axis to {entry.size}")
    elif entry.literal and entry.size == len(d.atoms):
        write = shapes.writer_of(entry)
        ctx.rewrite("Expand shape", lambda keep, w=write, atoms=d.atoms: w(int(keep(atoms).sum())))
    elif entry.kind == "dim" or (entry.kind == "chan" and not shapes.holds_channels(entry, d.atoms)):
        raise RuleUnsupported("its shape reads the channel count of another tensor")
    ctx.set_output(0, axis, d.atoms)


def tile(ctx: NodeContext) -> None:
    d = ctx.take_data_input()
    if d is None:
        return
    repeats = ctx.ints("repeats", 1)
    if repeats is None or repeats[d.axis] != 1:
        raise RuleUnsupported("it repeats the channel axis")
    ctx.set_output(0, d.axis, d.atoms)
