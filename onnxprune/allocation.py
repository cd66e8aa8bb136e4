"""Allocation: how many channels each group loses, and which, from per-channel scores.

local: the same ratio in every group. global: one threshold over scores normalised per group (raw
norms grow with filter size, so a single raw threshold would empty whole layers); "mean" divides by
the group's mean score, "lamp" uses LAMP (s_i^2 over the sum of s_j^2 of all channels at least as
important). Overrides (regex on group or producer names) set a group's own ratio, ignores leave it
whole, a per-group cap and rounding of kept counts to multiples of N (speed) apply last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from onnxprune.errors import OptionError
from onnxprune.graph import Analysis, Group
from onnxprune.plan import Plan, emptied_segments


@dataclass
class AllocationOptions:
    ratio: float = 0.0
    mode: str = "local"  # "local" | "global"
    normalize: str = "mean"  # global only: "mean" | "lamp"
    round_to: int = 0  # 0: ROUND_TO_AUTO
    max_group_ratio: float | None = None
    overrides: list[tuple[str, float]] = field(default_factory=list)  # (regex, ratio), first match wins
    ignore: list[str] = field(default_factory=list)  # regexes
    threshold: float | None = None  # remove every channel scoring below this (e.g. gaussian's k)
    threshold_why: str = ""  # what the threshold means, for the report
    # group name -> its own ratio (--ratio auto's measured allocation); after overrides, before the mode
    fractions: dict[str, float] = field(default_factory=dict)
    fractions_why: str = ""

    def check(self) -> AllocationOptions:
        if self.mode not in ("local", "global"):
            raise OptionError(f"allocation must be 'local' or 'global', got '{self.mode}'")
        if self.normalize not in ("mean", "lamp"):
            raise OptionError(f"normalisation must be 'mean' or 'lamp', got '{self.normalize}'")
        if not isinstance(self.round_to, int) or self.round_to < 0:
            raise OptionError(f"round-to must be a whole number >= 1 (or 0: automatic), got {self.round_to}")
        if self.max_group_ratio is not None and not 0.0 <= self.max_group_ratio < 1.0:
            raise OptionError(f"max group ratio must be in [0, 1), got {self.max_group_ratio}")
        for pattern, r in self.overrides:
            _regex(pattern)
            if not 0.0 <= r < 1.0:
                raise OptionError(f"override '{pattern}': ratio must be in [0, 1), got {r}")
        for pattern in self.ignore:
            _regex(pattern)
        return self


def _regex(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise OptionError(f"bad regular expression '{pattern}': {exc}") from None


def _names(group: Group) -> list[str]:
    return [group.name] + [p.node.name for p in group.producers if p.node.name]


def _matches(pattern: str, group: Group) -> bool:
    rx = _regex(pattern)
    return any(rx.search(n) for n in _names(group))


def ignored(group: Group, patterns) -> bool:
    """Whether an --ignore pattern matches the group (its name or a producer's node name)."""
    return any(_matches(p, group) for p in patterns)


def allocate(analysis: Analysis, scores: dict[int, np.ndarray], opts: AllocationOptions,
             counts: dict[int, int] | None = None, counts_why: str = "") -> Plan:
    """Removed channels per group by ``opts``; ``plan.reasons`` says why for each group touched.
    ``counts``: a criterion's own number of channels per group (instead of a ratio or threshold);
    ignores, overrides, the cap and rounding still apply."""
    opts.check()
    plan = Plan()
    notes = getattr(scores, "notes", {})
    fractions: dict[int, tuple[float, str]] = {}
    pooled = []
    for g in analysis.prunable_groups:
        if ignored(g, opts.ignore):
            plan.skipped[g.id] = "left whole by --ignore"
            continue
        override = next((r for p, r in opts.overrides if _matches(p, g)), None)
        if override is not None:
            fractions[g.id] = (override, f"override ratio {override:g}")
        elif g.name in opts.fractions:
            fractions[g.id] = (opts.fractions[g.name], opts.fractions_why or f"ratio {opts.fractions[g.name]:g}")
        elif counts is not None:
            fractions[g.id] = ((counts.get(g.id, 0) + 0.5) / g.size, counts_why or "the criterion's own count")
        elif opts.threshold is not None:
            below = float(np.sum(scores[g.id] < opts.threshold))
            fractions[g.id] = (below / g.size, opts.threshold_why or f"score below {opts.threshold:g}")
        elif opts.mode == "local":
            fractions[g.id] = (opts.ratio, f"ratio {opts.ratio:g}")
        else:
            pooled.append(g)
    if pooled:
        fractions.update(_global_fractions(pooled, scores, opts))
    for g in analysis.prunable_groups:
        if g.id not in fractions:
            continue
        fraction, why = fractions[g.id]
        if opts.max_group_ratio is not None and fraction > opts.max_group_ratio:
            fraction, why = opts.max_group_ratio, why + f", capped at {opts.max_group_ratio:g}"
        chosen = select(g, scores[g.id], fraction, opts.round_to)
        if len(chosen):
            plan.removed[g.id] = chosen
            note = f"; {notes[g.id]}" if g.id in notes else ""
            plan.reasons[g.id] = f"lowest {len(chosen)} of {g.size} by score ({why}{note})"
    return plan


def _global_fractions(groups: list[Group], scores, opts: AllocationOptions) -> dict[int, tuple[float, str]]:
    """One threshold over normalised scores; each group's fraction is its share below it."""
    norm = {g.id: _normalised(scores[g.id], opts.normalize) for g in groups}
    pool = np.concatenate([norm[g.id] for g in groups])
    target = int(np.floor(opts.ratio * len(pool) + 1e-9))
    if target == 0:
        return {g.id: (0.0, "global") for g in groups}
    threshold = np.sort(pool, kind="stable")[target - 1]
    return {g.id: (float(np.sum(norm[g.id] <= threshold)) / g.size,
                   f"global {opts.normalize}-normalised threshold {threshold:.4g}") for g in groups}


def _normalised(s: np.ndarray, how: str) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    if how == "mean":
        mean = s.mean()
        return s / mean if mean > 0 else np.zeros_like(s)
    order = np.argsort(s, kind="stable")
    sq = s[order] ** 2
    tail = np.cumsum(sq[::-1])[::-1]  # sum over channels at least as important
    lamp = np.zeros_like(s)
    lamp[order] = np.divide(sq, tail, out=np.zeros_like(sq), where=tail > 0)
    return lamp


def balanced_parts(group: Group) -> list[np.ndarray]:
    """The group's classes as [n_blocks, per_block] arrays: each grouped-conv or chunk constraint,
    then the unconstrained rest as one block. Each row loses the same count and keeps at least one."""
    parts = list(group.blocks)
    constrained = set(np.concatenate([b.ravel() for b in parts]).tolist()) if parts else set()
    rest = np.array([k for k in range(group.size) if k not in constrained], dtype=np.int64)
    if len(rest):
        parts.append(rest[None, :])
    return parts


# --round-to 0 (the default): kept counts at multiples of 16 in groups of at least 256 channels, where
# that moves a group's ratio by at most 1/32; smaller groups are not rounded. 16 was fastest at one
# thread on this CPU (tools/bench_latency.py: light_resnet50 at 30%, 47.2 ms against 55.5 ms unrounded;
# 8 within 2%), and small groups would lose too much of the ratio they asked for.
AUTO_ROUND_TO, AUTO_ROUND_MIN_CHANNELS = 16, 256


def effective_round_to(group: Group, round_to: int) -> int:
    """The multiple a group's kept count is rounded to (``round_to`` 0: the automatic rule above)."""
    if round_to:
        return round_to
    return AUTO_ROUND_TO if group.size >= AUTO_ROUND_MIN_CHANNELS else 1


def select(group: Group, s: np.ndarray, fraction: float, round_to: int = 1) -> np.ndarray:
    """The lowest-scored ``fraction`` of every block (ties by index), kept counts rounded to
    multiples of ``round_to`` (per block: round_to // blocks), at least one kept per block."""
    chosen = []
    round_to = effective_round_to(group, round_to)
    for blocks in balanced_parts(group):
        n_blocks, per = blocks.shape
        kept = per - min(int(np.floor(fraction * per + 1e-9)), per - 1)
        unit = max(1, round_to // n_blocks)
        if unit > 1 and kept < per:
            kept = min(per, max(unit, int(np.floor(kept / unit + 0.5)) * unit))
        k = per - kept
        for block in blocks if k > 0 else ():
            order = np.lexsort((block, s[block]))
            chosen.extend(block[order[:k]].tolist())
    return keep_segments(group, np.array(sorted(chosen), dtype=np.int64), s)


def keep_segments(group: Group, chosen: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``chosen`` with the best-scored channel of each partial tensor it would empty (a Split output
    losing all its channels becomes an empty tensor) swapped for the lowest-scored channel left
    elsewhere, where one can go without emptying another. Channels under a grouped-conv or chunk
    balance are not swapped (that would unbalance it); each of those blocks keeps one anyway."""
    if not group.segments:
        return chosen
    constrained = set(np.concatenate([b.ravel() for b in group.blocks]).tolist()) if group.blocks else set()
    chosen_set = set(chosen.tolist())
    for _, seg in emptied_segments(group, chosen):
        free = [k for k in seg.tolist() if k not in constrained]
        if not free or not chosen_set.issuperset(seg.tolist()):
            continue
        chosen_set.discard(min(free, key=lambda k: (-s[k], k)))
        spare = [k for k in range(group.size) if k not in chosen_set and k not in constrained
                 and not emptied_segments(group, np.array(sorted(chosen_set | {k}), dtype=np.int64))]
        if spare:
            chosen_set.add(min(spare, key=lambda k: (s[k], k)))
    return np.array(sorted(chosen_set), dtype=np.int64)


def allocate_local(analysis: Analysis, scores: dict[int, np.ndarray], ratio: float) -> Plan:
    """The same ratio in every prunable group (the default allocation)."""
    return allocate(analysis, scores, AllocationOptions(ratio=ratio))
