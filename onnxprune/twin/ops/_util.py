"""Small helpers shared by the op families."""

from __future__ import annotations

import torch


def ints(t: torch.Tensor | None) -> list[int]:
    """A shape-like input (1-D int tensor) as Python ints; [] for a missing input."""
    return [] if t is None else [int(v) for v in t.reshape(-1).tolist()]


def norm_axes(axes: list[int], rank: int) -> list[int]:
    return [a % rank if rank else 0 for a in axes]


def bcast_to_axis(v: torch.Tensor, rank: int, axis: int = 1) -> torch.Tensor:
    """A per-channel vector shaped to broadcast along ``axis`` of a rank-``rank`` tensor."""
    shape = [1] * rank
    shape[axis] = -1
    return v.reshape(shape)
