"""onnxruntime's fused (com.microsoft) element-wise and normalisation ops, as its transformer optimizer
writes them around attention: the Gelu family keeps channels where they are (a bias input is per
channel), the layer norms normalise over the hidden axis (the residual stream stays whole).
"""

from __future__ import annotations

from onnxprune.graph.context import NodeContext, RuleUnsupported
from onnxprune.graph.rules.attention import check_attributes


def bias_gelu(ctx: NodeContext) -> None:
    """BiasGelu(A, bias), FastGelu(X[, bias]), Gelu(X), QuickGelu(X): gelu(x + bias) per position; the
    1-D bias runs along the last axis."""
    check_attributes(ctx, {"alpha"} if ctx.node.op_type == "QuickGelu" else set())
    if len(ctx.node.inputs) > 2:
        raise RuleUnsupported("it has more inputs than its rule reads")
    d = ctx.take(0)
    b = ctx.input(1)
    if b is not None:
        ctx.take(1)
        if ctx.dim(1) is not None:
            raise RuleUnsupported("its bias carries channels")
        if ctx.rank(b) != 1:
            raise RuleUnsupported(f"its bias '{b.name}' is not 1-D")
    if d is None:
        return
    if b is not None and d.axis == ctx.rank(ctx.input(0)) - 1 and ctx.size(b, 0) != 1:
        if not ctx.is_const(1):
            raise RuleUnsupported(f"its bias '{b.name}' is computed at run time")
        ctx.param(1, 0, d.atoms, "param")
    ctx.set_output(0, d.axis, d.atoms)


def skip_layer_norm(ctx: NodeContext) -> None:
    """SkipLayerNormalization / SkipSimplifiedLayerNormalization: LayerNorm(input + skip + bias) over the
    hidden axis."""
    _freeze_normalised(ctx)


def embed_layer_norm(ctx: NodeContext) -> None:
    """EmbedLayerNormalization: token ids -> LayerNorm(embeddings) [B, S, hidden]; its width is the
    embedding tables' (frozen, like any residual stream)."""
    _freeze_normalised(ctx)


def _freeze_normalised(ctx: NodeContext) -> None:
    if any(ctx.dim(i) is not None for i in range(len(ctx.node.inputs))):
        raise RuleUnsupported("it normalises over the hidden axis: the residual stream keeps its width")
