"""Exact lumpability (lumpability of Markov chains applied to neurons): channels that provably contribute nothing, or
exactly c > 0 times another channel, are removed or folded into it; outputs do not change.

What each op computes comes from the op registry (``optable.traits``), never from its name:
- zero outgoing: every weight that reads the channel is 0, and nothing else reads its values;
- dead: the channel is exactly 0 wherever it is read: its producer filters and biases are 0 and every
  op on the way maps a zero channel to zero (ReLU-like ops, SiLU as x * Sigmoid(x), HardSwish, PRelu,
  GELU, Mish, pools, zero pads, reshapes, residual adds of dead channels...), followed per channel;
- proportional: [w_j; b_j] = c [w_i; b_i] with c > 0 over every producer of the group, every op on the
  way is positively homogeneous, and both channels take the same route (no per-channel parameters,
  same tensors), so a_j = c a_i and the consumers take (W_i + c W_j) a_i. BatchNormalization after a
  Conv is folded into it first (``passes.normalize.fold_batchnorm``).
- constant: its producer filters are 0 but its bias is not, on the way to each consumer there are only
  ops that keep a constant constant (their value maps give the value the consumer reads), and each
  consumer reads every position alike and has a bias to take it.
Channels of one producer that a later op couples (a shuffle, a head split, an Add of a tensor's own
halves) are one class: they go together or not at all, their filters are never added, and they are
never merged or folded (their positions need not line up with another class's).
Relaxed (nearly proportional) merges: ``onnxprune.criteria.merging``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onnxprune.graph import Analysis, Group, optable
from onnxprune.graph.context import ParamMember
from onnxprune.graph.traits import ALL, ANY, FIRST, OFFSET, POSITIONS, UNARY, Traits
from onnxprune.plan import Plan, emptied_segments

_COS_TOL = 1e-9
_SKETCH = 64  # longer vectors are compared through a random projection first


def lumping_plan(analysis: Analysis) -> Plan:
    """Everything removable without changing any output, with the merges that make it so."""
    plan = Plan()
    order = {id(n): i for i, n in enumerate(analysis.model.graph)}
    for g in analysis.prunable_groups:
        parts = producer_parts(analysis, g)
        reading = _reads(analysis, g, parts, order)
        unread = set() if reading.unknown else _zero_outgoing(analysis, g)
        zero_out = unread - set(np.flatnonzero(reading.elsewhere).tolist())
        dead = set(np.nonzero(reading.zero)[0].tolist())
        vectors = _stack(parts)
        if g.blocks:  # grouped convs or chunks read it: equal removals per block, nothing folded
            zero_out, dead = set(), balanced(g, zero_out | dead)
        folded, folds = (set(), []) if g.blocks else _constant_channels(analysis, g, parts, order, zero_out | dead)
        dead |= folded - {j for j, _, _ in folds}  # constants that are 0 wherever they are read
        folded -= dead
        why_not = "grouped convs or chunks read it" if g.blocks else path_blocker(analysis, g)
        merges = []
        if why_not is None:
            merges = _proportional(vectors, merge_routes(analysis, g), exclude=dead | zero_out | folded)
        removed = sorted(zero_out | dead | {j for j, _, _ in merges} | folded)
        # Keep one channel of the group and of each tensor holding part of it (a Split output); which
        # one does not matter.
        keep = {removed[0]} if len(removed) >= g.size else set()
        if not g.blocks:  # under a grouped-conv or chunk balance each block keeps one already
            keep |= {int(seg[0]) for _, seg in emptied_segments(g, removed) if not keep & set(seg.tolist())}
        if keep:
            removed = [j for j in removed if j not in keep]
            merges = [m for m in merges if m[0] not in keep]
            folds = [f for f in folds if f[0] not in keep]
        if not removed:
            reasons = [r for r in (why_not, reading.unknown) if r]
            if reasons:
                plan.skipped[g.id] = "not lumped: " + "; ".join(reasons)
            continue
        plan.removed[g.id] = np.array(removed, dtype=np.int64)
        merges = [m for m in merges if m[0] in set(removed)]
        if merges:
            plan.merges[g.id] = merges
        if folds:
            plan.bias_folds[g.id] = folds
        counts = [f"{len(zero_out)} unread", f"{len(dead - zero_out)} dead",
                  f"{len(merges)} folded into proportional channels",
                  f"{len(folded & set(removed))} constant, folded into consumer biases"]
        plan.reasons[g.id] = "lossless: " + ", ".join(p for p in counts if not p.startswith("0 "))
    return plan


def balanced(g: Group, candidates: set[int]) -> set[int]:
    """The largest part of ``candidates`` that removes the same number of channels from each block of
    every grouped conv or chunk reading the group, and leaves each block a channel."""
    chosen = set(candidates)
    while True:
        before = len(chosen)
        for blocks in g.blocks:
            rows = [[k for k in row.tolist() if k in chosen] for row in blocks]
            n = min(min(len(r) for r in rows), blocks.shape[1] - 1)
            for r in rows:
                chosen -= set(r[n:])
        if len(chosen) == before:
            return chosen


def node_traits(analysis: Analysis, node: ir.Node) -> Traits:
    """The op registry's traits of a node of the analysed model."""
    return optable.traits(node, analysis.opset)


# -- producer vectors ------------------------------------------------------------------------------
class ProducerParts:
    """One producer's contribution to each channel of a group: filters (scaled by the producer's
    weight scale, e.g. Gemm alpha) and biases (scaled by beta), with a following BatchNormalization
    folded in. A channel holding several positions of this producer gets them side by side (slot s =
    its s-th position), never added."""

    def __init__(self, node: ir.Node, filters: np.ndarray, bias: np.ndarray | None, raw_zero: np.ndarray,
                 raw_value: np.ndarray, multiplicity: np.ndarray) -> None:
        self.node = node
        self.filters = filters  # [channels, slots * d]
        self.bias = bias  # [channels, slots * bias width] or None (no bias, no BN)
        self.raw_zero = raw_zero  # per channel: the producer's own output is exactly 0 (before any BN)
        self.raw_value = raw_value  # per channel: the producer's own output where it is one constant, else NaN
        self.multiplicity = multiplicity  # positions of this producer per channel


def producer_parts(analysis: Analysis, g: Group) -> list[ProducerParts]:
    """Each producer's filters and biases per channel of ``g`` (``ProducerParts``)."""
    out = []
    for p in g.producers:
        aff = node_traits(analysis, p.node).affine()
        alpha = aff.weight_scale if aff is not None else 1.0
        w = np.moveaxis(p.array(), p.axis, 0)
        n = w.shape[0]
        rows = w.reshape(n, -1).astype(np.float64)  # a copy: scaled in place below
        if alpha != 1.0:
            rows *= alpha
        bias = _bias_positions(g, p, aff, n)
        filters_zero = ~rows.any(axis=1)
        if aff is None and p.quant is not None:  # an integer op (QLinearConv) requantizes: zero filters prove no 0
            filters_zero[:] = False
        raw_zero_pos = filters_zero & (~bias.any(axis=1) if bias is not None else True)
        # zero filters: the output is the bias everywhere (one value per channel only for a [N] bias)
        raw_value_pos = np.where(raw_zero_pos, 0.0, np.nan)
        if bias is not None and bias.shape[1] == 1:
            raw_value_pos = np.where(filters_zero, bias[:, 0], np.nan)
        bn = folded_batchnorm(analysis, g, p)
        if bn is not None:
            scale, shift = _bn_affine(analysis, g, bn, p)
            rows *= scale[:, None]
            bias = (bias if bias is not None else np.zeros((n, 1))) * scale[:, None] + shift[:, None]
        pos, cls = analysis.channels_in(g, p.atoms)
        mult = np.bincount(cls, minlength=g.size)
        out.append(ProducerParts(p.node, _per_class(rows, pos, cls, mult, g.size),
                                 _per_class(bias, pos, cls, mult, g.size) if bias is not None else None,
                                 _all_per_class(raw_zero_pos[pos], cls, g.size),
                                 np.where(mult == 1, _first_per_class(raw_value_pos[pos], cls, g.size), np.nan), mult))
    return out


def producer_vectors(analysis: Analysis, g: Group) -> np.ndarray:
    """Per channel: all its producer filters and biases side by side (float64), BN folded in."""
    return _stack(producer_parts(analysis, g))


def _stack(parts: list[ProducerParts]) -> np.ndarray:
    if len(parts) == 1 and parts[0].bias is None:
        return parts[0].filters
    cols = []
    for pp in parts:
        cols.append(pp.filters)
        if pp.bias is not None:
            cols.append(pp.bias)
    return np.concatenate(cols, axis=1)


def _bias_positions(g: Group, p: ParamMember, aff, n: int) -> np.ndarray | None:
    """[positions, values per channel] of the producer's bias times its scale (Gemm beta): a per-channel
    member, or a broadcast constant (the same for every channel), None without a bias."""
    if aff is None or aff.bias is None or aff.bias >= len(p.node.inputs) or p.node.inputs[aff.bias] is None:
        return None
    member = next((b for b in g.params if b.node is p.node and b.input_index == aff.bias), None)
    c = p.node.inputs[aff.bias].const_value
    if member is not None:
        arr = member.array().astype(np.float64)  # a quantized bias: its dequantized values
    elif c is None:
        return None  # computed at run time: the channel rule froze the group
    else:
        arr = c.numpy().astype(np.float64)
    if member is not None:
        return aff.bias_scale * np.moveaxis(arr, member.axis, 0).reshape(n, -1)
    return aff.bias_scale * np.broadcast_to(arr.reshape(1, -1), (n, arr.size))


def _bn_affine(analysis: Analysis, g: Group, bn: ir.Node, p: ParamMember) -> tuple[np.ndarray, np.ndarray]:
    """Per producer position: the scale and shift of the BatchNormalization on it."""
    spec = node_traits(analysis, bn).norm()
    vals = {}
    for k in (spec.scale, spec.shift, spec.mean, spec.var):
        m = next(q for q in g.params if q.node is bn and q.input_index == k)
        if not np.array_equal(m.atoms, p.atoms):
            raise ValueError("BatchNormalization atoms differ from its producer's")  # folded_batchnorm checks
        vals[k] = m.array().astype(np.float64).ravel()
    scale = vals[spec.scale] / np.sqrt(vals[spec.var] + spec.epsilon)
    return scale, vals[spec.shift] - vals[spec.mean] * scale


def _per_class(rows: np.ndarray, pos: np.ndarray, cls: np.ndarray, mult: np.ndarray, size: int) -> np.ndarray:
    """[channels, slots * d]: row ``pos[k]`` in slot s of channel ``cls[k]`` (its s-th position)."""
    if len(pos) == size == len(rows) and np.array_equal(cls, np.arange(size)) and np.array_equal(pos, cls):
        return rows  # one position per channel, in order: no copy
    width = int(mult.max()) if len(mult) else 1
    order = np.lexsort((pos, cls))
    sorted_cls = cls[order]
    slot = np.empty(len(pos), dtype=np.int64)
    slot[order] = np.arange(len(pos)) - np.searchsorted(sorted_cls, sorted_cls)
    out = np.zeros((size, width, rows.shape[1]))
    out[cls, slot] = rows[pos]
    return out.reshape(size, -1)


def _first_per_class(values: np.ndarray, cls: np.ndarray, size: int) -> np.ndarray:
    out = np.full(size, np.nan)
    out[cls[::-1]] = values[::-1]
    return out


def _all_per_class(flags: np.ndarray, cls: np.ndarray, size: int) -> np.ndarray:
    out = np.ones(size, dtype=bool)
    np.logical_and.at(out, cls, flags)
    return out


def folded_batchnorm(analysis: Analysis, g: Group, p: ParamMember) -> ir.Node | None:
    """The BatchNormalization-like node (running statistics) that alone reads producer ``p``'s output
    with its parameters on this group's channels (so channel values are its outputs), else None."""
    uses = p.node.outputs[0].uses()
    if len(uses) != 1 or p.node.outputs[0].is_graph_output():
        return None
    bn = uses[0].node
    norm = node_traits(analysis, bn).norm()
    if norm is None or norm.mean is None or len(bn.outputs) > 1:
        return None
    members = [q for q in g.params if q.node is bn]
    if {q.input_index for q in members} < {norm.scale, norm.shift, norm.mean, norm.var}:
        return None
    return bn if all(np.array_equal(q.atoms, p.atoms) for q in members) else None


# -- who reads the channels, and are dead channels 0 there -------------------------------------------
class Reading:
    """Per channel: exactly 0 wherever its values are read (``zero``), read by something other than
    consumer weights (``elsewhere``, e.g. a MatMul of two activations); ``unknown`` names a node that
    reads the group's values in a way no trait explains (then nothing is dead or unread)."""

    def __init__(self, zero: np.ndarray, elsewhere: np.ndarray, unknown: str | None) -> None:
        self.zero = zero
        self.elsewhere = elsewhere
        self.unknown = unknown


def _reads(analysis: Analysis, g: Group, parts: list[ProducerParts], order: dict[int, int]) -> Reading:
    """Follow all-zero channels from the producers through every node that reads the group's tensors,
    in graph order, with each node's zero rule (``graph.traits``)."""
    dims = dict(g.dims)
    consumers = {id(p.node) for p in g.params if p.role == "consumer"}
    masks: dict[ir.Value, np.ndarray] = {}
    for pp in parts:
        out = pp.node.outputs[0]
        masks[out] = masks.get(out, np.ones(g.size, bool)) & pp.raw_zero
    ok = np.ones(g.size, bool)
    elsewhere = np.zeros(g.size, bool)
    unknown = None
    users = {id(u.node): u.node for v in dims for u in v.uses()}
    for node in sorted(users.values(), key=lambda n: order.get(id(n), -1)):
        t = node_traits(analysis, node)
        if id(node) in consumers:  # weights read the channel: a zero channel adds nothing
            for v in node.inputs:
                if v is not None and v in dims:
                    ok &= masks.get(v, np.zeros(g.size, bool)) | ~_present(analysis, g, dims[v])
            continue
        if not t.reads_values:
            continue
        outs = [o for o in node.outputs if o in dims]
        zero = _zero_through(analysis, g, node, t, masks, dims)
        if not outs:
            if t.contracts:  # the channel's products are summed away: removing a zero product is exact
                read = np.logical_or.reduce([_present(analysis, g, dims[v]) for v in node.inputs
                                             if v is not None and v in dims])
                ok &= zero | ~read
                elsewhere |= read
                continue
            unknown = unknown or f"{node.op_type} '{node.name}' reads the channels' values"
            ok[:] = False
            continue
        for o in outs:
            masks[o] = zero
    if unknown is not None:
        ok[:] = False
    return Reading(ok, elsewhere, unknown)


def _present(analysis: Analysis, g: Group, d) -> np.ndarray:
    """Per channel of ``g``: the tracked dim ``d`` holds it at some position."""
    out = np.zeros(g.size, bool)
    out[analysis.channels_in(g, d.atoms)[1]] = True
    return out


def _zero_through(analysis: Analysis, g: Group, node: ir.Node, t: Traits, masks: dict, dims: dict) -> np.ndarray:
    """Per channel: the node's output is 0 at the channel (its inputs' zero masks and its zero rule)."""
    rule = t.zero_rule
    none = np.zeros(g.size, bool)
    if rule is None:
        return none
    inputs = []  # (tracked, mask) per present input
    for i, v in enumerate(node.inputs):
        if v is None:
            continue
        if v in dims:
            inputs.append((True, masks.get(v, none)))
        elif v.const_value is not None:
            inputs.append((False, _const_zero(analysis, g, node, i)))
        else:
            inputs.append((False, none))  # a run-time tensor without these channels
    if not inputs:
        return none
    if rule in (UNARY, FIRST):
        return inputs[0][1] if node.inputs[0] is not None else none
    if rule == ALL:
        return np.logical_and.reduce([m for _, m in inputs])
    if rule == ANY:
        if any(v is not None and v.const_value is not None and not np.all(np.isfinite(v.const_value.numpy()))
               for v in node.inputs):
            return none  # 0 * inf is not 0
        return np.logical_or.reduce([m for _, m in inputs])
    if rule == POSITIONS:
        tracked = [m for is_tracked, m in inputs if is_tracked]
        return np.logical_and.reduce(tracked) if tracked else none
    if rule == OFFSET:
        return inputs[0][1] & _offset_zero(analysis, g, node, t)
    return none


def _const_zero(analysis: Analysis, g: Group, node: ir.Node, index: int) -> np.ndarray:
    """Per channel: constant input ``index`` of ``node`` is 0 where it meets the channel."""
    arr = node.inputs[index].const_value.numpy()
    member = next((q for q in g.params if q.node is node and q.input_index == index), None)
    if member is None:  # broadcast over the channels: the same for every channel
        return np.full(g.size, not np.any(arr != 0))
    moved = np.moveaxis(arr, member.axis, 0).reshape(arr.shape[member.axis], -1)
    pos, cls = analysis.channels_in(g, member.atoms)
    return _all_per_class(~np.any(moved[pos] != 0, axis=1), cls, g.size)


def _offset_zero(analysis: Analysis, g: Group, node: ir.Node, t: Traits) -> np.ndarray:
    """Per channel: a per-channel affine node (BN, depthwise conv) maps a zero channel to 0."""
    members = {q.input_index: q for q in g.params if q.node is node}
    if not members:
        return np.zeros(g.size, bool)
    atoms = next(iter(members.values())).atoms
    if any(not np.array_equal(q.atoms, atoms) or q.blocks > 1 for q in members.values()):
        return np.zeros(g.size, bool)

    def param(i: int) -> np.ndarray | None:
        q = members.get(i)
        if q is None:
            return None
        arr = q.array().astype(np.float64)
        return np.moveaxis(arr, q.axis, 0).reshape(arr.shape[q.axis], -1)[:, 0] if arr.ndim > 1 else arr

    offset = t.offset(param)
    if offset is None:
        return np.zeros(g.size, bool)
    pos, cls = analysis.channels_in(g, atoms)
    return _all_per_class(np.broadcast_to(np.asarray(offset) == 0, (len(atoms),))[pos], cls, g.size)


# -- constant channels ---------------------------------------------------------------------------------
def _constant_channels(analysis: Analysis, g: Group, parts: list[ProducerParts], order: dict[int, int],
                       exclude: set[int]) -> tuple[set[int], list[tuple[int, object, float]]]:
    """The channels that are one constant at every position where they are read, and the folds
    (j, consumer node, value it reads) of their non-zero values. Producers with zero filters make
    their bias; the value is followed through every op that keeps a constant constant
    (``graph.traits``: activations by their value maps, arithmetic with constants, pools, moves).
    Each consumer reading a non-zero constant must read every position alike and have a bias."""
    dims = dict(g.dims)
    values: dict[ir.Value, np.ndarray] = {}
    for pp in parts:
        values[pp.node.outputs[0]] = pp.raw_value
    consumers = {id(p.node): p for p in g.params if p.role == "consumer"}
    ok = np.ones(g.size, bool)
    reads = []  # (consumer node, per channel value)
    users = {id(u.node): u.node for v in dims for u in v.uses()}
    unknown = np.full(g.size, np.nan)
    for node in sorted(users.values(), key=lambda n: order.get(id(n), -1)):
        t = node_traits(analysis, node)
        tracked = [v for v in node.inputs if v is not None and v in dims]
        if id(node) in consumers:
            v = values.get(tracked[0], unknown) if len(tracked) == 1 else unknown
            here = np.logical_or.reduce([_present(analysis, g, dims[x]) for x in tracked])
            foldable = takes_bias_fold(analysis, consumers[id(node)])
            ok &= (np.isfinite(v) & ((v == 0) | foldable)) | ~here
            if foldable:
                reads.append((node, np.where(here, v, 0.0)))
            continue
        if not t.reads_values:
            continue
        outs = [o for o in node.outputs if o in dims]
        if not outs:
            return set(), []  # read by something that is no consumer (a MatMul of two activations)
        out = _constant_through(analysis, g, node, t, values, dims)
        for o in outs:
            values[o] = out
    filters_zero = np.logical_and.reduce([~pp.filters.any(axis=1) for pp in parts])
    chosen = [k for k in np.flatnonzero(ok & filters_zero).tolist() if k not in exclude]
    return set(chosen), [(k, node, float(v[k])) for k in chosen for node, v in reads if v[k] != 0]


def _constant_through(analysis: Analysis, g: Group, node: ir.Node, t: Traits, values: dict, dims: dict) -> np.ndarray:
    """Per channel: the one value the node's output holds at the channel, NaN if not one constant."""
    unknown = np.full(g.size, np.nan)
    if t.keeps_constant():  # moves, pools, activations: the value map on the tracked input(s)
        tracked = [v for v in node.inputs if v is not None and v in dims]
        if not tracked:
            return unknown
        merged = _merge_positions(analysis, g, tracked, values, dims)
        f = t.value_map()
        return np.array([f(x) if np.isfinite(x) else np.nan for x in merged.tolist()])
    args = []
    for i, v in enumerate(node.inputs):
        if v is None:
            continue
        if v in dims:
            args.append(values.get(v, unknown))
        elif v.const_value is not None:
            arg = _const_per_channel(analysis, g, node, i)
            if arg is None:
                return unknown
            args.append(arg)
        else:
            return unknown
    if t.arith is None or not args:
        return unknown
    with np.errstate(all="ignore"):
        out = t.arith(args)
    return np.where(np.isfinite(out), out, np.nan) if out is not None and np.shape(out) == (g.size,) else unknown


def _merge_positions(analysis: Analysis, g: Group, tracked: list, values: dict, dims: dict) -> np.ndarray:
    """Per channel: its value over the tracked inputs that hold it (Concat), NaN where they differ."""
    unknown = np.full(g.size, np.nan)
    if len(tracked) == 1:
        return values.get(tracked[0], unknown)
    out = np.full(g.size, np.nan)
    seen = np.zeros(g.size, bool)
    for v in tracked:
        here = np.zeros(g.size, bool)
        here[analysis.channels_in(g, dims[v].atoms)[1]] = True
        val = values.get(v, unknown)
        clash = here & seen & ~(out == val)
        out = np.where(here & ~seen, val, out)
        out[clash] = np.nan
        seen |= here
    return out


def _const_per_channel(analysis: Analysis, g: Group, node: ir.Node, index: int) -> np.ndarray | float | None:
    """Constant input ``index`` as one number per channel (a per-channel member with one value per
    channel) or one number for all (a single value); None otherwise."""
    arr = node.inputs[index].const_value.numpy().astype(np.float64)
    member = next((q for q in g.params if q.node is node and q.input_index == index), None)
    if member is None:
        return float(arr.reshape(-1)[0]) if arr.size == 1 else None
    moved = np.moveaxis(arr, member.axis, 0).reshape(arr.shape[member.axis], -1)
    if moved.shape[1] != 1:
        return None
    pos, cls = analysis.channels_in(g, member.atoms)
    return np.where(np.bincount(cls, minlength=g.size) == 1, _first_per_class(moved[pos, 0], cls, g.size), np.nan)


def path_back(value: ir.Value, allowed: Callable[[ir.Node], bool]) -> tuple[list, ir.Node | None]:
    """Follow ``value`` back through the data input of nodes ``allowed`` accepts: the nodes passed
    (nearest first) and the first node it does not accept (None at a graph input)."""
    path = []
    node = value.producer()
    while node is not None and allowed(node):
        path.append(node)
        node = node.inputs[0].producer()
    return path, node


def reads_every_position(analysis: Analysis, c: ParamMember) -> bool:
    """A consumer whose every output position sums the same inputs alike (a Gemm, a MatMul, a Conv of
    one group without padding), so a constant channel adds the same to each."""
    aff = node_traits(analysis, c.node).affine()
    # quantized weights: a value folded into them (a merge, a bias) would not be representable exactly
    return aff is not None and aff.reads_every_position and c.blocks == 1 and c.quant is None


def takes_bias_fold(analysis: Analysis, c: ParamMember) -> bool:
    """A consumer that reads every position alike and has a bias a constant can be folded into: its bias
    slot, or for an op without one (MatMul of a 2-D constant weight) an Add after it (``surgery.bias_slot``)."""
    aff = node_traits(analysis, c.node).affine()
    if not reads_every_position(analysis, c) or aff.bias_scale == 0:
        return False
    w = c.node.inputs[aff.weight] if aff.bias is None else None
    return aff.bias is not None or (c.input_index == aff.weight and w is not None and w.const_value is not None
                                    and len(w.const_value.shape) == 2)


# -- unread channels -------------------------------------------------------------------------------------
def _zero_outgoing(analysis: Analysis, g: Group) -> set[int]:
    """Channels every consumer weight of which is exactly zero."""
    consumers = [p for p in g.params if p.role == "consumer"]
    if not consumers:
        return set()
    nonzero = np.zeros(g.size, dtype=bool)
    for p in consumers:
        w = np.moveaxis(p.array(), p.axis, 0)
        if p.blocks > 1:
            return set()
        any_nz = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) > 0
        pos, cls = analysis.channels_in(g, p.atoms)
        np.logical_or.at(nonzero, cls, any_nz[pos])
    return set(np.nonzero(~nonzero)[0].tolist())


# -- proportional channels --------------------------------------------------------------------------------
def path_blocker(analysis: Analysis, g: Group) -> str | None:
    """Why a channel's value is not c * another's at the consumers even if its filters are, or None."""
    folded = {id(bn) for bn in (folded_batchnorm(analysis, g, p) for p in g.producers) if bn is not None}
    own = {id(p.node) for p in g.producers} | {id(p.node) for p in g.params if p.role == "consumer"} | folded
    dims = dict(g.dims)
    quantized = next((p for p in g.params if p.role == "consumer" and p.quant is not None), None)
    if quantized is not None:  # a merged column (W_i + c W_j) would not be representable in its integers
        return f"{quantized.node.op_type} '{quantized.node.name}' reads them through quantized weights"
    for p in g.params:
        if p.role == "param" and id(p.node) not in folded and not _is_bias(analysis, g, p):
            return f"{p.node.op_type} '{p.node.name}' has per-channel parameters"
    for value in dims:
        for use in value.uses():
            node = use.node
            if id(node) in own:
                continue
            t = node_traits(analysis, node)
            if not t.reads_values:
                continue
            if not t.positively_homogeneous():
                return f"{node.op_type} '{node.name}' is not positively homogeneous"
            if not any(o in dims for o in node.outputs):
                return f"{node.op_type} '{node.name}' reads the channels and is no consumer"
            if t.zero_rule in (ALL, ANY) and any(v is not None and v.const_value is None and v not in dims
                                                  for v in node.inputs):
                return f"{node.op_type} '{node.name}' combines them with a tensor that is not in the group"
    return None


def _is_bias(analysis: Analysis, g: Group, p: ParamMember) -> bool:
    """A producer's own bias (part of the producer vectors)."""
    aff = node_traits(analysis, p.node).affine()
    return aff is not None and aff.bias == p.input_index and any(q.node is p.node for q in g.producers)


def merge_routes(analysis: Analysis, g: Group) -> np.ndarray:
    """Per channel: a route id; two channels may be merged only when their ids are equal and >= 0.
    Channels holding several positions of one producer get -1; the others are told apart by how many
    positions they hold in each tensor of the group (a channel that went through a different op, such
    as a MaxPool on one piece of a Split, is in other tensors)."""
    counts = [np.bincount(analysis.channels_in(g, p.atoms)[1], minlength=g.size) for p in g.producers]
    counts += [np.bincount(analysis.channels_in(g, d.atoms)[1], minlength=g.size) for _, d in g.dims]
    table = np.stack(counts, axis=1) if counts else np.zeros((g.size, 0), np.int64)
    _, ids = np.unique(table, axis=0, return_inverse=True)
    ids = np.asarray(ids).reshape(-1)
    multi = np.zeros(g.size, bool)
    for c in counts[:len(g.producers)]:
        multi |= c > 1
    return np.where(multi, -1, ids)


def _proportional(vectors: np.ndarray, routes: np.ndarray, exclude: set[int]) -> list[tuple[int, int, float]]:
    """(j, i, c): channel j equals c > 0 times channel i on the same route, i the first of its class.

    Candidates come from a seeded random projection of the vectors (proportional vectors stay exactly
    proportional under it, so none is missed), then each pair is checked on the full vectors."""
    norms = np.linalg.norm(vectors, axis=1)
    live = [k for k in range(len(vectors)) if norms[k] > 0 and k not in exclude and routes[k] >= 0]
    if len(live) < 2:
        return []
    d = vectors.shape[1]
    sketch = (vectors if d <= _SKETCH else vectors @ np.random.default_rng(0).standard_normal((d, _SKETCH)))[live]
    sn = np.linalg.norm(sketch, axis=1)
    sketch = sketch / np.where(sn > 0, sn, 1.0)[:, None]
    near = sketch @ sketch.T >= 1 - 1e-6
    merges, rep = [], {}
    for a, j in enumerate(live):
        for b in np.flatnonzero(near[a, :a]).tolist():
            i = live[b]
            if i in rep or routes[i] != routes[j]:
                continue
            if float(vectors[j] @ vectors[i]) / (norms[j] * norms[i]) >= 1 - _COS_TOL:
                c = norms[j] / norms[i]
                if np.allclose(vectors[j], c * vectors[i], rtol=1e-6, atol=1e-9 * norms[j]):
                    merges.append((j, i, float(c)))
                    rep[j] = i
                    break
    return merges
