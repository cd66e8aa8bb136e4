"""Norms of each channel's producer filters; a residual group sums its producers' scores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from onnxprune.graph import Analysis, Group, optable
from onnxprune.graph.context import ParamMember
from onnxprune.weights import axis_sums


@dataclass(frozen=True)
class SumOf:
    """A per-position statistic that is the sum of a float64 map of the position's values: as a row
    statistic, ``elementwise(rows).sum(axis=1)``; of a stored weight, summed in storage order by
    ``weights.axis_sums`` (one pass in small blocks, whatever the axis: a MatMul's output columns too)."""

    elementwise: Callable[[np.ndarray], np.ndarray]

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return self.elementwise(rows).sum(axis=1)


def squares_f64(w: np.ndarray) -> np.ndarray:
    """``np.square(w, dtype=np.float64)`` to the bit (the same cast, then the same product), about a
    third faster: one float64 copy squared in place, where the ufunc casts through small buffers."""
    out = w.astype(np.float64)
    return np.multiply(out, out, out=out)


def absolutes_f64(w: np.ndarray) -> np.ndarray:
    """``np.abs(w).astype(np.float64)`` to the bit (|x| is exact in either type), with one copy; of the
    int8 -128 (and the like) it is 128, where numpy's integer abs wraps to -128."""
    out = w.astype(np.float64)
    return np.abs(out, out=out)


SQUARES = SumOf(squares_f64)
ABSOLUTES = SumOf(absolutes_f64)


def position_stats(member: ParamMember, row_stat: Callable) -> np.ndarray:
    """``row_stat`` (float64) of each position of a weight member along its axis, read a block at a
    time so a large (memory-mapped) weight is never copied or resident whole."""
    if isinstance(row_stat, SumOf) and member.quant is None:
        return axis_sums(member.value.const_value, member.axis, row_stat.elementwise)
    return np.concatenate([row_stat(b.reshape(b.shape[0], -1)) for b in member.slabs()])


def producer_sums(analysis: Analysis, group: Group, row_stat: Callable) -> list[np.ndarray]:
    """For each producer: row_stat (float64) of each position's filter, summed per channel of the group."""
    sums = []
    for p in group.producers:
        stats = position_stats(p, row_stat)
        pos, cls = analysis.channels_in(group, p.atoms)
        per_class = np.zeros(group.size)
        np.add.at(per_class, cls, stats[pos])
        sums.append(per_class)
    return sums


def param_per_class(analysis: Analysis, g: Group, node, index: int) -> np.ndarray | None:
    """Per channel of the group: the float64 value of input ``index`` of ``node`` (a per-channel
    parameter such as a BN's gamma), or None when that input is not a member of the group."""
    member = next((p for p in g.params if p.node is node and p.input_index == index), None)
    if member is None:
        return None
    out = np.zeros(g.size)
    pos, cls = analysis.channels_in(g, member.atoms)
    out[cls] = member.array().astype(np.float64).ravel()[pos]
    return out


def consumer_column_energy(analysis: Analysis, g: Group, consumers: list | None = None) -> np.ndarray:
    """Per channel: the sum over the group's consumers (or ``consumers``) of ||W_c[:, j]||^2 (a
    flattened channel owns many columns)."""
    out = np.zeros(g.size)
    for c in consumers if consumers is not None else (p for p in g.params if p.role == "consumer"):
        pos, cls = analysis.channels_in(g, c.atoms)
        np.add.at(out, cls, consumer_position_energy(c)[pos])
    return out


def consumer_position_energy(c) -> np.ndarray:
    """Per input position of a consumer member: ||W[:, p]||^2 (float64) over every weight that reads it
    (a Conv: all kernel entries of input channel p)."""
    if c.blocks > 1:  # grouped conv: input position b * per + l is column l of conv group b's rows
        w = np.moveaxis(c.array(), c.axis, 0)
        per = w.shape[0]
        return np.square(w.reshape(per, c.blocks, -1), dtype=np.float64).sum(axis=2).T.ravel()
    return position_stats(c, SQUARES)


def l1(analysis: Analysis) -> dict[int, np.ndarray]:
    """Sum of |w| of each channel's filters."""
    return {g.id: np.sum(producer_sums(analysis, g, ABSOLUTES), axis=0)
            for g in analysis.prunable_groups}


def l2(analysis: Analysis) -> dict[int, np.ndarray]:
    """Euclidean norm of each channel's filters, per producer, summed over producers."""
    return {g.id: np.sum(np.sqrt(producer_sums(analysis, g, SQUARES)),
                         axis=0)
            for g in analysis.prunable_groups}


_FPGM_MAX_DIM = 256  # longer filters are projected (seeded Gaussian: distances kept in expectation)


def fpgm(analysis: Analysis) -> dict[int, np.ndarray]:
    """Filter pruning via geometric median: sum of Euclidean distances from each channel's filter to
    the others' (per producer, summed over producers). The smallest are closest to the median, i.e.
    the most replaceable, and go first."""
    scores = {}
    for g in analysis.prunable_groups:
        total = np.zeros(g.size)
        for p in g.producers:
            rows, cls = _filters(analysis, g, p)
            sq = np.einsum("ij,ij->i", rows, rows)
            sums = np.empty(len(rows))
            for i in range(0, len(rows), 512):  # 512 x C distances at a time, never C x C
                block = sq[i:i + 512, None] + sq[None, :] - 2 * (rows[i:i + 512] @ rows.T)
                sums[i:i + 512] = np.sqrt(np.maximum(block, 0.0)).sum(axis=1)
            np.add.at(total, cls, sums)
        scores[g.id] = total
    return scores


def _filters(analysis: Analysis, group: Group, p) -> tuple[np.ndarray, np.ndarray]:
    """One float64 row per output position of a producer (projected if long), and its class index."""
    pos, cls = analysis.channels_in(group, p.atoms)
    w = np.moveaxis(p.array(), p.axis, 0)[pos]
    rows = w.reshape(w.shape[0], -1)
    if rows.shape[1] > _FPGM_MAX_DIM:
        proj = np.random.default_rng(0).standard_normal((rows.shape[1], _FPGM_MAX_DIM)) / np.sqrt(_FPGM_MAX_DIM)
        rows = np.concatenate([rows[i:i + 256].astype(np.float64) @ proj for i in range(0, len(rows), 256)])
    else:
        rows = rows.astype(np.float64)
    return rows, cls


def bn(analysis: Analysis) -> dict[int, np.ndarray]:
    """|gamma| of the BatchNormalization(s) on each channel (summed over the group's BNs).

    Exporters that fold BN into the conv (the dynamo exporter, constant folding) leave no gamma:
    such groups fall back to l2, and ``fallbacks`` on the returned dict says which."""
    scores, fallback = {}, []
    l2_scores = None
    for g in analysis.prunable_groups:
        gammas = [p for p in g.params if _is_bn_scale(analysis, p)]
        if not gammas:
            l2_scores = l2_scores or l2(analysis)
            scores[g.id] = l2_scores[g.id]
            fallback.append(g.id)
            continue
        total = np.zeros(g.size)
        for p in gammas:
            pos, cls = analysis.channels_in(g, p.atoms)
            np.add.at(total, cls, np.abs(p.array().astype(np.float64))[pos])
        scores[g.id] = total
    return ScoreDict(scores, notes={gid: "no BatchNormalization (folded?): scored by l2" for gid in fallback})


def _is_bn_scale(analysis: Analysis, p) -> bool:
    """The scale (gamma) input of a normalisation with running statistics (BatchNormalization)."""
    norm = optable.traits(p.node, analysis.opset).norm()
    return norm is not None and norm.mean is not None and p.input_index == norm.scale


class ScoreDict(dict):
    """Scores per group with a note per group where the criterion could not apply as named."""

    def __init__(self, scores: dict, notes: dict[int, str] | None = None) -> None:
        super().__init__(scores)
        self.notes = notes or {}
