"""Channel atoms: every channel a producer creates is an integer atom; coupled channels are joined.

A tracked tensor dimension is an int array of atoms, one per position. Concat concatenates arrays,
Split slices them, Flatten repeats them, and an elementwise coupling joins them position by position.
Two partitions of the atoms are computed at the end (connected components, vectorised in numpy):
*channels* (atoms removed together) and *groups* (atoms scored and allocated together; a producer's
atoms always share a group).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Space:
    """A run of fresh atoms made by one producer (or a frozen source)."""

    start: int
    size: int
    origin: str  # node name (producer) or a description of the frozen source
    frozen: str | None = None


class ChannelStore:
    """All atoms of a model, the couplings between them, and freeze records."""

    def __init__(self) -> None:
        self.n_atoms = 0
        self.spaces: list[Space] = []
        self._couplings: list[tuple[np.ndarray, np.ndarray]] = []
        self.freezes: list[tuple[int, str]] = []  # (any atom of the group, reason)

    def new_space(self, size: int, origin: str, frozen: str | None = None) -> np.ndarray:
        start = self.n_atoms
        self.n_atoms += size
        self.spaces.append(Space(start, size, origin, frozen))
        if frozen and size:
            self.freezes.append((start, frozen))
        return np.arange(start, start + size, dtype=np.int64)

    def couple(self, a: np.ndarray, b: np.ndarray) -> None:
        """Position i of ``a`` and of ``b`` are the same channel."""
        assert len(a) == len(b), (len(a), len(b))
        self._couplings.append((np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)))

    def freeze(self, atoms: np.ndarray, reason: str) -> None:
        # Everything the frozen tensor carries is frozen, even across concat segments.
        for a in np.unique(atoms).tolist():
            self.freezes.append((a, reason))

    def partitions(self) -> tuple[np.ndarray, np.ndarray]:
        """(channel root, group root) of every atom; a root is the smallest atom of its set, so
        roots follow graph order."""
        n = self.n_atoms
        if self._couplings:
            src = np.concatenate([a for a, _ in self._couplings])
            dst = np.concatenate([b for _, b in self._couplings])
        else:
            src = dst = np.zeros(0, dtype=np.int64)
        chan = _min_labels(n, src, dst)
        # Groups: couplings plus every atom joined to the first atom of its space.
        firsts = np.repeat(np.array([s.start for s in self.spaces], dtype=np.int64),
                           [s.size for s in self.spaces])
        grp = _min_labels(n, np.concatenate([src, np.arange(n)]), np.concatenate([dst, firsts]))
        return chan, grp


def _min_labels(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected components by hooking roots onto smaller roots and full pointer jumping; each atom
    ends labelled with the smallest atom of its component."""
    labels = np.arange(n, dtype=np.int64)
    while len(src):
        a, b = labels[src], labels[dst]
        differ = a != b
        if not differ.any():
            break
        a, b = a[differ], b[differ]
        low = np.minimum(a, b)
        np.minimum.at(labels, a, low)
        np.minimum.at(labels, b, low)
        while True:  # compress: every atom points at its root
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
    return labels
