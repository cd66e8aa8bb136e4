"""Small, safe edits of constants and attributes shared by rewrites and surgery."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def set_constant_input(node: ir.Node, index: int, array: np.ndarray | ir.TensorProtocol) -> None:
    """Give ``node`` a new value (an array, or a tensor such as a lazy ``weights.Selection``) for a
    constant input (added if the optional input is absent); a tensor shared with other uses is copied
    rather than edited."""
    old = node.inputs[index] if index < len(node.inputs) else None
    if old is not None and len(old.uses()) == 1 and not old.is_graph_output() and not old.is_graph_input():
        old.const_value = _named_tensor(array, old.name)
        old.shape = ir.Shape(old.const_value.shape)
        return
    graph = node.graph
    base = old.name if old is not None else f"{node.name or node.op_type}_input{index}"
    name = _unique_name(graph, f"{base}__{node.name or node.op_type}" if old is not None else base)
    tensor = _named_tensor(array, name)
    new = ir.Value(name=name, shape=ir.Shape(tensor.shape), type=ir.TensorType(tensor.dtype), const_value=tensor)
    graph.register_initializer(new)
    if index >= len(node.inputs):
        node.resize_inputs(index + 1)
    node.replace_input_with(index, new)


def _named_tensor(data: np.ndarray | ir.TensorProtocol, name: str | None) -> ir.TensorProtocol:
    if isinstance(data, np.ndarray):
        return ir.tensor(np.ascontiguousarray(data), name=name)
    data.name = name
    return data


def set_int_attr(node: ir.Node, name: str, value: int) -> None:
    node.attributes[name] = ir.AttrInt64(name, int(value))


def set_ints_attr(node: ir.Node, name: str, values) -> None:
    node.attributes[name] = ir.AttrInt64s(name, [int(v) for v in values])


def set_ints(node: ir.Node, attr: str, index: int, values) -> None:
    """Write an int list back where the node keeps it: the attribute (old opsets) or constant input."""
    if attr in node.attributes:
        set_ints_attr(node, attr, values)
    else:
        dtype = node.inputs[index].const_value.numpy().dtype
        set_constant_input(node, index, np.array(values, dtype=dtype))


def _unique_name(graph: ir.Graph, base: str) -> str:
    taken = set(graph.initializers)
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name
