"""PFGDF (pruning filters via Gaussian distribution features), in our own formulation: per layer, fit N(mu, sigma^2) to a scalar
feature of each filter; filters inside [mu - k sigma, mu + k sigma] are "insignificant in
distribution" and go, the distinctive tails stay. The score is |feature - mu| / sigma, so a threshold
at k prunes the interval (``--gaussian-k``), and a ratio prunes the most central channels first.
``outside=True`` reads the rule the other way (the tails go first)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from onnxprune.criteria import magnitude
from onnxprune.errors import OptionError
from onnxprune.graph import Analysis

if TYPE_CHECKING:
    from onnxprune.criteria.base import Scores

FEATURES = ("l1", "l2", "mean", "sum")


def gaussian_scores(feature: str = "l1", outside: bool = False) -> Callable[[Analysis], dict]:
    if feature not in FEATURES:
        raise OptionError(f"gaussian feature must be one of {', '.join(FEATURES)}, got '{feature}'")

    def score(analysis: Analysis) -> dict[int, np.ndarray]:
        feats = _features(analysis, feature)
        out = {}
        for gid, f in feats.items():
            sigma = f.std()
            z = np.abs(f - f.mean()) / sigma if sigma > 0 else np.zeros_like(f)
            out[gid] = -z if outside else z
        return out

    return score


def _features(analysis: Analysis, feature: str) -> dict[int, np.ndarray]:
    if feature in ("l1", "l2"):
        return getattr(magnitude, feature)(analysis)
    stat = (lambda r: r.mean(axis=1, dtype=np.float64)) if feature == "mean" else (
        lambda r: r.sum(axis=1, dtype=np.float64))
    return {g.id: np.sum(magnitude.producer_sums(analysis, g, stat), axis=0) for g in analysis.prunable_groups}


gaussian = gaussian_scores()


class GaussianCriterion:
    """The gaussian rule as a Criterion: without a ratio, the interval at --gaussian-k is the threshold."""

    name = "gaussian"
    summary = ("distance of each filter's feature from its layer's mean in standard deviations; without "
               "--ratio the channels within --gaussian-k go")
    options = ("gaussian_k", "gaussian_feature", "gaussian_outside")
    at_zero_ratio = "threshold"
    needs_data = needs_torch = sizes_itself = shares_ratio_by_counts = merges = compensates = False

    def score(self, analysis: Analysis, context) -> Scores:
        from onnxprune.criteria.base import Scores

        feature, outside = ("l1", False) if context is None else (context.options.gaussian_feature,
                                                                  context.options.gaussian_outside)
        return Scores(gaussian_scores(feature, outside)(analysis))

    @staticmethod
    def threshold(options, k: float | None = None) -> tuple[float, str]:
        """The score threshold of the interval at k (default --gaussian-k), and what it means."""
        k = options.gaussian_k if k is None else k
        side = "beyond" if options.gaussian_outside else "within"
        why = f"{options.gaussian_feature} {side} {k:.3g} sigma of the layer mean"
        return (-k if options.gaussian_outside else k), why


GAUSSIAN = GaussianCriterion()
