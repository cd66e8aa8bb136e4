"""Resize (opsets 10-19+) and Upsample, as separable 1-D interpolation along each resized axis.

Each axis gathers its few source rows (edge-clamped indices, as the ONNX reference pads with edge
values) and mixes them with weights from the ONNX coordinate transform; this follows every
coordinate_transformation_mode / nearest_mode exactly, which F.interpolate does not.
"""

from __future__ import annotations

import numpy as np
import torch

from onnxprune.twin.ops._util import ints, norm_axes
from onnxprune.twin.registry import NodeInfo, register


def _source_coords(mode: str, out_n: int, in_n: int, scale: float, roi: tuple[float, float] | None):
    x = np.arange(out_n, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjustment = out_n / (scale * in_n)
        offset = in_n / 2 * (1 - adjustment)
        return offset + (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_n > 1 else np.full(out_n, -0.5)
    if mode == "align_corners":
        return x * (in_n - 1) / (out_n - 1) if out_n > 1 else np.zeros(out_n)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_crop_and_resize":
        start, end = roi
        if out_n == 1:
            return np.full(out_n, (end - start) * (in_n - 1) / 2 + start * (in_n - 1))
        return start * (in_n - 1) + x * (end - start) * (in_n - 1) / (out_n - 1)
    raise ValueError(mode)


def _taps(interp: str, coords: np.ndarray, in_n: int, scale: float, node: NodeInfo) -> tuple[np.ndarray, np.ndarray]:
    """(indices [out, taps], weights [out, taps]) of one axis."""
    base = np.floor(coords)
    frac = coords - base
    if interp == "nearest":
        nm = node.attr("nearest_mode", "round_prefer_floor")
        if nm == "round_prefer_floor":
            idx = base + (frac > 0.5)
        elif nm == "round_prefer_ceil":
            idx = base + (frac >= 0.5)
        elif nm == "floor":
            idx = base
        elif nm == "ceil" or (nm == "simple" and scale < 1):
            idx = np.ceil(coords)
        elif nm == "simple":  # Resize-10 / Upsample in onnxruntime: floor up, ceil down
            idx = base
        else:
            raise node.unsupported(f"nearest_mode={nm}")
        return idx[:, None], np.ones((len(coords), 1))
    if interp == "linear":
        idx = np.stack([base, base + 1], 1)
        w = np.stack([1 - frac, frac], 1)
    else:  # cubic, Keys kernel with coefficient A
        a = node.attr("cubic_coeff_a", -0.75)
        idx = np.stack([base - 1, base, base + 1, base + 2], 1)
        r = frac
        w = np.stack([
            ((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
            ((a + 2) * r - (a + 3)) * r * r + 1,
            ((a + 2) * (1 - r) - (a + 3)) * (1 - r) * (1 - r) + 1,
            ((a * (2 - r) - 5 * a) * (2 - r) + 8 * a) * (2 - r) - 4 * a,
        ], 1)
        if node.attr("exclude_outside", 0):
            w = np.where((idx < 0) | (idx >= in_n), 0.0, w)
            w = w / w.sum(1, keepdims=True)
    return idx, w


def _resize_axis(x: torch.Tensor, axis: int, out_n: int, scale: float, interp: str, ctm: str,
                 roi: tuple[float, float] | None, node: NodeInfo) -> torch.Tensor:
    in_n = x.shape[axis]
    coords = _source_coords(ctm, out_n, in_n, scale, roi)
    idx, w = _taps(interp, coords, in_n, scale, node)
    idx = np.clip(idx, 0, in_n - 1).astype(np.int64)
    shape = [1] * x.dim()
    shape[axis] = out_n
    y = None
    for t in range(idx.shape[1]):
        part = x.index_select(axis, torch.from_numpy(idx[:, t].copy()))
        if interp != "nearest":
            part = part * torch.from_numpy(w[:, t].copy()).to(x.dtype).reshape(shape)
        y = part if y is None else y + part
    if ctm == "tf_crop_and_resize":  # outside the crop box: extrapolation_value
        outside = (coords < 0) | (coords > in_n - 1)
        if outside.any():
            mask = torch.from_numpy(outside).reshape(shape)
            y = torch.where(mask, torch.tensor(node.attr("extrapolation_value", 0.0), dtype=y.dtype), y)
    return y


def _resize(x, node: NodeInfo, scales: list[float], sizes: list[int], roi: list[float], axes: list[int],
            interp: str, ctm: str) -> torch.Tensor:
    rank = x.dim()
    axes = norm_axes(axes, rank) if axes else list(range(rank))
    in_sizes = [x.shape[a] for a in axes]
    if sizes:
        scales = [s / n for s, n in zip(sizes, in_sizes)]
        policy = node.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            common = min(scales) if policy == "not_larger" else max(scales)
            scales = [common] * len(axes)
            sizes = [int(np.floor(common * n + 0.5)) for n in in_sizes]  # round half up, as the reference
    else:
        sizes = [int(np.floor(s * n)) for s, n in zip(scales, in_sizes)]
    if node.attr("antialias", 0) and interp != "nearest" and any(s < 1 for s in scales):
        raise node.unsupported("antialias when downsampling")
    k = len(axes)
    if roi and len(roi) == 2 * rank and k != rank:
        roi = [roi[a] for a in axes] + [roi[rank + a] for a in axes]
    y = x
    for i, a in enumerate(axes):
        if sizes[i] == in_sizes[i] and scales[i] == 1.0 and ctm != "tf_crop_and_resize":
            continue
        box = (roi[i], roi[k + i]) if ctm == "tf_crop_and_resize" else None
        y = _resize_axis(y, a, sizes[i], scales[i], interp, ctm, box, node)
    return y


def _floats(t: torch.Tensor | None) -> list[float]:
    return [] if t is None else [float(v) for v in t.reshape(-1).tolist()]


@register("Resize", since=10, until=10)
def resize_10(node: NodeInfo):
    # Opset 10 had no coordinate modes: asymmetric coordinates, "simple" nearest rounding.
    interp = node.attr("mode", "nearest")
    floor_node = _FloorNearest(node)
    return lambda x, scales: _resize(x, floor_node, _floats(scales), [], [], [], interp, "asymmetric")


@register("Resize", since=11)
def resize(node: NodeInfo):
    interp = node.attr("mode", "nearest")
    if interp not in ("nearest", "linear", "cubic"):
        raise node.unsupported(f"mode={interp}")
    ctm = node.attr("coordinate_transformation_mode", "half_pixel")
    axes = node.attr("axes") or []

    def run(x, roi=None, scales=None, sizes=None):
        s, z = _floats(scales), ints(sizes)
        return _resize(x, node, s, z, _floats(roi), axes, interp, ctm)
    return run


@register("Upsample", since=7, until=9)
def upsample(node: NodeInfo):
    interp = node.attr("mode", "nearest")
    attr_scales = node.attr("scales")
    floor_node = _FloorNearest(node)
    if interp not in ("nearest", "linear"):
        raise node.unsupported(f"mode={interp}")

    def run(x, scales=None):
        s = _floats(scales) if scales is not None else list(attr_scales)
        return _resize(x, floor_node, s, [], [], [], interp, "asymmetric")
    return run


class _FloorNearest:
    """Upsample and Resize-10 have no nearest_mode: onnxruntime rounds down when upsampling and up
    when downsampling ("simple"); other attributes come from the node."""

    def __init__(self, node: NodeInfo):
        self._node = node

    def attr(self, key, default=None):
        return "simple" if key == "nearest_mode" else self._node.attr(key, default)

    def unsupported(self, reason):
        return self._node.unsupported(reason)
