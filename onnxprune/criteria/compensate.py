"""Mean compensation (our design): a removed channel's average contribution is added to the
biases of its consumers, so the pruned model is right on average. E[a_j] is measured in
onnxruntime on calibration data when there is some (one mean per position of the channel), else it comes
from the BatchNormalization on the channel under a Gaussian assumption: the BN output is N(beta, gamma^2), and
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
    (calibration data) gives {value name: mean per position of the axis} for [(value, axis)]: measured
    means are used wherever a consumer takes a fold (each position of a flattened channel or a head with
    its own mean), BatchNormalization statistics only without data."""
    from onnxprune.criteria.calibrated import consumer_activation

    def measurable(c) -> tuple | None:
        return consumer_activation(analysis, c) if data_means is not None and folds_measured_mean(analysis, c) \
            else None

    needed = {}  # one pass over the data for every consumer input of a removed channel
    for gid in plan.removed:
        for c in (p for p in analysis.groups[gid].params if p.role == "consumer"):
            found = measurable(c)
            if found is not None:
                needed[found[0].name] = found
    measured = data_means(list(needed.values())) if needed else {}
    for gid, removed in plan.removed.items():
        g = analysis.groups[gid]
        handled = {j for j, _, _ in plan.merges.get(gid, [])} | {j for j, _, _ in plan.bias_folds.get(gid, [])}
        todo = [j for j in removed.tolist() if j not in handled]
        if not todo:
            continue
        folds, why_not, sources, padded = [], None, set(), []
        for c in (p for p in g.params if p.role == "consumer"):
            act = measurable(c)
            if act is not None:
                pos, cls = analysis.channels_in(g, c.atoms)
                means = measured[act[0].name]
                folds.extend((j, c.node, means[pos[cls == j]]) for j in todo)  # one mean per position of j
                sources.add("calibration data")
                if not takes_bias_fold(analysis, c):
                    padded.append(c.node.name)
                continue
            found = _mean_path(analysis, g, c)
            if isinstance(found, str):
                why_not = found
                break
            sources.add("BatchNormalization statistics")
            folds.extend((j, c.node, float(found[j])) for j in todo)
        if why_not is None and folds:
            plan.bias_folds.setdefault(gid, []).extend(folds)
            plan.reasons[gid] = plan.reasons.get(gid, "") + f"; mean-compensated from {' and '.join(sorted(sources))}" \
                + (f" (padded {', '.join(padded)}: approximate where the window reaches the padding)" if padded else "")
        elif why_not:
            plan.reasons[gid] = plan.reasons.get(gid, "") + f"; not compensated: {why_not}"


def folds_measured_mean(analysis: Analysis, c) -> bool:
    """A consumer a measured mean folds into: one that takes a bias fold, or a single-group Conv that only
    pads. Border outputs of the latter, whose taps over the padding read zeros, gain the removed mean
    through those taps too: an approximation, which measured far better than no fold (FLAP on the bundled
    CNNs, tools/bench_calibration.py)."""
    aff = node_traits(analysis, c.node).affine()
    return takes_bias_fold(analysis, c) or (aff is not None and aff.pads and c.blocks == 1 and aff.bias is not None
                                                 and c.quant is None)


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
