"""``energy`` (our design, data-free): how much each channel feeds its consumers.

A consumer computes W a + b; channel j adds W[:, j] a_j, whose expected energy is
||W[:, j]||^2 E[a_j^2]. E[a_j^2] comes from the BatchNormalization on the channel (its output is
N(beta, gamma^2) on the data it was trained on), carried through ReLU (rectified-Gaussian moments),
residual Adds (independent sums), pools and reshapes; a Conv/Gemm without BN gives the moments its
filter gives a unit-variance input. Unlike producer norms it sees both sides of the channel: a large
filter whose BN silences it, or whose next layer ignores it, scores low.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from onnxprune.criteria.magnitude import (
    SQUARES,
    ScoreDict,
    consumer_column_energy,
    param_per_class,
    producer_sums,
)
from onnxprune.graph import Analysis, Group, optable

_MAX_DEPTH = 64


def energy(analysis: Analysis) -> ScoreDict:
    """sqrt(sum over consumers of ||W_c[:, j]||^2 * E[a_j^2]) per channel."""
    scores, notes = {}, {}
    for g in analysis.prunable_groups:
        consumers = [p for p in g.params if p.role == "consumer"]
        total = np.zeros(g.size)
        fallback = None
        for c in consumers:
            moments = _moments(analysis, g, c.node.inputs[0], 0)
            if isinstance(moments, str):
                fallback = moments
                break
            mean, var = moments
            col = consumer_column_energy(analysis, g, [c])
            total += col * (var + mean * mean)
        if fallback is not None or not consumers:
            # Unknown moments: producer l2 times consumer column norms (scale-free within the group).
            prod = np.sum(producer_sums(analysis, g, SQUARES), axis=0)
            cols = consumer_column_energy(analysis, g)
            total = prod * (cols if consumers else 1.0)
            notes[g.id] = f"no activation statistics ({fallback or 'no consumer'}): producer l2 x consumer norm"
        scores[g.id] = np.sqrt(np.maximum(total, 0.0))
    return ScoreDict(scores, notes)


def _moments(analysis: Analysis, g: Group, value, depth: int) -> tuple[np.ndarray, np.ndarray] | str:
    """Per channel of the group: (mean, variance) of ``value`` on the data BN saw, or why unknown."""
    node = value.producer()
    if node is None:
        return f"graph input '{value.name}'"
    if depth > _MAX_DEPTH:
        return "path too long"
    op = node.op_type
    t = optable.traits(node, analysis.opset)
    norm = t.norm()
    if t.keeps_moments:  # moves, pools, pads, resizes: (roughly) the moments of their data input
        return _moments(analysis, g, node.inputs[0], depth + 1)
    if norm is not None and norm.mean is not None:  # BN output: N(shift, scale^2) on its training data
        gamma = param_per_class(analysis, g, node, norm.scale)
        beta = param_per_class(analysis, g, node, norm.shift)
        if gamma is None or beta is None:
            return f"{op} '{node.name}' is not on this group's channels"
        return beta, gamma * gamma
    if t.rectifies():
        m = _moments(analysis, g, node.inputs[0], depth + 1)
        return m if isinstance(m, str) else rectified_moments(*m)
    if t.combine is not None:  # class-space arrays: a concat's other inputs contribute zeros
        mean, var = np.zeros(g.size), np.zeros(g.size)
        for v in node.inputs:
            if v is None or v.const_value is not None:
                if t.combine == "sum" and v is not None:
                    return f"{op} '{node.name}' adds a constant"
                continue
            m = _moments(analysis, g, v, depth + 1)
            if isinstance(m, str):
                return m
            mean, var = mean + m[0], var + m[1]
        return mean, var
    if t.affine() is not None:
        return _filter_moments(analysis, g, node)
    return f"{op} '{node.name}' on the way"


def _filter_moments(analysis: Analysis, g: Group, node) -> tuple[np.ndarray, np.ndarray] | str:
    """A producer without BN: mean = bias, variance = ||filter||^2 (inputs taken as unit variance),
    each times its scale (Gemm alpha, beta)."""
    member = next((p for p in g.producers if p.node is node), None)
    if member is None:
        return f"{node.op_type} '{node.name}' is not this group's producer"
    var = producer_sums(analysis, replace(g, producers=[member]),
                        SQUARES)[0]
    aff = optable.traits(node, analysis.opset).affine()
    bias = param_per_class(analysis, g, node, aff.bias) if aff.bias is not None else None
    return aff.bias_scale * (bias if bias is not None else np.zeros(g.size)), aff.weight_scale ** 2 * var


def rectified_moments(mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of relu(x) for x ~ N(mean, var)."""
    s = np.sqrt(np.maximum(var, 0.0))
    z = np.divide(mean, s, out=np.zeros_like(mean), where=s > 0)
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    m1 = np.where(s > 0, s * pdf + mean * cdf, np.maximum(mean, 0.0))
    m2 = np.where(s > 0, (mean * mean + var) * cdf + mean * s * pdf, np.maximum(mean, 0.0) ** 2)
    return m1, np.maximum(m2 - m1 * m1, 0.0)
