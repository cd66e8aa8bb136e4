"""The one module that imports onnxruntime: CPU sessions, their inputs, feeds and batched runs.

Everything else reaches onnxruntime through here, so ``import onnxprune`` and a prune without
validation never load it. onnxruntime's own log lines (graph-optimizer warnings, "removing initializer"
notes) are silenced: what went wrong reaches the user as one ``onnxprune: error:`` line instead."""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np
import onnxruntime as ort

from onnxprune.data import DEFAULT_FREE_DIM, synthetic_arrays
from onnxprune.errors import ValidationError


class Session(ort.InferenceSession):
    """A CPU session that keeps what it was loaded from (a path or bytes): synthetic inputs read the graph."""

    def __init__(self, model, opts: ort.SessionOptions) -> None:
        super().__init__(model, opts, providers=["CPUExecutionProvider"])
        self.source = model


# Fatal only: onnxruntime logs the errors it also raises (and warnings, notes) straight to stderr, where
# they would interleave with our output; every failure reaches the user as the exception we raise.
_QUIET = 4
ort.set_default_logger_severity(_QUIET)

ORT_TO_NUMPY = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16, "tensor(int8)": np.int8,
    "tensor(uint64)": np.uint64, "tensor(uint32)": np.uint32, "tensor(uint16)": np.uint16,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


def session(model, threads: int = 0, role: str = "model") -> Session:
    """A quiet CPU session from a path or serialized bytes; ``threads`` > 0 fixes intra-op threads
    (and runs ops one at a time); a load failure becomes ValidationError naming ``role``."""
    opts = ort.SessionOptions()
    opts.log_severity_level = _QUIET
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return Session(os.fspath(model) if not isinstance(model, bytes) else model, opts)
    except Exception as exc:
        hint = " (validation needs it: --no-validate skips validation)" if role == "original model" else ""
        raise ValidationError(f"onnxruntime cannot load the {role}: {str(exc).splitlines()[0][:300]}{hint}") from exc


def input_signature(sess: Session) -> dict[str, tuple[list, type | None]]:
    """Each input's declared dims (ints, or names/None for free ones) and numpy dtype (None: not covered)."""
    return {i.name: (list(i.shape), ORT_TO_NUMPY.get(i.type)) for i in sess.get_inputs()}


def synthetic_inputs(sess: Session, seed: int = 0, batch: int = 1,
                     overrides: dict[str, tuple] | None = None) -> dict[str, np.ndarray]:
    """Seeded inputs matching the session's declared shapes and dtypes (``onnxprune.data.synthetic_arrays``);
    integer inputs within the ranges the graph gives them, free dims no longer than its position tables
    (``graph_input_hints``)."""
    types = {i.name: i.type for i in sess.get_inputs()}
    signature = input_signature(sess)
    for name, (_, dtype) in signature.items():
        if dtype is None:
            raise ValidationError(f"input '{name}' has type {types[name]}, which synthetic inputs do not cover: "
                                  "give --data")
    ranges, positions = graph_input_hints(sess)
    return synthetic_arrays(signature, seed, batch, overrides, ranges, min(DEFAULT_FREE_DIM, positions or DEFAULT_FREE_DIM))


def graph_input_hints(sess: Session) -> tuple[dict[str, tuple[int, int]], int | None]:
    """What the session's graph says about its inputs (``onnxprune.graph.inputs``): [low, high) per integer
    input, and the rows of its shortest position table (the longest sequence). Read only for a session
    with integer inputs (token models) that knows its source."""
    source = getattr(sess, "source", None)
    ints = [i for i in sess.get_inputs() if np.issubdtype(ORT_TO_NUMPY.get(i.type, np.float32), np.integer)]
    if source is None or not ints:
        return {}, None
    import onnx
    import onnx_ir as ir

    from onnxprune.graph.inputs import integer_input_ranges, position_table_rows

    proto = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source, load_external_data=False)
    model = ir.from_proto(proto)
    return integer_input_ranges(model), position_table_rows(model)


def fixed_batch(sess: Session) -> int | None:
    """The first input's declared axis-0 size when it is fixed, else None (a free batch dim or a scalar)."""
    shape = sess.get_inputs()[0].shape
    return shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None


def run_outputs(sess: Session, feeds: dict[str, np.ndarray], names: list[str] | None = None) -> list[np.ndarray]:
    """Outputs (all, or ``names``); more samples than a fixed batch dim (e.g. 256 calibration samples,
    batch 1) run in chunks of that batch and are concatenated (a last partial chunk is left out)."""
    first = sess.get_inputs()[0]
    fixed = fixed_batch(sess)
    n = feeds[first.name].shape[0] if feeds[first.name].ndim else 0
    if fixed is None or n <= fixed:
        return sess.run(names, feeds)
    chunks = [sess.run(names, {k: v[i:i + fixed] if v.ndim else v for k, v in feeds.items()})
              for i in range(0, n - n % fixed, fixed)]
    # along each output's batch axis: its first of size ``fixed`` (a time-major CTC output is [T, 1, C])
    return [np.concatenate(parts, axis=next((a for a, d in enumerate(parts[0].shape) if d == fixed), 0))
            for parts in zip(*chunks)]


def quantization() -> ModuleType:
    """``onnxruntime.quantization`` (imported on first use: it is slow to import)."""
    import onnxruntime.quantization as quantization
    import onnxruntime.quantization.shape_inference  # noqa: F401  # quant_pre_process lives here

    return quantization


def mobile_usability_checker() -> ModuleType:
    """``onnxruntime.tools.mobile_helpers.usability_checker``."""
    from onnxruntime.tools.mobile_helpers import usability_checker

    return usability_checker


# Run as ``python -m`` in a subprocess: the converter prints and may exit.
ORT_FORMAT_CONVERTER = "onnxruntime.tools.convert_onnx_models_to_ort"


def symbolic_shape_inference() -> type:
    """``onnxruntime.tools.symbolic_shape_infer.SymbolicShapeInference`` (loaded only for models whose
    dims ONNX inference leaves unnamed)."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    return SymbolicShapeInference


def kernel_times_ms(model, feeds: dict[str, np.ndarray], threads: int, runs: int) -> dict[str, float]:
    """Mean milliseconds per run of each kernel onnxruntime ran (``runs`` profiled runs after one warm-up),
    keyed by the kernel's name: a node's name, or for a fused or re-laid-out kernel ("fused X", "T_nchwc")
    the name of the node or tensor it was made from."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="onnxprune-profile-") as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = _QUIET
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.enable_profiling, opts.profile_file_prefix = True, os.path.join(tmp, "profile")
        try:
            sess = Session(os.fspath(model) if not isinstance(model, bytes) else model, opts)
            sess.run(None, feeds)
            for _ in range(runs):
                sess.run(None, feeds)
            with open(sess.end_profiling()) as f:
                events = json.load(f)
        except Exception as exc:
            raise ValidationError(f"onnxruntime cannot profile the model: {str(exc).splitlines()[0][:300]}") from exc
    times: dict[str, float] = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") == "Node" and name.endswith("_kernel_time"):
            key = name.removesuffix("_kernel_time").removeprefix("fused ").removesuffix("_nchwc")
            times[key] = times.get(key, 0.0) + e.get("dur", 0) / 1e3 / (runs + 1)
    return times
