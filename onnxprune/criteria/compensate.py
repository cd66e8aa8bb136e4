"""Mean compensation (our design): a removed channel's average contribution is added to the
biases of its consumers, so the pruned model is right on average. E[a_j] comes from the
BatchNormalization on the channel under a Gaussian assumption (else, given calibration data, from the
activations measured in onnxruntime): the BN output is N(beta, gamma^2), and
E[relu(x)] = sigma * phi(mu / sigma) + mu * Phi(mu / sigma). Like constant folding, it needs consumers
that read every position alike (a Conv without padding, a Gemm) and ops on the way that keep the mean
(ReLU is accounted for; average and global average pools, reshapes keep it; max pools do not)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onnxprune.criteria.energy import rectified_moments
from onnxprune.criteria.lumping import node_traits, path_back, takes_bias_fold
from onnxprune.criteria.magnitude import param_per_class
from onnxprune.graph import Analysis
from onnxprune.plan import Plan


def add_compensation(analysis: Analysis, plan: Plan, data_means: Callable | None = None) -> None:
    """Add bias folds for every removed (not merged, not already folded) channel the plan can
    compensate; ``plan.reasons`` says which groups were compensated or why not. ``data_means(values)``
    (calibration data) gives {value name: mean per position of the axis} for [(value, axis)], used for
    channels without BN statistics."""
    needed = {}
    if data_means is not None:  # one pass over the data for every consumer input BN cannot explain
        for gid in plan.removed:
            for c in (p for p in analysis.groups[gid].params if p.role == "consumer"):
                if takes_bias_fold(analysis, c) and isinstance(_mean_path(analysis, analysis.groups[gid], c), str):
                    needed[c.node.inputs[0].name] = (c.node.inputs[0], analysis.dims[c.node.inputs[0]].axis)
    measured = data_means(list(needed.values())) if needed else {}
    for gid, removed in plan.removed.items():
        g = analysis.groups[gid]
        handled = {j for j, _, _ in plan.merges.get(gid, [])} | {j for j, _, _ in plan.bias_folds.get(gid, [])}
        todo = [j for j in removed.tolist() if j not in handled]
        if not todo:
            continue
        folds, why_not, sources = [], None, set()
        for c in (p for p in g.params if p.role == "consumer"):
            found = _mean_path(analysis, g, c)
            if isinstance(found, str) and c.node.inputs[0].name in measured and takes_bias_fold(analysis, c):
                found = _per_class(analysis, g, c.node.inputs[0], measured[c.node.inputs[0].name])
                sources.add("calibration data")
            elif not isinstance(found, str):
                sources.add("BatchNormalization statistics")
            if isinstance(found, str):
                why_not = found
                break
            folds.extend((j, c.node, float(found[j])) for j in todo)
        if why_not is None and folds:
            plan.bias_folds.setdefault(gid, []).extend(folds)
            plan.reasons[gid] = plan.reasons.get(gid, "") + f"; mean-compensated from {' and '.join(sorted(sources))}"
        elif why_not:
            plan.reasons[gid] = plan.reasons.get(gid, "") + f"; not compensated: {why_not}"


def _per_class(analysis: Analysis, g, value, means: np.ndarray) -> np.ndarray:
    """Per channel of the group: the average of its positions' measured means along the tracked axis."""
    atoms = analysis.dims[value].atoms
    pos, cls = analysis.channels_in(g, atoms)
    total, count = np.zeros(g.size), np.zeros(g.size)
    np.add.at(total, cls, means[pos])
    np.add.at(count, cls, 1)
    return total / np.maximum(count, 1)


def _mean_path(analysis: Analysis, g, consumer) -> np.ndarray | str:
    """Per channel of the group, the mean the consumer reads; or why it cannot be known."""
    if not takes_bias_fold(analysis, consumer):
        return f"{consumer.node.op_type} '{consumer.node.name}' pads, is grouped or has no bias to take it"

    def keeps(n) -> bool:  # the mean is kept, or ReLU (accounted for below)
        t = node_traits(analysis, n)
        return t.keeps_mean() or t.rectifies()

    path, node = path_back(consumer.node.inputs[0], keeps)
    if node is None:
        return "no BatchNormalization before the consumer"
    t = node_traits(analysis, node)
    if t.affine() is not None:
        return "no BatchNormalization statistics for these channels"
    norm = t.norm()
    if norm is None or norm.mean is None:
        return f"{node.op_type} '{node.name}' does not keep the mean"
    relu = any(node_traits(analysis, n).rectifies() for n in path)  # relu(relu(x)) = relu(x)
    gamma, beta = param_per_class(analysis, g, node, norm.scale), param_per_class(analysis, g, node, norm.shift)
    if gamma is None or beta is None:
        return "its BatchNormalization is not on this group's channels"
    return rectified_moments(beta, gamma * gamma)[0] if relu else beta
