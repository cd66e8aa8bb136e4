"""The weight-distribution analysis after the convolution-weight-distribution assumption (CWDA): per layer, do the norm criteria even differ?

If a layer's filters look i.i.d. Gaussian, l1/l2/fpgm rank them almost identically and l2 scores
concentrate (coefficient of variation ~ 1/sqrt(2d) for d weights per filter): then the criterion
choice does not matter there, and norms barely separate the channels.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from onnxprune.criteria import magnitude
from onnxprune.graph import Analysis

_SAMPLE = 5000  # weights per normality test


def weight_statistics(analysis: Analysis) -> list[dict]:
    """One record per prunable group: normality p-value, l2 CV next to 1/sqrt(2d), Spearman
    correlations of the criteria's rankings, mean pairwise cosine of filters, and a verdict."""
    by_name = {name: getattr(magnitude, name)(analysis) for name in ("l1", "l2", "fpgm")}
    bn = magnitude.bn(analysis)
    rng = np.random.default_rng(0)
    records = []
    for g in analysis.prunable_groups:
        p = g.producers[0]
        w = np.moveaxis(p.array(), p.axis, 0)
        n, d = w.shape[0], int(np.prod(w.shape[1:]))
        rows = w.reshape(n, d)  # a view of the (memory-mapped) weight: no copy of a large layer
        idx = rng.integers(0, n * d, min(_SAMPLE, n * d))
        sample = rows.reshape(-1)[idx].astype(np.float64)
        normal_p = float(stats.normaltest(sample).pvalue) if sample.size >= 20 else float("nan")
        l2 = by_name["l2"][g.id]
        cv = float(l2.std() / l2.mean()) if l2.mean() > 0 else float("nan")
        scores = dict(by_name, **({"bn": bn} if g.id not in bn.notes else {}))
        names = list(scores)
        rho = {}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                r = stats.spearmanr(scores[a][g.id], scores[b][g.id]).statistic
                rho[f"{a}~{b}"] = float(r) if np.isfinite(r) else float("nan")
        # mean pairwise cosine = (|sum of unit filters|^2 - n) / (n (n - 1)), in chunks of filters
        total, nonzero = np.zeros(d), 0
        for i in range(0, n, 256):
            block = rows[i:i + 256].astype(np.float64)
            norms = np.linalg.norm(block, axis=1, keepdims=True)
            total += (block / np.maximum(norms, 1e-12)).sum(axis=0)
            nonzero += int(np.sum(norms > 1e-12))  # self terms: 1 per nonzero filter
        mean_cos = float((total @ total - nonzero) / (n * (n - 1))) if n > 1 else float("nan")
        records.append({
            "group": g.name, "channels": g.size, "weights_per_filter": d,
            "normality_p": normal_p, "l2_cv": cv, "gaussian_cv": float(1 / np.sqrt(2 * d)),
            "spearman": rho, "mean_cosine": mean_cos,
            "verdict": _verdict(cv, 1 / np.sqrt(2 * d), rho),
        })
    return records


def _verdict(cv: float, gaussian_cv: float, rho: dict) -> str:
    finite = [r for r in rho.values() if np.isfinite(r)]
    parts = []
    if np.isfinite(cv) and cv <= 2 * gaussian_cv:
        parts.append("scores too concentrated to separate channels")
    if finite and min(finite) >= 0.9:
        parts.append("criteria interchangeable here")
    elif finite:
        parts.append("criteria disagree: the choice matters here")
    return "; ".join(parts) or "n/a"


def format_statistics(records: list[dict]) -> str:
    lines = ["weight distribution per layer (CWDA): normality p, l2 CV vs Gaussian 1/sqrt(2d), "
             "min Spearman of l1/l2/fpgm(/bn), mean cosine",
             f"{'group':<40} {'ch':>5} {'p':>8} {'cv':>7} {'1/√2d':>7} {'rho_min':>7} {'cos':>6}  verdict"]
    for r in records:
        rho = [v for v in r["spearman"].values() if np.isfinite(v)]
        lines.append(f"{r['group'][:40]:<40} {r['channels']:>5} {r['normality_p']:>8.2g} {r['l2_cv']:>7.3f} "
                     f"{r['gaussian_cv']:>7.3f} {min(rho) if rho else float('nan'):>7.3f} {r['mean_cosine']:>6.3f}  "
                     f"{r['verdict']}")
    return "\n".join(lines)
