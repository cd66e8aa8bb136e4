"""Elementwise ops: arithmetic, comparisons, logic, activations, Cast, Where, Clip, Identity, Dropout."""

from __future__ import annotations

import math
from functools import reduce as _fold

import torch
import torch.nn.functional as F

from onnxprune.twin.dtypes import torch_dtype
from onnxprune.twin.registry import NodeInfo, register

_FLOAT = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _simple(fn):
    return lambda node: fn


for _op, _fn in {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul,
    "Equal": torch.eq, "Less": torch.lt, "Greater": torch.gt, "LessOrEqual": torch.le, "GreaterOrEqual": torch.ge,
    "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor, "Not": torch.logical_not,
    "Abs": torch.abs, "Neg": torch.neg, "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt,
    "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round,  # torch.round: half to even, as ONNX
    "Sign": torch.sign, "Sin": torch.sin, "Cos": torch.cos, "Tan": torch.tan, "Asin": torch.asin,
    "Acos": torch.acos, "Atan": torch.atan, "Sinh": torch.sinh, "Cosh": torch.cosh, "Asinh": torch.asinh,
    "Acosh": torch.acosh, "Atanh": torch.atanh, "Erf": torch.erf, "IsNaN": torch.isnan,
    "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Relu": torch.relu, "Softsign": F.softsign,
    "Where": torch.where, "BitwiseAnd": torch.bitwise_and, "BitwiseOr": torch.bitwise_or,
    "BitwiseXor": torch.bitwise_xor, "BitwiseNot": torch.bitwise_not,
}.items():
    register(_op)(_simple(_fn))


@register("Identity")
def identity(node: NodeInfo):
    return lambda x: x


@register("Reciprocal")
def reciprocal(node: NodeInfo):
    return lambda x: 1 / x


@register("Div")
def div(node: NodeInfo):
    # Integer Div truncates toward zero (C semantics in onnxruntime and the reference).
    def run(a, b):
        if a.dtype in _FLOAT:
            return a / b
        return torch.div(a, b, rounding_mode="trunc")
    return run


@register("Mod")
def mod(node: NodeInfo):
    # fmod=0: sign of the divisor (Python %); fmod=1: sign of the dividend (C fmod).
    return torch.fmod if node.attr("fmod", 0) else torch.remainder


@register("Pow")
def power(node: NodeInfo):
    def run(x, y):  # the result keeps X's type even when Y's differs
        if y.dtype != x.dtype and x.dtype in _FLOAT:
            y = y.to(x.dtype)
        out = torch.pow(x, y)
        return out if out.dtype == x.dtype else out.to(x.dtype)
    return run


@register("IsInf")
def is_inf(node: NodeInfo):
    pos, neg = node.attr("detect_positive", 1), node.attr("detect_negative", 1)
    return lambda x: (torch.isposinf(x) & bool(pos)) | (torch.isneginf(x) & bool(neg))


def _variadic(fn):
    return lambda node: (lambda *xs: _fold(fn, xs))


register("Sum")(_variadic(torch.add))
register("Max")(_variadic(torch.maximum))
register("Min")(_variadic(torch.minimum))


@register("Mean")
def mean(node: NodeInfo):
    return lambda *xs: _fold(torch.add, xs) / len(xs)


# ---------------------------------------------------------------- activations with attributes

@register("LeakyRelu")
def leaky_relu(node: NodeInfo):
    alpha = node.attr("alpha", 0.01)
    return lambda x: F.leaky_relu(x, alpha)


@register("PRelu", until=6)
def prelu_per_channel(node: NodeInfo):
    # Before opset 7 a 1-D slope is per channel (axis 1), not numpy-broadcast.
    def run(x, slope):
        if slope.dim() == 1 and slope.numel() > 1 and x.dim() > 1:
            slope = slope.reshape(-1, *[1] * (x.dim() - 2))
        return torch.where(x < 0, x * slope, x)
    return run


@register("PRelu", since=7)
def prelu(node: NodeInfo):
    # The slope broadcasts unidirectionally to X (not only per channel as F.prelu wants).
    return lambda x, slope: torch.where(x < 0, x * slope, x)


@register("Elu")
def elu(node: NodeInfo):
    alpha = node.attr("alpha", 1.0)
    return lambda x: F.elu(x, alpha)


@register("Celu")
def celu(node: NodeInfo):
    alpha = node.attr("alpha", 1.0)
    return lambda x: F.celu(x, alpha)


@register("Selu")
def selu(node: NodeInfo):
    alpha = node.attr("alpha", 1.67326319217681884765625)
    gamma = node.attr("gamma", 1.05070102214813232421875)
    return lambda x: gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


@register("ThresholdedRelu")
def thresholded_relu(node: NodeInfo):
    alpha = node.attr("alpha", 1.0)
    return lambda x: torch.where(x > alpha, x, torch.zeros_like(x))


@register("HardSigmoid")
def hard_sigmoid(node: NodeInfo):
    alpha, beta = node.attr("alpha", 0.2), node.attr("beta", 0.5)
    return lambda x: torch.clamp(x * alpha + beta, 0.0, 1.0)


@register("HardSwish", since=14)
def hard_swish(node: NodeInfo):
    return F.hardswish


@register("Softplus")
def softplus(node: NodeInfo):
    return lambda x: torch.where(x > 20, x, torch.log1p(torch.exp(torch.clamp(x, max=20))))


@register("Mish", since=18)
def mish(node: NodeInfo):
    return F.mish


@register("Gelu", since=20)
def gelu(node: NodeInfo):
    approximate = node.attr("approximate", "none")
    return lambda x: F.gelu(x, approximate=approximate)


@register("Shrink")
def shrink(node: NodeInfo):
    lambd, bias = node.attr("lambd", 0.5), node.attr("bias", 0.0)

    def run(x):
        zero = torch.zeros_like(x)
        return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero))
    return run


@register("Clip", since=1, until=10)
def clip_attrs(node: NodeInfo):
    lo, hi = node.attr("min", -math.inf), node.attr("max", math.inf)
    return lambda x: torch.clamp(x, lo, hi)


@register("Clip", since=11)
def clip_inputs(node: NodeInfo):
    # min/max are optional inputs; min > max gives max everywhere (torch.clamp agrees).
    def run(x, lo=None, hi=None):
        if lo is not None:
            lo = lo.to(x.dtype)
        if hi is not None:
            hi = hi.to(x.dtype)
        if lo is None and hi is None:
            return x
        return torch.clamp(x, lo, hi)
    return run


# ---------------------------------------------------------------- types and inference-only ops

@register("Cast")
def cast(node: NodeInfo):
    dtype = torch_dtype(node.attr("to"), f" ({node.where()})")
    return lambda x: x.to(dtype)


@register("CastLike", since=15)
def cast_like(node: NodeInfo):
    return lambda x, like: x.to(like.dtype)


@register("Dropout")
def dropout(node: NodeInfo):
    # Inference: identity, mask all true. Training mode (random) has no deterministic twin.
    def run(x, ratio=None, training_mode=None):
        if training_mode is not None and bool(training_mode.item()) and (ratio is None or float(ratio) != 0.0):
            raise node.unsupported("training_mode=True (random dropout)")
        if node.has_output(1):
            return x, torch.ones_like(x, dtype=torch.bool)
        return x
    return run
