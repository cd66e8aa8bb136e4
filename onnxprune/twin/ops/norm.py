"""Normalisations: BatchNormalization (inference and training forms), LayerNormalization,
InstanceNormalization, GroupNormalization, LRN, MeanVarianceNormalization, LpNormalization."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from onnxprune.twin.ops._util import bcast_to_axis
from onnxprune.twin.registry import NodeInfo, register


@register("BatchNormalization", since=7)
def batch_norm(node: NodeInfo):
    eps = node.attr("epsilon", 1e-5)
    momentum = node.attr("momentum", 0.9)
    training = node.attr("training_mode", 0) == 1

    def infer(x, scale, bias, mean, var):
        # y = x * s + t with s, t from the statistics: unlike F.batch_norm, this differentiates w.r.t.
        # mean and var too (they are Parameters in the twin) and stays one fused addcmul.
        s = scale * torch.rsqrt(var + eps)
        t = bias - mean * s
        return torch.addcmul(bcast_to_axis(t, x.dim()), x, bcast_to_axis(s, x.dim()))

    def train(x, scale, bias, mean, var):
        axes = [0] + list(range(2, x.dim()))
        batch_mean = x.mean(axes)
        batch_var = x.var(axes, unbiased=False)
        y = infer(x, scale, bias, batch_mean, batch_var)
        outs = [y]
        if node.has_output(1):
            outs.append(mean * momentum + batch_mean * (1 - momentum))
        if node.has_output(2):
            outs.append(var * momentum + batch_var * (1 - momentum))
        return tuple(outs)

    return train if training else infer


@register("LayerNormalization", since=17)
def layer_norm(node: NodeInfo):
    axis, eps = node.attr("axis", -1), node.attr("epsilon", 1e-5)
    extra = node.has_output(1) or node.has_output(2)

    def run(x, scale, bias=None):
        a = axis % x.dim()
        shape = tuple(x.shape[a:])
        if not extra and scale.shape == shape and (bias is None or bias.shape == shape):
            return F.layer_norm(x, shape, scale, bias, eps)
        dims = tuple(range(a, x.dim()))
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        mean = xf.mean(dims, keepdim=True)
        inv = torch.rsqrt(((xf - mean) ** 2).mean(dims, keepdim=True) + eps)
        y = ((xf - mean) * inv).to(x.dtype) * scale
        if bias is not None:
            y = y + bias
        return y, mean, inv
    return run


@register("InstanceNormalization", since=6)
def instance_norm(node: NodeInfo):
    eps = node.attr("epsilon", 1e-5)
    return lambda x, scale, bias: F.instance_norm(x, weight=scale, bias=bias, eps=eps)


@register("GroupNormalization", since=18)
def group_norm(node: NodeInfo):
    eps, groups = node.attr("epsilon", 1e-5), node.attr("num_groups")

    def run(x, scale, bias):
        n, c = x.shape[:2]
        g = x.reshape(n, groups, -1)
        mean = g.mean(-1, keepdim=True)
        var = g.var(-1, unbiased=False, keepdim=True)
        y = ((g - mean) / torch.sqrt(var + eps)).reshape(x.shape)
        if scale.numel() != c:  # opset 18: scale/bias per group
            scale = scale.repeat_interleave(c // groups)
            bias = bias.repeat_interleave(c // groups)
        return y * bcast_to_axis(scale, x.dim()) + bcast_to_axis(bias, x.dim())
    return run


@register("LRN")
def lrn(node: NodeInfo):
    size = node.attr("size")
    alpha, beta, bias = node.attr("alpha", 1e-4), node.attr("beta", 0.75), node.attr("bias", 1.0)

    def run(x):
        # ONNX sums squares over channels [c - floor((size-1)/2), c + ceil((size-1)/2)]; torch's
        # local_response_norm centres the window the other way for even sizes.
        c = x.shape[1]
        before = (size - 1) // 2
        sqp = F.pad(x * x, [0, 0] * (x.dim() - 2) + [before, size - 1 - before])
        summed = sum(sqp[:, i:i + c] for i in range(size))
        return x / (bias + alpha / size * summed) ** beta
    return run


@register("MeanVarianceNormalization", since=9)
def mvn(node: NodeInfo):
    axes = tuple(node.attr("axes", [0, 2, 3]))

    def run(x):
        mean = x.mean(axes, keepdim=True)
        var = ((x - mean) ** 2).mean(axes, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-9)
    return run


@register("LpNormalization")
def lp_norm(node: NodeInfo):
    axis, p = node.attr("axis", -1), node.attr("p", 2)

    def run(x):
        norm = torch.linalg.vector_norm(x, ord=p, dim=axis, keepdim=True)
        return x / torch.where(norm == 0, torch.ones_like(norm), norm)  # zero vectors stay zero
    return run


@register("RMSNormalization", since=23)
def rms_norm(node: NodeInfo):
    axis, eps = node.attr("axis", -1), node.attr("epsilon", 1e-5)

    def run(x, scale):
        dims = tuple(range(axis % x.dim(), x.dim()))
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        y = xf * torch.rsqrt((xf * xf).mean(dims, keepdim=True) + eps)
        return y.to(x.dtype) * scale
    return run
