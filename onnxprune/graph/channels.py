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
        # (atoms, reason): one entry per freeze, not per atom (a frozen hidden width holds thousands)
        self.freezes: list[tuple[np.ndarray, str]] = []

    def new_space(self, size: int, origin: str, frozen: str | None = None) -> np.ndarray:
        start = self.n_atoms
        self.n_atoms += size
        self.spaces.append(Space(start, size, origin, frozen))
        if frozen and size:
            self.freezes.append((np.array([start], dtype=np.int64), frozen))
        return np.arange(start, start + size, dtype=np.int64)

    def couple(self, a: np.ndarray, b: np.ndarray) -> None:
        """Position i of ``a`` and of ``b`` are the same channel."""
        assert len(a) == len(b), (len(a), len(b))
        self._couplings.append((np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)))

    def freeze(self, atoms: np.ndarray, reason: str) -> None:
        # Everything the frozen tensor carries is frozen, even across concat segments.
        atoms = np.unique(atoms)
        if len(atoms):
            self.freezes.append((atoms, reason))

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
        # Groups: couplings plus every atom joined to the first atom of its space, i.e. the channels (by
        # their roots) joined to the channel of their space's first atom; a root is the smallest atom
        # of its channel, so the smallest root of a group is its smallest atom.
        firsts = np.repeat(np.array([s.start for s in self.spaces], dtype=np.int64),
                           [s.size for s in self.spaces])
        del src, dst
        grp = _min_labels(n, chan[firsts], chan)[chan]
        return chan, grp


def _min_labels(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected components by hooking roots onto smaller roots and full pointer jumping; each atom
    ends labelled with the smallest atom of its component (int64).

    Works in int32 when the atoms fit (a 4 GB LLaMA has about 220 000 atoms and twice as many edges:
    the temporaries are most of the analysis's peak memory), and drops each edge once its two ends
    share a root: labels only ever merge, so it can never join anything again."""
    index = np.int32 if n < 2**31 else np.int64
    labels = np.arange(n, dtype=index)
    src, dst = np.asarray(src, dtype=index), np.asarray(dst, dtype=index)
    while len(src):
        a, b = labels[src], labels[dst]
        differ = a != b
        if not differ.any():
            break
        src, dst, a, b = src[differ], dst[differ], a[differ], b[differ]
        del differ
        low = np.minimum(a, b)
        np.minimum.at(labels, a, low)
        np.minimum.at(labels, b, low)
        del a, b, low
        while True:  # compress: every atom points at its root
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
    return labels.astype(np.int64)
