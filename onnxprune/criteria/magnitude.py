"""Norms of each channel's producer filters; a residual group sums its producers' scores."""

from __future__ import annotations

from typing import Callable

import numpy as np

from onnxprune.graph import Analysis, Group


def _producer_sums(analysis: Analysis, group: Group, row_stat: Callable) -> list[np.ndarray]:
    """For each producer: row_stat of each position's filter, summed per channel of the group."""
    sums = []
    for p in group.producers:
        w = p.value.const_value.numpy()
        rows = np.moveaxis(w, p.axis, 0).reshape(w.shape[p.axis], -1).astype(np.float64)
        _, cls = analysis.class_index(p.atoms)
        per_class = np.zeros(group.size)
        np.add.at(per_class, cls, row_stat(rows))
        sums.append(per_class)
    return sums


def l1(analysis: Analysis) -> dict[int, np.ndarray]:
    """Sum of |w| of each channel's filters."""
    return {g.id: np.sum(_producer_sums(analysis, g, lambda r: np.abs(r).sum(axis=1)), axis=0)
            for g in analysis.prunable_groups}


def l2(analysis: Analysis) -> dict[int, np.ndarray]:
    """Euclidean norm of each channel's filters, per producer, summed over producers."""
    return {g.id: np.sum(np.sqrt(_producer_sums(analysis, g, lambda r: (r * r).sum(axis=1))), axis=0)
            for g in analysis.prunable_groups}
