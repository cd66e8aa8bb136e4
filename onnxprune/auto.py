"""``--ratio auto`` without gradients: everything lossless first, then the most pruning whose model
stays within a fidelity budget measured in onnxruntime.

The budget compares the pruned model's outputs with the original's on the same inputs. With ``--data``:
top-1 agreement for classifier-shaped outputs ([N, classes]) and the cosine of every other output.
Without data the inputs are seeded noise whose mean and spread per input channel are read off the
first BatchNormalization's statistics where a Conv + BN reads the input (else N(0, 1)); on noise a
classifier's top-1 mostly measures ties, so every output is budgeted by cosine instead.

What grows: with a threshold criterion (gaussian) the interval k (bisection); with any other scoring
criterion a ratio, raised in steps of RATIO_STEP until the budget fails, then halved once. The ratio is
allocated as the config says (default global LAMP, every removed channel folded into its most nearly
proportional kept channel); ignores, overrides, caps, rounding and --compensate apply to every trial.
Every trial prunes a fresh copy of the lossless model (``planners.Trial``), so the result is exactly
what the chosen value gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxprune.graph import Analysis, analyze_groups
from onnxprune.graph.optable import traits
from onnxprune.graph.traits import attr as traits_attr
from onnxprune.passes.normalize import normalize
from onnxprune.surgery import apply_plan
from onnxprune.validate.tasks import TaskBudget

K_RANGE = (0.02, 3.0)
STEPS = 8
RATIO_STEP = 0.05
RATIO_MAX = 0.9


@dataclass
class Budget:
    cosine: float = 0.99
    top1: float = 0.99
    # Without data. Calibrated on the bundled digits CNN, where test accuracy stayed within 1 point
    # while the cosine on noise stayed >= 0.94 (tools/bench_accuracy.py measures it).
    synthetic_cosine: float = 0.94
    synthetic: bool = False  # set by the search: the inputs are noise

    def describe(self) -> str:
        if self.synthetic:
            return f"cosine >= {self.synthetic_cosine:g} on every output (synthetic inputs)"
        return (f"top-1 agreement >= {self.top1:g} on classifier outputs [N, classes]; "
                f"cosine >= {self.cosine:g} on every other output")

    def met(self, fid: dict) -> bool:
        if self.synthetic:
            return fid["cosine"] >= self.synthetic_cosine
        return fid["top1"] >= self.top1 and fid["cosine_other"] >= self.cosine


def fidelity(reference: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float]:
    """Worst top-1 agreement over classifier-shaped outputs, worst cosine over the others, and the
    worst cosine over all outputs (reported, not budgeted for classifiers)."""
    from onnxprune.validate.fidelity import classifier_shaped, output_metrics  # onnxruntime: only when searching

    cos_all, cos_other, top1 = 1.0, 1.0, 1.0
    for r, o in zip(reference, outputs):
        m = output_metrics(r, o)
        cos_all = min(cos_all, m["cosine"])
        if classifier_shaped(r.shape):
            top1 = min(top1, m["top1"])
        else:
            cos_other = min(cos_other, m["cosine"])
    return {"top1": top1, "cosine_other": cos_other, "cosine": cos_all}


def search_k(measure: Callable[[float], dict]) -> tuple[float, list[dict]]:
    """Largest k in K_RANGE (bisection) whose pruned model is within the budget; 0 if none is.
    ``measure(k)`` prunes a fresh copy at k and returns its trace row (with ``within_budget``)."""
    lo, hi = 0.0, K_RANGE[1]
    trace = []
    for step in range(STEPS):
        k = K_RANGE[0] if step == 0 else (lo + hi) / 2
        trace.append(measure(k))
        if step == 0 and not trace[-1]["within_budget"]:
            return 0.0, trace
        lo, hi = (k, hi) if trace[-1]["within_budget"] else (lo, k)
    return lo, trace


def search_ratio(measure: Callable[[float], dict]) -> tuple[float, list[dict]]:
    """Largest ratio on the RATIO_STEP grid (then one half step) whose pruned model is within the budget,
    raised until the first failure; 0 if the first step fails."""
    trace, ratio = [], 0.0

    def attempt(r: float) -> bool:
        trace.append(measure(r))
        return trace[-1]["within_budget"]

    while ratio + RATIO_STEP <= RATIO_MAX + 1e-9 and attempt(round(ratio + RATIO_STEP, 6)):
        ratio = round(ratio + RATIO_STEP, 6)
    if len(trace) > 0 and not trace[-1]["within_budget"] and attempt(round(ratio + RATIO_STEP / 2, 6)):
        ratio = round(ratio + RATIO_STEP / 2, 6)
    return ratio, trace


class BudgetPlanner:
    """``--ratio auto``: lossless lumping first (``prepare``), then the largest ratio (or, for a threshold
    criterion, the largest k) whose pruned copy stays within the fidelity budget against the original."""

    needs_original = True

    def __init__(self, config) -> None:
        from onnxprune.criteria import criterion

        self.config = config
        self.threshold = criterion(config.score.criterion).at_zero_ratio == "threshold"
        self.fold_bn = self.threshold
        self.lossless = 0

    def prepare(self, model: ir.Model, analysis: Analysis) -> tuple[Analysis, dict]:
        from onnxprune.transforms import lossless_plan

        plan = lossless_plan(analysis, self.config.allocation.ignore)
        apply_plan(analysis, plan)
        self.lossless = plan.count()
        return analyze_groups(normalize(model), self.config.allocation.attention_unit), {}

    def amount(self, value: float):
        from onnxprune.criteria import criterion
        from onnxprune.planners import Amount

        if not self.threshold or value == 0:  # k = 0: nothing beyond the lossless step
            return Amount(ratio=value)
        t, why = criterion(self.config.score.criterion).threshold(self.config.score, value)
        return Amount(ratio=0.0, threshold=t, why="auto: " + why)

    def run(self, trial) -> tuple[object, dict]:
        budget, reference, run, source = _reference(trial, self.config)
        key = "k" if self.threshold else "ratio"

        def measure(value: float) -> dict:
            cand = trial.copy(self.amount(value))
            fid = budget.measure(reference, run(ir.to_proto(cand.model).SerializeToString()))
            ok = budget.met(fid)
            trial.status(f"auto: {key}={value:.3g} removes {cand.plan.count()} channels, {budget.headline(fid)}: "
                         f"{'ok' if ok else 'over budget'}")
            return {key: value, "channels_removed": cand.plan.count(), **fid, "within_budget": ok,
                    "headline": budget.headline(fid)}

        value, trace = search_k(measure) if self.threshold else search_ratio(measure)
        final = trial.final(self.amount(value))
        return final, {"auto": self._section(key, value, trace, budget, source), "ratio": "auto",
                       "lossless_channels": self.lossless}

    def _section(self, key: str, value: float, trace: list[dict], budget: TaskBudget, source: str) -> dict:
        how = "bisection over k" if self.threshold else f"ratio raised in steps of {RATIO_STEP:g}"
        best = next((t for t in reversed(trace) if t[key] == value), None)
        over = next((t for t in trace if not t["within_budget"]), None)
        a, tr = self.config.allocation, self.config.transforms
        allocation = None if self.threshold else (
            f"{a.mode}{' ' + a.normalize.upper() if a.mode == 'global' else ''}"
            + ("; removed channels folded into nearly proportional kept ones" if tr.merge else "")
            + ("; mean-compensated" if tr.compensate else "") + ("; every candidate refit" if tr.refit else "")
            + f"; round-to {a.round_to or 'automatic'}")
        stopped = (f"{how}: {key} = {value:.3g} is the largest tried within the budget" + (
            f"; {key} = {over[key]:.3g} gave {over['headline']}"
            if over else "") if value > 0 else f"no {key} >= {trace[0][key]:g} stays within the budget")
        return {"budget": budget.describe(), "inputs": source, "lossless_channels_removed": self.lossless,
                "searched": key, key: value,
                "fidelity": {c.key: best[c.key] for c in budget.checks} if best else None,
                "checks": [{"output": c.output, "kind": c.kind, "threshold": c.threshold, "why": c.why}
                           for c in budget.checks],
                "search": trace, "stopped": stopped, "allocation": allocation,
                "remove_applies_to": "the model after lossless lumping" + (
                    " (BatchNormalization folded)" if self.fold_bn else "")}


def _reference(trial, config) -> tuple[TaskBudget, list[np.ndarray], Callable, str]:
    """The budget, the original model's outputs on the search inputs, a runner for candidates, and what
    the inputs are (the data file, or noise scaled to the first BatchNormalization's statistics)."""
    from onnxprune.validate.fidelity import run_outputs, session, validation_feeds

    t, data = config.target, config.data
    ref = session(trial.context.original, role="original model")
    feeds, source = validation_feeds(ref, data.source, data.seed, data.input_shapes or None, samples=32)
    if data.source is None:
        moments = input_moments(trial.model)
        for name, (mu, sigma) in moments.items():
            shape = (1, -1) + (1,) * (feeds[name].ndim - 2)
            feeds[name] = (feeds[name] * sigma.reshape(shape) + mu.reshape(shape)).astype(feeds[name].dtype)
        source += (": N(0, 1)" + (
            f"; {', '.join(moments)} scaled to the mean and spread its first BatchNormalization saw"
            if moments else ""))
    reference = run_outputs(ref, feeds)
    first = next(iter(feeds.values()), None)
    budget = TaskBudget.choose([o.name for o in ref.get_outputs()], reference, t, synthetic=data.source is None,
                               batch=first.shape[0] if first is not None and first.ndim else None)
    return budget, reference, lambda b: run_outputs(session(b, role="pruned model"), feeds), source


def input_moments(model: ir.Model) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per float graph input read by a Conv whose output goes to a BatchNormalization alone: the mean
    and standard deviation per input channel that make the Conv's output match the BN's running
    statistics (least squares; inputs taken as independent over positions)."""
    out = {}
    opset = model.opset_imports.get("", 1)
    for inp in model.graph.inputs:
        for use in inp.uses():
            conv = use.node
            affine = traits(conv, opset).affine()
            w_in = conv.inputs[affine.weight] if affine is not None else None
            # a spatial ungrouped weight [O, C, *kernel] read by input 0
            if (w_in is None or use.idx != 0 or w_in.const_value is None or affine.weight_out_axis != 0
                    or len(w_in.const_value.shape) < 3 or traits_attr(conv, "group", 1) != 1):
                continue
            uses = conv.outputs[0].uses()
            bn = uses[0].node if len(uses) == 1 else None
            norm = traits(bn, opset).norm() if bn is not None else None
            if norm is None or norm.mean is None or any(
                    v is None or v.const_value is None for v in (bn.inputs[norm.mean], bn.inputs[norm.var])):
                continue
            w = w_in.const_value.numpy().astype(np.float64)
            bias = conv.inputs[affine.bias] if affine.bias is not None and len(conv.inputs) > affine.bias else None
            b = (bias.const_value.numpy().astype(np.float64)
                 if bias is not None and bias.const_value is not None else np.zeros(w.shape[0]))
            mean, var = (bn.inputs[i].const_value.numpy().astype(np.float64) for i in (norm.mean, norm.var))
            sums = w.reshape(w.shape[0], w.shape[1], -1).sum(axis=2)  # [O, C]
            squares = np.square(w).reshape(w.shape[0], w.shape[1], -1).sum(axis=2)
            mu = np.linalg.lstsq(sums, mean - b, rcond=None)[0]
            sigma2 = np.clip(np.linalg.lstsq(squares, var, rcond=None)[0], 1e-6, None)
            out[inp.name] = (mu.astype(np.float32), np.sqrt(sigma2).astype(np.float32))
            break
    return out
