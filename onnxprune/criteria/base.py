"""The criterion protocol: ``score(analysis, context) -> Scores``, lower = pruned first.

A criterion says nothing about how many channels go; allocation and planners decide that. What a
criterion may add is its own count (``Scores.counts``: singularity's rank caps, dirichlet's posterior
mass), which the allocation uses when the criterion sizes itself, and a report section.
The context hands out what some criteria need, computed once: calibration data, the reference
outputs on it, activation statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import onnx_ir as ir

from onnxprune.graph import Analysis

if TYPE_CHECKING:
    from onnxprune.config import PruneConfig, ScoreConfig
    from onnxprune.criteria.activations import ChannelStats
    from onnxprune.criteria.gradient import Calibration


@dataclass
class Scores:
    """Per prunable group id: one score per channel class; ``notes`` says where a criterion fell back."""

    values: dict[int, np.ndarray]
    notes: dict[int, str] = field(default_factory=dict)
    # The criterion's own count of removable channels per group at a ratio (None: its own estimate).
    counts: Callable[[float | None], dict[int, int]] | None = None
    count_why: Callable[[float | None], str] | None = None
    report: dict = field(default_factory=dict)  # merged into the prune report

    def __getitem__(self, gid: int) -> np.ndarray:
        return self.values[gid]

    def __contains__(self, gid: int) -> bool:
        return gid in self.values

    def keys(self):
        return self.values.keys()

    def items(self):
        return self.values.items()

    def renamed(self, base: Analysis, other: Analysis) -> Scores:
        """These scores (computed on ``base``) for ``other``, a fresh analysis of the same model: groups
        matched by name, so scoring happens once however many trials follow."""
        ids = {g.name: g.id for g in base.groups}
        back = {other_g.id: ids.get(other_g.name) for other_g in other.groups}
        values = {gid: self.values[b] for gid, b in back.items() if b in self.values}
        notes = {gid: self.notes[b] for gid, b in back.items() if b in self.notes}
        counts = None
        if self.counts is not None:
            own = self.counts
            counts = lambda ratio: {gid: own(ratio)[b] for gid, b in back.items() if b in own(ratio)}  # noqa: E731
        return Scores(values, notes, counts, self.count_why, self.report)


class Criterion(Protocol):
    """One way of scoring channels. Registered in ``onnxprune.criteria.REGISTRY`` by ``name``."""

    name: str
    summary: str  # one line for --help
    needs_data: bool  # calibration data (--data) required
    needs_torch: bool  # the torch twin required
    options: tuple[str, ...]  # the ScoreConfig fields it reads; any other one given is refused
    at_zero_ratio: str  # without a ratio: "nothing", "lossless" (lumping) or "threshold" (gaussian k)
    sizes_itself: bool  # has its own count of removable channels (used by --ratio auto)
    shares_ratio_by_counts: bool  # a numeric ratio is shared by its own counts, not by the allocation
    merges: bool  # removed channels fold into nearly proportional kept ones unless --no-merge
    compensates: bool  # removed channels' means fold into consumer biases unless --no-compensate

    def score(self, analysis: Analysis, context: ScoreContext) -> Scores: ...


@dataclass(frozen=True)
class DataFree:
    """A criterion that reads only the weights: ``fn(analysis) -> {group id: scores}``."""

    name: str
    fn: Callable[[Analysis], dict]
    summary: str
    options: tuple[str, ...] = ()
    at_zero_ratio: str = "nothing"
    merges: bool = False
    compensates: bool = False
    needs_data: bool = False
    needs_torch: bool = False
    sizes_itself: bool = False
    shares_ratio_by_counts: bool = False

    def score(self, analysis: Analysis, context: ScoreContext) -> Scores:
        return as_scores(self.fn(analysis))


def as_scores(raw) -> Scores:
    """A scorer's dict (optionally with ``.notes``) as Scores."""
    if isinstance(raw, Scores):
        return raw
    return Scores(dict(raw), dict(getattr(raw, "notes", {})))


class ScoreContext:
    """What criteria and plan transforms may ask for, each computed on first use and kept:
    calibration data, the unpruned model's outputs on it, activation means."""

    def __init__(self, model: ir.Model, config: PruneConfig, original=None) -> None:
        self.model = model
        self.config = config
        self.original = original  # the unpruned model as onnxruntime loads it (a path or bytes), if needed
        self._calibration = None
        self._reference = None
        self._stats: dict[tuple[str, int], ChannelStats] = {}
        # --ratio auto keeps some calibration samples for its budget: what is fit to data (the refit, its
        # channel selection) reads only the samples [start, stop) of ``fit_window`` (None: all)
        self.fit_window: tuple[int, int] | None = None

    @property
    def options(self) -> ScoreConfig:
        return self.config.score

    @property
    def progress(self) -> bool:
        return self.config.output.progress

    @property
    def input_shapes(self) -> dict[str, tuple] | None:
        return self.config.data.input_shapes or None

    def calibration(self) -> Calibration:
        if self._calibration is None:
            from onnxprune.criteria.gradient import load_calibration

            self._calibration = load_calibration(self.model, self.config.data.source)
        return self._calibration

    def reference_outputs(self) -> list[list[np.ndarray]]:
        """The model's outputs per calibration batch, as it was when first asked (ask before surgery)."""
        if self._reference is None:
            from onnxprune.criteria.gradient import reference_outputs

            self._reference = reference_outputs(self.model, self.calibration())
        return self._reference

    def activation_stats(self, model: ir.Model, pairs: list[tuple[ir.Value, int]]) -> dict[str, ChannelStats]:
        """{name: ChannelStats} of ``model``'s tensors ``pairs`` ([(value, axis)]) on the calibration data,
        streamed in onnxruntime. Kept by name: every model asked about is the unpruned model of this
        context or a copy of it (transforms run before surgery), so a tensor is measured once."""
        from onnxprune.criteria.activations import measure_activation_stats

        missing = [(v, axis) for v, axis in pairs if (v.name, axis) not in self._stats]
        if missing:
            found = measure_activation_stats(model, self.calibration(), missing, progress=self.progress)
            self._stats.update({(v.name, axis): found[v.name] for v, axis in missing})
        return {v.name: self._stats[(v.name, axis)] for v, axis in pairs}

    def activation_means(self, model: ir.Model) -> Callable | None:
        """``means([(value, axis)])`` -> {name: mean per position of the axis} on the calibration data for
        ``model`` as it is now; None without data."""
        if self.config.data.source is None:
            return None
        return lambda pairs: {name: s.mean for name, s in self.activation_stats(model, pairs).items()}
