"""The exactness oracle: plant dead channels, prune them, require identical outputs.

Planting: pick channels with the library's own allocation (random scores, so any channel can be
picked), then zero every weight that reads them (consumer columns) and everything that makes them
(producer filters, biases, additive constants, BN shift and mean). Those channels are then invisible
to the output, and the l1 criterion must rank them lowest. Pruning the planted model at the same
ratio must remove exactly them and leave the outputs equal within 1e-5 relative.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxprune.allocation import allocate_local
from onnxprune.api import load_normalized
from onnxprune.graph import analyze_groups
from onnxprune.graph.context import ParamMember
from onnxprune.graph.rules.quant import zero_points
from onnxprune.plan import Plan

# Per-channel constants that add to a dead channel (so must be zeroed to keep it at 0).
_ADDITIVE = {("Conv", 2), ("ConvTranspose", 2), ("Gemm", 2), ("Add", 0), ("Add", 1), ("Sub", 0), ("Sub", 1),
             ("BatchNormalization", 2), ("BatchNormalization", 3), ("InstanceNormalization", 2)}


def assert_removed_exactly(report: dict, planted: dict[str, int], tol: float = 1e-5, label: str = "") -> None:
    """The oracle's verdict on a prune of the planted model: exactly the planted channels went (by group),
    and every output stayed within ``tol`` relative."""
    removed = {g["name"]: g["removed"] for g in report["groups"] if g["removed"]}
    assert removed == planted, label
    for name, out in report["validation"]["outputs"].items():
        assert out["max_rel"] <= tol, f"{label}: output {name} differs: {out}"


def plant_dead_channels(model, out_path: Path, ratio: float, seed: int = 0,
                        zero_consumers: bool = True, attention_unit: str = "head") -> tuple[dict[str, int], int]:
    """Write a copy of ``model`` with planted dead channels; return removed count per group name
    and the number of prunable groups. ``zero_consumers=False`` leaves the weights that read them:
    the channels are then 0 only if every op on the way maps 0 to 0 (what lumping must prove)."""
    m = load_normalized(model)
    an = analyze_groups(m, attention_unit)
    rng = np.random.default_rng(seed)
    scores = {g.id: rng.random(g.size) for g in an.prunable_groups}
    plan: Plan = allocate_local(an, scores, ratio)
    dead_root = np.zeros(len(an.roots), dtype=bool)
    for gid, cls in plan.removed.items():
        dead_root[an.groups[gid].classes[cls]] = True
    for p in an.params:
        dead = dead_root[an.roots[p.atoms]]
        roles = ("consumer", "producer") if zero_consumers else ("producer",)
        if dead.any() and (p.role in roles or (p.node.op_type, p.input_index) in _ADDITIVE):
            zero_positions(p, dead)
    ir.save(m, out_path)
    planted = {an.groups[gid].name: len(cls) for gid, cls in plan.removed.items()}
    return planted, len(an.prunable_groups)


def zero_positions(p: ParamMember, dead: np.ndarray) -> None:
    """Make the member read 0 at the dead positions; a quantized one stores its zero point there."""
    v = p.quant.node.inputs[p.quant.data] if p.quant is not None else p.value
    arr = np.array(v.const_value.numpy(), copy=True)
    zero = zero_points(p.quant) if p.quant is not None else np.zeros_like(arr)
    if p.blocks > 1:
        dead = dead.reshape(p.blocks, -1)
        rows = arr.shape[0] // p.blocks
        for b in range(p.blocks):
            arr[b * rows:(b + 1) * rows][:, dead[b]] = zero[b * rows:(b + 1) * rows][:, dead[b]]
    else:
        idx = [slice(None)] * arr.ndim
        idx[p.axis] = dead
        arr[tuple(idx)] = zero[tuple(idx)]
    v.const_value = ir.tensor(arr, name=v.name)
