"""Model size figures: parameters (weight elements) and MACs of the compute-heavy ops at batch 1."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxprune.graph import optable


def count_params(model: ir.Model) -> int:
    """Elements of floating-point initializers and of quantized weights' stored integers."""
    return sum(params_per_initializer(model).values())


def params_per_initializer(model: ir.Model) -> dict[ir.Value, int]:
    """Elements of each floating-point initializer and of each quantized weight's stored integers."""
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
    quantized = {optable.traits(n, opset).stored_weight for n in model.graph}
    return {v: int(np.prod(v.const_value.shape)) for v in model.graph.initializers.values()
            if v.const_value is not None and (v in quantized or v.dtype is not None and v.dtype.is_floating_point())}


def concrete_input_shapes(model: ir.Model, overrides: dict[str, tuple] | None = None) -> dict[str, tuple]:
    """The shapes MACs are counted at: ``overrides`` (``onnxprune.shapes``: a 0 batch is 1), else declared
    static dims, batch 1, other free dims 64."""
    from onnxprune.data import concrete_shape
    shapes = {}
    for v in model.graph.inputs:
        if overrides and v.name in overrides:
            shapes[v.name] = tuple(concrete_shape(overrides[v.name]))
        elif v.shape is not None:
            shapes[v.name] = tuple(concrete_shape(v.shape))
    return shapes


def count_macs(model: ir.Model, input_shapes: dict[str, tuple] | None = None) -> int:
    """Multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul at concrete input shapes."""
    return sum(macs_per_node(model, input_shapes).values())


def macs_per_node(model: ir.Model, input_shapes: dict[str, tuple] | None = None) -> dict[ir.Node, int]:
    """MACs of each Conv/ConvTranspose/Gemm/MatMul node at concrete input shapes.

    Free input dims are fixed for the count only (shapes re-inferred), then restored."""
    from onnxprune.passes.normalize import reinfer_shapes
    shapes = concrete_input_shapes(model, input_shapes)
    declared = {v.name: v.shape for v in model.graph.inputs}
    dynamic = any(declared[n] is None or list(declared[n]) != list(s) for n, s in shapes.items())
    if not dynamic:
        return _macs_per_node(model)
    saved = {out: out.shape for node in model.graph for out in node.outputs}
    for v in model.graph.inputs:
        if v.name in shapes:
            v.shape = ir.Shape(shapes[v.name])
    try:
        reinfer_shapes(model)
        return _macs_per_node(model)
    finally:
        for v in model.graph.inputs:
            v.shape = declared[v.name]
        for out, shape in saved.items():
            out.shape = shape


def _macs_per_node(model: ir.Model) -> dict[ir.Node, int]:
    """The op registry's MACs of every node that has them (Conv, ConvTranspose, Gemm, MatMul)."""
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
    per_node = {}
    for node in model.graph:
        macs = optable.traits(node, opset).macs()
        if macs is not None:
            per_node[node] = macs
    return per_node
