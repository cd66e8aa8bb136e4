"""MaxPool, AveragePool (auto_pad, asymmetric pads, ceil_mode, count_include_pad), global pools."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from onnxprune.twin.ops.conv import SpatialPads, torch_pad_arg
from onnxprune.twin.registry import NodeInfo, register

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {2: F.avg_pool2d, 3: F.avg_pool3d}


def _pool_params(node: NodeInfo, x: torch.Tensor):
    n = x.dim() - 2
    kernel = list(node.attr("kernel_shape"))
    strides = node.attr("strides") or [1] * n
    dil = node.attr("dilations") or [1] * n
    return n, kernel, strides, dil


def _torch_pads_ok(begin, end, kernel, dil) -> bool:
    """torch pools take only symmetric pads of at most half the (dilated) kernel."""
    return begin == end and all(2 * p <= (k - 1) * d + 1 for p, k, d in zip(begin, kernel, dil))


@register("MaxPool")
def max_pool(node: NodeInfo):
    pads = SpatialPads(node)
    ceil = bool(node.attr("ceil_mode", 0))
    order = node.attr("storage_order", 0)
    want_indices = node.has_output(1)

    def run(x):
        n, kernel, strides, dil = _pool_params(node, x)
        if n not in _MAX:
            raise node.unsupported(f"{n} spatial dimensions")
        begin, end = pads.resolve(x.shape[2:], kernel, strides, dil)
        if _torch_pads_ok(begin, end, kernel, dil):
            xin, pad = x, begin
        else:
            if want_indices:
                raise node.unsupported("Indices output with asymmetric pads")
            fill = -math.inf if x.dtype.is_floating_point else torch.iinfo(x.dtype).min
            xin, pad = F.pad(x, torch_pad_arg(begin, end), value=fill), 0
        if not want_indices:
            return _MAX[n](xin, kernel, strides, pad, dil, ceil)
        y, idx = _MAX[n](xin, kernel, strides, pad, dil, ceil, return_indices=True)
        # torch indexes within one (n, c) plane; ONNX flattens the whole tensor (row- or column-major).
        spatial = list(x.shape[2:])
        plane = math.prod(spatial)
        if order == 1:
            if n != 2:
                raise node.unsupported("storage_order=1 outside 2-D")
            h, w = idx // spatial[1], idx % spatial[1]
            idx = w * spatial[0] + h
        base = torch.arange(x.shape[0] * x.shape[1], dtype=torch.int64).reshape(x.shape[0], x.shape[1], *[1] * n)
        return y, idx + base * plane
    return run


@register("AveragePool")
def average_pool(node: NodeInfo):
    pads = SpatialPads(node)
    ceil = bool(node.attr("ceil_mode", 0))
    include_pad = bool(node.attr("count_include_pad", 0))

    def run(x):
        n, kernel, strides, dil = _pool_params(node, x)
        if any(d != 1 for d in dil):
            raise node.unsupported("dilations (torch avg pools have none)")
        squeeze = n == 1
        if squeeze:  # no divisor_override in avg_pool1d: pool 1-D as 2-D with height 1
            x, kernel, strides = x.unsqueeze(2), [1] + kernel, [1] + list(strides)
        n2 = x.dim() - 2
        if n2 not in _AVG:
            raise node.unsupported(f"{n} spatial dimensions")
        begin, end = pads.resolve(x.shape[2:], kernel, strides, [1] * n2)
        if _torch_pads_ok(begin, end, kernel, [1] * n2):
            y = _AVG[n2](x, kernel, strides, begin, ceil, include_pad)
        else:
            # Window sums over the explicitly padded input, divided by the count of cells that
            # count (padding included or not); cells past the pads (ceil_mode) never count.
            pad = torch_pad_arg(begin, end)
            sums = _AVG[n2](F.pad(x, pad), kernel, strides, 0, ceil, True, 1)
            ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
            ones = F.pad(ones, pad, value=1.0 if include_pad else 0.0)
            counts = _AVG[n2](ones, kernel, strides, 0, ceil, True, 1)
            y = sums / counts
        return y.squeeze(2) if squeeze else y
    return run


@register("GlobalAveragePool")
def global_average_pool(node: NodeInfo):
    return lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool")
def global_max_pool(node: NodeInfo):
    return lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)
