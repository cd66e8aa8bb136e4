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

import errno
import mmap
import os
import stat
from collections.abc import Callable, Iterator

import numpy as np
import onnx_ir as ir

# One block of a weight at a time. The rows of a block are reduced together, and numpy's reductions
# over a strided block depend on its row count in the last bits: the size is part of the numerics.
SLAB_BYTES = 4 * 1024 * 1024
_GATHER_BYTES = 1024 * 1024  # rows of a mapped weight touched between page drops
GATHER_SLABS = 4  # strided blocks copied out of a mapped weight per pass over its pages
_COPY_BYTES = 1024 * 1024  # rows of a weight per block written by ``Selection.tofile``
_SUM_BYTES = 1024 * 1024  # rows of a weight per block of ``axis_sums`` (the size is part of its numerics)


def _keep(first: int = 0, last: int | None = None) -> None:
    """Release function of a tensor that is not memory-mapped: nothing to drop."""


_KEEP = _keep


def slab_rows(row_bytes: int) -> int:
    """Rows per block for rows of ``row_bytes``: about SLAB_BYTES, at least one."""
    return max(1, SLAB_BYTES // max(1, row_bytes))


def slabs(tensor: ir.TensorProtocol, axis: int = 0) -> Iterator[np.ndarray]:
    """Consecutive blocks of ``tensor`` with ``axis`` moved first: ``w[i:i + n]`` of the moved array,
    about SLAB_BYTES each (views, or copies with the same memory order). A block is valid until the
    next one is asked for (its pages of an external-data file are dropped then); copy what must
    outlive it."""
    array, release = _mapped(tensor)
    w = np.moveaxis(array, axis, 0)
    n = w.shape[0]
    step = slab_rows(w[0].nbytes if n else 1)
    if release is _KEEP or axis == 0 or array.ndim < 2:
        for i in range(0, n, step):
            yield w[i:i + step]  # consecutive bytes: only these pages are touched
            release()
        return
    # A strided block touches every page of the tensor: copy a few blocks out per pass over it, into
    # one buffer reused by every pass (a block is valid until the next is asked for). The blocks
    # handed out keep ``step`` rows and the memory order of the direct view (same numerics).
    wide = step * GATHER_SLABS
    shape = list(array.shape)
    shape[axis] = min(wide, n)
    buffer = np.empty(shape, dtype=array.dtype)
    for i in range(0, n, wide):
        gathered = _gathered(array, axis, slice(i, i + wide), release, buffer)
        for j in range(0, gathered.shape[0], step):
            yield gathered[j:j + step]


def axis_sums(tensor: ir.TensorProtocol, axis: int, elementwise: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Per position along ``axis``: the sum over every other axis of ``elementwise(w)`` (a float64 map),
    accumulated over consecutive blocks of the tensor's first axis in storage order, the pages of each
    dropped after it. One pass over the bytes, where ``slabs`` along an inner axis gathers strided
    columns (a buffer of them plus their float64 statistics resident: most of the scoring's memory on a
    4 GB model). In memory or mapped, the same blocks in the same order: the same sums to the bit."""
    array, release = _mapped(tensor)
    rest = tuple(a for a in range(array.ndim) if a != axis)
    out = np.zeros(array.shape[axis])
    row = array[0].nbytes if len(array) else 1
    step = max(1, _SUM_BYTES // max(1, row))
    for i in range(0, len(array), step):
        block = elementwise(array[i:i + step]).sum(axis=rest)
        if axis == 0:  # the block's own positions
            out[i:i + step] = block
        else:
            out += block
        release(0, (i + step) * row)  # from the start: fault-around maps pages before the block too
    return out


def _gathered(array: np.ndarray, axis: int, block: slice, release: Callable[..., None],
              buffer: np.ndarray) -> np.ndarray:
    """``np.moveaxis(array, axis, 0)[block]`` from a mapped ``array``, copied into ``buffer`` (``array``'s
    shape with at least the block's length on ``axis``) a few rows of ``array`` at a time, with the
    pages dropped in between (the kernel maps the pages around each one touched, so reading the
    strided block at once would map the whole tensor). The copy keeps ``array``'s memory order, so the
    view returned has the strides' order of the direct view: numpy computes on it in the same order,
    to the bit."""
    index = [slice(None)] * array.ndim
    index[axis] = block
    part = array[tuple(index)]
    out = buffer[tuple(slice(0, k) for k in part.shape)]
    row = array[0].nbytes
    rows = max(1, _GATHER_BYTES // max(1, row))
    for r in range(0, array.shape[0], rows):
        out[r:r + rows] = part[r:r + rows]
        release(0, (r + rows) * row)  # from the start: fault-around maps pages before the rows too
    return np.moveaxis(out, axis, 0)


def _mapped(tensor: ir.TensorProtocol) -> tuple[np.ndarray, Callable[..., None]]:
    """``(array, release)``: the tensor's numpy array and a function that drops the pages of an
    external-data tensor touched so far from the process (they stay in the page cache; a later read
    faults them back in). onnx-ir maps external data read-only, so dropping them loses nothing."""
    array = tensor.numpy()
    raw = getattr(tensor, "raw", None) if isinstance(tensor, ir.ExternalTensor) else None
    if not isinstance(raw, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED") or tensor.nbytes == 0:
        return array, _KEEP
    offset = tensor.offset or 0
    end = min(len(raw), offset + tensor.nbytes)

    def release(first: int = 0, last: int | None = None) -> None:
        """Drop the pages of bytes [first, last) of the tensor (all of it by default)."""
        lo = offset + first - (offset + first) % mmap.PAGESIZE
        hi = end if last is None else min(end, offset + last + mmap.PAGESIZE)
        raw.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    return array, release


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
        """Write the selected bytes (C order) a slab of the source at a time, or, where only whole rows
        (axis 0) go from an external-data source, copy the kept rows' runs of bytes file to file."""
        if self._array is not None or len(self.source.shape) == 0:
            file.write(self._whole().tobytes())
            return
        if _copied_rows(self.source, self.steps, file):
            return
        # blocks of about 1 MiB, as onnx-ir copies an unchanged external tensor: the write is the peak
        # of saving a large model
        array, release = _mapped(self.source)
        masks = _axis_masks(array.shape, self.steps)
        step = max(1, _COPY_BYTES // max(1, array[0].nbytes))
        for start in range(0, len(array), step):
            rows = slice(start, start + step)
            block = array[rows]
            for axis, keep in masks.items():
                block = np.compress(keep[rows] if axis == 0 else keep, block, axis=axis)
            file.write(np.ascontiguousarray(block).view(np.uint8))  # the buffer itself, no bytes copy
            release()

    def tobytes(self) -> bytes:
        return self._whole().tobytes()


def _axis_masks(shape: tuple[int, ...], steps: list[tuple[int, np.ndarray]]) -> dict[int, np.ndarray]:
    """One keep mask per cut axis of an array of ``shape``: the steps on one axis composed (each step
    indexes the positions the ones before it kept), so the blocks of the source can be cut directly."""
    masks: dict[int, np.ndarray] = {}
    for axis, keep in steps:
        mask = masks.setdefault(axis, np.ones(shape[axis], dtype=bool))
        mask[np.flatnonzero(mask)[~np.asarray(keep, dtype=bool)]] = False
    return masks


# copy_file_range errors that mean "not between these two files": onnx-ir falls back on the same ones
_NO_KERNEL_COPY = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM, errno.EXDEV}


def _copied_rows(source: ir.TensorProtocol, steps: list[tuple[int, np.ndarray]], file) -> bool:
    """Write the kept rows of ``source`` (every step on axis 0) into ``file`` at its position, each run of
    consecutive kept rows one range of bytes of the source's data file; False, having written nothing,
    where that does not apply: another axis is cut, the source is not external data of whole-byte
    elements, or ``file`` is not a regular file. The kernel copies the bytes (``os.copy_file_range``, as
    onnx-ir copies an unchanged tensor) without their passing through the process, or, where it
    cannot, they are read and written a run at a time."""
    if (not isinstance(source, ir.ExternalTensor) or any(axis != 0 for axis, _ in steps)
            or source.dtype.bitwidth % 8 or not all(callable(getattr(file, m, None)) for m in ("fileno", "flush",
                                                                                             "tell", "seek"))):
        return False
    try:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return False
    except (OSError, ValueError):  # no descriptor (an in-memory file that has the method)
        return False
    array = source.numpy()  # onnx-ir's checks of the tensor and its path, as the slab path makes them
    keep = _axis_masks(array.shape, steps)[0]
    row = array[0].nbytes if len(array) else 0
    edges = np.flatnonzero(np.diff(keep.astype(np.int8), prepend=0, append=0))  # run starts, stops
    file.flush()
    dst = file.tell()
    kernel = hasattr(os, "copy_file_range")
    with open(source.path, "rb") as src:
        fin, fout = src.fileno(), file.fileno()
        for first, stop in zip(edges[0::2].tolist(), edges[1::2].tolist()):
            at, left = (source.offset or 0) + first * row, (stop - first) * row
            while left:
                try:
                    done = os.copy_file_range(fin, fout, left, at, dst) if kernel else 0
                except OSError as exc:
                    if exc.errno not in _NO_KERNEL_COPY:
                        raise
                    kernel, done = False, 0
                if not done:  # no kernel copy here (or the source ended early: the read says so)
                    chunk = os.pread(fin, min(left, _COPY_BYTES), at)
                    if not chunk:
                        raise OSError(errno.EIO, f"{source.path}: ends before the bytes of tensor '{source.name}'")
                    done = os.pwrite(fout, chunk, dst)
                at, dst, left = at + done, dst + done, left - done
    file.seek(dst)  # writes at explicit offsets leave the position: advance it as write() would
    return True


def file_of(tensor: ir.TensorProtocol) -> str | None:
    """The external-data file a tensor's values are read from (through any Selection), if any."""
    while isinstance(tensor, Selection):
        tensor = tensor.source
    return os.fspath(tensor.path) if isinstance(tensor, ir.ExternalTensor) else None
