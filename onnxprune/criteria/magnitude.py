"""Norms of each channel's producer filters; a residual group sums its producers' scores."""

from __future__ import annotations

from typing import Callable

import numpy as np

from onnxprune.graph import Analysis, Group


_CHUNK_BYTES = 16 * 1024 * 1024  # scoring never copies more than this of a weight at once


def _producer_sums(analysis: Analysis, group: Group, row_stat: Callable) -> list[np.ndarray]:
    """For each producer: row_stat (float64) of each position's filter, summed per channel of the group.

    Works on chunks of the (memory-mapped) weight so a large Gemm is never copied whole."""
    sums = []
    for p in group.producers:
        w = np.moveaxis(p.value.const_value.numpy(), p.axis, 0)
        n = w.shape[0]
        step = max(1, _CHUNK_BYTES // max(1, w[0].nbytes if n else 1))
        stats = np.concatenate([row_stat(w[i:i + step].reshape(min(step, n - i), -1)) for i in range(0, n, step)])
        _, cls = analysis.class_index(p.atoms)
        per_class = np.zeros(group.size)
        np.add.at(per_class, cls, stats)
        sums.append(per_class)
    return sums


def l1(analysis: Analysis) -> dict[int, np.ndarray]:
    """Sum of |w| of each channel's filters."""
    return {g.id: np.sum(_producer_sums(analysis, g, lambda r: np.abs(r).sum(axis=1, dtype=np.float64)), axis=0)
            for g in analysis.prunable_groups}


def l2(analysis: Analysis) -> dict[int, np.ndarray]:
    """Euclidean norm of each channel's filters, per producer, summed over producers."""
    return {g.id: np.sum(np.sqrt(_producer_sums(analysis, g, lambda r: np.square(r, dtype=np.float64).sum(axis=1))),
                         axis=0)
            for g in analysis.prunable_groups}
