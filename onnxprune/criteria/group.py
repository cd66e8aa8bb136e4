"""``group`` (our design, data-free): group-level importance over every member of a channel group.

Torch-Pruning scores a channel group by reducing the per-channel importance of all its members
(producer filters, norm scales, consumer columns). We do the same with two changes. Each member's
per-channel values are divided by that member's mean first, so a large layer does not drown a small
one and a member's scale (filter size, BN folding, weight decay) does not matter. And the reduction
follows the signal path: a channel reaches the output only through every stage of it, what makes
it (producer filters and norm scales, averaged), depthwise filters it passes (averaged) and what
reads it (consumer input columns, averaged), so the group score is the geometric mean of the
stages. A channel whose next layers ignore it scores zero however large its filter; in a residual
group every producer of the sum and every reader of it count.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from onnxprune.criteria.magnitude import SQUARES, ScoreDict, consumer_column_energy, producer_sums
from onnxprune.graph import Analysis, Group
from onnxprune.graph.context import ParamMember

# Per-channel parameters that scale a channel's signal (input index by op); other per-channel
# parameters (biases, running statistics, shifts) say nothing about its importance.
_SCALES = {"BatchNormalization": 1, "InstanceNormalization": 1}
# Per-channel filters (depthwise convs): the weight's slices along the channel axis.
_FILTERS = {"Conv": 1, "ConvTranspose": 1}


def group_l2(analysis: Analysis) -> ScoreDict:
    """Per channel: the geometric mean over the stages (producers, depthwise filters, consumers) of the
    stage's mean member, each member's values (L2 norms of filter rows and input columns, |norm
    scale|) divided by the member's mean."""
    scores, notes = {}, {}
    for g in analysis.prunable_groups:
        made, through, read = producer_side(analysis, g), depthwise_side(analysis, g), consumer_side(analysis, g)
        if not read:
            notes[g.id] = "no consumer weights: scored by its producers alone"
        side_means = [np.mean(side, axis=0) for side in (made, through, read) if side]
        scores[g.id] = np.prod(side_means, axis=0) ** (1.0 / len(side_means))
    return ScoreDict(scores, notes)


def producer_side(analysis: Analysis, g: Group) -> list[np.ndarray]:
    """Normalised per-channel strengths of the members that make the channel: producer filters and
    norm scales."""
    members = list(g.producers)
    members += [p for p in g.params if p.role == "param" and _SCALES.get(p.node.op_type) == p.input_index]
    return [per_member_mean(_row_norms(analysis, g, p)) for p in members]


def depthwise_side(analysis: Analysis, g: Group) -> list[np.ndarray]:
    """Normalised per-channel norms of depthwise filters: each passes its channel on alone, so a zero
    filter silences the channel whatever made it."""
    return [per_member_mean(_row_norms(analysis, g, p)) for p in g.params
            if p.role == "param" and _FILTERS.get(p.node.op_type) == p.input_index]


def consumer_side(analysis: Analysis, g: Group) -> list[np.ndarray]:
    """Normalised per-channel L2 norms of each consumer's input columns (grouped convs included)."""
    return [per_member_mean(np.sqrt(consumer_column_energy(analysis, g, [c])))
            for c in g.params if c.role == "consumer"]


def per_member_mean(values: np.ndarray) -> np.ndarray:
    """``values`` divided by their mean over the member's channels (all zeros stay zeros)."""
    mean = float(np.mean(values))
    return values / mean if mean > 0 else values


def _row_norms(analysis: Analysis, g: Group, p: ParamMember) -> np.ndarray:
    """Per channel of the group: the L2 norm of the member's slices along its channel axis (over all
    the positions a channel owns), read in chunks like the producer norms."""
    sq = producer_sums(analysis, replace(g, producers=[p]), SQUARES)[0]
    return np.sqrt(sq)
