"""Helpers shared by the benchmarks in tools/ (loaded by path, like the model builders)."""

from __future__ import annotations

from pathlib import Path


def precomputed_criterion(name: str, model_path: str | Path, criterion: str, data: str | Path) -> str:
    """Register ``criterion``'s scores of the model at ``model_path`` on calibration ``data``, computed
    once here, as the data-free criterion ``name`` (this process only) and return ``name``.

    A benchmark then prunes with the public ``onnxprune.prune(path, criterion=name, ...)`` at as many
    ratios as it likes without recomputing gradients, and every option of the pipeline applies. The
    registered criterion keeps the original's counting attributes (a ratio shared by its own counts,
    its own count for --ratio auto, merging), so the pipeline treats it as it treats the original."""
    from onnxprune.api import load_normalized
    from onnxprune.config import from_keywords
    from onnxprune.criteria import REGISTRY
    from onnxprune.criteria import criterion as registered
    from onnxprune.criteria.base import DataFree, ScoreContext
    from onnxprune.graph import analyze_groups

    original = registered(criterion)
    model = load_normalized(model_path)
    base = analyze_groups(model)
    config = from_keywords(ratio=0.5, criterion=criterion, data=str(data), validate=False).validate()
    scores = original.score(base, ScoreContext(model, config))
    # Groups are matched by name on every fresh analysis of the same model (as the pipeline's own trials do).
    REGISTRY[name] = DataFree(name, lambda analysis: scores.renamed(base, analysis),
                              f"{criterion} scores precomputed once (benchmark only)", merges=original.merges,
                              sizes_itself=original.sizes_itself,
                              shares_ratio_by_counts=original.shares_ratio_by_counts)
    return name
