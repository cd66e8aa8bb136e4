"""Weights read and written a slab at a time, so a model of many gigabytes is never in memory whole.

Reading: ``slabs`` walks a tensor in blocks along one axis. Of an external-data tensor (memory-mapped
by onnx-ir), the pages read are dropped from the process after each block: the pages a read touches count in the
process's resident memory until they are unmapped, so without this scoring a 4 GB model would hold
4 GB resident even though every byte is read once.

Writing: ``Selection`` is a constant with channels removed along some axes, computed when it is saved
(one slab at a time, straight into the output file) or when its values are first asked for; surgery
makes one instead of slicing every weight in memory.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator

import numpy as np
import onnx_ir as ir

SLAB_BYTES = 16 * 1024 * 1024  # one block of a weight read at a time


def slab_rows(row_bytes: int) -> int:
    """Rows per block for rows of ``row_bytes``: about SLAB_BYTES, at least one."""
    return max(1, SLAB_BYTES // max(1, row_bytes))


def slabs(tensor: ir.TensorProtocol, axis: int = 0) -> Iterator[np.ndarray]:
    """Consecutive blocks of ``tensor`` with ``axis`` moved first: views ``w[i:i + n]`` of the moved
    array, about SLAB_BYTES each. A block is valid until the next one is asked for (its pages of an
    external-data file are released then); copy what must outlive it."""
    array, release = _mapped(tensor)
    w = np.moveaxis(array, axis, 0)
    n = w.shape[0]
    step = slab_rows(w[0].nbytes if n else 1)
    for i in range(0, n, step):
        yield w[i:i + step]
        release()


def _mapped(tensor: ir.TensorProtocol) -> tuple[np.ndarray, Callable[[], None]]:
    """``(array, release)``: the tensor's numpy array and a function that drops the pages of an
    external-data tensor touched so far from the process (they stay in the page cache; a later read
    faults them back in). onnx-ir maps external data read-only, so dropping them loses nothing."""
    array = tensor.numpy()
    raw = getattr(tensor, "raw", None) if isinstance(tensor, ir.ExternalTensor) else None
    if not isinstance(raw, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED") or tensor.nbytes == 0:
        return array, lambda: None
    offset = tensor.offset or 0
    start = offset - offset % mmap.PAGESIZE
    length = min(len(raw), offset + tensor.nbytes) - start
    return array, lambda: raw.madvise(mmap.MADV_DONTNEED, start, length)


class Selection(ir.LazyTensor):
    """``source`` with only the ``keep`` positions along each listed axis: ``steps`` is [(axis, keep
    mask)], applied in order as ``np.compress`` would. Saving writes it one slab of the source at a
    time; ``numpy()`` computes it whole once and keeps it."""

    def __init__(self, source: ir.TensorProtocol, steps: list[tuple[int, np.ndarray]], name: str | None) -> None:
        shape = list(source.shape.numpy())
        for axis, keep in steps:
            shape[axis] = int(np.count_nonzero(keep))
        self.source = source
        self.steps = steps
        self._array: np.ndarray | None = None
        super().__init__(self._whole, dtype=source.dtype, shape=ir.Shape(shape), name=name)

    def _whole(self) -> ir.Tensor:
        if self._array is None:
            arr = self.source.numpy()
            for axis, keep in self.steps:
                arr = np.compress(keep, arr, axis=axis)
            self._array = np.ascontiguousarray(arr)
        return ir.Tensor(self._array, dtype=self.dtype, name=self.name)

    def tofile(self, file) -> None:
        """Write the selected bytes (C order) a slab of the source at a time."""
        if self._array is not None or len(self.source.shape) == 0:
            file.write(self._whole().tobytes())
            return
        start = 0
        for block in slabs(self.source, 0):
            rows = slice(start, start + block.shape[0])
            start = rows.stop
            for axis, keep in self.steps:
                block = np.compress(keep[rows] if axis == 0 else keep, block, axis=axis)
            file.write(np.ascontiguousarray(block).tobytes())

    def tobytes(self) -> bytes:
        return self._whole().tobytes()


def file_of(tensor: ir.TensorProtocol) -> str | None:
    """The external-data file a tensor's values are read from (through any Selection), if any."""
    while isinstance(tensor, Selection):
        tensor = tensor.source
    return os.fspath(tensor.path) if isinstance(tensor, ir.ExternalTensor) else None
