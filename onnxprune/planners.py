"""Planners decide how much goes; a ``Trial`` makes and measures the plan for one amount.

Every planner takes the whole config and asks one Trial for candidates, and the Trial alone turns an
amount into a plan (``plan_for``: allocation by the config, then every plan transform the config asks
for). So a planner picks amounts, never options: fixed (a ratio, the criterion's threshold or own
count, lossless lumping, explicit removals), size and latency targets (the smallest ratio that meets
them), and the fidelity budget of ``--ratio auto`` (the largest ratio or k within it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import onnx
import onnx_ir as ir

from onnxprune.allocation import AllocationOptions, allocate
from onnxprune.config import PruneConfig
from onnxprune.criteria import criterion
from onnxprune.criteria.base import ScoreContext, Scores
from onnxprune.graph import Analysis, analyze_groups
from onnxprune.passes.normalize import normalize
from onnxprune.passes.preserve import copy_structure
from onnxprune.plan import Plan, plan_from_removals
from onnxprune.surgery import apply_plan
from onnxprune.transforms import TRANSFORMS


@dataclass(frozen=True)
class Amount:
    """How much one candidate removes: a ratio (None: the criterion's own count), or a score threshold."""

    ratio: float | None = 0.0
    threshold: float | None = None
    why: str = ""  # what the threshold means, for the report
    fractions: tuple[tuple[str, float], ...] = ()  # (group name, its own ratio): --ratio auto's allocation


@dataclass
class Candidate:
    model: ir.Model
    analysis: Analysis
    plan: Plan
    sections: dict = field(default_factory=dict)  # report sections of steps after surgery (--refit)


def allocation_plan(analysis: Analysis, scores: Scores, config: PruneConfig, amount: Amount) -> Plan:
    """Removed channels per group for ``amount``, by the config's allocation (or the criterion's counts)."""
    a = config.allocation
    # "sensitivity" (--ratio auto): each group's own ratio comes with the amount; the rest keep all
    mode = "local" if a.mode in (None, "sensitivity") else a.mode
    opts = AllocationOptions(ratio=amount.ratio or 0.0, mode=mode, normalize=a.normalize or "mean",
                             round_to=a.round_to, max_group_ratio=a.max_group_ratio, overrides=list(a.overrides),
                             ignore=list(a.ignore), threshold=amount.threshold, threshold_why=amount.why,
                             fractions=dict(amount.fractions), fractions_why=amount.why if amount.fractions else "")
    counts, why = None, ""
    if scores.counts is not None and (amount.ratio is None or criterion(config.score.criterion).shares_ratio_by_counts):
        counts, why = scores.counts(amount.ratio), scores.count_why(amount.ratio) if scores.count_why else ""
    return allocate(analysis, scores, opts, counts, why)


def plan_for(model: ir.Model, analysis: Analysis, scores: Scores, config: PruneConfig, amount: Amount,
             context: ScoreContext, transforms: bool = True) -> Plan:
    """The one place an amount becomes a plan: explicit removals, lossless lumping (a transform on an
    empty plan) or allocation; then the transforms."""
    if config.target.remove:
        plan = plan_from_removals(analysis, list(config.target.remove))
    else:
        plan = Plan() if config.lossless else allocation_plan(analysis, scores, config, amount)
    for t in TRANSFORMS if transforms else ():
        if t.applies(config):
            t.apply(model, analysis, plan, context)
    return plan


class Trial:
    """Prune for one amount and measure: on a fresh copy of the base model (searches), or on the base
    model itself (the final candidate). Scores are computed once, on the base, and reused by name."""

    def __init__(self, model: ir.Model, analysis: Analysis, scores: Scores, config: PruneConfig,
                 context: ScoreContext, status: Callable[[str], object] = lambda line: None) -> None:
        self.model, self.analysis, self.scores, self.config, self.context = model, analysis, scores, config, context
        self.status = status  # one line of progress (the terminal's stage bar)
        self._base: bytes | None = None
        self._original = None  # the base as --refit reads it (bytes, or a saved copy with external data)
        self._original_dir = None
        self._sizes: tuple[dict, dict] | None = None

    def plan(self, amount: Amount, transforms: bool = False) -> Plan:
        """The plan on the base analysis, without surgery (transforms off: sizes do not depend on them)."""
        return plan_for(self.model, self.analysis, self.scores, self.config, amount, self.context, transforms)

    def base_bytes(self) -> bytes:
        """The base model, serialized once (before any surgery on it)."""
        if self._base is None:
            self._base = ir.to_proto(self.model).SerializeToString()
        return self._base

    def copy(self, amount: Amount, refit: bool = True, samples: int | None = None) -> Candidate:
        """A fresh copy of the base model, planned by the config and pruned (and refit if the config
        says so and ``refit``: candidates measured for fidelity see the refit model; ``samples``: refit on
        about that many calibration samples only, for quick probes)."""
        m = ir.from_proto(onnx.load_from_string(self.base_bytes()))
        copy_structure(self.model, m)  # written (and timed) as the base would be: with IN's structure
        m = normalize(m)
        an = analyze_groups(m, self.config.allocation.attention_unit)
        plan = plan_for(m, an, self.scores.renamed(self.analysis, an), self.config, amount, self.context)
        apply_plan(an, plan, name_dims=False)  # a search candidate: run and measured, never analysed again
        return self._refit(Candidate(m, an, plan), refit, samples)

    def final(self, amount: Amount) -> Candidate:
        """The base model itself, planned and pruned (the last use of the base)."""
        plan = plan_for(self.model, self.analysis, self.scores, self.config, amount, self.context)
        if self.config.transforms.refit:
            self.refit_original()  # the unpruned model the refit reproduces, taken before the surgery
        apply_plan(self.analysis, plan)
        return self._refit(Candidate(self.model, self.analysis, plan))

    def refit_original(self):
        """The base model as --refit's onnxruntime session loads it: its bytes, or (weights in external
        files) a copy saved once in a temporary folder that lives as long as this trial."""
        if self._original is None:
            import tempfile

            from onnxprune.refit import has_external_data, snapshot

            if not has_external_data(self.model):
                self._original = self.base_bytes()
            else:
                self._original_dir = tempfile.TemporaryDirectory(prefix="onnxprune-")
                self._original = snapshot(self.model, self._original_dir.name)
        return self._original

    def _refit(self, candidate: Candidate, refit: bool = True, samples: int | None = None) -> Candidate:
        """--refit on a pruned candidate: its consumers re-solved against the base model."""
        if refit and self.config.transforms.refit:
            from onnxprune.refit import refit_candidate

            candidate.sections["refit"] = refit_candidate(candidate.model, candidate.analysis, candidate.plan,
                                                          self.refit_original(), self.context, self.status, samples)
        return candidate

    def predicted_size(self, plan: Plan) -> tuple[int, int]:
        """(params, MACs) of the base model after ``plan``, without surgery."""
        from onnxprune.metrics import macs_per_node, params_per_initializer
        from onnxprune.targets import predicted_size

        if self._sizes is None:
            self._sizes = (macs_per_node(self.model, self.context.input_shapes), params_per_initializer(self.model))
        return predicted_size(self.analysis, plan, *self._sizes)

    def base_size(self) -> dict[str, int]:
        params, macs = self.predicted_size(Plan())
        return {"flops": macs, "params": params}


class Planner(Protocol):
    """Chooses the amount; ``prepare`` may change the model before scoring (auto's lossless step)."""

    fold_bn: bool
    needs_original: bool  # measures against the original model in onnxruntime

    def prepare(self, model: ir.Model, analysis: Analysis) -> tuple[Analysis, dict]: ...

    def run(self, trial: Trial) -> tuple[Candidate, dict]: ...


class FixedPlanner:
    """One amount given by the config: a ratio, the criterion's threshold or own count, lossless
    lumping, or explicit removals."""

    needs_original = False

    def __init__(self, config: PruneConfig) -> None:
        self.config = config
        self.fold_bn = config.lossless

    def prepare(self, model: ir.Model, analysis: Analysis) -> tuple[Analysis, dict]:
        return analysis, {}

    def amount(self) -> Amount:
        c = self.config
        if c.thresholded:
            value, why = criterion(c.score.criterion).threshold(c.score)
            return Amount(ratio=0.0, threshold=value, why=why)
        return Amount(ratio=None if c.target.auto else c.target.ratio)

    def run(self, trial: Trial) -> tuple[Candidate, dict]:
        return trial.final(self.amount()), {}


def choose_planner(config: PruneConfig) -> Planner:
    """The planner for the config's target."""
    from onnxprune.auto import BudgetPlanner
    from onnxprune.targets import TargetPlanner

    if config.target.sized:
        return TargetPlanner(config)
    if config.target.auto and not criterion(config.score.criterion).sizes_itself:
        return BudgetPlanner(config)
    return FixedPlanner(config)
