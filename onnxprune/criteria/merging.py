"""Relaxed lumping (our design, after exact lumpability): a removed channel j is folded into the kept
channel i it is most nearly proportional to, with c = <v_j, v_i> / ||v_i||^2 > 0 (v: the channel's
producer filters and biases over every producer of the group, BN folded). Consumers then read
(W_i + c W_j) a_i. Through ReLU (1-Lipschitz, positively homogeneous) a consumer's output moves by at
most ||W_next[:, j]|| * ||v_j - c v_i|| * ||[x; 1]||; with no proportional partner (c <= 0) the channel
is simply removed and the factor is ||W_next[:, j]|| * ||v_j||. That factor is the channel's score:
channels that are nearly copies of others, or that feed nothing, go first, and exactly proportional
or dead channels score 0 (the lossless case).

The score is taken in greedy order: the cheapest channel goes, its partner is locked (it must stay
for the fold to hold), the others' best partners are re-chosen among what is left, and so on. Scores
are made non-decreasing along that order, so any count the allocation asks for takes a prefix of it
and every fold's partner is kept.
"""

from __future__ import annotations

import numpy as np

from onnxprune.criteria.lumping import merge_routes, path_blocker, producer_vectors
from onnxprune.criteria.magnitude import ScoreDict, consumer_column_energy
from onnxprune.graph import Analysis, Group
from onnxprune.plan import Plan

_MAX_GREEDY = 4096  # wider groups score plain removal (no partner): the C x C cost matrix stays bounded


def merge_scores(analysis: Analysis) -> ScoreDict:
    """Per channel: the error-bound factor of removing it, in greedy order (module docstring)."""
    scores, notes = {}, {}
    for g in analysis.prunable_groups:
        v = producer_vectors(analysis, g)
        n = np.sqrt(consumer_column_energy(analysis, g))
        why_not = _fold_blocker(analysis, g)
        if why_not is not None:  # nothing can be folded: score plain removal
            scores[g.id] = n * np.linalg.norm(v, axis=1)
            notes[g.id] = f"removed without folding: {why_not}"
        else:
            scores[g.id] = _greedy(v, n, merge_routes(analysis, g))
    return ScoreDict(scores, notes)


def _fold_blocker(analysis: Analysis, g: Group) -> str | None:
    return "grouped convs or chunks read it" if g.blocks else path_blocker(analysis, g)


def _same_route(routes: np.ndarray, rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> np.ndarray:
    """[j, i]: channel j may fold into channel i (same route, see ``lumping.merge_routes``)."""
    a = routes if rows is None else routes[rows]
    b = routes if cols is None else routes[cols]
    return (a[:, None] == b[None, :]) & (a[:, None] >= 0)


def _greedy(v: np.ndarray, n: np.ndarray, routes: np.ndarray) -> np.ndarray:
    """Score per channel in greedy removal order (see the module docstring); only channels on the same
    route fold into each other."""
    size = len(v)
    sq = np.einsum("ij,ij->i", v, v)
    gram = v @ v.T if size <= _MAX_GREEDY else None
    if gram is None:  # too wide for the C x C matrices: plain removal cost
        return n * np.sqrt(sq)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(sq[None, :] > 0, gram / sq[None, :], 0.0)  # c[j, i]: j onto i
    c = np.where((c > 0) & _same_route(routes), c, 0.0)
    np.fill_diagonal(c, 0.0)
    resid = np.maximum(sq[:, None] - c * gram, 0.0)  # ||v_j - c v_i||^2 (= sq_j when c = 0)
    cost = n[:, None] * np.sqrt(resid)  # [j, i]
    np.fill_diagonal(cost, np.inf)
    alone = n * np.sqrt(sq)  # removal without a partner
    removed = np.zeros(size, bool)
    eligible = np.ones(size, bool)  # not removed, not locked
    score = np.full(size, np.inf)
    best_i = cost.argmin(axis=1)
    best = cost[np.arange(size), best_i]
    running = 0.0
    for _ in range(size - 1):
        option = np.where(eligible, np.minimum(best, alone), np.inf)
        j = int(option.argmin())
        if not np.isfinite(option[j]):
            break
        running = max(running, float(option[j]))
        score[j] = running
        i = int(best_i[j])
        if best[j] < alone[j] and c[j, i] > 0:
            eligible[i] = False  # locked: the fold needs it
        removed[j] = eligible[j] = False
        cost[:, j] = np.inf
        stale = np.nonzero((best_i == j) & ~removed)[0]  # rows whose best partner just went
        if len(stale):
            best_i[stale] = cost[stale].argmin(axis=1)
            best[stale] = cost[stale, best_i[stale]]
    # Never chosen (locked partners, the last channel): after everything else, by their own cost.
    rest = ~np.isfinite(score)
    score[rest] = running + alone[rest] + 1e-12
    return score


def fold_removed(analysis: Analysis, plan: Plan) -> None:
    """Fold each removed channel into the kept channel it is most nearly proportional to (c > 0),
    where that leaves less error than removing it, and state the error-bound factor in the reasons
    (consumer outputs move by at most that factor times ||[x; 1]||)."""
    for gid, removed in plan.removed.items():
        g = analysis.groups[gid]
        handled = {j for j, _, _ in plan.merges.get(gid, [])} | {j for j, _, _ in plan.bias_folds.get(gid, [])}
        todo = np.array([j for j in removed.tolist() if j not in handled], dtype=np.int64)
        if not len(todo):
            continue
        why_not = _fold_blocker(analysis, g)
        if why_not is not None:
            plan.reasons[gid] = plan.reasons.get(gid, "") + f"; not folded: {why_not}"
            continue
        v = producer_vectors(analysis, g)
        n = np.sqrt(consumer_column_energy(analysis, g))
        kept = np.setdiff1d(np.arange(g.size), removed)
        sq_kept = np.einsum("ij,ij->i", v[kept], v[kept])
        dots = v[todo] @ v[kept].T
        c = np.where(sq_kept[None, :] > 0, dots / np.where(sq_kept > 0, sq_kept, 1.0)[None, :], 0.0)
        c = np.where((c > 0) & _same_route(merge_routes(analysis, g), todo, kept), c, 0.0)
        sq = np.einsum("ij,ij->i", v[todo], v[todo])
        resid = np.maximum(sq[:, None] - c * dots, 0.0)
        best = resid.argmin(axis=1)
        merges, bound = [], 0.0
        for row, j in enumerate(todo.tolist()):
            i = int(kept[best[row]])
            cj = float(c[row, best[row]])
            if cj > 0 and resid[row, best[row]] < sq[row]:
                merges.append((j, i, cj))
                bound += n[j] * float(np.sqrt(resid[row, best[row]]))
            else:
                bound += n[j] * float(np.sqrt(sq[row]))
        plan.merges.setdefault(gid, []).extend(merges)
        plan.reasons[gid] = (plan.reasons.get(gid, "") + f"; {len(merges)} of {len(todo)} folded into nearly "
                             f"proportional kept channels; consumer outputs move by at most {bound:.3g} x ||[x; 1]||")


def add_near_copies(analysis: Analysis, plan: Plan, tolerance: float) -> None:
    """Add to ``plan`` (a lossless lumping plan) every channel whose producer vector has cosine
    >= 1 - ``tolerance`` with a channel that stays, most similar first (each partner is kept), and
    fold them (``fold_removed``)."""
    for g in analysis.prunable_groups:
        if _fold_blocker(analysis, g) is not None:
            continue
        v = producer_vectors(analysis, g)
        norms = np.linalg.norm(v, axis=1)
        gone = np.zeros(g.size, bool)
        if g.id in plan.removed:
            gone[plan.removed[g.id]] = True
        live = np.nonzero((norms > 0) & ~gone)[0]
        if len(live) < 2:
            continue
        unit = v[live] / norms[live, None]
        cos = np.where(_same_route(merge_routes(analysis, g), live, live), unit @ unit.T, -np.inf)
        np.fill_diagonal(cos, -np.inf)
        locked = np.zeros(len(live), bool)
        new = []
        while len(new) + int(gone.sum()) < g.size - 1:
            a, b = np.unravel_index(int(cos.argmax()), cos.shape)
            if cos[a, b] < 1 - tolerance:
                break
            new.append(int(live[a]))  # a goes (folded into b), b stays
            locked[b] = True
            cos[a, :] = cos[:, a] = -np.inf
            cos[b, :] = -np.inf  # b is kept: it can no longer go
        if new:
            plan.removed[g.id] = np.array(sorted(set(new) | set(np.nonzero(gone)[0].tolist())), dtype=np.int64)
            plan.reasons[g.id] = (plan.reasons.get(g.id, "lossless: none") +
                                  f"; {len(new)} within cosine {1 - tolerance:g} of a kept channel")
    fold_removed(analysis, plan)
