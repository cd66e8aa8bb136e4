"""onnxruntime's fused (com.microsoft) element-wise and normalisation ops, as its transformer optimizer
writes them around attention: the Gelu family keeps channels where they are (a bias input is per
channel), the layer norms normalise over the hidden axis (the residual stream stays whole).

ONNX shape inference does not know these ops: each rule states its output shapes so the ops after it
see ranks and sizes.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxprune.graph.context import NodeContext, RuleUnsupported
from onnxprune.graph.rules.attention import check_attributes, fill_shape


def _same_shape_outputs(ctx: NodeContext, outputs) -> None:
    src = ctx.input(0)
    for j in outputs:
        fill_shape(ctx, j, ctx.shape(src), src.dtype)


def bias_gelu(ctx: NodeContext) -> None:
    """BiasGelu(A, bias), FastGelu(X[, bias]), Gelu(X), QuickGelu(X): gelu(x + bias) per position; the
    1-D bias runs along the last axis."""
    check_attributes(ctx, {"alpha"} if ctx.node.op_type == "QuickGelu" else set())
    _same_shape_outputs(ctx, [0])
    d = ctx.take(0)
    b = ctx.input(1)
    if b is not None:
        ctx.take(1)
        if ctx.dim(1) is not None:
            raise RuleUnsupported("its bias carries channels")
        if ctx.rank(b) != 1:
            raise RuleUnsupported(f"its bias '{b.name}' is not 1-D")
    if len(ctx.node.inputs) > 2:
        raise RuleUnsupported("it has more inputs than its rule reads")
    if d is None:
        return
    if b is not None and d.axis == ctx.rank(ctx.input(0)) - 1 and ctx.size(b, 0) != 1:
        if not ctx.is_const(1):
            raise RuleUnsupported(f"its bias '{b.name}' is computed at run time")
        ctx.param(1, 0, d.atoms, "param")
    ctx.set_output(0, d.axis, d.atoms)


def skip_layer_norm(ctx: NodeContext) -> None:
    """SkipLayerNormalization / SkipSimplifiedLayerNormalization: LayerNorm(input + skip + bias) over the
    hidden axis. Outputs 0 and 3 (the sum) have the input's shape."""
    _same_shape_outputs(ctx, [0, 3])
    _freeze_normalised(ctx)


def layer_norm(ctx: NodeContext) -> None:
    """SimplifiedLayerNormalization (RMSNorm, an onnxruntime op in the default domain): over the last axes."""
    _same_shape_outputs(ctx, [0])
    _freeze_normalised(ctx)


def _freeze_normalised(ctx: NodeContext) -> None:
    if any(ctx.dim(i) is not None for i in range(len(ctx.node.inputs))):
        raise RuleUnsupported("it normalises over the hidden axis: the residual stream keeps its width")


def embed_layer_norm(ctx: NodeContext) -> None:
    """EmbedLayerNormalization: token ids -> [B, S, hidden] (the embedding width), mask_index [B]."""
    ids, table = ctx.input(0), ctx.input(2)
    s = ctx.shape(ids)
    width = ctx.shape(table)
    if s is not None and width is not None:
        fill_shape(ctx, 0, [*s, width[-1]], table.dtype)
        fill_shape(ctx, 2, [*s, width[-1]], table.dtype)
        if len(ctx.node.outputs) > 1:
            fill_shape(ctx, 1, s[:1], ir.DataType.INT32)
    _freeze_normalised(ctx)
