"""Refit-aware channel selection: under ``--refit``, which channels of each group go.

The allocation decides how many channels each group loses (ratio, global threshold, overrides,
rounding); the refit then re-solves every consumer from the channels that stay. So the channels to
remove are those the kept ones predict best, not the smallest by a criterion. For one consumer
Y = X W (X its input rows on the calibration inputs, W [K, N]; a Conv's rows are im2col patches),
removing the columns R and refitting on the kept ones K costs

    e(R) = trace(W_R^T (G_RR - G_RK G_KK^-1 G_KR) W_R),   G = X^T X + lambda I (the refit's ridge)

a Schur complement. With H = G^-1 over the channels still kept, removing channel j (its columns c) costs
trace(W_c^T (H_cc^-1 - lambda I) W_c) (the ridge damps the kept channels' moves, not the removed
channel's own weights); the best refit of the rest then moves W_K by -H_Kc H_cc^-1 W_c and H becomes
H_KK - H_Kc H_cc^-1 H_cK (the optimal-brain-surgeon update, here on whole channels). Channels go
greedily, the cheapest first, so each step's cost is exactly what the refit cannot put back. A group
read by several consumers sums their costs, each relative to its own output energy ||Y||^2. The
greedy keeps the allocation's count in every balanced block (grouped convolutions, chunks), and a
partial tensor is never emptied (as ``allocation.select`` does). Channels that are exactly dead (zero
on every calibration row, or never read: zero consumer weights) cost 0 and go first.

Where a consumer is not a layer the refit solves (a grouped convolution, an attention MatMul between
two activations, a quantized weight) the group keeps the criterion's choice, and the plan says why.
X^T X is accumulated in onnxruntime over the same calibration batches as the refit (streamed, never
holding activations for the whole set) on the unpruned model, once per run: every plan of a search
reuses it.
"""

from __future__ import annotations

import tempfile
import weakref
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxprune.allocation import balanced_parts, keep_segments
from onnxprune.graph import Analysis, Group
from onnxprune.plan import Plan

# Each greedy step rewrites H (K x K per consumer): over a whole group at most about this many values
# are rewritten, more channels going per step where K is large (a 512-channel 3x3 Conv: K = 4608, 3
# channels a step at 30%; a 512-wide FFN: one at a time up to ratio 0.99). Memory traffic, not flops,
# is what a step costs.
UPDATE_BUDGET = 1e9


@dataclass
class ConsumerGram:
    """What the selection needs of one consumer, from the unpruned model: G = X^T X (bias column last
    where the layer has a bias) over ``rows`` calibration rows."""

    gram: np.ndarray
    bias: bool
    rows: int


class ConsumerCost:
    """The greedy state of one consumer: H = (G + ridge)^-1 and W over the channels kept so far."""

    def __init__(self, gram: ConsumerGram, z: np.ndarray, cols: np.ndarray) -> None:
        from onnxprune.refit import RIDGE

        g = gram.gram
        k = len(g) - (1 if gram.bias else 0)
        self.cols = cols  # [channels, t]: rows of G (and of W) each channel of the group owns
        diag = np.diag(g)[:k]
        lam = RIDGE * float(np.mean(diag)) if k else 0.0
        self.lam = lam if lam > 0 else 1.0
        damped = g.copy()
        damped[np.arange(k), np.arange(k)] += self.lam
        self.h = _spd_inverse(damped)
        self.w = z.copy()
        energy = float(np.einsum("ij,ij->", z, g @ z))
        self.scale = 1.0 / energy if energy > 0 else 0.0
        # exactly dead here: zero on every calibration row, or never read
        self.dead = np.all(diag[cols] == 0, axis=1)
        self.dead |= np.all(z[cols] == 0, axis=(1, 2))

    def costs(self, alive: np.ndarray) -> np.ndarray:
        """Relative output error the refit cannot recover if each ``alive`` channel went next. The ridge
        damps the kept channels' moves only: trace(W_c^T H_cc^-1 W_c) counts lambda ||W_c||^2 for the
        removed channel's own columns too, which is taken off (else an exactly redundant channel with
        large weights would look costly)."""
        cols = self.cols[alive]
        w = self.w[cols]  # [n, t, N]
        if cols.shape[1] == 1:
            c = np.einsum("ij,ij->i", w[:, 0], w[:, 0]) / self.h[cols[:, 0], cols[:, 0]]
        else:
            hb = self.h[cols[:, :, None], cols[:, None, :]]
            c = np.einsum("itn,itn->i", w, np.linalg.solve(hb, w))
        c -= self.lam * np.einsum("itn,itn->i", w, w)
        return np.maximum(c, 0.0) * self.scale

    def remove(self, channels: np.ndarray) -> None:
        """Remove ``channels`` and move the kept rows of W to their best refit."""
        c = self.cols[channels].ravel()
        hc = self.h[:, c]
        s = hc[c]
        self.w -= hc @ np.linalg.solve(s, self.w[c])
        self.h -= hc @ np.linalg.solve(s, hc.T)
        self.w[c] = 0.0  # (exactly: rounding left them near 0; removed channels are never read again)
        self.h[c, :] = 0.0
        self.h[:, c] = 0.0


def _spd_inverse(a: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix through its Cholesky factor (half the work of a
    general inverse); a general one where rounding left it indefinite."""
    from scipy.linalg import lapack

    c, info = lapack.dpotrf(a, lower=False)
    if info == 0:
        inv, info = lapack.dpotri(c, lower=False)
        if info == 0:
            return np.triu(inv) + np.triu(inv, 1).T
    return np.linalg.inv(a)


def greedy_removal(group: Group, costs: list[ConsumerCost], counts: list[np.ndarray]) -> np.ndarray:
    """Class indices of ``group`` to remove: per balanced block row (``allocation.balanced_parts``) the
    count in ``counts``, cheapest refit cost first, exactly dead channels before any other."""
    size = group.size
    row_of = np.full(size, -1)
    quota = np.concatenate(counts).astype(np.int64)
    rows = [row for part in balanced_parts(group) for row in part]
    for r, row in enumerate(rows):
        row_of[row] = r
    dead = np.ones(size, bool)
    for c in costs:
        dead &= c.dead
    alive = np.ones(size, bool)
    order: list[int] = []
    work = int(quota.sum()) * sum(len(c.h) ** 2 for c in costs)
    step = max(1, int(np.ceil(work / UPDATE_BUDGET)))
    while quota.sum() > 0:
        eligible = alive & (quota[row_of] > 0)
        idx = np.nonzero(eligible)[0]
        total = np.zeros(len(idx))
        for c in costs:
            total += c.costs(idx)
        picked: list[int] = []
        taken = np.zeros_like(quota)
        for i in np.lexsort((idx, total, ~dead[idx])):  # dead first, then cheapest first, ties by index
            j = int(idx[i])
            if taken[row_of[j]] < quota[row_of[j]]:
                picked.append(j)
                taken[row_of[j]] += 1
                if len(picked) == step:
                    break
        for c in costs:
            c.remove(np.array(picked))
        alive[picked] = False
        quota -= taken
        order.extend(picked)
    ranks = np.full(size, float(size)) + np.arange(size)  # not chosen: after every chosen channel
    ranks[order] = np.arange(len(order))
    return keep_segments(group, np.array(sorted(order), dtype=np.int64), ranks)


# -- the plan transform ---------------------------------------------------------------------------
_GRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # ScoreContext -> {fit window: {consumer: Gram | why}}
# The refit report's account of the selection
BY_CRITERION = "chosen by the criterion, not by refit cost"  # a group's why where the selection fell back
SELECTION = ("which channels each group loses (the allocation's count) under --refit: those the kept ones predict "
             "best, by the least-squares refit cost of the group's consumers on the calibration inputs (greedy, "
             "dead channels first); a group whose consumers are not refit keeps the criterion's choice")


def select_for_refit(model: ir.Model, analysis: Analysis, plan: Plan, context) -> None:
    """Re-choose, in every group the allocation touched, which channels go (same count per block): the
    ones whose loss the refit of the group's consumers recovers best. ``model`` is the unpruned model
    (plan transforms run before surgery); groups whose consumers the refit cannot solve keep the
    criterion's choice, with the reason in ``plan.reasons``."""
    from onnxprune.refit import consumer_layer

    keep_all = lambda atoms: np.ones(len(atoms), dtype=bool)  # noqa: E731
    chosen = {}
    for gid, cls in plan.removed.items():
        group = analysis.groups[gid]
        if gid in plan.merges or gid in plan.bias_folds:
            continue  # not the allocation's choice (lumping): left as it is
        consumers = [p for p in group.params if p.role == "consumer"]
        why = "" if consumers else "it has no consumer layer to refit"
        layers = []
        for p in consumers:
            layer = consumer_layer(analysis, p.node, keep_all)
            if isinstance(layer, str):
                why = f"consumer '{p.node.name or p.node.outputs[0].name}' is not refit ({layer})"
                break
            layers.append((p, layer))
        chosen[gid] = (group, cls, layers, why)
    grams = _consumer_grams(model, [la for _, _, layers, why in chosen.values() if not why for _, la in layers],
                            context)
    for gid, (group, cls, layers, why) in chosen.items():
        costs = []
        for p, layer in layers if not why else ():
            gram = grams[_key(layer)]
            if isinstance(gram, str):
                why = f"consumer '{layer.name}' is not refit ({gram})"
                break
            cols = _class_rows(analysis, group, p, layer)
            if cols is None:
                why = f"consumer '{layer.name}' reads the group's channels at unequal numbers of positions"
                break
            costs.append(ConsumerCost(gram, layer.current(), cols))
        reason = plan.reasons.get(gid, "")
        if why:
            plan.reasons[gid] = f"{reason}; {BY_CRITERION}: {why}"
            continue
        counts = [np.isin(part, cls).sum(axis=1) for part in balanced_parts(group)]
        plan.removed[gid] = greedy_removal(group, costs, counts)
        count = f" ({reason.split(' (', 1)[1]}" if " (" in reason else ""
        plan.reasons[gid] = f"{len(plan.removed[gid])} of {group.size} by refit cost{count}"


def _key(layer) -> str:
    return layer.node.outputs[0].name


def _class_rows(analysis: Analysis, group: Group, p, layer) -> np.ndarray | None:
    """[channels of the group, t]: the rows of the layer's Z (and of its G) each channel owns; None if the
    channels own unequal numbers of rows (never for the layers the refit solves)."""
    w = layer.node.inputs[layer.weight].const_value
    shape = list(w.shape)
    del shape[layer.out_axis]
    flat = np.arange(int(np.prod(shape))).reshape(shape)
    in_axis = p.axis if p.axis < layer.out_axis else p.axis - 1
    positions, cls = analysis.channels_in(group, p.atoms)
    per = [np.take(flat, positions[cls == j], axis=in_axis).ravel() for j in range(group.size)]
    if len({len(r) for r in per}) != 1:
        return None
    return np.stack(per)


def selected_groups(plan: Plan) -> list[int]:
    """The pruned groups whose removed channels the selection chose (the others fell back, and say so)."""
    return [gid for gid in plan.removed if BY_CRITERION not in plan.reasons.get(gid, "")]


def _consumer_grams(model: ir.Model, layers: list, context) -> dict[str, ConsumerGram | str]:
    """X^T X of every layer's input on the unpruned ``model`` (``layers`` of it), over the --refit
    calibration inputs; kept per run (``context``), so each consumer is measured once."""
    from onnxprune.refit import calibration_batches, fetch_tensors, has_external_data, original_exposing, snapshot
    from onnxprune.runtime import session

    cache = _GRAMS.setdefault(context, {}).setdefault(context.fit_window, {})  # per set of samples fit to
    need = {_key(la): la for la in layers if _key(la) not in cache}
    if not need:
        return cache
    with tempfile.TemporaryDirectory(prefix="onnxprune-select-") as tmp:
        original = snapshot(model, tmp) if has_external_data(model) else ir.to_proto(model).SerializeToString()
        loadable, known = original_exposing(original, [la.x for la in need.values()])
        for key, la in list(need.items()):
            if la.x not in known:
                cache[key] = f"its input '{la.x}' is not a tensor of the original model"
                del need[key]
        batches, _ = calibration_batches(context, original)
        sess = session(loadable, role="original model for --refit")
        grams: dict[str, np.ndarray] = {}
        rows = dict.fromkeys(need, 0)
        for feeds in batches():
            xs = fetch_tensors(sess, [la.x for la in need.values()], feeds, "original model")
            for key, la in need.items():
                for x in la.rows(xs[la.x]):
                    grams[key] = grams[key] + x.T @ x if key in grams else x.T @ x
                    rows[key] += len(x)
    for key, la in need.items():
        cache[key] = (ConsumerGram(grams[key], la.bias is not None, rows[key]) if key in grams
                      else "no calibration rows")
    return cache
