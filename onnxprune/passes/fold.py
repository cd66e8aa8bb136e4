"""Constant folding before analysis: onnxscript's folder, with a policy that keeps the model as fast and as
small as it was.

What depends only on weights and static shapes becomes an initializer the channel rules can read: Shape
of a tensor whose dims are known (a symbolic batch stays symbolic: only the static dims fold), the
arithmetic on it (pads, reshape targets), and weight subgraphs such as run-time weight standardisation
(weight -> ReduceMean/Sub/Div/Mul -> Conv weight), whose folded result is the weight the Conv reads.

The folding itself is ``onnxscript.optimizer.fold_constants``; this module only decides which nodes it may
fold (``should_fold``), because folding can make a model bigger without making it faster: a
ConstantOfShape or Expand of a scalar into an attention mask, a weight copied because it is also read
elsewhere. The rule, per connected region of nodes that read only constants: fold it when what it leaves
behind (the values read from outside the region) holds no more bytes than the constants it consumes
alone (they go with it), plus a small allowance for shape-sized results; layout ops on constants
(Transpose, Reshape, Cast... of a weight) always fold, as normalisation always did. Quantize/Dequantize
nodes never fold: the quantized rules read them as they are.

The pruned model is written from the folded one (``passes.preserve`` keeps IN's spelling elsewhere), so it
runs what it folded as constants: fewer nodes, no new ones. A model whose weights were standardised at
run time is written with the standardised weights (it computes the same, to float32 rounding); a plan
that removes nothing writes IN itself.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

_SMALL = 1 << 16  # elements: a folded result this small never makes the model noticeably bigger
_SMALL_BYTES = 4 * _SMALL
_KEEP = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})  # the quantized rules read them
# Ops that only re-lay out (or re-type) a weight fold whatever their size, as normalisation always did:
# exporters write them between a weight and its Conv/MatMul (a transposed or fp16 weight, reshaped BN
# parameters) and the analysis must read the result as the weight; a weight also read elsewhere is copied.
_LAYOUT = frozenset({"Identity", "Cast", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Reshape"})
_SHAPE_READS = frozenset({"Shape", "Size"})  # what the folder evaluates from shapes alone
_NONDETERMINISTIC = frozenset({"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike",
                               "Multinomial", "Bernoulli"})


def fold_model_constants(model: ir.Model) -> bool:
    """Fold ``model`` in place (shapes should be inferred first: Shape folds from them); whether it changed."""
    before = set(model.graph.initializers.values())
    dims = _static_shape_elements(model.graph)
    allowed = _foldable_regions(model.graph)
    if not allowed and not any(n.op_type in _SHAPE_READS for n in model.graph):
        _unshare_shape_literals(model.graph, before)
        return dims > 0  # nothing the folder could fold: onnxscript is not even imported
    from onnxscript.optimizer import FOLDED_FROM_KEY, fold_constants

    def should_fold(node: ir.Node) -> bool:
        if node.op_type in _KEEP or any(out.is_graph_output() for out in node.outputs):
            return False
        if node in allowed:
            return allowed[node]
        # constant only after a Shape folded (shape arithmetic): small results only
        return all(_elements(out) is not None and _elements(out) <= _SMALL for out in node.outputs)

    # The policy is ours: onnxscript's size limits would stop a weight subgraph halfway (a weight
    # intermediate read twice), so they are lifted and should_fold decides every node.
    result = fold_constants(model, onnx_shape_inference=False, input_size_limit=math.inf,
                            output_size_limit=math.inf, should_fold=should_fold)
    for value in model.graph.initializers.values():  # provenance note; not part of the model we write
        value.metadata_props.pop(FOLDED_FROM_KEY, None)
    for node in model.graph:
        for value in node.outputs:
            value.metadata_props.pop(FOLDED_FROM_KEY, None)
    _unshare_shape_literals(model.graph, before)
    return bool(result.modified) or dims > 0


def _unshare_shape_literals(graph: ir.Graph, before: set[ir.Value]) -> None:
    """Each node reading a folded integer constant of shape size gets its own copy: the value was one
    run-time computation several nodes read (a Reshape and an Expand of the same heads), and as literals
    each node's is rewritten for that node alone when its channels are pruned."""
    for value in list(graph.initializers.values()):
        if (value in before or value.const_value is None or value.const_value.size > 64
                or not value.const_value.dtype.is_integer() or value.is_graph_output()):
            continue
        for use in list(value.uses())[1:]:
            copy = ir.Value(name=f"{value.name}__{use.node.name or use.node.op_type}_{use.idx}",
                            shape=ir.Shape(value.const_value.shape), type=value.type,
                            const_value=ir.tensor(value.const_value.numpy().copy()))
            copy.const_value.name = copy.name
            graph.register_initializer(copy)
            use.node.replace_input_with(use.idx, copy)


def _static_shape_elements(graph: ir.Graph) -> int:
    """``Gather(Shape(x), i)`` with a scalar ``i`` and dim ``i`` of x static becomes that number; the count.

    The one shape read onnxscript's folder leaves (it folds Gather of a Shape by a 1-D index only) and the
    one the TorchScript exporter writes for every ``x.shape[i]``. A symbolic dim (the batch) stays a
    run-time read: the model's contract does not change."""
    count = 0
    for node in list(graph):
        shape_node = node.inputs[0].producer() if node.op_type == "Gather" and node.inputs[0] is not None else None
        if (shape_node is None or shape_node.op_type != "Shape" or node.domain not in ("", "ai.onnx")
                or shape_node.inputs[0] is None or shape_node.inputs[0].shape is None
                or node.outputs[0].is_graph_output() or node.inputs[1] is None or node.inputs[1].const_value is None):
            continue
        index = node.inputs[1].const_value.numpy()
        axis = node.attributes.get("axis")
        if index.ndim != 0 or (axis is not None and axis.as_int() != 0):
            continue
        dims = list(shape_node.inputs[0].shape)
        start = shape_node.attributes.get("start")
        end = shape_node.attributes.get("end")
        dims = dims[start.as_int() if start else 0:end.as_int() if end else None]
        if (not -len(dims) <= int(index) < len(dims) or not isinstance(dims[int(index)], int)
                or _reaches_only_runtime_shapes(node.outputs[0])):
            continue
        out = node.outputs[0]
        value = ir.Value(name=out.name, shape=ir.Shape([]), type=ir.TensorType(ir.DataType.INT64),
                         const_value=ir.tensor(np.array(dims[int(index)], dtype=np.int64), name=out.name))
        out.name = None  # the initializer takes the name
        out.replace_all_uses_with(value)
        graph.remove(node, safe=True)
        graph.register_initializer(value)
        count += 1
    return count


# Ops a shape vector passes through on its way to a shape input (TorchScript's reshape/expand arithmetic).
_SHAPE_ARITHMETIC = frozenset({"Unsqueeze", "Squeeze", "Concat", "Cast", "Identity", "Mul", "Add", "Sub", "Div",
                               "Equal", "Where", "Reshape", "Slice", "Gather", "Shape", "ConstantOfShape"})
# Shape inputs the channel rules follow at run time: a dim read there tracks the pruned tensor by itself,
# whereas a folded literal would have to be rewritten (and cannot be where the computation is shared).
_RUNTIME_SHAPE_INPUTS = frozenset({("Reshape", 1), ("Expand", 1), ("Tile", 1)})


def _reaches_only_runtime_shapes(value: ir.Value) -> bool:
    """Whether every path from ``value`` through shape arithmetic ends in a Reshape/Expand/Tile shape input."""
    seen: set[ir.Node] = set()
    stack = [value]
    while stack:
        v = stack.pop()
        if v.is_graph_output():
            return False
        for use in v.uses():
            node = use.node
            if (node.op_type, use.idx) in _RUNTIME_SHAPE_INPUTS:
                continue
            if node.op_type not in _SHAPE_ARITHMETIC or node.domain not in ("", "ai.onnx"):
                return False
            if node not in seen:
                seen.add(node)
                stack.extend(node.outputs)
    return True


def _elements(value: ir.Value) -> int | None:
    """Elements of a value of static shape (a constant's, or an inferred one), else None."""
    if value.const_value is not None:
        return value.const_value.size
    if value.shape is None or not all(isinstance(d, int) for d in value.shape):
        return None
    return math.prod(value.shape)


def _nbytes(value: ir.Value) -> float:
    """Bytes of a value of static shape and known type (a constant's, or an inferred one), else infinity."""
    if value.const_value is not None:
        return value.const_value.nbytes
    elements, dtype = _elements(value), value.dtype
    if elements is None or dtype is None:
        return math.inf
    return elements * dtype.itemsize


def _foldable_regions(graph: ir.Graph) -> dict[ir.Node, bool]:
    """Per node that reads only constants (initializers or such nodes' outputs): whether its region may fold.

    A region is a connected set of such nodes; it folds when the values it hands to the rest of the graph
    hold at most as many bytes as the initializers only it reads, plus ``_SMALL_BYTES`` (an int8 weight
    dequantised by Cast + Mul stays as it is: folded, it would be written back four times larger)."""
    const_nodes: list[ir.Node] = []
    constant: set[ir.Value] = {v for v in graph.initializers.values() if not v.is_graph_input()}
    for node in graph:  # topological order: a node's inputs are classified before it
        if (node.op_type in _KEEP or node.op_type in _NONDETERMINISTIC or node.domain not in ("", "ai.onnx")
                or any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values())):
            continue
        inputs = [v for v in node.inputs if v is not None]
        if all(v in constant for v in inputs):
            const_nodes.append(node)
            constant.update(node.outputs)
    members = set(const_nodes)
    parent = {n: n for n in const_nodes}

    def root(n: ir.Node) -> ir.Node:
        while parent[n] is not n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for node in const_nodes:
        for v in node.inputs:
            p = v.producer() if v is not None else None
            if p in members:
                parent[root(p)] = root(node)
    handed, consumed = {}, {}
    for node in const_nodes:
        r = root(node)
        for out in node.outputs:
            if out.is_graph_output() or any(u.node not in members for u in out.uses()):
                handed[r] = handed.get(r, 0) + _nbytes(out)
        for v in node.inputs:
            if v is not None and v.producer() is None and not v.is_graph_output() and all(
                    u.node in members and root(u.node) is r for u in v.uses()):
                consumed.setdefault(r, set()).add(v)
    verdict = {r: handed.get(r, 0) <= _SMALL_BYTES + sum(v.const_value.nbytes for v in consumed.get(r, ())
                                                          if v.const_value is not None)
               for r in set(map(root, const_nodes))}
    return {n: verdict[root(n)] or n.op_type in _LAYOUT for n in const_nodes}
