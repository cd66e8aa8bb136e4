"""Exact lumpability (seed 004), METHODS.md section 3: channels that provably contribute nothing, or
exactly c > 0 times another channel, are removed or folded into it; outputs do not change.

- zero outgoing: every weight that reads the channel is 0 (any activation path);
- dead: its producer filters and biases are all 0 and every op on the way to the consumers maps 0 to 0
  (positively homogeneous);
- proportional: [w_j; b_j] = c [w_i; b_i] with c > 0 over every producer of the group, and every op on
  the way is positively homogeneous (ReLU, LeakyReLU, pools, pads, resizes, reshapes, routing, residual
  adds), so a_j = c a_i and the consumers take (W_i + c W_j) a_i. BatchNormalization after a Conv is
  folded into it first (``passes.normalize.fold_batchnorm``).
Not yet: constant channels folded into consumer biases, relaxed (nearly proportional) merges.
"""

from __future__ import annotations

import numpy as np

from onnxprune.graph import Analysis, Group
from onnxprune.plan import Plan

# Positively homogeneous of degree 1 channel by channel: f(c x) = c f(x) for c > 0, and f(0) = 0.
HOMOGENEOUS = {
    "Relu", "LeakyRelu", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape",
    "Transpose", "Concat", "Split", "Slice", "Identity", "Dropout", "Squeeze", "Unsqueeze", "Resize", "Add", "Pad",
}
_BIAS = {("Conv", 2), ("Gemm", 2)}
_COS_TOL = 1e-9


def lumping_plan(analysis: Analysis) -> Plan:
    """Everything removable without changing any output, with the merges that make it so."""
    plan = Plan()
    for g in analysis.prunable_groups:
        if g.blocks:
            continue
        zero_out = _zero_outgoing(analysis, g)
        dead, merges, why_not = set(), [], None
        why_not = _path_blocker(analysis, g)
        if why_not is None:
            vectors = _producer_vectors(analysis, g)
            norms = np.linalg.norm(vectors, axis=1)
            dead = set(np.nonzero(norms == 0)[0].tolist())
            merges = _proportional(vectors, norms, exclude=dead | zero_out)
        removed = sorted(zero_out | dead | {j for j, _, _ in merges})
        if len(removed) >= g.size:  # keep one channel; it does not matter which
            keep = removed[0]
            removed = removed[1:]
            merges = [m for m in merges if m[0] != keep]
        if not removed:
            if why_not:
                plan.skipped[g.id] = f"not lumped: {why_not}"
            continue
        plan.removed[g.id] = np.array(removed, dtype=np.int64)
        plan.merges[g.id] = [m for m in merges if m[0] in set(removed)]
        parts = [f"{len(zero_out)} unread", f"{len(dead - zero_out)} dead",
                 f"{len(plan.merges[g.id])} folded into proportional channels"]
        plan.reasons[g.id] = "lossless: " + ", ".join(p for p in parts if not p.startswith("0 "))
    return plan


def _zero_outgoing(analysis: Analysis, g: Group) -> set[int]:
    """Channels every consumer weight of which is exactly zero."""
    consumers = [p for p in g.params if p.role == "consumer"]
    if not consumers:
        return set()
    nonzero = np.zeros(g.size, dtype=bool)
    for p in consumers:
        w = np.moveaxis(p.value.const_value.numpy(), p.axis, 0)
        if p.blocks > 1:
            return set()
        any_nz = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) > 0
        _, cls = analysis.class_index(p.atoms)
        np.logical_or.at(nonzero, cls, any_nz)
    return set(np.nonzero(~nonzero)[0].tolist())


def _path_blocker(analysis: Analysis, g: Group) -> str | None:
    """Why a channel's value is not c * another's at the consumers even if its filters are, or None."""
    own = {id(p.node) for p in g.producers} | {id(p.node) for p in g.params if p.role == "consumer"}
    for p in g.params:
        if p.role == "param" and (p.node.op_type, p.input_index) not in _BIAS:
            return f"{p.node.op_type} '{p.node.name}' has per-channel parameters"
    for value, _ in g.dims:
        for use in value.uses():
            node = use.node
            if id(node) in own:
                continue
            if node.op_type not in HOMOGENEOUS:
                return f"{node.op_type} '{node.name}' is not positively homogeneous"
            if node.op_type == "Pad" and len(node.inputs) > 2 and node.inputs[2] is not None:
                value_in = node.inputs[2].const_value
                if value_in is None or np.any(value_in.numpy() != 0):
                    return f"Pad '{node.name}' pads with a value other than 0"
            if node.op_type == "Add" and any(v is not None and v not in analysis.dims for v in node.inputs):
                return f"Add '{node.name}' adds a tensor that is not in the group"
    return None


def _producer_vectors(analysis: Analysis, g: Group) -> np.ndarray:
    """Per channel: all its producer filters and biases, concatenated (float64)."""
    parts = []
    for p in g.producers:
        w = np.moveaxis(p.value.const_value.numpy(), p.axis, 0).astype(np.float64)
        rows = np.zeros((g.size, int(np.prod(w.shape[1:])) * 1))
        _, cls = analysis.class_index(p.atoms)
        np.add.at(rows, cls, w.reshape(w.shape[0], -1))
        parts.append(rows)
        for b in g.params:
            if b.node is p.node and (b.node.op_type, b.input_index) in _BIAS:
                bias = np.zeros((g.size, 1))
                np.add.at(bias[:, 0], analysis.class_index(b.atoms)[1], b.value.const_value.numpy().astype(np.float64))
                parts.append(bias)
    return np.concatenate(parts, axis=1)


def _proportional(vectors: np.ndarray, norms: np.ndarray, exclude: set[int]) -> list[tuple[int, int, float]]:
    """(j, i, c): channel j equals c > 0 times channel i, i the first of its class (graph order)."""
    live = [k for k in range(len(vectors)) if norms[k] > 0 and k not in exclude]
    if len(live) < 2:
        return []
    unit = vectors[live] / norms[live, None]
    cos = unit @ unit.T
    merges, rep = [], {}
    for a, j in enumerate(live):
        for b in range(a):
            i = live[b]
            if cos[a, b] >= 1 - _COS_TOL and i not in rep:
                c = norms[j] / norms[i]
                if np.allclose(vectors[j], c * vectors[i], rtol=1e-6, atol=1e-9 * norms[j]):
                    merges.append((j, i, float(c)))
                    rep[j] = i
                    break
    return merges
