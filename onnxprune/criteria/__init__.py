"""The criterion registry: name -> Criterion (``onnxprune.criteria.base``). Criterion names are compared
here and nowhere else; everything else asks the Criterion's attributes. Adding a criterion: one module
defining it, one line below."""

from __future__ import annotations

from collections.abc import Callable

from onnxprune.criteria import energy, group, magnitude
from onnxprune.criteria.base import Criterion, DataFree, ScoreContext, Scores
from onnxprune.criteria.calibrated import FLAP, WANDA
from onnxprune.criteria.gaussian import GAUSSIAN
from onnxprune.criteria.gradient import DIRICHLET, SINGULARITY, TAYLOR
from onnxprune.criteria.merging import merge_scores
from onnxprune.errors import OptionError
from onnxprune.graph import Analysis

REGISTRY: dict[str, Criterion] = {c.name: c for c in (
    DataFree("l1", magnitude.l1, "sum of |w| of each channel's producer filters"),
    DataFree("l2", magnitude.l2, "Euclidean norm of each channel's producer filters"),
    DataFree("fpgm", magnitude.fpgm, "distance to the other filters (geometric median): the most replaceable go"),
    DataFree("bn", magnitude.bn, "|gamma| of the BatchNormalization on the channel (l2 where there is none)"),
    GAUSSIAN,
    DataFree("energy", energy.energy, "expected energy each channel sends into its consumers (BN statistics)"),
    DataFree("group", group.group_l2, "every member of the channel's group (filters, norm scales, consumer "
             "columns), each normalised by its mean, combined per stage"),
    DataFree("lumping", merge_scores, "without a ratio: only what is lossless (unread, dead, constant and "
             "proportional channels); with one, the channels nearest to proportional to a kept one fold into it "
             "first", at_zero_ratio="lossless", merges=True),
    TAYLOR,
    SINGULARITY,
    DIRICHLET,
    WANDA,
    FLAP,
)}


def criterion(name: str) -> Criterion:
    """The registered criterion called ``name``; unknown names are user errors."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise OptionError(f"unknown criterion '{name}'; choose one of: {', '.join(REGISTRY)}") from None


def get_criterion(name: str) -> Callable[[Analysis], Scores]:
    """``(analysis) -> Scores`` of a criterion that needs no data (library and test convenience)."""
    found = criterion(name)
    if found.needs_data:
        raise OptionError(f"criterion '{name}' needs calibration data: score it through onnxprune.prune(data=...)")
    return lambda analysis: found.score(analysis, None)


__all__ = ["REGISTRY", "Criterion", "ScoreContext", "Scores", "criterion", "get_criterion"]
