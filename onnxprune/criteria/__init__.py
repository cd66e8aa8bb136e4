"""Channel scoring criteria: ``(analysis) -> {group id: score per channel}``, lower = pruned first."""

from __future__ import annotations

from typing import Callable

from onnxprune.criteria import energy, gaussian, group, magnitude
from onnxprune.errors import OptionError

CRITERIA: dict[str, Callable] = {
    "l1": magnitude.l1,
    "l2": magnitude.l2,
    "fpgm": magnitude.fpgm,
    "bn": magnitude.bn,
    "gaussian": gaussian.gaussian,
    "energy": energy.energy,
    "group": group.group_l2,
}


# Criteria that make a whole plan (removals and merges) rather than scores.
PLANNERS = ("lumping",)
# Criteria that need calibration data and the torch twin (onnxprune.criteria.gradient).
GRADIENT = ("taylor", "singularity", "dirichlet")


def get_criterion(name: str) -> Callable | None:
    """The scorer of a criterion (None for planners such as lumping); unknown names are user errors."""
    if name in PLANNERS or name in GRADIENT:
        return None
    try:
        return CRITERIA[name]
    except KeyError:
        raise OptionError(f"unknown criterion '{name}'; choose one of: {', '.join([*CRITERIA, *PLANNERS, *GRADIENT])}") from None
