"""ONNX <-> torch dtypes and tensor conversion."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import torch

from onnxprune.errors import UnsupportedOpError

IR_TO_TORCH: dict[ir.DataType, torch.dtype] = {
    ir.DataType.FLOAT: torch.float32,
    ir.DataType.DOUBLE: torch.float64,
    ir.DataType.FLOAT16: torch.float16,
    ir.DataType.BFLOAT16: torch.bfloat16,
    ir.DataType.INT8: torch.int8,
    ir.DataType.INT16: torch.int16,
    ir.DataType.INT32: torch.int32,
    ir.DataType.INT64: torch.int64,
    ir.DataType.UINT8: torch.uint8,
    ir.DataType.UINT16: torch.uint16,
    ir.DataType.UINT32: torch.uint32,
    ir.DataType.UINT64: torch.uint64,
    ir.DataType.BOOL: torch.bool,
}
TORCH_TO_IR = {v: k for k, v in IR_TO_TORCH.items()}
FLOAT_TYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def torch_dtype(onnx_type: int | ir.DataType, where: str = "") -> torch.dtype:
    """The torch dtype of an ONNX element type; UnsupportedOpError for strings, float8, int4..."""
    try:
        return IR_TO_TORCH[ir.DataType(onnx_type)]
    except (KeyError, ValueError):
        name = ir.DataType(onnx_type).name if onnx_type in ir.DataType._value2member_map_ else onnx_type
        raise UnsupportedOpError(f"the torch twin has no tensor type for ONNX {name}{where}") from None


def tensor_from_ir(tensor: ir.TensorProtocol, where: str = "") -> torch.Tensor:
    """A torch copy of an onnx-ir tensor (the IR's data may be memory-mapped and read-only)."""
    dtype = torch_dtype(tensor.dtype, where)
    array = tensor.numpy()
    if dtype == torch.bfloat16:
        return torch.from_numpy(np.ascontiguousarray(array).view(np.uint16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(array, copy=True)).reshape(tuple(tensor.shape))


def numpy_from_torch(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


_NUMPY_OK = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
             "float16", "float32", "float64"}


def as_tensor(value) -> torch.Tensor:
    """A feed (tensor, ndarray, scalar) as a torch tensor without copying when possible."""
    if isinstance(value, torch.Tensor):
        return value
    array = np.asarray(value)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.uint16).copy()).view(torch.bfloat16)
    if array.dtype.kind not in "biuf" or array.dtype.name not in _NUMPY_OK:
        raise UnsupportedOpError(f"the torch twin cannot take a {array.dtype} feed")
    if not array.flags.writeable:  # torch wants writable memory; a read-only feed is copied
        array = array.copy()
    return torch.from_numpy(np.require(array, requirements="C"))  # keeps 0-d arrays 0-d
