"""The op facts normalisation and validation need, as small tables keyed by (domain, op type).

They belong with the op registry (``graph/optable.py``) as traits of its entries; until the registry
carries them, they live here so that no module compares op-type strings: constant folding in numpy,
where a weight keeps its output channels, and which nodes are inference normalisations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

Fold = Callable[[ir.Node, list], "np.ndarray | None"]


def _attr(node: ir.Node, name: str, default=None):
    a = node.attributes.get(name)
    return a.value if a is not None else default


def _is_default_domain(node: ir.Node) -> bool:
    return node.domain in ("", "ai.onnx")


# -- constant folding: arrays[i] is input i's value (None: absent) -----------------------------------
def _identity(_node: ir.Node, arrays: list) -> np.ndarray:
    return arrays[0]


def _cast(node: ir.Node, arrays: list) -> np.ndarray:
    return arrays[0].astype(onnx.helper.tensor_dtype_to_np_dtype(int(_attr(node, "to"))))


def _transpose(node: ir.Node, arrays: list) -> np.ndarray:
    x = arrays[0]
    return np.ascontiguousarray(np.transpose(x, _attr(node, "perm", list(reversed(range(x.ndim))))))


def _flatten(node: ir.Node, arrays: list) -> np.ndarray:
    x = arrays[0]
    axis = int(_attr(node, "axis", 1))
    axis = axis % x.ndim if x.ndim else 0
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def _axes(node: ir.Node, arrays: list) -> list[int] | None:
    """Squeeze/Unsqueeze axes: an attribute (opset < 13) or input 1."""
    if "axes" in node.attributes:
        return list(_attr(node, "axes"))
    return arrays[1].tolist() if len(arrays) > 1 and arrays[1] is not None else None


def _squeeze(node: ir.Node, arrays: list) -> np.ndarray:
    axes = _axes(node, arrays)
    return np.squeeze(arrays[0], axis=tuple(axes)) if axes is not None else np.squeeze(arrays[0])


def _unsqueeze(node: ir.Node, arrays: list) -> np.ndarray | None:
    axes, x = _axes(node, arrays), arrays[0]
    if axes is None:
        return None
    rank = x.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        x = np.expand_dims(x, a)
    return x


def _reshape(node: ir.Node, arrays: list) -> np.ndarray | None:
    if len(arrays) < 2 or arrays[1] is None:
        return None
    x, shape = arrays[0], [int(s) for s in arrays[1]]
    if not _attr(node, "allowzero", 0):  # 0 copies the input's dim at that position
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


# Nodes whose output normalisation computes in numpy when every input is a constant, so per-channel
# constants (e.g. BN folded into Unsqueeze + Mul + Add by old exporters) are seen as initializers.
CONSTANT_FOLDS: dict[str, Fold] = {
    "Identity": _identity, "Cast": _cast, "Transpose": _transpose, "Flatten": _flatten,
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Reshape": _reshape,
}


def constant_fold(node: ir.Node) -> Fold | None:
    """How to compute ``node`` from constant inputs in numpy, or None (left to the runtime)."""
    return CONSTANT_FOLDS.get(node.op_type) if _is_default_domain(node) else None


# -- weights -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightLayout:
    """Where a weight-bearing op keeps its weight and bias, and which weight axis counts its outputs."""

    weight: int  # input index of the weight
    bias: int | None  # input index of the bias (None: the op has none)
    out_axis: int  # weight axis indexing output channels (per group when ``per_group``)
    per_group: bool = False  # output channels = dims[out_axis] * group (ConvTranspose)


_LAYOUTS: dict[str, Callable[[ir.Node | onnx.NodeProto], WeightLayout]] = {
    "Conv": lambda n: WeightLayout(1, 2, 0),
    "ConvTranspose": lambda n: WeightLayout(1, 2, 1, per_group=True),
    "Gemm": lambda n: WeightLayout(1, 2, 0 if _proto_or_ir_attr(n, "transB", 0) else -1),
    "MatMul": lambda n: WeightLayout(1, None, -1),
}


def _proto_or_ir_attr(node, name: str, default):
    if isinstance(node, onnx.NodeProto):
        return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)
    return _attr(node, name, default)


def weight_layout(node: ir.Node | onnx.NodeProto) -> WeightLayout | None:
    """The weight layout of a Conv/ConvTranspose/Gemm/MatMul-like node, None for every other op."""
    if node.domain not in ("", "ai.onnx"):
        return None
    make = _LAYOUTS.get(node.op_type)
    return make(node) if make is not None else None


def output_channels(node: ir.Node | onnx.NodeProto, weight_dims: list[int]) -> int | None:
    """Output channels of a weight-bearing node read off its weight's dims, None for other ops."""
    layout = weight_layout(node)
    if layout is None or len(weight_dims) < 2:
        return None
    count = int(weight_dims[layout.out_axis])
    return count * int(_proto_or_ir_attr(node, "group", 1)) if layout.per_group else count


# -- normalisation -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InferenceNorm:
    """y = scale * (x - mean) / sqrt(var + epsilon) + shift per channel, with stored statistics."""

    scale: int  # input indices
    shift: int
    mean: int
    var: int
    epsilon: float


_NORMS: dict[str, Callable[[ir.Node], InferenceNorm]] = {
    "BatchNormalization": lambda n: InferenceNorm(1, 2, 3, 4, float(_attr(n, "epsilon", 1e-5))),
}


def inference_norm(node: ir.Node) -> InferenceNorm | None:
    """An inference normalisation with stored statistics and one output (BatchNormalization), else None."""
    make = _NORMS.get(node.op_type) if _is_default_domain(node) else None
    if make is None or len(node.outputs) > 1 or _attr(node, "training_mode", 0):  # training: batch statistics
        return None
    return make(node)
