"""A plan says which channels of which groups go; allocation turns scores into such a plan."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from onnxprune.errors import OptionError, PlanError
from onnxprune.graph import Analysis, Group


@dataclass
class Plan:
    """Removed class indices per group id (indices into ``Group.classes``)."""

    removed: dict[int, np.ndarray] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)  # why each touched group lost what it lost
    skipped: dict[int, str] = field(default_factory=dict)  # prunable groups left whole on purpose
    # Lumping: removed channel j folded into kept channel i of the same group with coefficient c
    # (its consumers' weights for i gain c times those for j). Every j must be in ``removed``.
    merges: dict[int, list[tuple[int, int, float]]] = field(default_factory=dict)
    # Lumping: removed constant channel j (value v where consumer node reads it) folded into that
    # consumer's bias as v * (sum of its weights for j).
    # (channel, consumer node, its mean: a float, or an array with one value per position of the channel)
    bias_folds: dict[int, list[tuple[int, object, object]]] = field(default_factory=dict)

    def count(self) -> int:
        return int(sum(len(v) for v in self.removed.values()))


def check_ratio(ratio) -> float:
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise OptionError(f"ratio must be a number in [0, 1), got '{ratio}'") from None
    if not (0.0 <= r < 1.0) or r != r:
        raise OptionError(f"ratio must be in [0, 1), got {ratio}")
    return r


def plan_from_removals(analysis: Analysis, specs: list[str]) -> Plan:
    """``NAME:I,J,...`` removes those output channels of a Conv/Gemm/MatMul and all coupled to them."""
    plan = Plan()
    for spec in specs:
        name, sep, idx_text = spec.rpartition(":")
        if not sep or not name:
            raise OptionError(f"--remove '{spec}': expected NAME:I,J,... (node or output tensor name)")
        try:
            positions = sorted({int(t) for t in idx_text.split(",") if t.strip() != ""})
        except ValueError:
            raise OptionError(f"--remove '{spec}': channel indices must be integers") from None
        node, member = analysis.producer_node(name)
        if node is None:
            raise OptionError(f"--remove '{spec}': no Conv/Gemm/MatMul producer named '{name}'")
        n = len(member.atoms)
        bad = [p for p in positions if not 0 <= p < n]
        if bad:
            raise OptionError(f"--remove '{spec}': '{name}' has {n} output channels; {bad} out of range")
        gids, cls = analysis.class_index(member.atoms[positions])
        group = analysis.groups[int(gids[0])]
        if group.frozen:
            raise OptionError(f"--remove '{spec}': channels of '{name}' are frozen: " + "; ".join(group.frozen))
        merged = set(plan.removed.get(group.id, np.zeros(0, np.int64)).tolist()) | set(cls.tolist())
        plan.removed[group.id] = np.array(sorted(merged), dtype=np.int64)
        plan.reasons[group.id] = "requested with --remove"
    for gid, cls in plan.removed.items():
        check_removable(analysis.groups[gid], cls)
    return plan


def emptied_segments(group: Group, cls) -> list[tuple[str, np.ndarray]]:
    """The group's partial tensors (``Group.segments``) that would lose every channel to ``cls``."""
    return [(name, seg) for name, seg in group.segments if np.isin(seg, cls).all()]


def check_removable(group: Group, cls: np.ndarray) -> None:
    if len(cls) >= group.size:
        raise PlanError(f"group '{group.name}' would lose all {group.size} channels; keep at least one")
    emptied = emptied_segments(group, cls)
    if emptied:
        raise PlanError(f"group '{group.name}' would lose all {len(emptied[0][1])} channels of '{emptied[0][0]}' "
                        "(a tensor holding part of the group, e.g. a Split output); keep at least one of them")
    for blocks in group.blocks:
        counts = [int(np.isin(b, cls).sum()) for b in blocks]
        if len(set(counts)) > 1:
            raise PlanError(f"group '{group.name}' meets a grouped conv: remove the same number of channels "
                            f"from each of its {len(blocks)} conv groups (got {counts})")
        if counts[0] >= blocks.shape[1]:
            raise PlanError(f"group '{group.name}' would empty the conv groups of a grouped conv")


def replay_specs(analysis: Analysis, plan: Plan) -> dict[int, list[str]]:
    """The plan as ``NAME:I,J`` strings per group, which ``plan_from_removals`` reproduces."""
    out = {}
    for gid, cls in plan.removed.items():
        group = analysis.groups[gid]
        remaining = set(cls.tolist())
        specs = []
        for p in group.producers:
            if not remaining:
                break
            _, pcls = analysis.class_index(p.atoms)
            hit = np.isin(pcls, list(remaining))
            if hit.any():
                specs.append(f"{p.node.name or p.node.outputs[0].name}:" + ",".join(map(str, np.nonzero(hit)[0].tolist())))
                remaining -= set(pcls[hit].tolist())
        out[gid] = specs
    return out
