"""Conv and ConvTranspose (1-3 spatial dims), with ONNX auto_pad and asymmetric pads."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from onnxprune.twin.ops._util import bcast_to_axis
from onnxprune.twin.registry import NodeInfo, register

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def same_pads(auto_pad: str, sizes: list[int], kernel: list[int], strides: list[int],
              dilations: list[int]) -> tuple[list[int], list[int]]:
    """(begin, end) pads of SAME_UPPER/SAME_LOWER: output = ceil(input / stride); UPPER puts the odd pad last."""
    begin, end = [], []
    for n, k, s, d in zip(sizes, kernel, strides, dilations):
        out = -(-n // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
        small = total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else total - small)
        end.append(total - small if auto_pad == "SAME_UPPER" else small)
    return begin, end


def torch_pad_arg(begin: list[int], end: list[int]) -> list[int]:
    """ONNX per-axis (begin, end) pads in F.pad's order: last axis first."""
    out: list[int] = []
    for b, e in zip(reversed(begin), reversed(end)):
        out += [b, e]
    return out


class SpatialPads:
    """Resolves auto_pad / pads for a node once; SAME pads are computed per input size."""

    def __init__(self, node: NodeInfo):
        self.auto_pad = node.attr("auto_pad", "NOTSET")
        self.pads = node.attr("pads")
        if self.auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
            raise node.unsupported(f"auto_pad={self.auto_pad}")

    def resolve(self, sizes, kernel, strides, dilations) -> tuple[list[int], list[int]]:
        n = len(sizes)
        if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            return same_pads(self.auto_pad, list(sizes), kernel, strides, dilations)
        if self.auto_pad == "VALID" or not self.pads:
            return [0] * n, [0] * n
        return list(self.pads[:n]), list(self.pads[n:])


def geometry(node: NodeInfo, x: torch.Tensor, kernel: list[int], impls: dict):
    """(spatial rank, kernel, strides, dilations) of a conv or pool on ``x``; refuses ranks torch lacks."""
    n = x.dim() - 2
    if n not in impls:
        raise node.unsupported(f"{n} spatial dimensions")
    return n, kernel, node.attr("strides") or [1] * n, node.attr("dilations") or [1] * n


@register("Conv")
def conv(node: NodeInfo):
    group = node.attr("group", 1)
    pads = SpatialPads(node)

    def run(x, w, b=None):
        n, kernel, strides, dil = geometry(node, x, list(w.shape[2:]), _CONV)
        begin, end = pads.resolve(x.shape[2:], kernel, strides, dil)
        if x.shape[1] == 0:  # every input channel pruned away: torch returns 0 channels, ONNX the bias
            x = x.new_zeros((x.shape[0], group, *x.shape[2:]))
            w = w.new_zeros((w.shape[0], 1, *w.shape[2:])) + w.sum() * 0  # keeps w in the autograd graph
        if begin == end:
            return _CONV[n](x, w, b, strides, begin, dil, group)
        return _CONV[n](F.pad(x, torch_pad_arg(begin, end)), w, b, strides, 0, dil, group)
    return run


@register("ConvTranspose")
def conv_transpose(node: NodeInfo):
    group = node.attr("group", 1)
    auto_pad = node.attr("auto_pad", "NOTSET")
    output_shape = node.attr("output_shape")

    def run(x, w, b=None):
        n, kernel, strides, dil = geometry(node, x, list(w.shape[2:]), _CONV_T)
        out_pad = node.attr("output_padding") or [0] * n
        sizes = list(x.shape[2:])
        # torch computes the unpadded ("full") output; ONNX pads then crop it (negative F.pad) or extend it.
        full = [(i - 1) * s + (k - 1) * d + 1 for i, s, k, d in zip(sizes, strides, kernel, dil)]
        target = None
        if output_shape:
            target = list(output_shape[-n:])
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            target = [i * s for i, s in zip(sizes, strides)]
        if target is not None:
            total = [f + op - t for f, op, t in zip(full, out_pad, target)]
            upper = auto_pad == "SAME_UPPER"
            begin = [t // 2 if upper else t - t // 2 for t in total]
            end = [t - bb for t, bb in zip(total, begin)]
        elif auto_pad == "VALID" or not node.attr("pads"):
            begin, end = [0] * n, [0] * n
        else:
            pads = node.attr("pads")
            begin, end = list(pads[:n]), list(pads[n:])
        y = _CONV_T[n](x, w, None, strides, 0, 0, group, dil)
        crop = torch_pad_arg([-v for v in begin], [op - e for op, e in zip(out_pad, end)])
        if any(crop):
            y = F.pad(y, crop)
        if b is not None:
            y = y + bcast_to_axis(b, y.dim())
        return y
    return run
