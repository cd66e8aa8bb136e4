"""Output shapes (and MACs) of onnxruntime's fused ops, which ONNX shape inference does not know.

Without them every tensor after the first fused op of a model would have no shape: the op rules after it
could not read ranks, and MACs could not be counted. ``passes.normalize.infer_shapes`` fills them from
these functions (registry traits ``shapes``) and runs ONNX inference again past them.

Each function maps a node to one entry per output: (dims, dtype), or None where it does not say.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

from onnxprune.graph.context import value_dims

OutShapes = list[tuple[list, ir.DataType | None] | None]
ShapeFn = Callable[[ir.Node], OutShapes]


def _input(node: ir.Node, i: int) -> ir.Value | None:
    return node.inputs[i] if i < len(node.inputs) else None


def _int_attr(node: ir.Node, name: str, default: int = 0) -> int:
    a = node.attributes.get(name)
    return a.as_int() if a is not None else default


def _static(dims: list) -> list[int]:
    """Free dims count as 1 for MACs."""
    return [d if isinstance(d, int) and d > 0 else 1 for d in dims]


def same_as_input(*outputs: int) -> ShapeFn:
    """Outputs ``outputs`` have input 0's shape and type (element-wise ops, layer norms)."""
    def shapes(node: ir.Node) -> OutShapes:
        x = _input(node, 0)
        dims = value_dims(x)
        n = max(outputs) + 1
        return [(dims, x.dtype) if j in outputs and dims is not None else None for j in range(n)]

    return shapes


def embed_layer_norm(node: ir.Node) -> OutShapes:
    """[B, S] ids -> [B, S, hidden] (output, embedding_sum) and mask_index [B] (int32)."""
    ids, table = value_dims(_input(node, 0)), value_dims(_input(node, 2))
    if ids is None or table is None:
        return []
    out = ([*ids, table[-1]], node.inputs[2].dtype)
    return [out, (ids[:1], ir.DataType.INT32), out]


def _with_width(node: ir.Node, width: int | None) -> OutShapes:
    x = value_dims(_input(node, 0))
    if x is None or width is None:
        return []
    return [([*x[:-1], width], node.inputs[0].dtype)]


def _attention_sizes(node: ir.Node) -> list[int] | None:
    """com.microsoft Attention: the q, k, v widths of its packed weights."""
    a = node.attributes.get("qkv_hidden_sizes")
    if a is not None:
        return list(a.as_ints())
    w = value_dims(_input(node, 1))
    return [w[1] // 3] * 3 if w is not None and len(w) == 2 and isinstance(w[1], int) else None


def ms_attention(node: ir.Node) -> OutShapes:
    sizes = _attention_sizes(node)
    return _with_width(node, sizes[2] if sizes else None)


def ms_attention_macs(node: ir.Node) -> int | None:
    """The packed q|k|v projection plus q.k and p.v of each head (no cache: keys = the sequence)."""
    x, sizes = value_dims(_input(node, 0)), _attention_sizes(node)
    if x is None or sizes is None or len(x) != 3:
        return None
    b, s, width = _static(x)
    return b * s * width * sum(sizes) + b * s * s * (sizes[0] + sizes[2])


def ms_multi_head_attention(node: ir.Node) -> OutShapes:
    q, v = value_dims(_input(node, 0)), value_dims(_input(node, 2))
    if q is not None and len(q) == 3 and v is not None and len(v) == 3:
        return _with_width(node, v[-1])
    if q is not None and len(q) == 5 and isinstance(q[2], int) and isinstance(q[4], int):  # packed [B, S, N, 3, H]
        return [([*q[:2], q[2] * q[4]], node.inputs[0].dtype)]
    return []


def ms_group_query_attention(node: ir.Node) -> OutShapes:
    q = value_dims(_input(node, 0))
    n, kvn = _int_attr(node, "num_heads"), _int_attr(node, "kv_num_heads")
    if q is None or not isinstance(q[-1], int) or n < 1:
        return []
    packed = _input(node, 1) is None
    per = n + 2 * kvn if packed else n
    return _with_width(node, q[-1] // per * n if q[-1] % per == 0 else None)


def _core_macs(q_dims: list | None, kv_dims: list | None, q_width: int | None, v_width: int | None) -> int | None:
    """q.k and p.v over all heads: B * S * L * (q width + v width), for 3-D [B, S, hidden] operands."""
    if q_dims is None or kv_dims is None or q_width is None or v_width is None:
        return None
    b, s = _static(q_dims[:2])
    return b * s * _static(kv_dims[1:2])[0] * (q_width + v_width)


def ms_multi_head_attention_macs(node: ir.Node) -> int | None:
    q, k, v = (value_dims(_input(node, i)) for i in range(3))
    if q is None or k is None or v is None or len(q) != 3 or len(k) != 3 or len(v) != 3:
        return None
    return _core_macs(q, k, _static(q[-1:])[0], _static(v[-1:])[0])


def ms_group_query_attention_macs(node: ir.Node) -> int | None:
    """Each query head reads its KV head: B * S * L * N * (2 * head_size)."""
    out = ms_group_query_attention(node)
    q = value_dims(_input(node, 0))
    if not out or q is None:
        return None
    width = _static(out[0][0][-1:])[0]
    kv = value_dims(_input(node, 1)) or q
    return _core_macs(q, kv, width, width)


def onnx_attention_macs(node: ir.Node) -> int | None:
    """ai.onnx Attention: 3-D [B, S, hidden] or 4-D [B, heads, S, head_size] operands."""
    q, k, v = (value_dims(_input(node, i)) for i in range(3))
    if q is None or k is None or v is None:
        return None
    if len(q) == 3:
        qn, kvn = _int_attr(node, "q_num_heads"), _int_attr(node, "kv_num_heads")
        if qn < 1 or kvn < 1:
            return None
        v_width = _static(v[-1:])[0] // kvn * qn
        return _core_macs(q, k, _static(q[-1:])[0], v_width)
    if len(q) == 4:
        b, heads, s, d = _static(q)
        return b * heads * s * _static(k[2:3])[0] * (d + _static(v[3:4])[0])
    return None
