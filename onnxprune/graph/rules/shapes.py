"""Shape vectors: what ``Shape`` returns, followed through Gather/Slice/Concat/Cast/(Un)squeeze.

Each entry says where its number comes from: a dim of a tensor, or a literal in a constant. An entry
that reads a tracked channel axis changes when channels are removed; that is fine where it is used as
a Reshape target entry that copies the same axis of the reshaped tensor, and freezes the group anywhere
else (arithmetic on the channel count, Expand, ConstantOfShape...).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import onnx_ir as ir

from onnxprune.graph.context import NodeContext, RuleUnsupported
from onnxprune.graph.edit import set_constant_input


@dataclass(frozen=True)
class Entry:
    """mul * floor((num * dim + add) / den) + plus for a dim of ``value``, or a literal number."""

    value: ir.Value | None = None
    axis: int = -1
    literal: int | None = None
    source: tuple | None = None  # (node, input index, offset) of the constant holding the literal
    mul: int = 1
    num: int = 1
    add: int = 0
    den: int = 1
    plus: int = 0

    @property
    def is_plain_dim(self) -> bool:
        return self.literal is None and (self.mul, self.num, self.add, self.den, self.plus) == (1, 1, 0, 1, 0)

    def chunk_of(self, size: int) -> tuple[int, int] | None:
        """(m, k) if this entry is m * size / k, the bound torch.chunk computes from a dim of ``size``
        (m * ceil(size / k), exact when k divides size); None otherwise."""
        if self.literal is not None or self.num != 1 or self.plus != 0 or not 0 <= self.add < self.den:
            return None
        if size % self.den:
            return None
        return self.mul, self.den


def _apply(e: Entry, op: str, c: int) -> Entry | None:
    """``e op c`` for integer shape arithmetic, or None where the closed form does not cover it."""
    if e.literal is not None:
        a = e.literal
        val = {"Add": a + c, "Sub": a - c, "Mul": a * c, "Div": a // c if c else None}[op]
        return None if val is None else replace(e, literal=val, source=None)
    if op == "Sub":
        op, c = "Add", -c
    if e.den == 1:  # no floor yet: keep the form num * dim + add
        if op == "Add":
            return replace(e, add=e.add + c)
        if op == "Mul":
            return replace(e, num=e.num * c, add=e.add * c)
        return replace(e, den=c) if c > 0 else None
    if op == "Add":
        return replace(e, plus=e.plus + c)
    if op == "Mul":
        return replace(e, mul=e.mul * c, plus=e.plus * c)
    if c > 0 and e.plus == 0 and e.mul == 1:
        return replace(e, den=e.den * c)
    return None


def vector(ctx: NodeContext, i: int) -> list[Entry] | None:
    """Input i as a shape vector: a tracked Shape result or a small int constant; else None."""
    v = ctx.input(i)
    if v is None:
        return None
    if v in ctx.analysis.shape_vecs:
        return ctx.analysis.shape_vecs[v]
    arr = ctx.const(i)
    if arr is not None and arr.dtype.kind in "iu" and arr.ndim <= 1 and arr.size <= 16:
        return [Entry(literal=int(x), source=(ctx.node, i, k)) for k, x in enumerate(np.atleast_1d(arr))]
    return None


def is_vector_op(ctx: NodeContext, index: int | None = None) -> bool:
    """True when input ``index`` (default: any input) is a Shape result, so the op computes on
    shapes rather than on activations."""
    inputs = ctx.node.inputs if index is None else ctx.node.inputs[index:index + 1]
    return any(v is not None and v in ctx.analysis.shape_vecs for v in inputs)


def bounds(ctx: NodeContext, attr: str, index: int) -> list[Entry] | None:
    """Slice starts/ends as entries: literals (attribute or constant) or a followed Shape result."""
    v = ctx.input(index) if attr not in ctx.node.attributes else None
    if v is not None and v in ctx.analysis.shape_vecs:
        ctx.shapes_read.add(index)
        return ctx.analysis.shape_vecs[v]
    values = ctx.ints(attr, index)
    return None if values is None else [Entry(literal=x) for x in values]


def _set(ctx: NodeContext, entries: list[Entry]) -> None:
    ctx.analysis.shape_vecs[ctx.node.outputs[0]] = entries
    ctx.shapes_read.update(range(len(ctx.node.inputs)))


def shape_of(ctx: NodeContext) -> None:
    x = ctx.input(0)
    ctx.take(0)
    if ctx.node.op_type == "Size":
        if ctx.dim(0) is not None:
            raise RuleUnsupported("it reads the element count, which depends on the channel count")
        return
    r = ctx.rank(x)
    start = ctx.attr_int("start", 0)
    end = ctx.attr_int("end", r)
    start, end, _ = slice(start, end).indices(r)
    _set(ctx, [Entry(value=x, axis=k) for k in range(start, max(end, start))])


def gather(ctx: NodeContext) -> None:
    vec = ctx.analysis.shape_vecs[ctx.input(0)]
    idx = ctx.const(1)
    if idx is None or ctx.attr_int("axis", 0) != 0:
        raise RuleUnsupported("it indexes a shape with run-time indices")
    _set(ctx, [vec[int(k)] for k in np.atleast_1d(idx).ravel()])


def slice_(ctx: NodeContext) -> None:
    vec = ctx.analysis.shape_vecs[ctx.input(0)]
    starts, ends = ctx.ints("starts", 1), ctx.ints("ends", 2)
    axes = ctx.ints("axes", 3) if ("axes" in ctx.node.attributes or ctx.input(3) is not None) else [0]
    steps = ctx.ints("steps", 4) if ctx.input(4) is not None else [1]
    if axes != [0] or steps != [1]:
        raise RuleUnsupported("it slices a shape with axes or steps no rule covers")
    s, e, _ = slice(starts[0], ends[0]).indices(len(vec))
    _set(ctx, vec[s:max(e, s)])


def concat(ctx: NodeContext) -> None:
    if ctx.attr_int("axis", 0) not in (0, -1):
        raise RuleUnsupported("it concatenates shapes on an axis other than 0")
    entries = []
    for i in range(len(ctx.node.inputs)):
        part = vector(ctx, i)
        if part is None:
            raise RuleUnsupported(f"input {i} of a shape concatenation is computed at run time")
        entries.extend(part)
    _set(ctx, entries)


def _fill(v: ir.Value | None) -> float | None:
    """The one value every element of ``v`` holds: a uniform constant, ConstantOfShape's fill, or a Mul of
    two such (TorchScript's ``-1 * ones`` in expand shapes); None otherwise."""
    if v is None:
        return None
    if v.const_value is not None:
        arr = v.const_value.numpy()
        return float(arr.reshape(-1)[0]) if arr.size and (arr == arr.reshape(-1)[0]).all() else None
    node = v.producer()
    if node is None or node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "ConstantOfShape":
        a = node.attributes.get("value")
        return float(a.value.numpy().reshape(-1)[0]) if a is not None else 0.0
    if node.op_type == "Mul" and len(node.inputs) == 2:
        x, y = _fill(node.inputs[0]), _fill(node.inputs[1])
        return None if x is None or y is None else x * y
    return None


def where(ctx: NodeContext) -> None:
    """Where(Equal(v, c), a, v) with uniform c and a: TorchScript's expand replaces -1 entries of its
    shape by 1. A dim is never negative, so a dim entry stays; literals are evaluated."""
    vec = ctx.analysis.shape_vecs.get(ctx.input(2))
    eq = ctx.input(0).producer() if ctx.input(0) is not None else None
    if vec is None or ctx.input(1) in ctx.analysis.shape_vecs or eq is None or eq.op_type != "Equal" \
            or ctx.input(2) not in eq.inputs:
        raise RuleUnsupported("it selects shape entries in a form no rule covers")
    c = _fill(eq.inputs[1] if eq.inputs[0] is ctx.input(2) else eq.inputs[0])
    a = _fill(ctx.input(1))
    if c is None or a is None:
        raise RuleUnsupported("it selects shape entries in a form no rule covers")
    out = []
    for e in vec:
        if e.literal is not None:
            out.append(replace(e, literal=int(a), source=None) if e.literal == c else e)
        elif e.is_plain_dim and c < 0:
            out.append(e)
        else:
            raise RuleUnsupported("it compares a computed shape entry")
    _set(ctx, out)


def reshape_vector(ctx: NodeContext) -> None:
    """Reshape of a 1-D shape vector to [-1] or its own length keeps its entries."""
    target = ctx.const(1)
    vec = ctx.analysis.shape_vecs[ctx.input(0)]
    if target is None or target.reshape(-1).tolist() not in ([-1], [len(vec)]):
        raise RuleUnsupported("it reshapes a shape vector")
    same(ctx)


def arith(ctx: NodeContext) -> None:
    """Add/Sub/Mul/Div of a shape vector and an integer constant (torch.chunk's bound arithmetic)."""
    op = ctx.node.op_type
    if op == "Where":
        return where(ctx)
    if op == "Equal" and ctx.input(0) in ctx.analysis.shape_vecs and _fill(ctx.input(1)) is not None:
        ctx.shapes_read.update(range(len(ctx.node.inputs)))  # read by ``where``, which checks its use
        return
    vec, other = vector(ctx, 0), vector(ctx, 1)
    if vec is None or other is None or op not in ("Add", "Sub", "Mul", "Div"):
        raise RuleUnsupported("shape arithmetic with a run-time operand")
    if all(e.literal is not None for e in vec) and any(e.literal is None for e in other):
        if op in ("Sub", "Div"):
            raise RuleUnsupported("shape arithmetic no rule covers")
        vec, other = other, vec
    if any(e.literal is None for e in other) or len(other) not in (1, len(vec)):
        raise RuleUnsupported("shape arithmetic between two run-time shapes")
    out = []
    for k, e in enumerate(vec):
        new = _apply(e, op, other[k if len(other) > 1 else 0].literal)
        if new is None:
            raise RuleUnsupported(f"shape arithmetic ({op}) no rule covers")
        out.append(new)
    _set(ctx, out)


def same(ctx: NodeContext) -> None:
    """Cast, Identity, Squeeze/Unsqueeze of a 0-d or 1-d shape vector keep the entries."""
    _set(ctx, list(ctx.analysis.shape_vecs[ctx.input(0)]))


def reads_channels(an, entry: Entry) -> bool:
    d = an.dims.get(entry.value) if entry.value is not None else None
    return d is not None and d.axis == entry.axis


@dataclass
class TargetEntry:
    """One entry of a Reshape target: a literal (rewritable), a copy of an input dim, or inferred."""

    kind: str  # "literal", "copy" (same input axis), "infer" (-1), "dim" (a known non-channel size),
    # "chan" (factor times the channel count of a tensor carrying ``atoms``: right wherever exactly those
    # channels, each repeated factor times, land)
    size: int | str | None = None
    write: object = None  # callable(new int) for literals
    factor: int = 1
    atoms: np.ndarray | None = None

    @property
    def literal(self) -> bool:
        return self.kind == "literal"


def reshape_target(ctx: NodeContext, in_shape: list) -> list[TargetEntry]:
    """Read a Reshape's target (a constant, or a Shape-derived vector) as TargetEntry list."""
    allowzero = ctx.attr_int("allowzero", 0)
    x = ctx.input(0)
    arr = ctx.const(1)
    if arr is not None:
        entries = [Entry(literal=int(v), source=(ctx.node, 1, k)) for k, v in enumerate(arr.ravel())]
    elif ctx.input(1) in ctx.analysis.shape_vecs:
        entries = ctx.analysis.shape_vecs[ctx.input(1)]
        ctx.shapes_read.add(1)
    else:
        raise RuleUnsupported("its target shape is computed at run time")
    out = []
    for j, e in enumerate(entries):
        if e.literal is not None:
            if e.literal == 0 and not allowzero:
                out.append(TargetEntry("copy", in_shape[j] if j < len(in_shape) else None))
            elif e.literal == -1:
                out.append(TargetEntry("infer"))
            else:
                out.append(TargetEntry("literal", e.literal, _writer(e.source, ctx.node)))
        elif e.is_plain_dim and e.axis == j and (e.value is x or _same_channels(ctx.analysis, e.value, x, j)):
            out.append(TargetEntry("copy", in_shape[j]))
        elif reads_channels(ctx.analysis, e) and e.literal is None and (e.add, e.den, e.plus) == (0, 1, 0):
            shape = ctx.shape(e.value)
            size = shape[e.axis] if shape is not None else None
            factor = e.mul * e.num
            out.append(TargetEntry("chan", size * factor if isinstance(size, int) else None, factor=factor,
                                   atoms=ctx.analysis.dims[e.value].atoms))
        elif reads_channels(ctx.analysis, e):
            raise RuleUnsupported("its target computes with a channel count")
        elif e.literal is None and (e.add, e.den, e.plus) == (0, 1, 0):  # k * a dim (GQA's kv_heads * n_rep)
            shape = ctx.shape(e.value)
            size, k = (shape[e.axis] if shape is not None else None), e.mul * e.num
            if isinstance(size, int):
                size *= k
            elif size is not None and k != 1:
                size = f"{k}*{size}"
            out.append(TargetEntry("dim", size))
        else:
            out.append(TargetEntry("dim", None))
    return out


def holds_channels(entry: TargetEntry, atoms: np.ndarray) -> bool:
    """A "chan" entry that states the size of an axis holding exactly ``atoms``: the channel count it
    reads, times its factor, is that axis's size before and after pruning."""
    return entry.kind == "chan" and np.array_equal(np.repeat(entry.atoms, entry.factor), atoms)


def _same_channels(an, v: ir.Value, x: ir.Value, axis: int) -> bool:
    """``v`` carries on ``axis`` exactly the channels ``x`` carries there (x = Relu(v), a residual
    branch...), so its size there is x's channel count before and after pruning."""
    dv, dx = an.dims.get(v), an.dims.get(x)
    return (dv is not None and dx is not None and dv.axis == dx.axis == axis
            and np.array_equal(dv.atoms, dx.atoms))


def _writer(source, owner: ir.Node):
    """Write a new literal where ``owner`` (a Reshape or Expand, shape at input 1) reads it. A shape
    computation another node also reads (the dynamo exporter shares one Concat between layers) is copied
    for ``owner`` first, so the edit reaches no other node."""
    node, index, offset = source
    if node is not owner and owner.inputs[1].producer() is not node and not _single_use_path(owner.inputs[1], node):
        return None  # a rule that must rewrite this literal refuses (``writer_of``)

    def write(new: int) -> None:
        target = node
        if node is not owner and len(owner.inputs[1].uses()) > 1:
            target = _own_copy(owner, node)
        arr = np.array(target.inputs[index].const_value.numpy(), copy=True)
        flat = arr.reshape(-1)
        flat[offset] = new
        set_constant_input(target, index, arr)

    return write


def writer_of(entry: TargetEntry):
    """The literal's writer; a literal inside a shape computation other nodes share cannot be rewritten."""
    if entry.write is None:
        raise RuleUnsupported("it would rewrite a shape literal that a shape computation shared with other "
                              "nodes holds")
    return entry.write


def _single_use_path(v: ir.Value, source: ir.Node) -> bool:
    """Every value from ``source``'s output to ``v`` is read by one node."""
    seen, stack = set(), [v]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if len(x.uses()) > 1:
            return False
        p = x.producer()
        if p is None or p is source:
            continue
        stack.extend(i for i in p.inputs if i is not None and i.const_value is None)
    return True


def _own_copy(owner: ir.Node, node: ir.Node) -> ir.Node:
    """A copy of ``node`` (the producer of ``owner``'s input 1) that feeds ``owner`` alone."""
    out = node.outputs[0]
    clone = ir.Node(node.domain, node.op_type, list(node.inputs), list(node.attributes.values()),
                    name=f"{node.name or node.op_type}__{owner.name or owner.op_type}")
    clone.outputs[0].name = f"{out.name}__{owner.name or owner.op_type}"
    clone.outputs[0].shape, clone.outputs[0].dtype = out.shape, out.dtype
    owner.graph.insert_before(owner, clone)
    owner.replace_input_with(1, clone.outputs[0])
    return clone
