"""Plan transforms: what changes a plan after allocation, before surgery. Each one says from the config
whether it applies, so every planner's every trial gets the same ones (none can be forgotten)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import onnx_ir as ir

from onnxprune.graph import Analysis
from onnxprune.plan import Plan

if TYPE_CHECKING:
    from onnxprune.config import PruneConfig
    from onnxprune.criteria.base import ScoreContext


class PlanTransform(Protocol):
    name: str

    def applies(self, config: PruneConfig) -> bool: ...

    def apply(self, model: ir.Model, analysis: Analysis, plan: Plan, context: ScoreContext) -> None: ...


def ignored(analysis: Analysis, patterns: tuple[str, ...]) -> set[int]:
    """Ids of the groups --ignore leaves whole."""
    from onnxprune.allocation import _matches

    return {g.id for g in analysis.groups if any(_matches(p, g) for p in patterns)}


def lossless_plan(analysis: Analysis, ignore: tuple[str, ...] = ()) -> Plan:
    """Everything removable without changing any output (lumping), except in ignored groups."""
    from onnxprune.criteria.lumping import lumping_plan

    plan = lumping_plan(analysis)
    for gid in ignored(analysis, ignore):
        for part in (plan.removed, plan.merges, plan.bias_folds, plan.reasons):
            part.pop(gid, None)
        if gid in {g.id for g in analysis.prunable_groups}:
            plan.skipped[gid] = "left whole by --ignore"
    return plan


class RefitSelection:
    name = "refit selection"

    def applies(self, config: PruneConfig) -> bool:
        return bool(config.transforms.refit_selects) and not config.target.remove and not config.lossless

    def apply(self, model: ir.Model, analysis: Analysis, plan: Plan, context: ScoreContext) -> None:
        from onnxprune.refit_select import select_for_refit

        select_for_refit(model, analysis, plan, context)


class Lossless:
    name = "lossless"

    def applies(self, config: PruneConfig) -> bool:
        return config.lossless

    def apply(self, model: ir.Model, analysis: Analysis, plan: Plan, context: ScoreContext) -> None:
        found = lossless_plan(analysis, context.config.allocation.ignore)
        for part in ("removed", "merges", "bias_folds", "reasons", "skipped"):
            getattr(plan, part).update(getattr(found, part))


class NearCopies:
    name = "near copies"

    def applies(self, config: PruneConfig) -> bool:
        return config.transforms.lumping_tolerance > 0

    def apply(self, model: ir.Model, analysis: Analysis, plan: Plan, context: ScoreContext) -> None:
        from onnxprune.criteria.merging import add_near_copies

        add_near_copies(analysis, plan, context.config.transforms.lumping_tolerance)
        for gid in ignored(analysis, context.config.allocation.ignore):  # the lossless step left them whole
            for part in (plan.removed, plan.merges, plan.bias_folds, plan.reasons):
                part.pop(gid, None)


class Merge:
    name = "merge"

    def applies(self, config: PruneConfig) -> bool:
        return bool(config.transforms.merge)

    def apply(self, model: ir.Model, analysis: Analysis, plan: Plan, context: ScoreContext) -> None:
        from onnxprune.criteria.merging import fold_removed

        fold_removed(analysis, plan)


class Compensate:
    name = "compensate"

    def applies(self, config: PruneConfig) -> bool:
        return config.transforms.compensate

    def apply(self, model: ir.Model, analysis: Analysis, plan: Plan, context: ScoreContext) -> None:
        from onnxprune.criteria.compensate import add_compensation

        add_compensation(analysis, plan, context.activation_means(model))


# In this order: under --refit, which of the allocated channels go (refit cost) first; lossless removals,
# near copies on top of them, folds, then bias compensation of whatever is neither merged nor folded.
TRANSFORMS: tuple[PlanTransform, ...] = (RefitSelection(), Lossless(), NearCopies(), Merge(), Compensate())
