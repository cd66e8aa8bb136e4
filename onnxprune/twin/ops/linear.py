"""Gemm, MatMul (numpy broadcasting, as torch.matmul) and Einsum."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from onnxprune.twin.registry import NodeInfo, register


@register("Gemm")
def gemm(node: NodeInfo):
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    trans_a, trans_b = node.attr("transA", 0), node.attr("transB", 0)

    def run(a, b, c=None):
        if trans_a:
            a = a.t()
        if trans_b and alpha == 1.0 and (c is None or (beta == 1.0 and c.dim() <= 1)):
            return F.linear(a, b, c)  # the common exporter form, one fused kernel
        y = a @ (b.t() if trans_b else b)
        if alpha != 1.0:
            y = y * alpha
        if c is not None:
            y = y + (c * beta if beta != 1.0 else c)
        return y
    return run


@register("MatMul")
def matmul(node: NodeInfo):
    return torch.matmul


@register("Einsum", since=12)
def einsum(node: NodeInfo):
    equation = node.attr("equation").replace(" ", "")
    return lambda *xs: torch.einsum(equation, *xs)
