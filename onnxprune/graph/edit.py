"""Small, safe edits of constants and attributes shared by rewrites and surgery."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def set_constant_input(node: ir.Node, index: int, array: np.ndarray) -> None:
    """Give ``node`` a new value for a constant input; a tensor shared with other uses is copied."""
    old = node.inputs[index]
    array = np.ascontiguousarray(array)
    if len(old.uses()) == 1 and not old.is_graph_output() and not old.is_graph_input():
        old.const_value = ir.tensor(array, name=old.name)
        old.shape = ir.Shape(array.shape)
        return
    graph = node.graph
    name = _unique_name(graph, f"{old.name}__{node.name or node.op_type}")
    new = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(old.dtype),
                   const_value=ir.tensor(array, name=name))
    graph.register_initializer(new)
    node.replace_input_with(index, new)


def set_int_attr(node: ir.Node, name: str, value: int) -> None:
    node.attributes[name] = ir.AttrInt64(name, int(value))


def set_ints_attr(node: ir.Node, name: str, values) -> None:
    node.attributes[name] = ir.AttrInt64s(name, [int(v) for v in values])


def _unique_name(graph: ir.Graph, base: str) -> str:
    taken = set(graph.initializers)
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name
