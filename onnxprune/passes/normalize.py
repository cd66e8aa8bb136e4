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
from onnx_ir.passes.common._c_api_utils import call_onnx_api

from onnxprune.errors import InputError
from onnxprune.passes.preserve import record_structure

# Constant-only nodes we fold in numpy so per-channel constants (e.g. BN folded into
# Unsqueeze+Mul+Add by old exporters) are seen as plain initializers.
_FOLDABLE = {"Identity", "Unsqueeze", "Squeeze", "Reshape", "Cast", "Transpose", "Flatten"}
_FOLD_LIMIT = 64 * 1024 * 1024  # bytes; folding never copies a large tensor


def normalize(model: ir.Model, fold_bn: bool = False) -> ir.Model:
    """Constants become initializers, constant-only reshapes are folded, dead code goes, shapes are
    inferred; with ``fold_bn`` inference BatchNormalization is folded into the Conv before it.
    IN's structure is recorded first (``preserve.record_structure``) so saving can put it back."""
    record_structure(model)
    # IR < 4 lists initializers as graph inputs; they are weights, not inputs, so take them out
    # (which needs IR >= 4, readable by every runtime that reads IR 3).
    RemoveInitializersFromInputsPass()(model)
    model.ir_version = max(model.ir_version, 4)
    LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
    fold_constant_nodes(model)
    if fold_bn:
        fold_batchnorm(model)
    RemoveUnusedNodesPass()(model)  # dead nodes and initializers left by folding or by the exporter
    TopologicalSortPass()(model)
    infer_shapes(model)
    return model


def fold_constant_nodes(model: ir.Model) -> int:
    """Replace foldable nodes whose inputs are all constants by initializers; returns the count."""
    graph = model.graph
    count = 0
    for node in list(graph):
        if node.domain not in ("", "ai.onnx") or node.op_type not in _FOLDABLE:
            continue
        if len(node.outputs) != 1 or node.outputs[0].is_graph_output():
            continue
        arrays = [constant_array(v) if v is not None else None for v in node.inputs]
        if not arrays or arrays[0] is None or any(a is None for a, v in zip(arrays, node.inputs) if v is not None):
            continue
        if arrays[0].nbytes > _FOLD_LIMIT:
            continue
        result = _fold(node, arrays)
        if result is None:
            continue
        out = node.outputs[0]
        init = ir.Value(name=out.name, shape=ir.Shape(result.shape), type=ir.TensorType(ir.DataType.from_numpy(result.dtype)),
                        const_value=ir.tensor(result, name=out.name))
        out.name = None  # free the name for the initializer
        out.replace_all_uses_with(init)
        graph.remove(node, safe=True)
        graph.register_initializer(init)
        count += 1
    return count


def _fold(node: ir.Node, arrays: list) -> np.ndarray | None:
    x = arrays[0]
    op = node.op_type
    attrs = node.attributes
    if op == "Identity":
        return x
    if op == "Cast":
        return x.astype(onnx.helper.tensor_dtype_to_np_dtype(attrs["to"].as_int()))
    if op == "Transpose":
        perm = attrs["perm"].as_ints() if "perm" in attrs else list(reversed(range(x.ndim)))
        return np.ascontiguousarray(np.transpose(x, perm))
    if op == "Flatten":
        axis = attrs["axis"].as_int() if "axis" in attrs else 1
        axis = axis % x.ndim if x.ndim else 0
        return x.reshape(int(np.prod(x.shape[:axis])), -1)
    if op in ("Unsqueeze", "Squeeze"):
        axes = list(attrs["axes"].as_ints()) if "axes" in attrs else (
            arrays[1].tolist() if len(arrays) > 1 and arrays[1] is not None else None)
        if op == "Squeeze":
            return np.squeeze(x, axis=tuple(axes)) if axes is not None else np.squeeze(x)
        if axes is None:
            return None
        rank = x.ndim + len(axes)
        for a in sorted(a % rank for a in axes):
            x = np.expand_dims(x, a)
        return x
    if op == "Reshape":
        if len(arrays) < 2:
            return None
        shape = [int(s) for s in arrays[1]]
        allowzero = attrs["allowzero"].as_int() if "allowzero" in attrs else 0
        if not allowzero:
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return x.reshape(shape)
    return None


def fold_batchnorm(model: ir.Model) -> int:
    """Conv -> BatchNormalization (inference, constants, the Conv output used by the BN alone) becomes
    one Conv with W * gamma / sqrt(var + eps) and (b - mean) * gamma / sqrt(var + eps) + beta."""
    from onnxprune.graph.edit import set_constant_input

    count = 0
    for bn in list(model.graph):
        if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx") or len(bn.outputs) > 1:
            continue
        conv = bn.inputs[0].producer()
        if conv is None or conv.op_type != "Conv" or len(bn.inputs[0].uses()) != 1 or bn.outputs[0].is_graph_output():
            continue
        if bn.inputs[0].is_graph_output():
            continue
        arrays = [constant_array(v) for v in bn.inputs[1:5]]
        w = constant_array(conv.inputs[1])
        bias_in = conv.inputs[2] if len(conv.inputs) > 2 else None
        b = constant_array(bias_in) if bias_in is not None else np.zeros(w.shape[0] if w is not None else 0)
        if w is None or b is None or any(a is None for a in arrays):
            continue
        gamma, beta, mean, var = (a.astype(np.float64) for a in arrays)
        eps = bn.attributes["epsilon"].as_float() if "epsilon" in bn.attributes else 1e-5
        scale = gamma / np.sqrt(var + eps)
        new_w = (w.astype(np.float64) * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        new_b = ((b.astype(np.float64) - mean) * scale + beta).astype(w.dtype)
        set_constant_input(conv, 1, new_w)
        set_constant_input(conv, 2, new_b)
        bn.outputs[0].replace_all_uses_with(conv.outputs[0])
        model.graph.remove(bn, safe=True)
        count += 1
    return count


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The numpy value of an initializer, or None for anything computed at run time."""
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


STRICT_SHAPES_OK = "onnxprune.strict_shapes_ok"  # model.meta key: the input passed strict inference


def infer_shapes(model: ir.Model) -> None:
    """Run ONNX shape inference (weights stripped for speed) and store the shapes on the values.

    Strict first; a model whose own declared shapes contradict inference gets lenient inference,
    and ``model.meta[STRICT_SHAPES_OK]`` records which, so the post-surgery check knows what to expect."""
    def _infer(strict: bool):
        return lambda proto: onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=strict,
                                                               data_prop=True)

    try:
        inferred = call_onnx_api(_infer(True), model)
        model.meta.setdefault(STRICT_SHAPES_OK, True)
    except Exception:
        model.meta[STRICT_SHAPES_OK] = False
        try:
            inferred = call_onnx_api(_infer(False), model)
        except Exception as exc:
            raise InputError(f"ONNX shape inference failed on this model: {str(exc).splitlines()[0][:300]}") from exc
    shapes = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
            shapes[info.name] = info.type.tensor_type
    for node in model.graph:
        for out in node.outputs:
            tt = shapes.get(out.name)
            if tt is None:
                continue
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
            out.shape = ir.Shape(dims)
            if out.dtype is None and tt.elem_type:
                out.dtype = ir.DataType(tt.elem_type)


def clear_inferred_shapes(model: ir.Model) -> None:
    """Forget intermediate shapes so they are re-inferred after surgery (graph I/O keep theirs)."""
    outputs = set(model.graph.outputs)
    for node in model.graph:
        for out in node.outputs:
            if out not in outputs:
                out.shape = None
