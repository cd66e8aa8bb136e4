"""Calibration data: ``.npz`` arrays keyed by input name, samples stacked on the first axis."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from onnxprune.errors import InputError


def load_npz(path: str | os.PathLike, inputs: dict[str, tuple[list, type]], limit: int | None = None) -> dict:
    """Arrays for every model input (``inputs``: name -> (declared dims, numpy dtype)); ``labels`` and
    other extra keys are ignored. Clear errors for a missing key, a wrong rank or size, or dtype."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no such data file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc})") from None
    feeds = {}
    for name, (dims, dtype) in inputs.items():
        if name not in data.files:
            raise InputError(f"{path}: no array for model input '{name}' (keys: {', '.join(data.files)})")
        arr = data[name]
        if arr.ndim != len(dims) or any(isinstance(d, int) and d > 0 and d != a for d, a in zip(dims[1:], arr.shape[1:])):
            raise InputError(f"{path}: '{name}' has shape {list(arr.shape)}, the model expects {dims} "
                             "(samples stacked on the first axis)")
        if not np.can_cast(arr.dtype, dtype, casting="same_kind"):
            raise InputError(f"{path}: '{name}' has dtype {arr.dtype}, the model expects {np.dtype(dtype)}")
        feeds[name] = arr[:limit].astype(dtype, copy=False)
    return feeds


def load_labels(path: str | os.PathLike, samples: int) -> np.ndarray | None:
    """The optional ``labels`` array of a data file: int class ids, one per sample."""
    data = np.load(path, allow_pickle=False)
    if "labels" not in data.files:
        return None
    labels = data["labels"]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{path}: 'labels' must be a 1-D array of int class ids, got {labels.dtype} "
                         f"{list(labels.shape)}")
    if len(labels) < samples:
        raise InputError(f"{path}: {len(labels)} labels for {samples} samples")
    return labels[:samples].astype(np.int64)
