"""Run both models on the same inputs in onnxruntime and state how far their outputs are apart."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

from onnxprune.errors import ValidationError

# Symbolic dims: batch (axis 0) -> 1; any other free dim -> 64 (a multiple of 32, which strided
# detectors such as PaddleOCR need).
DEFAULT_BATCH = 1
DEFAULT_FREE_DIM = 64

ORT_TO_NUMPY = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_, "tensor(int16)": np.int16,
}


def session(model, threads: int = 0, role: str = "model") -> ort.InferenceSession:
    """A CPU session from a path or serialized bytes; load failures become ValidationError."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(os.fspath(model) if not isinstance(model, bytes) else model, opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:
        hint = " (validation needs it: --no-validate skips validation)" if role == "original model" else ""
        raise ValidationError(f"onnxruntime cannot load the {role}: {str(exc).splitlines()[0][:300]}{hint}") from exc


def synthetic_inputs(sess: ort.InferenceSession, seed: int = 0, batch: int = DEFAULT_BATCH,
                     overrides: dict[str, tuple] | None = None) -> dict[str, np.ndarray]:
    """Seeded inputs matching the declared shapes and dtypes (floats ~ N(0,1), ints small >= 0)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in sess.get_inputs():
        if overrides and inp.name in overrides:
            shape = list(overrides[inp.name])
        else:
            shape = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else DEFAULT_FREE_DIM)
                     for i, d in enumerate(inp.shape)]
        dtype = ORT_TO_NUMPY.get(inp.type)
        if dtype is None:
            raise ValidationError(f"input '{inp.name}' has type {inp.type}, which synthetic inputs do not cover")
        if np.issubdtype(dtype, np.floating):
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype is np.bool_:
            feeds[inp.name] = rng.random(shape) < 0.5
        else:
            feeds[inp.name] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


def output_metrics(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """max/mean abs error, relative error (max abs over the reference's max magnitude), cosine."""
    ref64, out64 = ref.astype(np.float64).ravel(), out.astype(np.float64).ravel()
    diff = np.abs(ref64 - out64)
    scale = float(np.abs(ref64).max()) if ref64.size else 0.0
    nr, no = np.linalg.norm(ref64), np.linalg.norm(out64)
    cosine = float(ref64 @ out64 / (nr * no)) if nr > 0 and no > 0 else float(nr == no)
    return {
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "mean_abs": float(diff.mean()) if diff.size else 0.0,
        "max_rel": float(diff.max() / scale) if diff.size and scale > 0 else float(diff.max() if diff.size else 0.0),
        "cosine": cosine,
    }


def compare_models(original, pruned, feeds: dict[str, np.ndarray] | None = None, seed: int = 0,
                   input_shapes: dict[str, tuple] | None = None) -> dict:
    """Both models on the same inputs: output names and shapes must match; metrics per output."""
    ref_sess, new_sess = session(original, role="original model"), session(pruned, role="pruned model")
    ref_in = [(i.name, i.type) for i in ref_sess.get_inputs()]
    new_in = [(i.name, i.type) for i in new_sess.get_inputs()]
    if ref_in != new_in:
        raise ValidationError(f"the models have different inputs: {ref_in} vs {new_in}")
    ref_out = [o.name for o in ref_sess.get_outputs()]
    new_out = [o.name for o in new_sess.get_outputs()]
    if ref_out != new_out:
        raise ValidationError(f"the models have different outputs: {ref_out} vs {new_out}")
    source = "given" if feeds is not None else f"synthetic (seed {seed})"
    if feeds is None:
        feeds = synthetic_inputs(ref_sess, seed, overrides=input_shapes)
    try:
        ref = ref_sess.run(None, feeds)
    except Exception as exc:
        raise ValidationError(f"the original model fails on the validation inputs: {str(exc).splitlines()[0][:300]} "
                              "(give shapes with --input-shape NAME:D,D,...)") from exc
    try:
        new = new_sess.run(None, feeds)
    except Exception as exc:
        raise ValidationError(f"the pruned model fails in onnxruntime: {str(exc).splitlines()[0][:300]}") from exc
    outputs = {}
    for name, r, n in zip(ref_out, ref, new):
        if r.shape != n.shape:
            raise ValidationError(f"output '{name}' changed shape: {r.shape} -> {n.shape}")
        outputs[name] = {"shape": list(r.shape), **output_metrics(r, n)}
    return {
        "inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in feeds.items()},
        "input_source": source,
        "outputs": outputs,
    }
