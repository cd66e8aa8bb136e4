"""Model size figures: parameters (weight elements) and MACs of the compute-heavy ops at batch 1."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def count_params(model: ir.Model) -> int:
    """Elements of floating-point initializers."""
    total = 0
    for v in model.graph.initializers.values():
        if v.const_value is not None and v.dtype is not None and v.dtype.is_floating_point():
            total += int(np.prod(v.const_value.shape))
    return total


def _static(shape) -> list[int] | None:
    if shape is None:
        return None
    return [d if isinstance(d, int) else 1 for d in shape]  # symbolic dims count as 1 (batch 1)


def count_macs(model: ir.Model) -> int:
    """Multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul from inferred shapes."""
    total = 0
    for node in model.graph:
        op = node.op_type
        if op not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        out = _static(node.outputs[0].shape)
        w = _static(node.inputs[1].shape if node.inputs[1] is not None else None)
        a = _static(node.inputs[0].shape)
        if out is None or w is None or a is None:
            continue
        if op == "Conv":
            total += int(np.prod(out)) * int(np.prod(w[1:]))
        elif op == "ConvTranspose":
            total += int(np.prod(a)) * int(np.prod(w[1:]))
        elif op == "Gemm":
            k = a[0] if node.attributes.get("transA") is not None and node.attributes["transA"].as_int() else a[-1]
            total += int(np.prod(out)) * k
        else:
            total += int(np.prod(out)) * (a[-1] if a else 1)
    return total
