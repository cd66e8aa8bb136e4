"""Fused attention operators: onnxruntime's com.microsoft Attention, MultiHeadAttention and
GroupQueryAttention, and ONNX's own Attention (opset 23). Whole heads are the channels.

Every one of these ops lays its q, k and v widths out head-major: position h * head_size + d belongs to
head h. All positions of a head (in q, k and v) are coupled into one channel, and a query head is
coupled with the key/value head it reads (with grouped-query attention, KV head g serves query heads
g * G .. g * G + G - 1, G = num_heads / kv_num_heads: removing KV head g removes them too). The head
counts are attributes, rewritten from what is kept; head_size does not change, so neither does the
default scale 1 / sqrt(head_size). Every input, output and attribute whose head dependence a rule does
not read (a key/value cache, a per-head tensor computed at run time, an attribute it does not know)
freezes the heads, with the reason.

ONNX shape inference does not know the com.microsoft ops: the registry states their output shapes
(``graph.contrib_shapes``).
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from onnxprune.graph.context import NodeContext, RuleUnsupported
from onnxprune.graph.edit import set_int_attr, set_ints_attr


# -- shared checks --------------------------------------------------------------------------------
def check_attributes(ctx: NodeContext, known: set[str]) -> None:
    unknown = sorted(set(ctx.node.attributes) - known)
    if unknown:
        raise RuleUnsupported(f"attribute(s) {', '.join(unknown)} are not read by its rule")


def _require_absent(ctx: NodeContext, inputs: dict[int, str], last: int) -> None:
    """Inputs that carry per-head state (a key/value cache) or that the rule does not read."""
    for i, v in enumerate(ctx.node.inputs):
        if v is None:
            continue
        if i in inputs:
            raise RuleUnsupported(f"input {i} ({inputs[i]}) is given: its heads would have to be cut as well")
        if i > last:
            raise RuleUnsupported(f"input {i} is not read by its rule")


def _require_unused(ctx: NodeContext, outputs: dict[int, str]) -> None:
    for j, what in outputs.items():
        if j < len(ctx.node.outputs):
            out = ctx.node.outputs[j]
            if out.uses() or out.is_graph_output():
                raise RuleUnsupported(f"its output {j} ({what}) is used and holds every head")


def _heads_attr(ctx: NodeContext, name: str) -> int:
    n = ctx.attr_int(name)
    if n is None or n < 1:
        raise RuleUnsupported(f"attribute {name} is missing or not positive")
    return n


def _per_head(width: int, heads: int, what: str) -> int:
    if width % heads:
        raise RuleUnsupported(f"the {what} width {width} is not a multiple of {heads} heads")
    return width // heads


def _width(ctx: NodeContext, i: int) -> int:
    d = ctx.dim(i)
    return len(d.atoms) if d is not None and d.axis == ctx.rank(ctx.input(i)) - 1 else ctx.size(ctx.input(i), -1)


def _hidden_atoms(ctx: NodeContext, i: int, what: str) -> np.ndarray:
    """Atoms of the last (hidden) axis of input i; an input without tracked channels gives frozen ones
    (its heads cannot be cut where it is made)."""
    v = ctx.input(i)
    d = ctx.take(i)
    if d is None:
        return ctx.frozen_source(v, ctx.size(v, -1), f"its {what} '{v.name}' is not made by a prunable projection")
    if d.axis != ctx.rank(v) - 1:
        raise RuleUnsupported(f"its {what} carries channels on axis {d.axis}, not on its hidden axis")
    return d.atoms


def couple_heads(ctx: NodeContext, atoms: np.ndarray, heads: int) -> np.ndarray:
    """Couple the positions of each head-major head into one channel; the atom of each head."""
    grid = atoms.reshape(heads, -1)
    ctx.couple(np.repeat(grid[:, 0], grid.shape[1]), atoms)
    return grid[:, 0]


def _head_bias(ctx: NodeContext, i: int, heads: np.ndarray, what: str) -> None:
    """An additive bias/mask broadcast to [batch, heads, S, T] (head axis: rank - 3): a constant with one
    slice per head loses the removed heads' slices; one computed at run time freezes the heads."""
    v = ctx.input(i)
    if v is None:
        return
    ctx.take(i)
    if ctx.dim(i) is not None:
        raise RuleUnsupported(f"its {what} carries channels")
    s = ctx.known_shape(v)
    if len(s) < 3 or s[-3] == 1:
        return  # the same for every head
    if s[-3] != len(heads):
        raise RuleUnsupported(f"its {what} '{v.name}' has {s[-3]} entries on its head axis, not {len(heads)}")
    if not ctx.is_const(i):
        raise RuleUnsupported(f"its {what} '{v.name}' gives each head its own values, computed at run time")
    ctx.param(i, len(s) - 3, heads, "param")


def _plain_inputs(ctx: NodeContext, indices) -> None:
    """Masks, lengths, positions, rotary caches: read alike by every head; they must not carry channels."""
    for i in indices:
        if ctx.input(i) is not None:
            ctx.take(i)
            if ctx.dim(i) is not None:
                raise RuleUnsupported(f"input {i} '{ctx.input(i).name}' carries channels")


def _bias_param(ctx: NodeContext, i: int, atoms: np.ndarray, what: str) -> None:
    if ctx.input(i) is None:
        return
    ctx.take(i)
    if ctx.dim(i) is not None or not ctx.is_const(i):
        raise RuleUnsupported(f"its {what} '{ctx.input(i).name}' is computed at run time")
    ctx.param(i, 0, atoms, "param")


# -- com.microsoft Attention: the input projection is inside the op ---------------------------------
def ms_attention(ctx: NodeContext) -> None:
    """input [B, S, in] x weights [in, q + k + v] (+ bias) -> heads -> output [B, S, v]: the op makes
    the heads (a new channel space, one atom per head) from its packed weight columns."""
    check_attributes(ctx, {"num_heads", "qkv_hidden_sizes", "scale", "mask_filter_value", "unidirectional",
                           "do_rotary", "rotary_embedding_dim", "past_present_share_buffer"})
    n = _heads_attr(ctx, "num_heads")
    if not ctx.is_const(1):
        raise RuleUnsupported(f"its weights '{ctx.input(1).name}' are not a constant")
    _, total = ctx.input(1).const_value.shape
    sizes = ctx.attr_ints("qkv_hidden_sizes") or ([total // 3] * 3 if total % 3 == 0 else None)
    if sizes is None or len(sizes) != 3 or sum(sizes) != total:
        raise RuleUnsupported(f"its weights have {total} columns, which qkv_hidden_sizes does not split")
    if sizes[0] != sizes[1]:
        raise RuleUnsupported(f"q and k widths differ ({sizes[0]} vs {sizes[1]})")
    dq, dv = _per_head(sizes[0], n, "q"), _per_head(sizes[2], n, "v")
    heads = ctx.new_space(n)  # made before any refusal below, so a frozen op still shows its heads
    if ctx.attr_int("do_rotary", 0):
        raise RuleUnsupported("it applies rotary embeddings inside the op (do_rotary), which its rule does not "
                              "follow (onnxruntime cannot run it on CPU to check)")
    if ctx.attr_int("past_present_share_buffer", 0):
        raise RuleUnsupported("it shares a key/value cache buffer (past_present_share_buffer)")
    _require_absent(ctx, {4: "past key/value cache", 6: "past_sequence_length"}, last=6)
    _require_unused(ctx, {1: "present key/value cache"})
    d = ctx.take(0)
    ctx.take(1)
    if d is not None:
        if d.axis != ctx.rank(ctx.input(0)) - 1:
            raise RuleUnsupported(f"its input carries channels on axis {d.axis}, not on its hidden axis")
        ctx.param(1, 0, d.atoms, "consumer")
    cols = np.concatenate([np.repeat(heads, dq), np.repeat(heads, dq), np.repeat(heads, dv)])
    ctx.param(1, 1, cols, "producer")
    _bias_param(ctx, 2, cols, "bias")
    _plain_inputs(ctx, [3])
    _head_bias(ctx, 5, heads, "attention_bias")
    node = ctx.node

    def _rewrite(keep, node=node, heads=heads) -> None:
        k = int(keep(heads).sum())
        set_int_attr(node, "num_heads", k)
        if "qkv_hidden_sizes" in node.attributes:
            set_ints_attr(node, "qkv_hidden_sizes", [k * dq, k * dq, k * dv])

    ctx.rewrite("num_heads", _rewrite)
    ctx.set_output(0, 2, np.repeat(heads, dv))


# -- com.microsoft MultiHeadAttention: q, k, v projected outside -------------------------------------
def ms_multi_head_attention(ctx: NodeContext) -> None:
    """query [B, S, q], key [B, L, q], value [B, L, v] (+ packed bias q | k | v) -> output [B, S, v]."""
    check_attributes(ctx, {"num_heads", "scale", "mask_filter_value", "unidirectional"})
    n = _heads_attr(ctx, "num_heads")
    q, k, v = ctx.input(0), ctx.input(1), ctx.input(2)
    if k is None or v is None or ctx.rank(q) != 3:
        raise RuleUnsupported("packed q/k/v input: heads are interleaved with q, k and v in one tensor")
    if ctx.rank(k) != 3 or ctx.rank(v) != 3:
        raise RuleUnsupported("key/value are given per head (a cache or cross-attention state)")
    hq, hk, hv = _width(ctx, 0), _width(ctx, 1), _width(ctx, 2)
    _require_absent(ctx, {6: "past key cache", 7: "past value cache", 8: "past_sequence_length",
                          9: "cache_indirection"}, last=9)
    _require_unused(ctx, {1: "present key cache", 2: "present value cache", 3: "qk"})
    if hq != hk:
        raise RuleUnsupported(f"query and key widths differ ({hq} vs {hk})")
    dq, dv = _per_head(hq, n, "query"), _per_head(hv, n, "value")
    qh = couple_heads(ctx, _hidden_atoms(ctx, 0, "query"), n)
    ctx.couple(qh, couple_heads(ctx, _hidden_atoms(ctx, 1, "key"), n))
    ctx.couple(qh, couple_heads(ctx, _hidden_atoms(ctx, 2, "value"), n))
    _bias_param(ctx, 3, np.concatenate([np.repeat(qh, dq), np.repeat(qh, dq), np.repeat(qh, dv)]), "bias")
    _plain_inputs(ctx, [4])
    _head_bias(ctx, 5, qh, "attention_bias")
    node = ctx.node
    ctx.rewrite("num_heads", lambda keep, node=node, qh=qh: set_int_attr(node, "num_heads", int(keep(qh).sum())))
    ctx.set_output(0, 2, np.repeat(qh, dv))


# -- grouped-query attention (com.microsoft GroupQueryAttention, ai.onnx Attention with 3-D inputs) --------
def _grouped_heads(ctx: NodeContext, q_atoms, k_atoms, v_atoms, n: int, kvn: int) -> tuple[np.ndarray, np.ndarray]:
    """Couple each head's positions, KV head g with its value head and its G query heads; (query head
    atoms, KV head atoms)."""
    if n % kvn:
        raise RuleUnsupported(f"{n} query heads do not split into {kvn} key/value groups")
    qh = couple_heads(ctx, q_atoms, n)
    kh = couple_heads(ctx, k_atoms, kvn)
    ctx.couple(kh, couple_heads(ctx, v_atoms, kvn))
    ctx.couple(np.repeat(kh, n // kvn), qh)
    return qh, kh


def _rewrite_head_counts(ctx: NodeContext, kh: np.ndarray, q_attr: str, kv_attr: str, group: int) -> None:
    node = ctx.node

    def _rewrite(keep, node=node, kh=kh) -> None:
        kept = int(keep(kh).sum())
        set_int_attr(node, q_attr, kept * group)
        set_int_attr(node, kv_attr, kept)

    ctx.rewrite(f"{q_attr}/{kv_attr}", _rewrite)


def ms_group_query_attention(ctx: NodeContext) -> None:
    """query [B, S, N * D], key/value [B, L, KVN * D] (or all three packed in query) -> [B, S, N * D]."""
    check_attributes(ctx, {"num_heads", "kv_num_heads", "scale", "softcap", "local_window_size", "causal",
                           "do_rotary", "rotary_interleaved", "smooth_softmax", "qk_output", "qk_norm_epsilon",
                           "q_norm_epsilon", "k_norm_epsilon"})
    n, kvn = _heads_attr(ctx, "num_heads"), _heads_attr(ctx, "kv_num_heads")
    q, k, v = ctx.input(0), ctx.input(1), ctx.input(2)
    if ctx.rank(q) != 3:
        raise RuleUnsupported("its query is not 3-D")
    packed = k is None
    if packed != (v is None):
        raise RuleUnsupported("only one of key and value is given")
    if packed:
        d = _per_head(_width(ctx, 0), n + 2 * kvn, "packed query/key/value")
        dk = dv = d
    else:
        if ctx.rank(k) != 3 or ctx.rank(v) != 3:
            raise RuleUnsupported("key/value are not 3-D")
        d, dk, dv = _per_head(_width(ctx, 0), n, "query"), _per_head(_width(ctx, 1), kvn, "key"), \
            _per_head(_width(ctx, 2), kvn, "value")
    _require_absent(ctx, {3: "past key cache", 4: "past value cache", 12: "k_scale of a quantized cache",
                          13: "v_scale of a quantized cache"}, last=16)
    _require_unused(ctx, {1: "present key cache", 2: "present value cache", 3: "output_qk"})
    if not d == dk == dv:
        raise RuleUnsupported(f"query, key and value head sizes differ ({d}, {dk}, {dv})")
    if packed:
        atoms = _hidden_atoms(ctx, 0, "packed query/key/value")
        q_atoms, k_atoms, v_atoms = np.split(atoms, [n * d, (n + kvn) * d])
    else:
        q_atoms, k_atoms, v_atoms = (_hidden_atoms(ctx, i, what) for i, what in enumerate(("query", "key", "value")))
    qh, kh = _grouped_heads(ctx, q_atoms, k_atoms, v_atoms, n, kvn)
    # seqlens_k, total_sequence_length, cos/sin caches, position_ids, q/k norm weights (over head_size,
    # shared by all heads), query_seqlens
    _plain_inputs(ctx, [5, 6, 7, 8, 9, 14, 15, 16])
    _head_bias(ctx, 10, qh, "attention_bias")
    _bias_param(ctx, 11, qh, "head_sink")
    _rewrite_head_counts(ctx, kh, "num_heads", "kv_num_heads", n // kvn)
    ctx.set_output(0, 2, np.repeat(qh, d))


def onnx_attention(ctx: NodeContext) -> None:
    """ai.onnx Attention: 3-D Q [B, S, qN * D], K [B, L, kvN * D], V [B, L, kvN * Dv] with q_num_heads
    and kv_num_heads: whole heads (KV groups with their query heads). 4-D [B, heads, S, D]: channels on
    the head-size axis (q and k coupled, v through to the output); the scale is stated explicitly so it
    stays 1 / sqrt(original head size)."""
    check_attributes(ctx, {"q_num_heads", "kv_num_heads", "scale", "is_causal", "softcap", "softmax_precision",
                           "qk_matmul_output_mode", "left_window_size", "right_window_size"})
    q = ctx.input(0)
    rank = ctx.rank(q)
    _require_absent(ctx, {4: "past key cache", 5: "past value cache"}, last=6)
    _require_unused(ctx, {1: "present key cache", 2: "present value cache"})
    _plain_inputs(ctx, [6])
    if rank == 3:
        _onnx_attention_3d(ctx)
    elif rank == 4:
        _onnx_attention_4d(ctx)
    else:
        raise RuleUnsupported(f"its Q has rank {rank}")


def _onnx_attention_3d(ctx: NodeContext) -> None:
    n, kvn = _heads_attr(ctx, "q_num_heads"), _heads_attr(ctx, "kv_num_heads")
    if any(ctx.rank(ctx.input(i)) != 3 for i in (1, 2)):
        raise RuleUnsupported("Q is 3-D but K or V is not")
    _require_unused(ctx, {3: "qk_matmul_output"})
    d, dk = _per_head(_width(ctx, 0), n, "Q"), _per_head(_width(ctx, 1), kvn, "K")
    dv = _per_head(_width(ctx, 2), kvn, "V")
    if d != dk:
        raise RuleUnsupported(f"Q and K head sizes differ ({d} vs {dk})")
    atoms = [_hidden_atoms(ctx, i, what) for i, what in enumerate(("Q", "K", "V"))]
    qh, kh = _grouped_heads(ctx, *atoms, n, kvn)
    _head_bias(ctx, 3, qh, "attn_mask")
    _rewrite_head_counts(ctx, kh, "q_num_heads", "kv_num_heads", n // kvn)
    ctx.set_output(0, 2, np.repeat(qh, dv))


def _onnx_attention_4d(ctx: NodeContext) -> None:
    if any(ctx.rank(ctx.input(i)) != 4 for i in (1, 2)):
        raise RuleUnsupported("Q is 4-D but K or V is not")
    dims = [ctx.take(i) for i in range(3)]
    axes = sorted({d.axis for d in dims if d is not None})
    if axes == [1]:
        return _onnx_attention_4d_heads(ctx, dims)
    if any(a != 3 for a in axes):
        raise RuleUnsupported(f"its Q, K, V carry channels on axes {axes}: in 4-D form whole heads (axis 1) or "
                              "the head size (axis 3) are followed, not both")
    _plain_inputs(ctx, [3])
    dq, dk = dims[0], dims[1]
    if dq is not None or dk is not None:
        # q . k sums over the head size: dimension i of Q and of K go together
        size = ctx.size(ctx.input(0), 3)
        qa = dq.atoms if dq is not None else ctx.frozen_source(ctx.input(0), size, "Q has no tracked head-size axis")
        ka = dk.atoms if dk is not None else ctx.frozen_source(ctx.input(1), size, "K has no tracked head-size axis")
        ctx.couple(qa, ka)
        if "scale" not in ctx.node.attributes:
            node, scale = ctx.node, 1.0 / math.sqrt(size)

            def _state_scale(_keep, node=node, scale=scale) -> None:
                node.attributes["scale"] = ir.AttrFloat32("scale", scale)

            ctx.rewrite("scale", _state_scale)
    if dims[2] is not None:
        ctx.set_output(0, 3, dims[2].atoms)


def _onnx_attention_4d_heads(ctx: NodeContext, dims: list) -> None:
    """Q [B, qN, S, D], K and V [B, kvN, L, D] with one channel per head on axis 1 (a head split made
    them): KV head g and its query heads g * G .. g * G + G - 1 go together; head counts are read from
    the shapes, so nothing is rewritten."""
    if "q_num_heads" in ctx.node.attributes or "kv_num_heads" in ctx.node.attributes:
        raise RuleUnsupported("4-D inputs with q_num_heads/kv_num_heads attributes")
    atoms = []
    for i, (d, what) in enumerate(zip(dims, "QKV")):
        v = ctx.input(i)
        atoms.append(d.atoms if d is not None else
                     ctx.frozen_source(v, ctx.size(v, 1), f"its {what} '{v.name}' has no tracked head axis"))
    if len(atoms[1]) != len(atoms[2]):
        raise RuleUnsupported(f"K has {len(atoms[1])} heads but V has {len(atoms[2])}")
    qh, _ = _grouped_heads(ctx, *atoms, len(atoms[0]), len(atoms[1]))
    _head_bias(ctx, 3, qh, "attn_mask")
    ctx.set_output(0, 1, qh)


# -- com.microsoft RotaryEmbedding (before MultiHeadAttention in onnxruntime's decoder fusions) -----------
def ms_rotary_embedding(ctx: NodeContext) -> None:
    """Rotates pairs of dimensions inside each head (d and d + rotary_dim / 2, or 2i and 2i + 1
    interleaved) by position-dependent angles, alike for every head: each head's positions become one
    channel, whole heads may go. 3-D input [B, S, N * head_size]; the head size is hidden / num_heads, or
    twice the cos cache's width when num_heads is 0."""
    check_attributes(ctx, {"num_heads", "rotary_embedding_dim", "interleaved", "is_packed_batching", "scale"})
    if ctx.attr_int("is_packed_batching", 0):
        raise RuleUnsupported("it reads packed (ragged) batches")
    _require_absent(ctx, {}, last=3)
    _plain_inputs(ctx, [1, 2, 3])
    d = ctx.take(0)
    if d is None:
        return
    x = ctx.input(0)
    if ctx.rank(x) != 3 or d.axis != 2:
        raise RuleUnsupported("it pairs dimensions inside each head: only whole heads of a 3-D input are followed")
    n = ctx.attr_int("num_heads", 0)
    if n == 0:
        if ctx.attr_int("rotary_embedding_dim", 0):
            raise RuleUnsupported("rotary_embedding_dim is set without num_heads")
        head_size = 2 * ctx.size(ctx.input(2), 1)
        if len(d.atoms) % head_size:
            raise RuleUnsupported(f"its width {len(d.atoms)} is not a multiple of the head size {head_size}")
        n = len(d.atoms) // head_size
    heads = couple_heads(ctx, d.atoms, n)
    if "num_heads" in ctx.node.attributes and n:
        node = ctx.node
        ctx.rewrite("num_heads", lambda keep, node=node, heads=heads: set_int_attr(node, "num_heads",
                                                                                    int(keep(heads).sum())))
    ctx.set_output(0, 2, d.atoms)
