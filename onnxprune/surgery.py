"""Apply a plan: slice every member of every touched group, rewrite literal sizes, re-infer shapes."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass
from onnx_ir.passes.common._c_api_utils import call_onnx_api

from onnxprune.errors import PlanError
from onnxprune.graph import Analysis, optable
from onnxprune.graph.context import ParamMember
from onnxprune.graph.edit import set_constant_input
from onnxprune.passes.normalize import STRICT_SHAPES_OK, reinfer_shapes
from onnxprune.plan import Plan, check_removable
from onnxprune.weights import Selection


def apply_plan(analysis: Analysis, plan: Plan, name_dims: bool = True) -> None:
    """Remove the plan's channels from ``analysis.model`` in place. ``name_dims=False``: the pruned
    model's shapes are inferred without onnxruntime's symbolic names (``infer_shapes``), for search
    candidates that are only run, never analysed or written."""
    if analysis.applied:
        raise PlanError("this analysis was already used to prune its model; analyse the pruned model again")
    removed_root = np.zeros(len(analysis.roots), dtype=bool)
    for gid, cls in plan.removed.items():
        group = analysis.groups[gid]
        if group.frozen:
            raise PlanError(f"group '{group.name}' is frozen: " + "; ".join(group.frozen))
        check_removable(group, cls)
        removed_root[group.classes[cls]] = True
    merge_rows = _merge_table(analysis, plan, removed_root)
    if not removed_root.any():
        analysis.applied = True
        return

    def keep(atoms: np.ndarray) -> np.ndarray:
        return ~removed_root[analysis.roots[atoms]]

    for gid, folds in plan.bias_folds.items():
        for j, node, v in folds:
            _fold_into_bias(analysis, analysis.groups[gid], j, node, v)
    # every stored constant -> (member, axis) slicing it: a quantized member slices its integers, and its
    # scale and zero point where they run along the member's axis
    members: dict[tuple[int, int], list[tuple[ParamMember, ir.Node, int, int]]] = {}
    for p in analysis.params:
        expected = len(p.atoms) // p.blocks
        const = (p.quant.node.inputs[p.quant.data] if p.quant is not None else p.value).const_value
        if const is None or const.shape[p.axis] != expected:
            raise PlanError(f"constant '{p.value.name}' no longer has the size the plan was made for "
                            "(was the plan applied already?)")
        if keep(p.atoms).all():
            continue
        if p.quant is not None and p.role == "consumer" and merge_rows:
            raise PlanError(f"'{p.node.name}' reads quantized weights: merged channels cannot be folded into them")
        for node, index, axis in p.stored():
            members.setdefault((id(node), index), []).append((p, node, index, axis))
    analysis.applied = True
    # A constant several nodes read and slice alike (an unrolled recurrence's per-step weights) stays one
    # constant: the first node's sliced copy is given to the others.
    sliced: dict[tuple, tuple[ir.Node, int]] = {}
    for group_members in members.values():
        group_members.sort(key=lambda m: m[0].blocks == 1)  # grouped columns first: they need the original rows
        _, node, index, _ = group_members[0]
        key = (id(node.inputs[index]), *((axis, m.blocks, m.role, analysis.roots[m.atoms].tobytes())
                                         for m, _, _, axis in group_members))
        if key in sliced:
            first, first_index = sliced[key]
            node.replace_input_with(index, first.inputs[first_index])
            continue
        sliced[key] = (node, index)
        source = node.inputs[index].const_value
        axes = [axis for _, _, _, axis in group_members]
        if (all(m.blocks == 1 for m, *_ in group_members) and len(set(axes)) == len(axes)
                and not any(_merges_into(m, analysis, merge_rows) for m, *_ in group_members)):
            # plain removal: sliced when saved, a slab at a time (a large weight is never copied whole)
            set_constant_input(node, index, Selection(source, [(axis, keep(m.atoms)) for m, _, _, axis in group_members],
                                                      source.name))
            continue
        arr = source.numpy()
        for m, _, _, axis in group_members:
            if m.role == "consumer" and merge_rows:
                arr = _fold_merges(arr, m, analysis, merge_rows)
            arr = _slice_grouped(arr, keep(m.atoms), m.blocks) if m.blocks > 1 else np.compress(keep(m.atoms), arr, axis=axis)
        set_constant_input(node, index, arr)
    for r in analysis.rewrites:
        r.apply(keep)
    RemoveUnusedNodesPass()(analysis.model)  # originals of tensors that were copied before editing
    strict = analysis.model.meta.get(STRICT_SHAPES_OK, True)  # as the input model was, before surgery
    reinfer_shapes(analysis.model, name_dims)
    check_pruned(analysis.model, strict)


def check_pruned(model: ir.Model, strict: bool = True) -> None:
    """onnx.checker and shape inference on the pruned graph (weights stripped, so cheap); strict when
    the input model passed strict inference. A failure here is a bug in onnxprune."""
    def _check(proto: onnx.ModelProto) -> None:
        # Small tensors still pointing at external data: the checker would look for the file relative to
        # the working directory. They are graph inputs here already, so their data is not needed.
        external = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        for t in external:
            proto.graph.initializer.remove(t)
        onnx.checker.check_model(proto)
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=strict)

    try:
        call_onnx_api(_check, model)
    except Exception as exc:
        raise PlanError(f"the pruned model fails onnx.checker or shape inference ({str(exc).splitlines()[0][:300]}); "
                        "this is a bug in onnxprune, please report it with the model") from exc


def _fold_into_bias(analysis: Analysis, group, j: int, node: ir.Node, v) -> None:
    """Consumer ``node`` reads channel j as the constant v everywhere (a float, or one value per position
    of j in the consumer's columns): add v * (its weights for j, summed over everything but its output
    axis) to its bias, creating the bias if it has none (``bias_slot``)."""
    member = next((p for p in group.params if p.role == "consumer" and p.node is node), None)
    aff = optable.traits(node, analysis.opset).affine()
    if member is None or aff is None or aff.bias_scale == 0 or aff.bias is None and member.input_index != aff.weight:
        raise PlanError(f"channel {j} of group '{group.name}': no consumer '{node.name}' with a bias to fold into")
    if member.quant is not None or node.inputs[aff.weight].const_value is None:
        raise PlanError(f"channel {j} of group '{group.name}': '{node.name}' reads quantized weights, "
                        "a constant cannot be folded into its bias exactly")
    w = node.inputs[aff.weight].const_value.numpy()
    pos, cls = analysis.channels_in(group, member.atoms)
    cols = np.take(w.astype(np.float64), pos[cls == j], axis=member.axis)
    v = np.asarray(v, dtype=np.float64)
    if v.ndim:  # one value per position: along the consumer's input axis
        v = v.reshape([len(v) if a == member.axis else 1 for a in range(cols.ndim)])
    # Y = alpha * X W + beta * B: the constant adds alpha * v * (its weights), which B takes divided by beta
    delta = aff.weight_scale * (v * cols).sum(axis=tuple(a for a in range(w.ndim) if a != aff.weight_out_axis))
    delta = delta / aff.bias_scale
    slot_node, slot = bias_slot(analysis, node, aff, len(delta), w.dtype)
    has_bias = len(slot_node.inputs) > slot and slot_node.inputs[slot] is not None
    bias = slot_node.inputs[slot].const_value.numpy().astype(np.float64) if has_bias else np.zeros(len(delta))
    rank = max(1, bias.ndim)  # a following Add's [1, .., N] constant keeps its rank
    set_constant_input(slot_node, slot, (bias + delta).reshape([1] * (rank - 1) + [len(delta)]).astype(w.dtype))
    if not any(p.node is slot_node and p.input_index == slot for p in analysis.params):
        # a new (or newly per-channel) bias follows the consumer's own output channels
        producer = next((p for p in analysis.params if p.role == "producer" and p.node is node), None)
        if producer is not None:
            analysis.params.append(ParamMember(slot_node, slot, rank - 1, producer.atoms, "param"))


def bias_after(node: ir.Node, opset: int) -> tuple[ir.Node, int, list[int]] | None:
    """The one sum that reads ``node``'s output and adds a constant that varies at most along the last
    axis (an exported Linear's bias Add): (that node, the constant's input index, its shape), or None."""
    y = node.outputs[0]
    uses = list(y.uses())
    if len(uses) != 1 or y.is_graph_output():
        return None
    user, other = uses[0].node, 1 - uses[0].idx
    c = user.inputs[other] if len(user.inputs) == 2 and other >= 0 else None
    if c is None or c.const_value is None or optable.traits(user, opset).combine != "sum":
        return None
    shape = list(c.const_value.shape)
    if (y.shape is not None and len(shape) > len(y.shape)) or any(d != 1 for d in shape[:-1]):
        return None  # a constant of higher rank would broadcast the output to more axes
    return user, other, shape


def bias_slot(analysis: Analysis, node: ir.Node, aff, channels: int, dtype) -> tuple[ir.Node, int]:
    """Where a consumer's bias lives: its own bias input; for an op without one (MatMul) the constant of
    the one sum that reads its output, when that constant is per output channel or a scalar (an exported
    Linear's bias Add); else a new Add after it with a zero bias of ``channels``."""
    if aff.bias is not None:
        return node, aff.bias
    found = bias_after(node, analysis.opset)
    if found is not None and (not found[2] or found[2][-1] in (1, channels)):
        return found[0], found[1]
    y = node.outputs[0]
    uses = list(y.uses())
    graph = node.graph
    out = ir.Value(name=y.name, shape=y.shape, type=y.type)
    y.name = _unique_value_name(graph, f"{y.name}_before_bias")
    zero = np.zeros(channels, dtype)
    b = ir.Value(name=_unique_value_name(graph, f"{out.name}_bias"), shape=ir.Shape(zero.shape),
                 type=ir.TensorType(ir.DataType.from_numpy(zero.dtype)))
    b.const_value = ir.tensor(zero, name=b.name)
    graph.register_initializer(b)
    for u in uses:
        u.node.replace_input_with(u.idx, out)
    for i, o in enumerate(graph.outputs):
        if o is y:
            graph.outputs[i] = out
    add = ir.Node("", "Add", [y, b], outputs=[out], name=f"{node.name}_bias")
    graph.insert_after(node, add)
    return add, 1


def _unique_value_name(graph: ir.Graph, base: str) -> str:
    taken = set(graph.initializers) | {v.name for n in graph for v in n.outputs} | {v.name for v in graph.inputs}
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def _merge_table(analysis: Analysis, plan: Plan, removed_root: np.ndarray) -> dict[int, tuple[int, float]]:
    """removed channel root -> (kept channel root, coefficient) for every merge in the plan."""
    table = {}
    for gid, merges in plan.merges.items():
        group = analysis.groups[gid]
        if group.blocks:
            raise PlanError(f"group '{group.name}': merges are not supported where grouped convs or chunks read it")
        for j, i, c in merges:
            rj, ri = int(group.classes[j]), int(group.classes[i])
            if not removed_root[rj] or removed_root[ri]:
                raise PlanError(f"group '{group.name}': a merge must fold a removed channel into a kept one")
            table[rj] = (ri, float(c))
    return table


def _merges_into(m: ParamMember, analysis: Analysis, table: dict[int, tuple[int, float]]) -> bool:
    """Whether ``_fold_merges`` changes member ``m``'s weights (a consumer reading a merged channel)."""
    return m.role == "consumer" and bool(table) and any(r in table for r in np.unique(analysis.roots[m.atoms]).tolist())


def _fold_merges(arr: np.ndarray, m: ParamMember, analysis: Analysis, table: dict[int, tuple[int, float]]) -> np.ndarray:
    """Consumer weights: the columns of each kept channel gain c times those of the channel folded
    into it (a_j = c * a_i, so W_i a_i + W_j a_j = (W_i + c W_j) a_i). Positions pair up in order (a
    flattened channel owns its block of features in the same layout as every other)."""
    roots = analysis.roots[m.atoms]
    touched = [r for r in np.unique(roots).tolist() if r in table]
    if not touched:
        return arr
    arr = np.array(arr, copy=True)
    moved = np.moveaxis(arr, m.axis, 0)  # a view: writes land in arr
    for rj in touched:
        ri, c = table[rj]
        pj, pi = np.nonzero(roots == rj)[0], np.nonzero(roots == ri)[0]
        if len(pj) != len(pi):
            raise PlanError(f"constant '{m.value.name}': merged channels hold different numbers of positions")
        moved[pi] += (c * moved[pj].astype(np.float64)).astype(arr.dtype)
    return arr


def _slice_grouped(w: np.ndarray, mask: np.ndarray, groups: int) -> np.ndarray:
    """Input columns of a grouped conv: rows of conv group b keep the columns kept in block b."""
    mask = mask.reshape(groups, -1)
    rows = w.reshape(groups, w.shape[0] // groups, *w.shape[1:])
    return np.concatenate([rows[b][:, mask[b]] for b in range(groups)], axis=0)
