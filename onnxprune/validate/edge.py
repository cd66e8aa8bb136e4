"""Edge readiness of a pruned model: the deployment steps after pruning still work.

Each check returns ``{"passed": bool, "reason": str, ...}`` and never raises for a failing model: a
failure is a finding to report, not an error of the user's."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from onnxprune.runtime import ORT_FORMAT_CONVERTER, mobile_usability_checker, quantization, run_outputs, session
from onnxprune.validate.fidelity import output_metrics

# A quantized model "agrees" with the float model when every classifier-shaped output keeps at least
# this top-1 agreement and every other output this cosine. int8 costs some accuracy; these catch a
# broken model, not a small loss.
QUANT_MIN_TOP1 = 0.9
QUANT_MIN_COSINE = 0.95
# Static quantization calibrates on at most this many samples (a few dozen suffice for min/max).
CALIBRATION_SAMPLES = 32
QUANT_MODES = ("dynamic", "static")


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:300] if text else type(exc).__name__


@contextlib.contextmanager
def _as_onnx_file(model_path: Path):
    """The model under a name ending in .onnx (ORT's converter only picks those up)."""
    model_path = Path(model_path).resolve()
    if model_path.suffix.lower() == ".onnx":
        yield model_path
        return
    with tempfile.TemporaryDirectory(prefix="onnxprune-") as tmp:
        link = Path(tmp) / "model.onnx"
        link.symlink_to(model_path)
        yield link


def agreement(reference: list[np.ndarray], outputs: list[np.ndarray], names: list[str]) -> dict:
    """Worst cosine over all outputs and worst top-1 agreement over classifier-shaped ones, with the
    bar each is held to (QUANT_MIN_*)."""
    cosine, top1 = 1.0, None
    for r, o in zip(reference, outputs):
        m = output_metrics(r, o)
        cosine = min(cosine, m["cosine"])
        if "top1" in m:
            top1 = m["top1"] if top1 is None else min(top1, m["top1"])
    ok = (top1 is None or top1 >= QUANT_MIN_TOP1) and (top1 is not None or cosine >= QUANT_MIN_COSINE)
    return {"cosine": cosine, "top1": top1, "agrees": bool(ok),
            "rule": f"top-1 agreement >= {QUANT_MIN_TOP1:g} on classifier outputs, else cosine >= {QUANT_MIN_COSINE:g}",
            "outputs": names}


def ort_format_check(model_path, feeds: dict) -> dict:
    """Convert to the ORT format (``python -m onnxruntime.tools.convert_onnx_models_to_ort``, in a
    subprocess: it prints and may exit) and check the .ort file loads in an InferenceSession and runs."""
    with tempfile.TemporaryDirectory(prefix="onnxprune-ort-") as out_dir, _as_onnx_file(model_path) as src:
        cmd = [sys.executable, "-m", ORT_FORMAT_CONVERTER, str(src),
               "--output_dir", out_dir, "--optimization_style", "Fixed"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(Path(out_dir).rglob("*.ort"))
        if res.returncode != 0 or not found:
            err = (res.stderr.strip() or res.stdout.strip() or "no .ort file written")
            return {"passed": False, "reason": f"conversion failed: {_first_line(err)}"}
        size = found[0].stat().st_size
        try:
            sess = session(found[0], role="ORT-format model")
            run_outputs(sess, feeds)
        except Exception as exc:
            return {"passed": False, "reason": f"the .ort file does not load or run: {_first_line(exc)}",
                    "ort_bytes": size}
    return {"passed": True, "reason": "converted to the ORT format; the .ort file loads and runs", "ort_bytes": size}


_VERDICT = re.compile(r"Model should perform well with (.+?) (as is|if modified to have fixed input shapes): (\w+)")


def mobile_usability_check(model_path) -> dict:
    """``onnxruntime.tools.check_onnx_model_mobile_usability``'s analysis; passes when it runs. Its
    verdicts (can NNAPI / CoreML take the model, as is or with fixed input shapes) are informational:
    a CPU-only deployment needs neither."""
    usability_checker = mobile_usability_checker()
    log = logging.getLogger("onnxprune.mobile_usability")
    log.setLevel(logging.INFO)
    log.propagate = False
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    log.addHandler(handler)
    try:
        with _as_onnx_file(model_path) as src, contextlib.redirect_stdout(io.StringIO()):
            may_use_eps = usability_checker.analyze_model(src, skip_optimize=False, logger=log)
    except Exception as exc:
        return {"passed": False, "reason": f"the usability checker fails: {_first_line(exc)}"}
    finally:
        log.removeHandler(handler)
    verdicts = {}
    for ep, when, verdict in _VERDICT.findall(buf.getvalue()):
        verdicts.setdefault(ep, {})["as_is" if when == "as is" else "fixed_shapes"] = verdict
    summary = "; ".join(f"{ep}: {v.get('as_is', '?')}" + (f" ({v['fixed_shapes']} with fixed input shapes)"
                                                            if "fixed_shapes" in v else "")
                        for ep, v in verdicts.items())
    return {"passed": True, "reason": f"checked; NNAPI/CoreML suitability: {summary or 'not stated'}",
            "nnapi_or_coreml_worth_trying": bool(may_use_eps), "verdicts": verdicts}


def calibration_samples(feeds: dict[str, np.ndarray], limit: int = CALIBRATION_SAMPLES) -> list[dict]:
    """Feeds split into single samples along the batch axis (what a CalibrationDataReader hands out)."""
    if not feeds or any(v.ndim == 0 for v in feeds.values()):
        return [feeds]
    n = min(v.shape[0] for v in feeds.values())
    return [{k: v[i:i + 1] for k, v in feeds.items()} for i in range(min(n, limit))] or [feeds]


def quantize_model(model_path, out_path, mode: str, calibration: list[dict] | None = None) -> str:
    """Write an int8 model: shape inference and ORT's pre-processing first (quant_pre_process; without
    symbolic shape inference if that fails), then quantize_dynamic or quantize_static (QDQ, calibrated
    on ``calibration``, one dict of inputs per sample). Returns how the pre-processing went."""
    q = quantization()
    CalibrationDataReader, QuantFormat = q.CalibrationDataReader, q.QuantFormat
    quant_pre_process = q.shape_inference.quant_pre_process

    if mode not in QUANT_MODES:
        raise ValueError(f"quantization mode must be one of {QUANT_MODES}, got {mode!r}")
    with tempfile.TemporaryDirectory(prefix="onnxprune-q-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        prep = "quant_pre_process"
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                quant_pre_process(str(model_path), str(pre))
        except Exception as exc:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    quant_pre_process(str(model_path), str(pre), skip_symbolic_shape=True)
                prep = f"quant_pre_process without symbolic shape inference ({_first_line(exc)})"
            except Exception as exc2:
                pre, prep = Path(model_path), f"none: pre-processing failed ({_first_line(exc2)})"
        if mode == "dynamic":
            q.quantize_dynamic(str(pre), str(out_path))
        else:
            class Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.samples = iter(calibration or [])

                def get_next(self):
                    return next(self.samples, None)

            q.quantize_static(str(pre), str(out_path), Reader(), quant_format=QuantFormat.QDQ)
    return prep


def quantization_check(model_path, mode: str, feeds: dict, calibration: list[dict] | None = None,
                       out_path=None) -> dict:
    """Quantize (to ``out_path`` if given, else a temp file), run the int8 model on ``feeds`` and state
    its agreement with the float model."""
    with tempfile.TemporaryDirectory(prefix="onnxprune-q-") as tmp:
        target = Path(out_path) if out_path is not None else Path(tmp) / f"int8_{mode}.onnx"
        try:
            prep = quantize_model(model_path, target, mode, calibration)
        except Exception as exc:
            return {"passed": False, "reason": f"{mode} quantization fails: {_first_line(exc)}"}
        result = {"preprocess": prep, "bytes": target.stat().st_size}
        if out_path is not None:
            result["path"] = str(target)
        try:
            float_sess = session(model_path, role="pruned model")
            reference = run_outputs(float_sess, feeds)
            outputs = run_outputs(session(target, role="quantized model"), feeds)
        except Exception as exc:
            return {**result, "passed": False, "reason": f"the int8 model does not run: {_first_line(exc)}"}
        agree = agreement(reference, outputs, [o.name for o in float_sess.get_outputs()])
    what = (f"top-1 agreement {agree['top1']:.3f}, cosine {agree['cosine']:.4f}" if agree["top1"] is not None
            else f"cosine {agree['cosine']:.4f}")
    return {**result, "passed": agree["agrees"], "agreement": agree,
            "reason": f"int8 ({mode}) runs; with the float model: {what} "
                      f"({'meets' if agree['agrees'] else 'misses'} {agree['rule']})"}


def edge_report(model_path, feeds: dict, calibration: list[dict] | None = None) -> dict:
    """Every edge check on one model file."""
    checks = {
        "ort_format": ort_format_check(model_path, feeds),
        "mobile_usability": mobile_usability_check(model_path),
        **{f"quantize_{mode}": quantization_check(model_path, mode, feeds, calibration) for mode in QUANT_MODES},
    }
    return {**checks, "passed": all(c["passed"] for c in checks.values())}


def int8_path(output) -> Path:
    """Where ``--quantize`` writes: OUT with .onnx replaced by .int8.onnx (appended if OUT has no .onnx)."""
    out = Path(output)
    stem = out.name[:-5] if out.name.lower().endswith(".onnx") else out.name
    return out.with_name(stem + ".int8.onnx")


__all__ = ["edge_report", "int8_path", "mobile_usability_check", "ort_format_check", "quantization_check",
           "quantize_model", "calibration_samples", "agreement"]
