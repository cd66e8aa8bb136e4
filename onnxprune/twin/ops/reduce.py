"""Reductions (axes as attribute or, from ReduceSum-13 / others-18, as input), Softmax family, ArgMax/Min."""

from __future__ import annotations

import torch

from onnxprune.twin.ops._util import ints, norm_axes
from onnxprune.twin.registry import NodeInfo, register


def _reduce_sum(x, dims, keep):
    return torch.sum(x, dims, keepdim=keep)


def _extreme(fn, empty_value):
    def run(x, dims, keep):
        if x.numel() == 0:  # reduction of an empty set: the identity element (torch.amax refuses it)
            shape = [1 if (i in dims) else s for i, s in enumerate(x.shape)] if keep else \
                [s for i, s in enumerate(x.shape) if i not in dims]
            if x.dtype == torch.bool:
                return torch.full(shape, empty_value > 0, dtype=torch.bool)
            fill = empty_value if x.dtype.is_floating_point else (
                torch.iinfo(x.dtype).min if empty_value < 0 else torch.iinfo(x.dtype).max)
            return torch.full(shape, fill, dtype=x.dtype)
        return fn(x, dims, keepdim=keep)
    return run


def _prod(x, dims, keep):
    for d in sorted(dims, reverse=True):
        x = torch.prod(x, d, keepdim=keep)
    return x


_REDUCERS = {
    "ReduceSum": (_reduce_sum, 13),
    "ReduceMean": (lambda x, d, k: torch.mean(x, d, keepdim=k), 18),
    "ReduceMax": (_extreme(torch.amax, -float("inf")), 18),
    "ReduceMin": (_extreme(torch.amin, float("inf")), 18),
    "ReduceProd": (_prod, 18),
    "ReduceL1": (lambda x, d, k: torch.sum(torch.abs(x), d, keepdim=k), 18),
    "ReduceL2": (lambda x, d, k: torch.sqrt(torch.sum(x * x, d, keepdim=k)), 18),
    "ReduceSumSquare": (lambda x, d, k: torch.sum(x * x, d, keepdim=k), 18),
    "ReduceLogSum": (lambda x, d, k: torch.log(torch.sum(x, d, keepdim=k)), 18),
    "ReduceLogSumExp": (lambda x, d, k: torch.logsumexp(x, d, keepdim=k) if x.numel()
                        else torch.log(torch.sum(torch.exp(x), d, keepdim=k)), 18),
}


def _reducer(fn, axes_from_input: bool):
    def build(node: NodeInfo):
        keep = bool(node.attr("keepdims", 1))
        noop = bool(node.attr("noop_with_empty_axes", 0))
        attr_axes = node.attr("axes")

        def run(x, axes_t=None):
            axes = ints(axes_t) if axes_from_input else list(attr_axes or [])
            if not axes:
                if noop:
                    return x
                axes = list(range(x.dim()))
            dims = norm_axes(axes, x.dim())
            if x.dim() == 0:
                return x
            return fn(x, dims, keep)
        return run
    return build


for _op, (_fn, _input_since) in _REDUCERS.items():
    register(_op, until=_input_since - 1)(_reducer(_fn, False))
    register(_op, since=_input_since)(_reducer(_fn, True))


def _softmax_family(fn):
    def build(node: NodeInfo):
        if node.opset < 13:
            # Before 13 the input is coerced to 2-D at `axis` and normalised over the flattened tail.
            axis = node.attr("axis", 1)

            def run2d(x):
                a = axis % x.dim() if x.dim() else 0
                return fn(x.reshape(*x.shape[:a], -1) if a else x.reshape(1, -1), -1).reshape(x.shape)
            return run2d
        axis = node.attr("axis", -1)
        return lambda x: fn(x, axis)
    return build


def _hardmax(x, axis):
    idx = torch.argmax(x, axis, keepdim=True)  # first maximum, as ONNX
    return torch.zeros_like(x).scatter_(axis, idx, 1)


register("Softmax")(_softmax_family(torch.softmax))
register("LogSoftmax")(_softmax_family(torch.log_softmax))
register("Hardmax")(_softmax_family(_hardmax))


def _arg(fn):
    def build(node: NodeInfo):
        axis, keep = node.attr("axis", 0), bool(node.attr("keepdims", 1))
        last = bool(node.attr("select_last_index", 0))

        def run(x):
            if last:  # the last occurrence: search the flipped axis, map the index back
                n = x.shape[axis]
                return n - 1 - fn(torch.flip(x, [axis]), axis, keepdim=keep)
            return fn(x, axis, keepdim=keep)
        return run
    return build


register("ArgMax")(_arg(torch.argmax))
register("ArgMin")(_arg(torch.argmin))


@register("TopK", since=10)
def top_k(node: NodeInfo):
    # sorted=0 allows any order; sorted output is one of them.
    axis, largest = node.attr("axis", -1), bool(node.attr("largest", 1))

    def run(x, k):
        # A stable sort keeps the lower index first among equal values, as ONNX requires.
        values, indices = torch.sort(x, dim=axis, descending=largest, stable=True)
        n = int(k.reshape(-1)[0])
        return values.narrow(axis, 0, n), indices.narrow(axis, 0, n)
    return run
