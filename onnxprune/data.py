"""Calibration data: ``.npz`` arrays keyed by input name, samples stacked on the first axis."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from onnxprune.errors import InputError

# Synthetic inputs fill free dims: batch (axis 0) -> 1; any other -> 64 (a multiple of 32, which strided
# detectors such as PaddleOCR need). MACs are counted at the same shapes.
DEFAULT_BATCH = 1
DEFAULT_FREE_DIM = 64


def concrete_shape(dims, batch: int = DEFAULT_BATCH, free: int = DEFAULT_FREE_DIM) -> list[int]:
    """Declared dims with free ones fixed: axis 0 -> ``batch``, others -> ``free``."""
    return [d if isinstance(d, int) and d > 0 else (batch if i == 0 else free) for i, d in enumerate(dims)]


def synthetic_arrays(inputs: dict[str, tuple[list, type]], seed: int = 0, batch: int = DEFAULT_BATCH,
                     overrides: dict[str, tuple] | None = None,
                     ranges: dict[str, tuple[int, int]] | None = None,
                     free: int = DEFAULT_FREE_DIM) -> dict[str, np.ndarray]:
    """Seeded arrays for ``inputs`` (name -> (declared dims, numpy dtype)): floats ~ N(0, 1), ints in
    ``ranges`` [low, high) where given (what the graph allows: ``graph.inputs.integer_input_ranges``),
    else in [0, 10), bools fair coin flips; free dims as ``concrete_shape`` (non-batch ones ``free``) unless
    ``overrides`` gives the shape (a 0 in it: that dim is free too, e.g. the batch of ``onnxprune.shapes``).
    Always ndarrays, rank 0 included (numpy returns bare scalars for shape (), which runtimes refuse)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (dims, dtype) in inputs.items():
        shape = concrete_shape(overrides[name] if overrides and name in overrides else dims, batch, free)
        if np.issubdtype(dtype, np.floating):
            arr = rng.standard_normal(shape)
        elif np.issubdtype(dtype, np.bool_):
            arr = rng.random(shape) < 0.5
        else:
            arr = rng.integers(*(ranges or {}).get(name, (0, 10)), shape)
        feeds[name] = np.asarray(arr).astype(dtype)
    return feeds


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
        fixed_mismatch = any(isinstance(d, int) and d > 0 and d != a for d, a in zip(dims[1:], arr.shape[1:]))
        if arr.ndim != len(dims) or fixed_mismatch:
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


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class DataSource:
    """Calibration data: an .npz (arrays keyed by input name, optional ``labels``), or a folder of
    images for a model with one image input [N, C, H, W], preprocessed as stated: converted to RGB
    (C = 3) or grey (C = 1), resized to ``input_size`` (H, W; default the model's static size) with
    bilinear filtering, scaled to [0, 1], then (x - mean) / std per channel."""

    def __init__(self, path: str | os.PathLike, input_size: tuple[int, int] | None = None,
                 mean: tuple[float, ...] = (0.0,), std: tuple[float, ...] = (1.0,)) -> None:
        self.path = path
        self.input_size, self.mean, self.std = input_size, tuple(mean), tuple(std)
        self.images = os.path.isdir(path)
        if not self.images and not os.path.exists(path):
            raise InputError(f"{path}: no such data file or folder")
        if any(s == 0 for s in self.std):
            raise InputError("--std values must not be 0")

    def describe(self) -> str:
        if not self.images:
            return f"data file {self.path}"
        return (f"images in {self.path} (resized to {self.input_size or 'the model size'}, /255, "
                f"mean {list(self.mean)}, std {list(self.std)})")

    def arrays(self, inputs: dict[str, tuple[list, type]], limit: int | None = None) -> dict[str, np.ndarray]:
        if not self.images:
            return load_npz(self.path, inputs, limit)
        if len(inputs) != 1:
            raise InputError(f"{self.path}: a folder of images feeds a model with one input; this one has "
                             f"{len(inputs)} ({', '.join(inputs)}): use an .npz")
        (name, (dims, dtype)), = inputs.items()
        if len(dims) != 4 or not np.issubdtype(dtype, np.floating):
            raise InputError(f"{self.path}: input '{name}' is {dims} of {np.dtype(dtype)}; images need a float "
                             "[N, C, H, W] input: use an .npz")
        return {name: self._load(dims, dtype, limit)}

    def labels(self, samples: int) -> np.ndarray | None:
        return None if self.images else load_labels(self.path, samples)

    def _load(self, dims: list, dtype, limit: int | None) -> np.ndarray:
        try:
            from PIL import Image
        except ImportError:
            raise InputError("reading a folder of images needs Pillow: pip install onnxprune[torch] "
                             "(or pip install pillow)") from None
        channels = dims[1] if isinstance(dims[1], int) and dims[1] > 0 else 3
        if channels not in (1, 3):
            raise InputError(f"the model's input has {channels} channels; images give 1 (grey) or 3 (RGB)")
        size = self.input_size or tuple(dims[2:])
        if not all(isinstance(d, int) and d > 0 for d in size):
            raise InputError("the model's input size is not fixed: give --input-size H,W")
        for what, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise InputError(f"--{what} needs 1 or {channels} values, got {len(values)}")
        files = sorted(os.path.join(root, f) for root, _, names in os.walk(self.path) for f in names
                       if f.lower().endswith(IMAGE_SUFFIXES))[:limit]
        if not files:
            raise InputError(f"{self.path}: no images ({', '.join(IMAGE_SUFFIXES)})")
        mean = np.asarray(self.mean, np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(-1, 1, 1)
        out = np.empty((len(files), channels, *size), dtype=np.float32)
        for i, f in enumerate(files):
            try:
                with Image.open(f) as img:
                    img = img.convert("L" if channels == 1 else "RGB").resize((size[1], size[0]), Image.BILINEAR)
            except OSError as exc:
                raise InputError(f"{f}: not a readable image ({exc})") from None
            arr = np.asarray(img, dtype=np.float32) / 255.0
            arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
            out[i] = (arr - mean) / std
        return out.astype(dtype, copy=False)


def as_source(data) -> DataSource | None:
    """A DataSource from a path (or one already made), None for None."""
    if data is None or isinstance(data, DataSource):
        return data
    return DataSource(data)
