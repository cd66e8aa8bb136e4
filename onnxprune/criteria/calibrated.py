"""Calibration-aware criteria without gradients: ``wanda`` and ``flap``, from activation statistics
measured in onnxruntime (one streamed pass over the calibration batches, ``criteria.activations``).

A consumer (Gemm, MatMul, Conv) reads input position p through its weights W[:, p] (a Conv: every
kernel entry of input channel p). With X_p the consumer's input at position p over every sample (and
every spatial or sequence position):

- ``wanda`` (structured Wanda, Sun et al. 2023): ||W[:, p]||_2 * ||X_p||_2, the size of what p sends.
- ``flap`` (An et al. 2024): Var(X_p) * ||W[:, p]||_2^2, the output energy p's fluctuation carries; what is
  constant in p (its mean) is not lost when p goes, because flap folds the removed channels' measured means
  into the consumers' biases (compensation is on by default for it; --no-compensate turns it off).

A channel's score is the sum over every consumer of its group and every position it owns (a flattened
channel, a head), so a residual or concatenated group counts each reader. Scores are not standardised
per layer here: global allocation normalises them like every other criterion's (--normalize, LAMP by
default), which the report section states.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxprune.criteria.activations import ChannelStats
from onnxprune.criteria.base import ScoreContext, Scores
from onnxprune.criteria.magnitude import consumer_position_energy, l2
from onnxprune.graph import Analysis
from onnxprune.graph.context import ParamMember


def consumer_activation(analysis: Analysis, c: ParamMember) -> tuple[ir.Value, int] | None:
    """The activation input a consumer member reads (the tensor whose tracked positions are its columns)
    and its channel axis; None when no input carries them."""
    for i, v in enumerate(c.node.inputs):
        if i == c.input_index or v is None or v not in analysis.dims:
            continue
        d = analysis.dims[v]
        if len(d.atoms) == len(c.atoms) and np.array_equal(analysis.roots[d.atoms], analysis.roots[c.atoms]):
            return v, d.axis
    return None


def wanda_positions(w_energy: np.ndarray, stats: ChannelStats) -> np.ndarray:
    """||W[:, p]|| * ||X_p|| per input position."""
    return np.sqrt(w_energy) * stats.norm


def flap_positions(w_energy: np.ndarray, stats: ChannelStats) -> np.ndarray:
    """Var(X_p) * ||W[:, p]||^2 per input position."""
    return stats.variance * w_energy


@dataclass(frozen=True)
class ActivationCriterion:
    """A criterion summing ``per_position(||W[:, p]||^2, stats of X_p)`` over the consumers of each group."""

    name: str
    per_position: Callable[[np.ndarray, ChannelStats], np.ndarray]
    summary: str
    compensates: bool = False
    needs_data: bool = True
    needs_torch: bool = False
    options: tuple[str, ...] = ()
    at_zero_ratio: str = "nothing"
    sizes_itself: bool = False
    shares_ratio_by_counts: bool = False
    merges: bool = False

    def score(self, analysis: Analysis, context: ScoreContext) -> Scores:
        readers = {g.id: [(c, consumer_activation(analysis, c)) for c in g.params if c.role == "consumer"]
                   for g in analysis.prunable_groups}
        stats = context.activation_stats(context.model, [a for pairs in readers.values() for _, a in pairs
                                                         if a is not None])
        values, notes, fallback = {}, {}, None
        for g in analysis.prunable_groups:
            pairs = [(c, a) for c, a in readers[g.id] if a is not None]
            if not pairs:  # nothing reads these channels through a weight: no W_j to weigh X_j by
                fallback = fallback or l2(analysis)
                values[g.id] = fallback[g.id]
                notes[g.id] = "no consumer weight reads this group: scored by l2"
                continue
            total = np.zeros(g.size)
            for c, (v, _) in pairs:
                pos, cls = analysis.channels_in(g, c.atoms)
                np.add.at(total, cls, self.per_position(consumer_position_energy(c), stats[v.name])[pos])
            values[g.id] = total
        a = context.config.allocation
        how = (f"global allocation normalises each group's scores by --normalize ({a.normalize})"
               if a.mode == "global" else "local allocation ranks channels within each group")
        calib = context.calibration()
        report = {"activation_statistics": {"criterion": self.name, "samples": calib.batch * (calib.samples // calib.batch),
                                            "tensors": len({a[0].name for p in readers.values() for _, a in p if a}),
                                            "normalisation": how}}
        return Scores(values, notes, report=report)


WANDA = ActivationCriterion(
    "wanda", wanda_positions,
    "structured Wanda: ||consumer weights of the channel|| x ||its activations|| on --data (no gradients)")
FLAP = ActivationCriterion(
    "flap", flap_positions,
    "FLAP: variance of the channel's activations on --data x ||its consumer weights||^2; the removed channels' "
    "means are folded into the consumers' biases (--no-compensate: not)", compensates=True)
