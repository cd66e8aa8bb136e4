"""What a prune is asked to do: one frozen ``PruneConfig`` in sections, checked once by ``validate()``."""

from __future__ import annotations

# Symbolic dims of inputs, where sizes are counted and synthetic inputs are built: batch (axis 0) -> 1;
# any other free dim -> 64 (a multiple of 32, which strided detectors such as PaddleOCR need).
DEFAULT_BATCH = 1
DEFAULT_FREE_DIM = 64
