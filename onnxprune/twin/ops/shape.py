"""Shape, layout and indexing ops: Shape, Reshape, Flatten, Transpose, (Un)Squeeze, Concat, Split, Slice,
Gather(ND/Elements), Scatter(ND/Elements), OneHot, NonZero, Expand, Tile, Pad, constants (Constant,
ConstantOfShape, Range), Depth/SpaceToDepth, Trilu, CumSum/CumProd."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import torch
import torch.nn.functional as F

from onnxprune.twin.dtypes import tensor_from_ir
from onnxprune.twin.ops._util import ints, norm_axes
from onnxprune.twin.registry import NodeInfo, register


def _shape_tensor(dims) -> torch.Tensor:
    return torch.tensor(list(dims), dtype=torch.int64)


@register("Shape")
def shape(node: NodeInfo):
    start, end = node.attr("start", 0), node.attr("end")  # opset 15; Python slicing clamps as ONNX does
    return lambda x: _shape_tensor(x.shape[start:end])


@register("Size")
def size(node: NodeInfo):
    return lambda x: torch.tensor(x.numel(), dtype=torch.int64)


@register("Reshape", since=5)
def reshape(node: NodeInfo):
    allow_zero = bool(node.attr("allowzero", 0))

    def run(x, shape_t):
        target = ints(shape_t)
        if not allow_zero:  # 0 copies the input's dimension
            target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
        return x.reshape(target)
    return run


@register("Flatten")
def flatten(node: NodeInfo):
    axis = node.attr("axis", 1)

    def run(x):
        a = axis % x.dim() if axis < 0 else axis
        return x.reshape(int(np.prod(x.shape[:a], dtype=np.int64)), -1)
    return run


@register("Transpose")
def transpose(node: NodeInfo):
    perm = node.attr("perm")
    return lambda x: x.permute(perm if perm is not None else list(range(x.dim()))[::-1])


def _squeeze(x, axes):
    if not axes:
        return x.squeeze()
    return x.squeeze(tuple(norm_axes(axes, x.dim())))


def _unsqueeze(x, axes):
    rank = x.dim() + len(axes)
    for a in sorted(norm_axes(axes, rank)):
        x = x.unsqueeze(a)
    return x


@register("Squeeze", until=12)
def squeeze_attr(node: NodeInfo):
    axes = node.attr("axes") or []
    return lambda x: _squeeze(x, axes)


@register("Squeeze", since=13)
def squeeze_input(node: NodeInfo):
    return lambda x, axes=None: _squeeze(x, ints(axes))


@register("Unsqueeze", until=12)
def unsqueeze_attr(node: NodeInfo):
    axes = node.attr("axes")
    return lambda x: _unsqueeze(x, axes)


@register("Unsqueeze", since=13)
def unsqueeze_input(node: NodeInfo):
    return lambda x, axes: _unsqueeze(x, ints(axes))


@register("Concat", since=4)
def concat(node: NodeInfo):
    axis = node.attr("axis")
    return lambda *xs: torch.cat([x for x in xs if x is not None], axis)


def _split_sizes(n: int, parts: int) -> list[int]:
    """ONNX 18 num_outputs: equal chunks of ceil(n / parts), the last one smaller."""
    chunk = -(-n // parts)
    return [min(chunk, n - i * chunk) for i in range(parts)]


@register("Split", since=2)
def split(node: NodeInfo):
    axis = node.attr("axis", 0)
    attr_split = node.attr("split")
    n_out = len(node.outputs_present)
    num_outputs = node.attr("num_outputs")

    def run(x, split_t=None):
        sizes = ints(split_t) if split_t is not None else list(attr_split or [])
        if not sizes:
            n = x.shape[axis]
            sizes = _split_sizes(n, num_outputs) if num_outputs else [n // n_out] * n_out
        return tuple(torch.split(x, sizes, axis))
    return run


def _slice(x, starts, ends, axes, steps):
    axes = norm_axes(axes or list(range(len(starts))), x.dim())
    steps = steps or [1] * len(starts)
    index = [slice(None)] * x.dim()
    flips = []
    for a, s, e, st in zip(axes, starts, ends, steps):
        if st > 0:
            index[a] = slice(*slice(s, e, st).indices(x.shape[a]))
        else:  # torch has no negative steps: take the positions explicitly
            flips.append((a, list(range(*slice(s, e, st).indices(x.shape[a])))))
    y = x[tuple(index)]
    for a, positions in flips:
        y = y.index_select(a, torch.tensor(positions, dtype=torch.long))
    return y


@register("Slice", until=9)
def slice_attr(node: NodeInfo):
    starts, ends, axes = node.attr("starts"), node.attr("ends"), node.attr("axes")
    return lambda x: _slice(x, starts, ends, axes, None)


@register("Slice", since=10)
def slice_input(node: NodeInfo):
    return lambda x, starts, ends, axes=None, steps=None: _slice(x, ints(starts), ints(ends), ints(axes), ints(steps))


@register("Gather")
def gather(node: NodeInfo):
    axis = node.attr("axis", 0)

    def run(x, idx):
        a = axis % x.dim()
        idx = idx.long()
        idx = torch.where(idx < 0, idx + x.shape[a], idx)  # negative indices count from the end
        out = x.index_select(a, idx.reshape(-1))
        return out.reshape((*x.shape[:a], *idx.shape, *x.shape[a + 1:]))
    return run


@register("GatherElements", since=11)
def gather_elements(node: NodeInfo):
    axis = node.attr("axis", 0)

    def run(x, idx):
        idx = idx.long()
        return torch.gather(x, axis, torch.where(idx < 0, idx + x.shape[axis], idx))
    return run


@register("Expand", since=8)
def expand(node: NodeInfo):
    # Bidirectional broadcast: the target may be smaller than or contain 1s where the input is larger.
    return lambda x, shape_t: x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(ints(shape_t))))


@register("Tile", since=6)
def tile(node: NodeInfo):
    return lambda x, repeats: x.repeat(ints(repeats))


@register("Constant")
def constant(node: NodeInfo):
    if node.attr("value") is not None:
        value = tensor_from_ir(node.attr("value"), f" ({node.where()})")
    elif node.attr("sparse_value") is not None:
        raise node.unsupported("sparse_value")
    else:
        for key, dtype in (("value_float", torch.float32), ("value_floats", torch.float32),
                           ("value_int", torch.int64), ("value_ints", torch.int64)):
            if node.attr(key) is not None:
                value = torch.tensor(node.attr(key), dtype=dtype)
                break
        else:
            raise node.unsupported("string constants")
    return lambda: value


@register("ConstantOfShape", since=9)
def constant_of_shape(node: NodeInfo):
    value = node.attr("value")
    # a 0-d fill: it expands to any shape, including the empty one (a scalar output, as BERT exports make)
    fill = tensor_from_ir(value).reshape(()) if isinstance(value, ir.TensorProtocol) else torch.zeros(())
    return lambda shape_t: fill.expand(ints(shape_t)).clone()


@register("Range", since=11)
def range_(node: NodeInfo):
    # ONNX: number of elements = max(ceil((limit - start) / delta), 0), dtype of the inputs.
    def run(start, limit, delta):
        s, l, d = start.item(), limit.item(), delta.item()
        n = max(int(np.ceil((l - s) / d)), 0)
        return start + torch.arange(n, dtype=start.dtype) * delta
    return run


@register("DepthToSpace", since=11)
def depth_to_space(node: NodeInfo):
    b, mode = node.attr("blocksize"), node.attr("mode", "DCR")

    def run(x):
        n, c, h, w = x.shape
        if mode == "DCR":
            y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
        else:
            y = x.reshape(n, c // (b * b), b, b, h, w).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(n, c // (b * b), h * b, w * b)
    return run


@register("SpaceToDepth")
def space_to_depth(node: NodeInfo):
    b, mode = node.attr("blocksize"), node.attr("mode", "DCR")
    perm = (0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4)

    def run(x):
        n, c, h, w = x.shape
        y = x.reshape(n, c, h // b, b, w // b, b).permute(perm)
        return y.reshape(n, c * b * b, h // b, w // b)
    return run


@register("Trilu", since=14)
def trilu(node: NodeInfo):
    upper = bool(node.attr("upper", 1))
    return lambda x, k=None: (torch.triu if upper else torch.tril)(x, int(k.item()) if k is not None else 0)


def _cumulative(fn, identity: int):
    def build(node: NodeInfo):
        exclusive, reverse = bool(node.attr("exclusive", 0)), bool(node.attr("reverse", 0))

        def run(x, axis_t):
            a = int(axis_t.item()) % x.dim()
            y = torch.flip(x, [a]) if reverse else x
            if exclusive:  # shift by one along the axis, starting from the identity
                first = torch.full_like(y.narrow(a, 0, 1), identity)
                y = torch.cat([first, y.narrow(a, 0, y.shape[a] - 1)], a)
            out = fn(y, a).to(x.dtype)
            return torch.flip(out, [a]) if reverse else out
        return run
    return build


register("CumSum", since=11)(_cumulative(torch.cumsum, 0))
register("CumProd", since=26)(_cumulative(torch.cumprod, 1))


@register("GatherND", since=11)
def gather_nd(node: NodeInfo):
    b = node.attr("batch_dims", 0)

    def run(x, idx):
        m = idx.shape[-1]
        batch = int(np.prod(x.shape[:b], dtype=np.int64))
        data = x.reshape(batch, *x.shape[b:])
        ind = idx.long().reshape(batch, -1, m)
        sizes = torch.tensor(data.shape[1:1 + m], dtype=torch.long)
        ind = torch.where(ind < 0, ind + sizes, ind)
        rows = torch.arange(batch).reshape(batch, 1).expand(batch, ind.shape[1])
        out = data[(rows, *ind.unbind(-1))]
        return out.reshape((*idx.shape[:-1], *x.shape[b + m:]))
    return run


_SCATTER_REDUCE = {"mul": "prod", "max": "amax", "min": "amin", "add": "sum"}


@register("ScatterElements", since=11)
def scatter_elements(node: NodeInfo):
    axis, reduction = node.attr("axis", 0), node.attr("reduction", "none")

    def run(x, idx, updates):
        idx = idx.long()
        idx = torch.where(idx < 0, idx + x.shape[axis], idx)
        if reduction == "none":
            return x.scatter(axis, idx, updates)
        return x.scatter_reduce(axis, idx, updates, _SCATTER_REDUCE[reduction], include_self=True)
    return run


@register("ScatterND", since=11)
def scatter_nd(node: NodeInfo):
    reduction = node.attr("reduction", "none")

    def run(x, idx, updates):
        # Rows of x flattened over the m indexed axes; each index tuple picks one row.
        m = idx.shape[-1]
        lead = x.shape[:m]
        flat = x.reshape(int(np.prod(lead, dtype=np.int64)), -1)
        ind = idx.long().reshape(-1, m)
        ind = torch.where(ind < 0, ind + torch.tensor(lead, dtype=torch.long), ind)
        strides = torch.tensor([int(np.prod(lead[i + 1:], dtype=np.int64)) for i in range(m)], dtype=torch.long)
        rows = (ind * strides).sum(-1)
        upd = updates.reshape(rows.shape[0], -1)
        if reduction == "none":
            out = flat.index_copy(0, rows, upd)
        else:
            index = rows.reshape(-1, 1).expand_as(upd)
            out = flat.scatter_reduce(0, index, upd, _SCATTER_REDUCE[reduction], include_self=True)
        return out.reshape(x.shape)
    return run


@register("OneHot", since=9)
def one_hot(node: NodeInfo):
    axis = node.attr("axis", -1)

    def run(indices, depth, values):
        d = int(depth.reshape(-1)[0])
        idx = indices.long() if not indices.dtype.is_floating_point else indices.trunc().long()
        idx = torch.where(idx < 0, idx + d, idx)  # out-of-range indices give an all-off row
        a = axis % (idx.dim() + 1)
        shape = [1] * (idx.dim() + 1)
        shape[a] = d
        hot = idx.unsqueeze(a) == torch.arange(d).reshape(shape)
        return torch.where(hot, values[1], values[0])
    return run


@register("NonZero", since=9)
def non_zero(node: NodeInfo):
    return lambda x: torch.nonzero(x).t().contiguous()  # [rank, count], int64


def _pad_indices(n: int, before: int, after: int, mode: str) -> torch.Tensor:
    """Source positions of a padded axis for reflect / edge / wrap padding."""
    pos = np.arange(-before, n + after)
    if mode == "edge":
        pos = np.clip(pos, 0, n - 1)
    elif mode == "wrap":
        pos = pos % n
    else:  # reflect without repeating the border
        period = 2 * (n - 1) if n > 1 else 1
        pos = np.abs(pos) % period
        pos = np.where(pos >= n, period - pos, pos)
    return torch.from_numpy(pos.astype(np.int64))


def _pad(x, pads, value, mode, axes):
    rank = x.dim()
    axes = norm_axes(axes, rank) if axes else list(range(rank))
    k = len(axes)
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[k + i]
    if mode == "constant":
        arg = []
        for b, e in zip(reversed(begin), reversed(end)):
            arg += [b, e]
        return F.pad(x, arg, value=value)
    for a in range(rank):
        if begin[a] or end[a]:
            if begin[a] < 0 or end[a] < 0:
                x = _slice(x, [max(-begin[a], 0)], [x.shape[a] - max(-end[a], 0)], [a], [1])
            x = x.index_select(a, _pad_indices(x.shape[a], max(begin[a], 0), max(end[a], 0), mode))
    return x


@register("Pad", since=2, until=10)
def pad_attr(node: NodeInfo):
    pads, value, mode = node.attr("pads"), node.attr("value", 0.0), node.attr("mode", "constant")
    return lambda x: _pad(x, pads, value, mode, None)


@register("Pad", since=11)
def pad_input(node: NodeInfo):
    mode = node.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise node.unsupported(f"mode={mode}")

    def run(x, pads, value=None, axes=None):
        fill = value.item() if value is not None and value.numel() else 0
        return _pad(x, ints(pads), fill, mode, ints(axes))
    return run
