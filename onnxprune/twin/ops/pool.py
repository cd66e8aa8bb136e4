"""MaxPool, AveragePool (auto_pad, asymmetric pads, ceil_mode, count_include_pad), global pools."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from onnxprune.twin.ops.conv import SpatialPads, geometry, torch_pad_arg
from onnxprune.twin.registry import NodeInfo, register

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


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
        n, kernel, strides, dil = geometry(node, x, list(node.attr("kernel_shape")), _MAX)
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


def _pool_out_size(n: int, begin: int, end: int, k: int, s: int, d: int, ceil: bool) -> int:
    """ONNX output length; with ceil_mode a last window starting in the end padding is dropped."""
    span = n + begin + end - ((k - 1) * d + 1)
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + begin:
        out -= 1
    return out


def _window_sums(x: torch.Tensor, kernel, strides, dil) -> torch.Tensor:
    """Sum over every pooling window: a depthwise conv with a ones kernel (allows dilation)."""
    n, c = x.shape[:2]
    ones = torch.ones((1, 1, *kernel), dtype=x.dtype)
    y = _CONV[len(kernel)](x.reshape(n * c, 1, *x.shape[2:]), ones, None, strides, 0, dil)
    return y.reshape(n, c, *y.shape[2:])


@register("AveragePool")
def average_pool(node: NodeInfo):
    pads = SpatialPads(node)
    ceil = bool(node.attr("ceil_mode", 0))
    include_pad = bool(node.attr("count_include_pad", 0))

    def run(x):
        n, kernel, strides, dil = geometry(node, x, list(node.attr("kernel_shape")), _CONV)
        begin, end = pads.resolve(x.shape[2:], kernel, strides, dil)
        if n in _AVG and all(d == 1 for d in dil) and _torch_pads_ok(begin, end, kernel, dil):
            return _AVG[n](x, kernel, strides, begin, ceil, include_pad)
        # General case: window sums over the padded input divided by how many cells count (padding
        # included or not); cells added only so ceil_mode's last window fits never count.
        sizes = list(x.shape[2:])
        outs = [_pool_out_size(*a, ceil) for a in zip(sizes, begin, end, kernel, strides, dil)]
        extra = [max(0, (o - 1) * s + (k - 1) * d + 1 - (i + b + e))
                 for o, s, k, d, i, b, e in zip(outs, strides, kernel, dil, sizes, begin, end)]
        sums = _window_sums(F.pad(x, torch_pad_arg(begin, [e + x_ for e, x_ in zip(end, extra)])),
                            kernel, strides, dil)
        mask = torch.ones((1, 1, *sizes), dtype=x.dtype)
        mask = F.pad(mask, torch_pad_arg(begin, end), value=1.0 if include_pad else 0.0)
        counts = _window_sums(F.pad(mask, torch_pad_arg([0] * n, extra)), kernel, strides, dil)
        crop = tuple(slice(0, o) for o in outs)
        return sums[(..., *crop)] / counts[(..., *crop)]
    return run


@register("GlobalAveragePool")
def global_average_pool(node: NodeInfo):
    return lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool")
def global_max_pool(node: NodeInfo):
    return lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)
