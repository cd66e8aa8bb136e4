"""Symbolic dims ONNX inference loses: onnxruntime's symbolic shape inference as a second opinion.

ONNX shape inference gives every dim it cannot name a fresh ``unk__N`` name, so after a Reshape whose
target is computed from ``Shape`` (every TorchScript transformer export) the batch and sequence axes no
longer match by name, and the channel rules cannot prove that a Reshape keeps them. onnxruntime's symbolic
inference follows shape arithmetic and names them consistently (``batch``, ``seq``, ``batch*seq``).
"""

from __future__ import annotations

import logging

import onnx


def is_unresolved(d) -> bool:
    return d is None or (isinstance(d, str) and d.startswith("unk__"))


def needs_symbolic(dims_by_name: dict[str, list]) -> bool:
    """True when ONNX inference left a dim unnamed or unknown."""
    return any(is_unresolved(d) for dims in dims_by_name.values() for d in dims)


def symbolic_dims(proto: onnx.ModelProto) -> dict[str, tuple[list, int]]:
    """value name -> (dims (int, or a symbolic expression such as ``batch*seq``), element type) from
    onnxruntime's symbolic shape inference; {} when it is unavailable or fails. Dims that merge two symbols assume the model
    runs (broadcast operands agree), as onnxruntime's own transformer tools do."""
    from onnxprune.runtime import symbolic_shape_inference

    try:
        SymbolicShapeInference = symbolic_shape_inference()  # noqa: N806 - a class
    except Exception:  # noqa: BLE001 - an optional refinement: without it, ONNX inference stands
        return {}
    log = logging.getLogger("onnxruntime.tools.symbolic_shape_infer")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        for merge in (False, True):
            # The class's own infer_shapes writes a temporary file into the working directory when
            # inference is incomplete; running its steps here keeps a partial result and writes nothing.
            ssi = SymbolicShapeInference(2**31 - 1, merge, False, 0)
            ssi._preprocess(proto)
            done = False
            while ssi.run_:
                done = ssi._infer_impl()
            ssi._update_output_from_vi()
            if done or merge:
                break
        out = ssi.out_mp_
    except Exception:  # noqa: BLE001 - unsupported ops and the like: keep ONNX's answer
        return {}
    finally:
        log.setLevel(level)
    dims = {}
    for info in list(out.graph.value_info) + list(out.graph.output):
        tt = info.type.tensor_type if info.type.HasField("tensor_type") else None
        if tt is None or not tt.HasField("shape"):
            continue
        dims[info.name] = ([d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim],
                           tt.elem_type)
    return dims
