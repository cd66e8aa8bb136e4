"""Per-channel statistics of activations on the calibration data, measured in onnxruntime.

The tensors asked for become extra outputs of a copy of the model, which runs one calibration batch at a
time; each batch's outputs are reduced to count, mean and centred sum of squares per position of the
tracked axis (every other axis holds samples) and dropped, so activations are never held whole. When the
asked tensors of one batch would exceed a memory budget, they are measured in several passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

if TYPE_CHECKING:
    from onnxprune.criteria.gradient import Calibration

# The extra outputs of one batch stay below this (estimated from shapes); more tensors take more passes.
PASS_BUDGET_BYTES = 512 * 1024 * 1024


@dataclass
class ChannelStats:
    """Streamed statistics per position of one axis: merged batch by batch (Chan et al.'s update of the
    centred sum of squares, which keeps the variance exact where sum-of-squares minus squared mean
    would cancel)."""

    count: int = 0
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    m2: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sum of squared deviations from the mean

    def add(self, arr: np.ndarray, axis: int) -> None:
        """Fold in one batch: ``axis`` indexes positions, every other axis holds samples."""
        rows = np.moveaxis(np.asarray(arr, dtype=np.float64), axis, 0).reshape(arr.shape[axis], -1)
        n = rows.shape[1]
        if n == 0:
            return
        mean = rows.mean(axis=1)
        m2 = np.square(rows - mean[:, None]).sum(axis=1)
        if self.count == 0:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * n / total)
        self.count = total

    @property
    def variance(self) -> np.ndarray:
        """Population variance per position."""
        return self.m2 / max(self.count, 1)

    @property
    def sum_of_squares(self) -> np.ndarray:
        return self.m2 + self.count * self.mean * self.mean

    @property
    def norm(self) -> np.ndarray:
        """||X_p||_2 over every sample of position p."""
        return np.sqrt(np.maximum(self.sum_of_squares, 0.0))


def measure_activation_stats(model: ir.Model, calibration: Calibration, pairs: list[tuple[ir.Value, int]],
                             budget: int = PASS_BUDGET_BYTES, progress: bool = False) -> dict[str, ChannelStats]:
    """{tensor name: ChannelStats along its axis} of ``model``'s tensors ``pairs`` ([(value, axis)]) over the
    calibration batches (``model`` as it is now: call before surgery)."""
    from onnxprune.io import exposing
    from onnxprune.progress import steps
    from onnxprune.runtime import session

    pairs = list({v.name: (v, axis) for v, axis in pairs}.values())
    out: dict[str, ChannelStats] = {v.name: ChannelStats() for v, _ in pairs}
    if not pairs:
        return out
    batches = list(range(calibration.samples // calibration.batch))
    passes = _passes(model, calibration, pairs, budget)
    proto = ir.to_proto(model)
    with steps(len(passes) * len(batches), "activation statistics", progress) as bar:
        for chunk in passes:
            names = [v.name for v, _ in chunk]
            # Only this pass's tensors as outputs: onnxruntime skips whatever does not lead to them.
            sess = session(exposing(proto, names, only=True), role="model with its activations as outputs")
            for feeds, _ in calibration.batches():
                for (v, axis), arr in zip(chunk, sess.run(names, feeds)):
                    out[v.name].add(arr, axis)  # reduced now: the batch's activations are dropped here
                bar.update(1)
    return out


def _passes(model: ir.Model, calibration: Calibration, pairs: list, budget: int) -> list[list]:
    """``pairs`` split so the tensors of one pass take at most ``budget`` bytes per batch (estimated from
    their shapes, symbolic dims read off the calibration inputs); a single larger tensor gets its own pass."""
    sizes = _symbolic_sizes(model, calibration)
    passes, current, used = [], [], 0
    for v, axis in pairs:
        need = _estimated_bytes(v, sizes, calibration.batch)
        if current and used + need > budget:
            passes.append(current)
            current, used = [], 0
        current.append((v, axis))
        used += need
    return passes + [current] if current else passes


def _symbolic_sizes(model: ir.Model, calibration: Calibration) -> dict[str, int]:
    """Each symbolic dim name of the graph inputs -> its size in one calibration batch."""
    sizes = {}
    for v in model.graph.inputs:
        arr = calibration.feeds.get(v.name)
        if arr is None or v.shape is None:
            continue
        for i, d in enumerate(v.shape):
            if not isinstance(d, int) and getattr(d, "value", None) is not None and i < arr.ndim:
                sizes[d.value] = calibration.batch if i == 0 else int(arr.shape[i])
    return sizes


def _estimated_bytes(v: ir.Value, sizes: dict[str, int], batch: int) -> int:
    from onnxprune.data import DEFAULT_FREE_DIM

    if v.shape is None:
        return batch * DEFAULT_FREE_DIM ** 2 * 4
    dims = [d if isinstance(d, int) else sizes.get(getattr(d, "value", None), batch if i == 0 else DEFAULT_FREE_DIM)
            for i, d in enumerate(v.shape)]
    itemsize = v.dtype.itemsize if v.dtype is not None else 4
    return math.prod(dims) * itemsize
