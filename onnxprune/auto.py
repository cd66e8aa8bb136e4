"""``--ratio auto`` without gradients: everything lossless first, then the most pruning whose model
stays within a fidelity budget measured in onnxruntime.

The budget compares the pruned model's outputs with the original's on the same inputs. With ``--data``:
top-1 agreement for classifier-shaped outputs ([N, classes]) and the cosine of every other output.
Without data the inputs are seeded noise whose mean and spread per input channel are read off the
first BatchNormalization's statistics where a Conv + BN reads the input (else N(0, 1)); on noise a
classifier's top-1 mostly measures ties, so every output is budgeted by cosine instead.

What grows: with ``--criterion gaussian`` the interval k (bisection); with any scoring criterion a
ratio under global LAMP allocation with every removed channel folded into its most nearly
proportional kept channel, raised in steps of RATIO_STEP until the budget fails, then halved once.
Every trial prunes a fresh copy of the lossless model, so the result is exactly what the chosen
value gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.allocation import AllocationOptions, allocate
from onnxprune.criteria.gaussian import gaussian_scores
from onnxprune.criteria.merging import fold_removed
from onnxprune.graph import Analysis, analyze_groups
from onnxprune.passes.normalize import normalize
from onnxprune.plan import Plan
from onnxprune.surgery import apply_plan

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


def prune_gaussian(base: bytes, k: float) -> tuple[ir.Model, Analysis, Plan]:
    """A fresh copy of ``base`` pruned by the gaussian rule at k."""
    m = normalize(ir.from_proto(onnx.load_from_string(base)))
    an = analyze_groups(m)
    opts = AllocationOptions(threshold=k, threshold_why=f"auto: l1 within {k:.3g} sigma of the layer mean")
    plan = allocate(an, gaussian_scores("l1")(an), opts)
    apply_plan(an, plan)
    return m, an, plan


def prune_merged(base: bytes, ratio: float, scorer: Callable, round_to: int = 0) -> tuple[ir.Model, Analysis, Plan]:
    """A fresh copy of ``base``: ``ratio`` of all channels under global LAMP allocation, each removed
    channel folded into its most nearly proportional kept channel."""
    m = normalize(ir.from_proto(onnx.load_from_string(base)))
    an = analyze_groups(m)
    plan = allocate(an, scorer(an), AllocationOptions(ratio=ratio, mode="global", normalize="lamp", round_to=round_to))
    fold_removed(an, plan)
    apply_plan(an, plan)
    return m, an, plan


def _trial(prune: Callable, value: float, name: str, run, reference, budget: Budget, progress) -> dict:
    m, _, plan = prune(value)
    fid = fidelity(reference, run(ir.to_proto(m).SerializeToString()))
    ok = budget.met(fid)
    if progress is not None:
        progress(f"auto: {name}={value:.3g} removes {plan.count()} channels, cosine {fid['cosine']:.4f}, "
                 f"top-1 {fid['top1']:.3f}: {'ok' if ok else 'over budget'}")
    return {name: value, "channels_removed": plan.count(), **fid, "within_budget": ok}


def search_k(base: bytes, run, reference: list[np.ndarray], budget: Budget, progress=None) -> tuple[float, list[dict]]:
    """Largest k in K_RANGE (bisection) whose pruned model meets ``budget``; 0 if none does."""
    lo, hi = 0.0, K_RANGE[1]
    trace = []
    for step in range(STEPS):
        k = K_RANGE[0] if step == 0 else (lo + hi) / 2
        t = _trial(lambda v: prune_gaussian(base, v), k, "k", run, reference, budget, progress)
        trace.append(t)
        if step == 0 and not t["within_budget"]:
            return 0.0, trace
        lo, hi = (k, hi) if t["within_budget"] else (lo, k)
    return lo, trace


def search_ratio(base: bytes, scorer: Callable, run, reference: list[np.ndarray], budget: Budget,
                 progress=None, round_to: int = 0) -> tuple[float, list[dict]]:
    """Largest ratio on the RATIO_STEP grid (then one half step) whose pruned model meets ``budget``,
    raised until the first failure; 0 if the first step fails."""
    trace, ratio = [], 0.0

    def attempt(r: float) -> bool:
        trace.append(_trial(lambda v: prune_merged(base, v, scorer, round_to), r, "ratio", run, reference, budget, progress))
        return trace[-1]["within_budget"]

    while ratio + RATIO_STEP <= RATIO_MAX + 1e-9 and attempt(round(ratio + RATIO_STEP, 6)):
        ratio = round(ratio + RATIO_STEP, 6)
    if len(trace) > 0 and not trace[-1]["within_budget"] and attempt(round(ratio + RATIO_STEP / 2, 6)):
        ratio = round(ratio + RATIO_STEP / 2, 6)
    return ratio, trace


def input_moments(model: ir.Model) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per float graph input read by a Conv whose output goes to a BatchNormalization alone: the mean
    and standard deviation per input channel that make the Conv's output match the BN's running
    statistics (least squares; inputs taken as independent over positions)."""
    out = {}
    for inp in model.graph.inputs:
        for use in inp.uses():
            conv = use.node
            if conv.op_type != "Conv" or use.idx != 0 or conv.inputs[1].const_value is None:
                continue
            uses = conv.outputs[0].uses()
            bn = uses[0].node if len(uses) == 1 else None
            if bn is None or bn.op_type != "BatchNormalization" or any(
                    v is None or v.const_value is None for v in bn.inputs[3:5]):
                continue
            w = conv.inputs[1].const_value.numpy().astype(np.float64)
            group = conv.attributes["group"].as_int() if "group" in conv.attributes else 1
            if group != 1:
                continue
            b = (conv.inputs[2].const_value.numpy().astype(np.float64)
                 if len(conv.inputs) > 2 and conv.inputs[2] is not None and conv.inputs[2].const_value is not None
                 else np.zeros(w.shape[0]))
            mean, var = (bn.inputs[i].const_value.numpy().astype(np.float64) for i in (3, 4))
            sums = w.reshape(w.shape[0], w.shape[1], -1).sum(axis=2)  # [O, C]
            squares = np.square(w).reshape(w.shape[0], w.shape[1], -1).sum(axis=2)
            mu = np.linalg.lstsq(sums, mean - b, rcond=None)[0]
            sigma2 = np.clip(np.linalg.lstsq(squares, var, rcond=None)[0], 1e-6, None)
            out[inp.name] = (mu.astype(np.float32), np.sqrt(sigma2).astype(np.float32))
            break
    return out
