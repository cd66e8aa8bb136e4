"""``--ratio auto`` without gradients: everything lossless first, then the gaussian rule with the
largest k whose pruned model stays within a fidelity budget measured in onnxruntime.

The budget compares the pruned model's outputs with the original's on the same inputs (``--data``, or
seeded synthetic inputs): top-1 agreement for classifier-shaped outputs ([N, classes]), where it is
what decides, and the cosine of every other output. k is searched by bisection; every trial prunes a fresh copy of the lossless
model, so the result is exactly what the chosen k gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.allocation import AllocationOptions, allocate
from onnxprune.criteria.gaussian import gaussian_scores
from onnxprune.graph import Analysis, analyze_groups
from onnxprune.passes.normalize import normalize
from onnxprune.plan import Plan
from onnxprune.surgery import apply_plan

K_RANGE = (0.02, 3.0)
STEPS = 8


@dataclass
class Budget:
    cosine: float = 0.99
    top1: float = 0.99

    def describe(self) -> str:
        return (f"top-1 agreement >= {self.top1:g} on classifier outputs [N, classes]; "
                f"cosine >= {self.cosine:g} on every other output")

    def met(self, fid: dict) -> bool:
        return fid["top1"] >= self.top1 and fid["cosine_other"] >= self.cosine


def fidelity(reference: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float]:
    """Worst top-1 agreement over classifier-shaped outputs, worst cosine over the others, and the
    worst cosine over all outputs (reported, not budgeted for classifiers)."""
    cos_all, cos_other, top1 = 1.0, 1.0, 1.0
    for r, o in zip(reference, outputs):
        r64, o64 = r.astype(np.float64).ravel(), o.astype(np.float64).ravel()
        nr, no = np.linalg.norm(r64), np.linalg.norm(o64)
        cos = float(r64 @ o64 / (nr * no)) if nr > 0 and no > 0 else float(nr == no)
        cos_all = min(cos_all, cos)
        if r.ndim == 2 and r.shape[1] > 1:
            top1 = min(top1, float(np.mean(r.argmax(1) == o.argmax(1))))
        else:
            cos_other = min(cos_other, cos)
    return {"top1": top1, "cosine_other": cos_other, "cosine": cos_all}


def prune_gaussian(base: bytes, k: float) -> tuple[ir.Model, Analysis, Plan]:
    """A fresh copy of ``base`` pruned by the gaussian rule at k."""
    m = normalize(ir.from_proto(onnx.load_from_string(base)))
    an = analyze_groups(m)
    opts = AllocationOptions(threshold=k, threshold_why=f"auto: l1 within {k:.3g} sigma of the layer mean")
    plan = allocate(an, gaussian_scores("l1")(an), opts)
    apply_plan(an, plan)
    return m, an, plan


def search_k(base: bytes, run, reference: list[np.ndarray], budget: Budget, progress=None) -> tuple[float, list[dict]]:
    """Largest k in K_RANGE (bisection) whose pruned model meets ``budget``; 0 if none does."""
    lo, hi = 0.0, K_RANGE[1]
    trace = []
    for step in range(STEPS):
        k = K_RANGE[0] if step == 0 else (lo + hi) / 2
        m, _, plan = prune_gaussian(base, k)
        fid = fidelity(reference, run(ir.to_proto(m).SerializeToString()))
        ok = budget.met(fid)
        trace.append({"k": k, "channels_removed": plan.count(), **fid, "within_budget": ok})
        if progress is not None:
            progress(f"auto: k={k:.3g} removes {plan.count()} channels, cosine {fid['cosine']:.4f}, "
                     f"top-1 {fid['top1']:.3f}: {'ok' if ok else 'over budget'}")
        if step == 0 and not ok:
            return 0.0, trace
        if ok:
            lo = k
        else:
            hi = k
    return lo, trace
