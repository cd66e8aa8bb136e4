"""What the graph says about the values its integer inputs may take, for synthetic inputs.

Read exactly, from what an input's values reach unchanged (casts, reshapes and the like, which keep
every value): an index into an embedding table (a Gather on axis 0 of a constant with V rows) must lie in
[0, V); an input turned into an additive attention mask (cast to float, then subtracted or multiplied),
or cast to bool and combined logically, or fed to a fused attention op's mask slot, is all ones (attend everywhere). Anything else: nothing known.
"""

from __future__ import annotations

import onnx_ir as ir

# Ops whose output holds values of their first input only (the layout, the type or the selection changes).
_VALUE_PRESERVING = {("", op) for op in ("Identity", "Cast", "CastLike", "Unsqueeze", "Squeeze", "Reshape",
                                         "Flatten", "Expand", "Slice", "Transpose")}
# What turns a 0/1 mask into an attention mask: float arithmetic ((1 - m) * big, m * big) or, cast to
# bool, logic (m & causal, where(m, scores, -inf)); (domain, op) -> the input types it applies to.
_MASK_USES = {("", "Sub"): "float", ("", "Mul"): "float", ("", "And"): "bool", ("", "Or"): "bool",
              ("", "Not"): "bool", ("", "Where"): "bool"}
# Fused attention ops: (domain, op) -> the input index of their padding mask (2-D [batch, sequence] of 0/1).
_MASK_SLOTS = {("com.microsoft", "Attention"): 3, ("com.microsoft", "MultiHeadAttention"): 4}

ALL_ONES = (1, 2)


def integer_input_ranges(model: ir.Model) -> dict[str, tuple[int, int]]:
    """{integer graph input: [low, high) its values must lie in}: ``ALL_ONES`` for attention masks,
    [0, V) for embedding indices (the smallest V over every table the input indexes)."""
    ranges = {}
    for value in model.graph.inputs:
        if value.dtype is None or not value.dtype.is_integer() or value.name in model.graph.initializers:
            continue
        rows, mask = _reached(value)
        if mask:
            ranges[value.name] = ALL_ONES
        elif rows:
            ranges[value.name] = (0, min(rows))
    return ranges


def _kind(dtype: ir.DataType | None) -> str:
    if dtype == ir.DataType.BOOL:
        return "bool"
    return "float" if dtype is not None and dtype.is_floating_point() else "int"


def _cast_kind(node: ir.Node, kind: str) -> str:
    """The value type after a Cast/CastLike (unchanged for the other value-preserving ops)."""
    to = node.attributes.get("to")
    if to is not None:
        return _kind(ir.DataType(to.as_int()))
    if node.op_type == "CastLike" and len(node.inputs) > 1 and node.inputs[1] is not None:
        return _kind(node.inputs[1].dtype)
    return kind


def _reached(value: ir.Value) -> tuple[list[int], bool]:
    """(row counts of the embedding tables ``value`` indexes, whether it becomes an attention mask),
    through ops that keep its values."""
    rows, mask = [], False
    todo, seen = [(value, "int")], set()
    while todo:
        v, kind = todo.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        for use in v.uses():
            node, index = use.node, use.idx
            key = ("" if node.domain == "ai.onnx" else node.domain, node.op_type)
            if key in _VALUE_PRESERVING and index == 0 or key == ("", "Gather") and index == 0:
                todo.append((node.outputs[0], _cast_kind(node, kind)))
            elif _MASK_USES.get(key) == kind or _MASK_SLOTS.get(key) == index and (v.shape is None or len(v.shape) >= 2):
                mask = True
            elif key == ("", "Gather") and index == 1:
                table = node.inputs[0]
                axis = node.attributes.get("axis")
                if (axis is None or axis.as_int() == 0) and table is not None and table.const_value is not None:
                    rows.append(int(table.const_value.shape[0]))
    return rows, mask


def position_table_rows(model: ir.Model) -> int | None:
    """The fewest rows of a position table: a constant [rows, width] table gathered (axis 0) by indices
    computed from tensor shapes alone (positions 0..sequence-1), which bounds the sequence length
    synthetic inputs may have. None when there is no such table."""
    from onnxprune.graph import optable

    opset = model.opset_imports.get("", 1)
    by_values, by_shapes = set(), set()  # ids of tensors computed from input values / from shapes
    by_values.update(id(v) for v in model.graph.inputs)
    rows = []
    for node in model.graph:
        ins = [v for v in node.inputs if v is not None]
        reads_values = optable.traits(node, opset).reads_values
        values = reads_values and any(id(v) in by_values for v in ins)
        shapes = not reads_values and bool(ins) or any(id(v) in by_shapes for v in ins)
        for out in node.outputs:
            if values:
                by_values.add(id(out))
            if shapes:
                by_shapes.add(id(out))
        if node.op_type == "Gather" and node.domain in ("", "ai.onnx") and len(ins) == 2:
            table, idx = node.inputs[0], node.inputs[1]
            axis = node.attributes.get("axis")
            if (table.const_value is not None and len(table.const_value.shape) == 2 and (axis is None or
                    axis.as_int() == 0) and id(idx) in by_shapes and id(idx) not in by_values
                    and not _one_index(idx)):
                rows.append(int(table.const_value.shape[0]))
    return min(rows) if rows else None


def _one_index(value: ir.Value) -> bool:
    """``value`` repeats one constant index (a token-type table read by a buffer of zeros, sliced and
    expanded to the sequence): such a table does not bound the sequence length."""
    tensor = value.const_value
    while tensor is None and value.producer() is not None:
        node = value.producer()
        key = ("" if node.domain == "ai.onnx" else node.domain, node.op_type)
        if key == ("", "Constant") and "value" in node.attributes:
            tensor = node.attributes["value"].as_tensor()
        elif key not in _VALUE_PRESERVING or not node.inputs or node.inputs[0] is None:
            return False
        else:
            value = node.inputs[0]
            tensor = value.const_value
    return tensor is not None and len(set(tensor.numpy().ravel().tolist()[:4096])) == 1
