"""Function-preserving clean-ups that let the analysis see weights as editable constants."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import (
    LiftConstantsToInitializersPass,
    RemoveInitializersFromInputsPass,
    RemoveUnusedNodesPass,
    TopologicalSortPass,
)

from onnxprune.errors import InputError
from onnxprune.graph.optable import traits
from onnxprune.passes import symbolic
from onnxprune.passes.fold import fold_model_constants
from onnxprune.passes.preserve import record_structure


def normalize(model: ir.Model, fold_bn: bool = False) -> ir.Model:
    """Constants become initializers, what depends only on constants and static shapes is folded
    (``passes.fold``), dead code goes, shapes are inferred; with ``fold_bn`` inference BatchNormalization is folded into the Conv before it.
    IN's structure is recorded first (``preserve.record_structure``) so saving can put it back."""
    record_structure(model)
    # IR < 4 lists initializers as graph inputs; they are weights, not inputs, so take them out
    # (which needs IR >= 4, readable by every runtime that reads IR 3).
    RemoveInitializersFromInputsPass()(model)
    model.ir_version = max(model.ir_version, 4)
    LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
    infer_shapes(model)  # Shape folds from the inferred dims
    folded = fold_model_constants(model)
    if folded:  # the folder writes what it evaluates from shapes as Constant nodes
        LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
    if fold_bn:
        fold_batchnorm(model)
    RemoveUnusedNodesPass()(model)  # dead nodes and initializers left by folding or by the exporter
    TopologicalSortPass()(model)
    if folded:  # shapes a folded value now gives (a Pad's, a Reshape's)
        infer_shapes(model)
    return model


def fold_batchnorm(model: ir.Model) -> int:
    """Conv -> BatchNormalization (inference, constants, the Conv output used by the BN alone) becomes
    one Conv with W * gamma / sqrt(var + eps) and (b - mean) * gamma / sqrt(var + eps) + beta."""
    from onnxprune.graph.edit import set_constant_input

    opset = model.opset_imports.get("", 1)
    count = 0
    for bn in list(model.graph):
        norm = traits(bn, opset).norm()
        # stored statistics only (training mode normalises by the batch's), one output
        if norm is None or norm.mean is None or len(bn.outputs) > 1 or bn.outputs[0].is_graph_output():
            continue
        conv = bn.inputs[0].producer()
        layout = traits(conv, opset).affine() if conv is not None else None
        if layout is None or layout.weight_out_axis != 0 or layout.bias is None or len(bn.inputs[0].uses()) != 1:
            continue
        if bn.inputs[0].is_graph_output():
            continue
        arrays = [constant_array(bn.inputs[i]) for i in (norm.scale, norm.shift, norm.mean, norm.var)]
        w = constant_array(conv.inputs[layout.weight])
        if w is None or w.ndim < 3:  # a Conv: weight [out, in/group, *kernel], channels on output axis 0
            continue
        if w.dtype.itemsize < 4:  # fp16 weights cannot hold W * gamma / sigma exactly: the fold would not be exact
            continue
        bias_in = conv.inputs[layout.bias] if len(conv.inputs) > layout.bias else None
        b = constant_array(bias_in) if bias_in is not None else np.zeros(w.shape[0], w.dtype)
        if b is None or any(a is None for a in arrays):
            continue
        gamma, beta, mean, var = (a.astype(np.float64) for a in arrays)
        scale = gamma / np.sqrt(var + norm.epsilon)
        new_w = (w.astype(np.float64) * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        new_b = ((b.astype(np.float64) - mean) * scale + beta).astype(w.dtype)
        set_constant_input(conv, layout.weight, new_w)
        set_constant_input(conv, layout.bias, new_b)
        bn.outputs[0].replace_all_uses_with(conv.outputs[0])
        model.graph.remove(bn, safe=True)
        count += 1
    return count


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The numpy value of an initializer, or None for anything computed at run time."""
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


# Weights up to this size stay in the proto shape inference sees: data propagation reads small
# constants (shapes, axes); large ones become typed inputs so the proto stays small.
_INFERENCE_TENSOR_LIMIT = 1000  # bytes


def _call_without_weights(func, model: ir.Model):
    """``func(proto)`` on the model with its large weights turned into typed inputs for the call (the
    onnx C API copies the whole proto); the model is restored whether the call succeeds or not."""
    graph = model.graph
    n_inputs = len(graph.inputs)
    stripped = [v for v in graph.initializers.values()
                if v.const_value is None or v.const_value.nbytes > _INFERENCE_TENSOR_LIMIT]
    try:
        for value in list(graph.initializers.values()):
            if value.const_value is not None:
                value.shape = value.shape or ir.Shape(value.const_value.shape)
                value.dtype = value.dtype or value.const_value.dtype
            if value not in graph.inputs:
                graph.inputs.append(value)
        for value in stripped:
            graph.initializers.pop(value.name)
        proto = ir.to_proto(model)
    finally:
        for value in stripped:
            graph.initializers.add(value)
        inputs = list(graph.inputs[:n_inputs])
        graph.inputs.clear()
        graph.inputs.extend(inputs)
    return func(proto)


STRICT_SHAPES_OK = "onnxprune.strict_shapes_ok"  # model.meta key: the input passed strict inference


def infer_shapes(model: ir.Model, name_dims: bool = True) -> None:
    """Run ONNX shape inference (weights stripped for speed) and store the shapes on the values.
    ``name_dims``: dims ONNX leaves unnamed get onnxruntime's symbolic names (what the channel rules
    need to prove a Reshape keeps batch and sequence; 10-20 s on a detector with dynamic height and
    width, so a model that is never analysed again skips it).

    Strict first; a model whose own declared shapes contradict inference gets lenient inference,
    and ``model.meta[STRICT_SHAPES_OK]`` records which, so the post-surgery check knows what to expect.
    Ops ONNX does not know (onnxruntime's fused ops) get their output shapes from the op registry, and
    inference runs again past them until no shape is added."""
    _infer_onnx_shapes(model, name_dims)
    while _fill_registry_shapes(model):
        _infer_onnx_shapes(model, name_dims)


def _fill_registry_shapes(model: ir.Model) -> int:
    """Output shapes the op registry states for custom-domain ops ONNX inference left unknown; the count."""
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
    count = 0
    for node in model.graph:
        if all(out.shape is not None for out in node.outputs):
            continue
        for out, known in zip(node.outputs, traits(node, opset).output_shapes()):
            if out.shape is None and known is not None:
                out.shape = ir.Shape(known[0])
                out.dtype = out.dtype or known[1]
                count += 1
    return count


def _infer_onnx_shapes(model: ir.Model, name_dims: bool = True) -> None:
    def _infer(strict: bool):
        return lambda proto: onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=strict,
                                                               data_prop=True)

    try:
        inferred = _call_without_weights(_infer(True), model)
        model.meta.setdefault(STRICT_SHAPES_OK, True)
    except Exception:
        model.meta[STRICT_SHAPES_OK] = False
        try:
            inferred = _call_without_weights(_infer(False), model)
        except Exception as exc:
            raise InputError(f"ONNX shape inference failed on this model: {str(exc).splitlines()[0][:300]}") from exc
    types, dims_of = {}, {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
            tt = info.type.tensor_type
            types[info.name] = tt.elem_type
            dims_of[info.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
    if name_dims and symbolic.needs_symbolic(dims_of):
        better = _call_without_weights(symbolic.symbolic_dims, model)
        for name, (dims, elem_type) in better.items():
            mine = dims_of.get(name)
            types[name] = types.get(name) or elem_type
            if mine is None:
                dims_of[name] = dims
            elif len(mine) == len(dims):  # ONNX's static sizes stand; its unnamed dims take the symbolic names
                dims_of[name] = [d if symbolic.is_unresolved(m) else m for m, d in zip(mine, dims)]
    for node in model.graph:
        for out in node.outputs:
            dims = dims_of.get(out.name)
            if dims is None:
                continue
            out.shape = ir.Shape(dims)
            if out.dtype is None and types.get(out.name):  # (a shape without a type is not written)
                out.dtype = ir.DataType(types[out.name])


def reinfer_shapes(model: ir.Model, name_dims: bool = True) -> None:
    """Forget the intermediate shapes (graph I/O keep theirs) and infer them again (``infer_shapes``):
    after surgery, or at other input shapes."""
    outputs = set(model.graph.outputs)
    for node in model.graph:
        for out in node.outputs:
            if out not in outputs:
                out.shape = None
    infer_shapes(model, name_dims)
