"""Gates on channel groups: one factor per channel of every prunable group, applied wherever a weight
reads the channel (the data input of each consumer). A gate of 0 is exactly the channel's removal,
because after removal nothing reads it; a residual channel is read at every block, and every read is
gated by the same factor."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from onnxprune.graph import Analysis, Group
from onnxprune.twin.interpreter import Twin


def consumer_inputs(analysis: Analysis, group: Group) -> list:
    """The activations the group's consumer weights read (deduplicated, graph order)."""
    seen, out = set(), []
    for c in (p for p in group.params if p.role == "consumer"):
        data = next((v for i, v in enumerate(c.node.inputs[:2]) if i != c.input_index and v is not None), None)
        if data is not None and data in analysis.dims and id(data) not in seen:
            seen.add(id(data))
            out.append(data)
    return out


class GroupGates:
    """The gate layout: channel k of group g is entry ``offset[g] + k`` of one vector; its last entry
    is a fixed 1 for positions that belong to no gated group (e.g. other inputs of a Concat)."""

    def __init__(self, analysis: Analysis, groups: list[Group]):
        self.groups = groups
        self.offset, total = {}, 0
        for g in groups:
            self.offset[g.id] = total
            total += g.size
        self.size = total
        self.points: dict[str, tuple[int, np.ndarray]] = {}  # value name -> (axis, entry per position)
        for g in groups:
            for v in consumer_inputs(analysis, g):
                if v.name in self.points:
                    continue
                d = analysis.dims[v]
                gids, cls = analysis.class_index(d.atoms)
                entry = np.full(len(d.atoms), total, dtype=np.int64)
                for h in groups:
                    mask = gids == h.id
                    entry[mask] = self.offset[h.id] + cls[mask]
                self.points[v.name] = (d.axis, entry)

    def split(self, vector: np.ndarray) -> dict[int, np.ndarray]:
        """Per group id, its slice of a vector (or of the last axis of an array) in this layout."""
        return {g.id: vector[..., self.offset[g.id]:self.offset[g.id] + g.size] for g in self.groups}


class GatedTwin(Twin):
    """A Twin whose gates come from ``gate_fn()`` (a vector in the GroupGates layout without its fixed
    last entry), computed once per forward so it may be any function of trainable parameters. With
    ``record`` the gated activations keep their gradients: ``gate_gradients()`` then gives
    dL_n/dg per sample from one batched backward (valid at gates of 1, where y = x)."""

    def __init__(self, model, layout: GroupGates, gate_fn: Callable[[], torch.Tensor] | None = None):
        super().__init__(model, gates={name: (axis, entry, layout.size + 1) for name, (axis, entry) in layout.points.items()})
        self.layout = layout
        self.gate_fn = gate_fn or (lambda: torch.ones(layout.size))
        self.record = False
        self._vector: torch.Tensor | None = None
        self._recorded: list[tuple[torch.Tensor, int, torch.Tensor]] = []

    def forward(self, *args, **feeds):
        self._vector = torch.cat([self.gate_fn(), torch.ones(1)])
        self._recorded = []
        return super().forward(*args, **feeds)

    def _gated(self, slot: int, x: torch.Tensor) -> torch.Tensor:
        axis, index, _ = self._gate_points[slot]
        axis = axis % x.dim()
        shape = [1] * x.dim()
        shape[axis] = -1
        y = x * self._vector[index].to(x.dtype).reshape(shape)
        if self.record and y.requires_grad:
            y.retain_grad()
            self._recorded.append((y, axis, index))
        return y

    def gate_gradients(self) -> np.ndarray:
        """[batch, layout.size]: per sample, sum over positions of dL/dy * y for every gated channel."""
        batch = self._recorded[0][0].shape[0] if self._recorded else 0
        out = torch.zeros(batch, self.layout.size + 1, dtype=torch.float64)
        for y, axis, index in self._recorded:
            if y.grad is None:
                continue
            if axis == 0:
                continue  # no batch axis to tell samples apart
            prod = (y.grad * y).detach().double()
            dims = [d for d in range(prod.dim()) if d not in (0, axis)]
            out.index_add_(1, index, prod.sum(dim=dims) if dims else prod)  # [batch, positions]
        return out[:, :-1].numpy()
