"""Edge readiness on the bundled digits CNN: ORT-format conversion, mobile usability, int8 quantization."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxprune.validate.edge import (
    calibration_samples,
    int8_path,
    mobile_usability_check,
    ort_format_check,
    quantization_check,
    quantize_model,
)
from onnxprune.validate.fidelity import session, validation_feeds

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "models" / "digits_cnn.onnx"
CALIB = ROOT / "models" / "digits_calib.npz"


@pytest.fixture(scope="module")
def feeds():
    return validation_feeds(session(CNN), CALIB)[0]


def test_ort_format_conversion_gives_a_loadable_file(tmp_path, feeds, monkeypatch):
    res = ort_format_check(CNN, feeds)
    assert res["passed"], res
    assert res["ort_bytes"] > 0
    # the check really loads the converted file: make the converter write garbage and it fails
    import onnxprune.validate.edge as edge
    real_run = subprocess.run

    def corrupting_run(cmd, **kw):
        out = real_run(cmd, **kw)
        for f in Path(cmd[cmd.index("--output_dir") + 1]).rglob("*.ort"):
            f.write_bytes(b"not a flatbuffer")
        return out
    monkeypatch.setattr(edge.subprocess, "run", corrupting_run)
    bad = ort_format_check(CNN, feeds)
    assert not bad["passed"] and "does not load or run" in bad["reason"]


def test_ort_format_conversion_failure_is_reported_not_raised(tmp_path, feeds):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    res = ort_format_check(junk, feeds)
    assert res["passed"] is False and res["reason"].startswith("conversion failed")


def test_mobile_usability_check_runs(feeds):
    res = mobile_usability_check(CNN)
    assert res["passed"], res
    assert {"NNAPI", "CoreML NeuralNetwork"} <= set(res["verdicts"])
    assert all(v["as_is"] in ("YES", "NO", "MAYBE") for v in res["verdicts"].values())


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_quantized_models_run_and_agree(tmp_path, feeds, mode):
    out = tmp_path / f"q_{mode}.onnx"
    res = quantization_check(CNN, mode, feeds, calibration_samples(feeds), out)
    assert res["passed"], res
    assert res["agreement"]["top1"] >= 0.9 and res["path"] == str(out)
    q = onnx.load(out)
    ops = {n.op_type for n in q.graph.node}
    assert ops & ({"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"} if mode == "dynamic"
                  else {"QuantizeLinear", "DequantizeLinear"}), ops
    # independent of the check: the file runs in onnxruntime and mostly agrees with the float model
    x = feeds["input"][:64]
    ref = ort.InferenceSession(str(CNN)).run(None, {"input": x})[0]
    got = ort.InferenceSession(str(out)).run(None, {"input": x})[0]
    assert np.mean(ref.argmax(1) == got.argmax(1)) >= 0.9


def test_quantization_failure_is_reported(tmp_path, feeds):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    res = quantization_check(junk, "dynamic", feeds)
    assert res["passed"] is False and "quantization fails" in res["reason"]
    with pytest.raises(ValueError):
        quantize_model(CNN, tmp_path / "x.onnx", "int4")


def test_int8_path():
    assert int8_path("a/b/model.onnx") == Path("a/b/model.int8.onnx")
    assert int8_path("model.ONNX") == Path("model.int8.onnx")
    assert int8_path("model") == Path("model.int8.onnx")


def test_prune_with_quantize_and_edge(tmp_path):
    out, rep = tmp_path / "o.onnx", tmp_path / "r.json"
    res = subprocess.run([sys.executable, "-m", "onnxprune", str(CNN), str(out), "--ratio", "0.3", "--quantize",
                          "static", "--data", str(CALIB), "--edge", "--report", str(rep)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    q = tmp_path / "o.int8.onnx"
    assert q.is_file() and str(q) in res.stdout
    report = json.loads(rep.read_text())
    assert report["quantized"]["path"] == str(q) and report["quantized"]["passed"]
    assert report["edge"]["passed"] and set(report["edge"]) == {"ort_format", "mobile_usability", "quantize_dynamic",
                                                                "quantize_static", "passed"}
    assert report["passed"] is True
    ort.InferenceSession(str(q)).run(None, {"input": np.zeros((1, 1, 16, 16), np.float32)})
    # --quantize without validation is refused before anything is written
    res = subprocess.run([sys.executable, "-m", "onnxprune", str(CNN), str(tmp_path / "n.onnx"), "--quantize", "dynamic",
                          "--no-validate"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 2 and "drop --no-validate" in res.stderr and not (tmp_path / "n.onnx").exists()
