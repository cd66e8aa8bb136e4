"""Channel atoms: every channel a producer creates is an integer atom; coupled channels are unioned.

A tracked tensor dimension is an int array of atoms, one per position. Concat concatenates arrays,
Split slices them, Flatten repeats them, and an elementwise coupling unions them position by position.
Two union-finds: ``chan`` says which atoms are the same channel (removed together), ``grp`` says which
atoms share a group (scored and allocated together).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class UnionFind:
    """Growable union-find over ints with path halving."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self, n: int) -> int:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return start

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # Keep the smaller id as root so roots follow graph order (stable names).
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra

    def roots(self) -> np.ndarray:
        return np.fromiter((self.find(i) for i in range(len(self.parent))), dtype=np.int64, count=len(self.parent))


@dataclass
class Space:
    """A run of fresh atoms made by one producer (or a frozen source)."""

    start: int
    size: int
    origin: str  # node name (producer) or a description of the frozen source
    frozen: str | None = None


class ChannelStore:
    """All atoms of a model with their two union-finds."""

    def __init__(self) -> None:
        self.chan = UnionFind()
        self.grp = UnionFind()
        self.spaces: list[Space] = []
        self.freezes: list[tuple[int, str]] = []  # (any atom of the group, reason)

    def new_space(self, size: int, origin: str, frozen: str | None = None) -> np.ndarray:
        start = self.chan.add(size)
        self.grp.add(size)
        for i in range(start + 1, start + size):
            self.grp.union(start, i)
        self.spaces.append(Space(start, size, origin, frozen))
        if frozen and size:
            self.freezes.append((start, frozen))
        return np.arange(start, start + size, dtype=np.int64)

    def couple(self, a: np.ndarray, b: np.ndarray) -> None:
        """Position i of ``a`` and of ``b`` are the same channel."""
        assert len(a) == len(b), (len(a), len(b))
        for x, y in zip(a.tolist(), b.tolist()):
            self.chan.union(x, y)
            self.grp.union(x, y)

    def freeze(self, atoms: np.ndarray, reason: str) -> None:
        # Everything the frozen tensor carries is frozen, even across concat segments.
        for a in np.unique(atoms).tolist():
            self.freezes.append((a, reason))
