"""Exact lumpability (seed 004), METHODS.md section 3: channels that provably contribute nothing, or
exactly c > 0 times another channel, are removed or folded into it; outputs do not change.

- zero outgoing: every weight that reads the channel is 0 (any activation path);
- dead: its producer filters and biases are all 0 and every op on the way to the consumers maps 0 to 0
  (positively homogeneous);
- proportional: [w_j; b_j] = c [w_i; b_i] with c > 0 over every producer of the group, and every op on
  the way is positively homogeneous (ReLU, LeakyReLU, pools, pads, resizes, reshapes, routing, residual
  adds), so a_j = c a_i and the consumers take (W_i + c W_j) a_i. BatchNormalization after a Conv is
  folded into it first (``passes.normalize.fold_batchnorm``).
- constant: its producer filters are 0 but its bias is not, and on the way to each consumer there are
  only ops that keep a constant constant (ReLU/LeakyReLU, which map it, max and global pools,
  reshapes); a Conv consumer without padding or a Gemm takes it into its bias.
Relaxed (nearly proportional) merges: ``onnxprune.criteria.merging``.
"""

from __future__ import annotations

import numpy as np

from onnxprune.criteria.magnitude import param_per_class
from onnxprune.graph import Analysis, Group
from onnxprune.plan import Plan

# Positively homogeneous of degree 1 channel by channel: f(c x) = c f(x) for c > 0, and f(0) = 0.
HOMOGENEOUS = {
    "Relu", "LeakyRelu", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape",
    "Transpose", "Concat", "Split", "Slice", "Identity", "Dropout", "Squeeze", "Unsqueeze", "Resize", "Add", "Pad",
}
_BIAS = {("Conv", 2), ("Gemm", 2)}
# Ops that map a channel that is constant over space to a constant (value changed by activations only).
_KEEPS_CONSTANT = {"Relu", "LeakyRelu", "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape",
                   "Identity", "Dropout", "Squeeze", "Unsqueeze", "Transpose"}
_COS_TOL = 1e-9


def lumping_plan(analysis: Analysis) -> Plan:
    """Everything removable without changing any output, with the merges that make it so."""
    plan = Plan()
    for g in analysis.prunable_groups:
        if g.blocks:
            continue
        zero_out = _zero_outgoing(analysis, g)
        dead, merges = set(), []
        why_not = path_blocker(analysis, g)
        vectors = producer_vectors(analysis, g)
        if why_not is None:
            norms = np.linalg.norm(vectors, axis=1)
            dead = set(np.nonzero(norms == 0)[0].tolist())
            merges = _proportional(vectors, norms, exclude=dead | zero_out)
        folds = _constant_channels(analysis, g, vectors, exclude=zero_out | dead | {j for j, _, _ in merges})
        removed = sorted(zero_out | dead | {j for j, _, _ in merges} | {j for j, _, _ in folds})
        if len(removed) >= g.size:  # keep one channel; it does not matter which
            keep = removed[0]
            removed = removed[1:]
            merges = [m for m in merges if m[0] != keep]
            folds = [f for f in folds if f[0] != keep]
        if not removed:
            if why_not:
                plan.skipped[g.id] = f"not lumped: {why_not}"
            continue
        plan.removed[g.id] = np.array(removed, dtype=np.int64)
        plan.merges[g.id] = [m for m in merges if m[0] in set(removed)]
        plan.bias_folds[g.id] = folds
        parts = [f"{len(zero_out)} unread", f"{len(dead - zero_out)} dead",
                 f"{len(plan.merges[g.id])} folded into proportional channels",
                 f"{len({f[0] for f in folds})} constant, folded into consumer biases"]
        plan.reasons[g.id] = "lossless: " + ", ".join(p for p in parts if not p.startswith("0 "))
    return plan


def _constant_channels(analysis: Analysis, g: Group, vectors: np.ndarray,
                       exclude: set[int]) -> list[tuple[int, object, float]]:
    """(j, consumer node, value it reads) for channels whose filters are 0 and bias is not, where every
    consumer sees the constant at every position."""
    if len(g.producers) != 1:
        return []
    producer = g.producers[0]
    bias = next((b for b in g.params if b.node is producer.node and (b.node.op_type, b.input_index) in _BIAS), None)
    if bias is None:
        return []
    filters_zero = np.all(vectors[:, :-1] == 0, axis=1)
    b = vectors[:, -1]
    candidates = [k for k in np.nonzero(filters_zero & (b != 0))[0].tolist() if k not in exclude]
    if not candidates:
        return []
    consumers = [p for p in g.params if p.role == "consumer"]
    paths = {}
    for c in consumers:
        acts = _constant_path(c.node.inputs[0], producer.node)  # the data input it reads
        if acts is None or not reads_every_position(c):
            return []
        paths[id(c.node)] = (c.node, acts)
    return [(k, node, float(_apply_acts(acts, b[k]))) for k in candidates for node, acts in paths.values()]


def path_back(value, allowed: set[str]) -> tuple[list, object]:
    """Follow ``value`` back through the data input of ops in ``allowed``: the nodes passed (nearest
    first) and the first node that is not allowed (None at a graph input)."""
    path = []
    node = value.producer()
    while node is not None and node.op_type in allowed:
        path.append(node)
        node = node.inputs[0].producer()
    return path, node


def _constant_path(value, source_node) -> list | None:
    """The activation nodes between ``source_node`` and ``value`` along single-input ops that keep
    constants constant, or None if the path holds anything else."""
    path, stop = path_back(value, _KEEPS_CONSTANT)
    if stop is not source_node:
        return None
    return [n for n in path if n.op_type in ("Relu", "LeakyRelu")]


def _apply_acts(acts: list, v: float) -> float:
    for node in reversed(acts):  # collected consumer-first
        if node.op_type == "Relu":
            v = max(v, 0.0)
        else:
            alpha = node.attributes["alpha"].as_float() if "alpha" in node.attributes else 0.01
            v = v if v >= 0 else alpha * v
    return v


def reads_every_position(c) -> bool:
    """A Gemm, or a Conv (group 1) without padding: every output position sums the same inputs."""
    node = c.node
    if node.op_type == "Gemm":
        return c.blocks == 1 and (len(node.inputs) < 3 or node.inputs[2] is None or node.inputs[2].const_value is not None)
    if node.op_type != "Conv" or c.blocks > 1:
        return False
    pads = node.attributes["pads"].as_ints() if "pads" in node.attributes else [0]
    auto = node.attributes["auto_pad"].as_string() if "auto_pad" in node.attributes else "NOTSET"
    group = node.attributes["group"].as_int() if "group" in node.attributes else 1
    return group == 1 and not any(pads) and auto in ("NOTSET", "VALID")


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
        pos, cls = analysis.channels_in(g, p.atoms)
        np.logical_or.at(nonzero, cls, any_nz[pos])
    return set(np.nonzero(~nonzero)[0].tolist())


def path_blocker(analysis: Analysis, g: Group) -> str | None:
    """Why a channel's value is not c * another's at the consumers even if its filters are, or None."""
    folded = {id(bn) for bn in (folded_batchnorm(g, p) for p in g.producers) if bn is not None}
    own = {id(p.node) for p in g.producers} | {id(p.node) for p in g.params if p.role == "consumer"} | folded
    for p in g.params:
        if p.role == "param" and (p.node.op_type, p.input_index) not in _BIAS and id(p.node) not in folded:
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


def producer_vectors(analysis: Analysis, g: Group) -> np.ndarray:
    """Per channel: all its producer filters and biases, concatenated (float64), with a
    BatchNormalization that directly follows a producer folded in (what the channel computes)."""
    parts = []
    for p in g.producers:
        w = np.moveaxis(p.value.const_value.numpy(), p.axis, 0).astype(np.float64)
        rows = np.zeros((g.size, int(np.prod(w.shape[1:]))))
        pos, cls = analysis.channels_in(g, p.atoms)
        np.add.at(rows, cls, w.reshape(w.shape[0], -1)[pos])
        bias = np.zeros(g.size)
        has_bias = False
        for b in g.params:
            if b.node is p.node and (b.node.op_type, b.input_index) in _BIAS:
                bpos, bcls = analysis.channels_in(g, b.atoms)
                np.add.at(bias, bcls, b.value.const_value.numpy().astype(np.float64)[bpos])
                has_bias = True
        bn = folded_batchnorm(g, p)
        if bn is not None:
            gamma, beta, mean, var = (param_per_class(analysis, g, bn, k) for k in (1, 2, 3, 4))
            eps = bn.attributes["epsilon"].as_float() if "epsilon" in bn.attributes else 1e-5
            scale = gamma / np.sqrt(var + eps)
            rows *= scale[:, None]
            bias = (bias - mean) * scale + beta
            has_bias = True
        parts.append(rows)
        if has_bias:
            parts.append(bias[:, None])
    return np.concatenate(parts, axis=1)


def folded_batchnorm(g: Group, p):
    """The BatchNormalization that alone reads producer ``p``'s output with its parameters on this
    group's channels (so channel values are the BN's outputs), else None."""
    uses = p.node.outputs[0].uses()
    if len(uses) != 1 or p.node.outputs[0].is_graph_output():
        return None
    bn = uses[0].node
    if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx") or len(bn.outputs) > 1:
        return None
    indices = {q.input_index for q in g.params if q.node is bn}
    return bn if indices >= {1, 2, 3, 4} else None


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
