"""Layout ops evaluated in numpy on constant inputs: ``arrays[i]`` is input i's value (None: absent).

The registry (``graph.traits``) attaches these as the ``fold`` trait, so normalisation can turn
constant-only chains (e.g. BN parameters reshaped by old exporters) into initializers the analysis
reads as weights."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.graph.nodes import attr

Fold = Callable[[ir.Node, list], "np.ndarray | None"]


def _identity(_node: ir.Node, arrays: list) -> np.ndarray:
    return arrays[0]


def _cast(node: ir.Node, arrays: list) -> np.ndarray:
    return arrays[0].astype(onnx.helper.tensor_dtype_to_np_dtype(int(attr(node, "to"))))


def _transpose(node: ir.Node, arrays: list) -> np.ndarray:
    x = arrays[0]
    return np.ascontiguousarray(np.transpose(x, attr(node, "perm", list(reversed(range(x.ndim))))))


def _flatten(node: ir.Node, arrays: list) -> np.ndarray:
    x = arrays[0]
    axis = int(attr(node, "axis", 1))
    axis = axis % x.ndim if x.ndim else 0
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def _axes(node: ir.Node, arrays: list) -> list[int] | None:
    """Squeeze/Unsqueeze axes: an attribute (opset < 13) or input 1."""
    if "axes" in node.attributes:
        return list(attr(node, "axes"))
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
    if not attr(node, "allowzero", 0):  # 0 copies the input's dim at that position
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


FOLDS: dict[str, Fold] = {
    "Identity": _identity, "Cast": _cast, "Transpose": _transpose, "Flatten": _flatten,
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Reshape": _reshape,
}
