"""The Python API: a thin facade over ``onnxprune.pipeline`` (prune) and the analysis (analyze)."""

from __future__ import annotations

import os
from collections.abc import Callable

import onnx_ir as ir

from onnxprune.allocation import AllocationOptions, allocate
from onnxprune.config import DEFAULT_CRITERION, PruneConfig, from_keywords
from onnxprune.criteria import get_criterion
from onnxprune.graph import Analysis, analyze_groups
from onnxprune.pipeline import ModelLike, load_normalized, run
from onnxprune.plan import Plan, check_ratio, plan_from_removals

__all__ = ["ModelLike", "PruneConfig", "analyze", "load_normalized", "make_plan", "prune", "validate_models"]


def analyze(model: ModelLike, attention_unit: str = "head") -> Analysis:
    """Channel groups of a model, with members and freeze reasons (``group.details()``); ``attention_unit``:
    a head split in decomposed attention removes whole heads ("head") or head dimensions ("dim")."""
    return analyze_groups(load_normalized(model), attention_unit)


def make_plan(analysis: Analysis, ratio: float = 0.0, criterion: str | Callable = DEFAULT_CRITERION,
              remove: list[str] | None = None, allocation: AllocationOptions | None = None) -> Plan:
    """Explicit removals if given, else the criterion's lowest-scored channels, allocated by
    ``allocation`` (default: ``ratio`` in every group). ``criterion`` is a data-free criterion's name or
    a scorer ``(analysis) -> {group id: scores}``."""
    if remove:
        return plan_from_removals(analysis, remove)
    opts = allocation or AllocationOptions()
    opts.ratio = check_ratio(ratio)
    scorer = get_criterion(criterion) if isinstance(criterion, str) else criterion
    return allocate(analysis, scorer(analysis), opts.check())


def prune(model: ModelLike, config: PruneConfig | None = None, **keywords) -> tuple[ir.Model, dict]:
    """Prune ``model`` and return ``(pruned onnx-ir model, report dict)``.

    Either a ``PruneConfig`` (``onnxprune.config``: sections score, allocation, target, transforms, data,
    validation, output), or keyword arguments that build one: ``ratio`` (a number in [0, 1) or "auto"),
    ``criterion``, ``remove``, ``validate``, ``output``, ``seed``, ``input_shapes``, ``progress``,
    ``allocation`` ("local"/"global"), ``normalize`` ("mean"/"lamp"), ``round_to``, ``max_group_ratio``,
    ``overrides`` [(regex, ratio)], ``ignore`` [regex], ``gaussian_k``, ``gaussian_feature``,
    ``gaussian_outside``, ``data`` (.npz, image folder or ``onnxprune.data.DataSource``), ``budget``
    (``onnxprune.auto.Budget``), ``budget_metrics`` (``--budget-metric`` items, e.g. ["detection=0.98"]),
    ``compensate``, ``merge``, ``lumping_tolerance``, ``target_flops``, ``target_params``, ``target_latency``,
    ``latency_threads``, ``auto_objective``, ``finetune``, ``refit``, ``refit_selects`` (under ``refit``: the
    removed channels chosen by what the refit cannot put back; default: when no ``criterion`` is named),
    ``gradient_options``
    (tau, energy, sampling, beta, alpha0, steps, samples, mass, lr) and ``checks``
    (``onnxprune.validate.ValidationOptions``). A positional second argument that is not a config is
    the ratio, a third the criterion. Every option is either used or refused (``OptionError``);
    docs/architecture.md describes the stages.
    """
    if config is not None and not isinstance(config, PruneConfig):
        keywords["ratio"] = config
        config = None
    if config is not None and keywords:
        raise TypeError("give either a PruneConfig or keyword arguments, not both")
    return run(model, config if config is not None else from_keywords(**keywords))


def validate_models(original: str | os.PathLike, pruned: str | os.PathLike, checks=None) -> dict:
    """``onnxprune validate``: sizes, fidelity, latency and (with ``checks.edge``) edge readiness of two
    model files; ``checks`` is an ``onnxprune.validate.ValidationOptions`` (default: latency on).
    The keys are documented in docs/report.md."""
    from onnxprune.validate import suite  # onnxruntime loads only when validating

    return suite.validate_models(original, pruned, checks)
