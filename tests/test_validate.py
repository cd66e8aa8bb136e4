"""Fidelity metrics on constructed outputs, tolerances, and `onnxprune validate` end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxprune.errors import OptionError
from onnxprune.validate.fidelity import Tolerances, classifier_shaped, output_metrics, saturation_note

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "models" / "digits_cnn.onnx"
CALIB = ROOT / "models" / "digits_calib.npz"
DOC = ROOT / "docs" / "report.md"


def run(*args):
    return subprocess.run([sys.executable, "-m", "onnxprune", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pruned") / "cnn_pruned.onnx"
    res = run(CNN, out, "--ratio", "0.3", "--allocation", "local", "--no-validate", "--quiet")
    assert res.returncode == 0, res.stderr
    return out


# --- metrics on constructed outputs -------------------------------------------------------------

def test_errors_cosine_and_snr_on_constructed_outputs():
    ref = np.array([[1.0, -1.0, 1.0, -1.0]] * 4, dtype=np.float32)  # signal power 1 per element
    out = ref + 0.1  # noise power 0.01 per element: SNR exactly 20 dB
    m = output_metrics(ref, out)
    assert m["snr_db"] == pytest.approx(20.0, abs=1e-4)
    assert m["max_abs"] == pytest.approx(0.1, rel=1e-5) and m["mean_abs"] == pytest.approx(0.1, rel=1e-5)
    assert m["max_rel"] == pytest.approx(0.1, rel=1e-5) and m["mean_rel"] == pytest.approx(0.1, rel=1e-5)
    assert m["cosine"] == pytest.approx(1 / np.sqrt(1.01), rel=1e-6)  # ref.out / (|ref||out|), mean noise orthogonal

    m = output_metrics(np.array([1.0, 0.0]), np.array([1.0, 1.0]))
    assert m["cosine"] == pytest.approx(1 / np.sqrt(2)) and m["snr_db"] == pytest.approx(0.0)
    assert "top1" not in m  # 1-D: not classifier-shaped

    same = output_metrics(ref, ref.copy())
    assert same["snr_db"] is None and same["max_abs"] == 0 and same["cosine"] == pytest.approx(1.0)


def test_topk_agreement_on_constructed_logits():
    ref = np.tile(np.arange(10, dtype=np.float32), (4, 1))  # every row predicts class 9, then 8, 7, ...
    out = ref.copy()
    out[0, 0] = 100.0   # row 0: top-1 becomes 0; class 9 still second -> within top-5
    out[1, 9] = -100.0  # row 1: class 9 drops to last -> not in top-5
    m = output_metrics(ref, out)
    assert m["top1"] == pytest.approx(0.5)
    assert m["top5"] == pytest.approx(0.75)
    # [N, classes, 1, 1] counts as classifier-shaped too; few classes: no top-5
    m4 = output_metrics(ref[:, :4, None, None], out[:, :4, None, None])
    assert m4["top1"] == pytest.approx(0.75) and "top5" not in m4
    assert classifier_shaped([8, 1000]) and classifier_shaped([8, 10, 1, 1])
    assert not classifier_shaped([8, 1]) and not classifier_shaped([8, 3, 16, 16]) and not classifier_shaped([8])


def test_saturation_note_only_for_saturated_probabilities():
    probs = np.full((8, 10), 1e-4, dtype=np.float32)
    probs[:, 3] = 1 - 9e-4
    assert "saturated softmax" in saturation_note(probs)
    assert "note" in output_metrics(probs, probs)
    soft = np.full((8, 10), 0.1, dtype=np.float32)  # probabilities, not saturated
    assert saturation_note(soft) is None
    assert saturation_note(np.random.default_rng(0).standard_normal((8, 10))) is None  # logits


# --- tolerances ----------------------------------------------------------------------------------

def test_tolerances_bare_default_and_per_output():
    tol = Tolerances(atol=["1e-3", "logits:0.5"], rtol=["0.1"], cosine=["probs:0.99"])
    assert tol.for_output("logits") == {"atol": 0.5, "rtol": 0.1}
    assert tol.for_output("other") == {"atol": 1e-3, "rtol": 0.1}
    assert tol.for_output("probs") == {"atol": 1e-3, "rtol": 0.1, "cosine": 0.99}
    with pytest.raises(OptionError, match="unknown output"):
        tol.check_names(["logits", "other"])
    for bad in (["x"], ["a:b"], ["-1"], ["nan"]):
        with pytest.raises(OptionError, match="--atol"):
            Tolerances(atol=bad)
    assert not Tolerances()


def test_tolerance_rule_is_polygraphy_elementwise():
    ref = np.array([100.0, 1.0, 0.0])
    out = np.array([101.0, 1.5, 0.0])  # abs errors 1, 0.5, 0; rel errors 0.01, 0.5, 0
    def mismatched(**kw):
        tol = Tolerances(**{k: [str(v)] for k, v in kw.items()})
        (check,) = tol.check("y", ref, out, output_metrics(ref, out))
        return check["mismatched"], check["passed"]
    assert mismatched(atol=0.6) == (1, False)             # 100 vs 101 fails absolute only
    assert mismatched(rtol=0.02) == (1, False)            # 1 vs 1.5 fails relative only
    assert mismatched(atol=0.6, rtol=0.02) == (0, True)   # each element is within one of them
    assert mismatched(atol=1.0) == (0, True)
    nan_out = out.copy()
    nan_out[2] = np.nan
    (check,) = Tolerances(atol=["10"]).check("y", ref, nan_out, output_metrics(ref, nan_out))
    assert check["mismatched"] == 1 and not check["passed"]
    tol = Tolerances(cosine=["0.9999999"])
    (check,) = tol.check("y", ref, out, output_metrics(ref, out))
    assert check["check"] == "cosine" and not check["passed"]


# --- the CLI -------------------------------------------------------------------------------------

def test_validate_states_metrics_and_fails_a_stated_tolerance_with_exit_1(tmp_path, pruned):
    rep = tmp_path / "r.json"
    res = run("validate", CNN, pruned, "--no-latency", "--atol", "1e-6", "--min-top1", "0.5", "--json", rep)
    assert res.returncode == 1, res.stderr
    assert "FAIL  atol 1e-06" in res.stdout and "result: FAIL" in res.stdout
    report = json.loads(rep.read_text())
    logits = report["validation"]["outputs"]["logits"]
    for key in ("max_abs", "mean_abs", "max_rel", "mean_rel", "cosine", "snr_db", "top1", "top5"):
        assert isinstance(logits[key], float), key
    checks = {c["check"]: c for c in logits["checks"]}
    assert not checks["atol/rtol"]["passed"] and checks["atol/rtol"]["mismatched"] > 0
    assert checks["top1"]["min"] == 0.5 and checks["top1"]["value"] == logits["top1"]
    assert report["validation"]["passed"] is False and report["passed"] is False
    assert report["params_after"] < report["params_before"] and report["file_bytes_after"] < report["file_bytes_before"]
    assert "latency" not in report

    # a per-output tolerance overrides the bare default: the loose one for logits passes
    res = run("validate", CNN, pruned, "--no-latency", "--atol", "1e-6", "--atol", "logits:1000")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "pass  atol 1000" in res.stdout and "result: PASS" in res.stdout


def test_validate_without_tolerances_reports_metrics_only_and_latency(tmp_path, pruned):
    rep = tmp_path / "r.json"
    res = run("validate", CNN, pruned, "--data", CALIB, "--latency-runs", "5", "--json", rep)
    assert res.returncode == 0, res.stderr
    report = json.loads(rep.read_text())
    assert report["passed"] is None and report["validation"]["passed"] is None
    assert report["validation"]["inputs"]["input"]["shape"] == [256, 1, 16, 16]
    lat = report["latency"]
    assert [s["threads"] for s in lat["settings"]][0] == 1 and all(s["runs"] == 5 for s in lat["settings"])
    assert lat["flops_speedup"] == pytest.approx(report["flops_before"] / report["flops_after"])
    for s in lat["settings"]:  # every reported figure is a positive time or ratio
        assert min(s["speedup"], s["pruned_ms"]["median"], s["pruned_ms"]["p10"]) > 0
    assert re.search(r"^\s+1\s+[\d.]+ \[", res.stdout, re.M)  # the 1-thread latency row
    assert [l["channels_after"] < l["channels_before"] for l in report["layers"]][:2] == [True, True]


def test_saved_inputs_replay_exactly(tmp_path, pruned):
    saved, a, b = tmp_path / "in.npz", tmp_path / "a.json", tmp_path / "b.json"
    assert run("validate", CNN, pruned, "--no-latency", "--seed", "7", "--save-inputs", saved, "--json", a).returncode == 0
    assert sorted(np.load(saved).files) == ["input"]
    assert run("validate", CNN, pruned, "--no-latency", "--load-inputs", saved, "--json", b).returncode == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["validation"]["outputs"] == rb["validation"]["outputs"]
    assert rb["validation"]["input_source"].startswith("saved inputs")


def test_unrelated_models_fail_cleanly(tmp_path):
    other = tmp_path / "other.onnx"
    x = onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Relu", ["image"], ["logits"])],
                                                            "g", [x], [y]), opset_imports=[onnx.helper.make_opsetid("", 17)]), other)
    res = run("validate", CNN, other)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnxprune: error: the models have mismatched inputs"), res.stderr
    assert "'input' ['N', 1, 16, 16]" in lines[0] and "'image' [1, 3, 8, 8]" in lines[0]
    assert "Traceback" not in res.stderr
    res = run("validate", CNN, tmp_path / "missing.onnx")
    assert res.returncode == 2 and "missing.onnx: no such file" in res.stderr and "Traceback" not in res.stderr
    res = run("validate", CNN, CNN, "--no-latency", "--atol", "nosuch:1")
    assert res.returncode == 2 and "unknown output" in res.stderr


def test_json_keys_are_documented(tmp_path, pruned):
    """Every key the validate report emits is documented in docs/report.md (the stable-keys promise)."""
    rep = tmp_path / "r.json"
    assert run("validate", CNN, pruned, "--latency-runs", "3", "--min-cosine", "0", "--json", rep).returncode == 0
    doc = DOC.read_text()
    documented = set(re.findall(r"`([a-z0-9_]+)`", doc))

    def keys(obj, skip_children=False):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if not skip_children:
                    yield k
                # inputs/outputs are keyed by tensor name, 'batch' by input name
                yield from keys(v, skip_children=k in ("inputs", "outputs", "batch", "verdicts"))
        elif isinstance(obj, list):
            for v in obj:
                yield from keys(v)
    missing = sorted(set(keys(json.loads(rep.read_text()))) - documented)
    assert not missing, f"undocumented report keys: {missing}"


def test_plot_written(tmp_path, pruned):
    import matplotlib  # noqa: F401  # in the test extra: a missing install must fail, not skip
    png = tmp_path / "p.png"
    assert run("validate", CNN, pruned, "--latency-runs", "3", "--plot", png, "--quiet").returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    from onnxprune.report import write_plot
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(OptionError, match=r"onnxprune\[plot\]"):
        write_plot({"layers": []}, "x.png")


def test_python_api_validate_and_prune_with_checks():
    import onnxprune
    from onnxprune.validate import ValidationOptions

    for _ in range(2):  # the function stays reachable after onnxprune.validate (the package) is imported
        rep = onnxprune.validate_models(CNN, CNN, ValidationOptions(tolerances=Tolerances(atol=["0"])))
        assert rep["passed"] is True and rep["validation"]["outputs"]["logits"]["snr_db"] is None
    # no output path: latency and edge checks run on a temp file of the pruned model
    _, rep = onnxprune.prune(CNN, ratio=0.3, checks=ValidationOptions(latency=True, latency_runs=2, threads=[1]))
    assert rep["latency"]["settings"][0]["runs"] == 2 and rep["passed"] is None
    with pytest.raises(OptionError, match="give an output path"):
        onnxprune.prune(CNN, ratio=0.3, checks=ValidationOptions(quantize="dynamic"))


def test_model_with_a_hidden_fixed_batch_falls_back_to_batch_1(tmp_path):
    """Declared batch is free, but a Reshape to a literal [1, 4] fixes it: synthetic inputs use batch 1."""
    from onnx import TensorProto, helper, numpy_helper

    from onnxprune.validate import ValidationOptions, validate_models

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["y"])],
                              "g", [x], [y], [numpy_helper.from_array(np.array([1, 4], np.int64), "shape")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    rep = validate_models(path, path, ValidationOptions(latency=True, latency_runs=2, threads=[1]))
    assert rep["validation"]["inputs"]["x"]["shape"] == [1, 4]
    assert "batch 1 (the model fails at batch 8)" in rep["validation"]["input_source"]
    assert rep["latency"]["batch"] == {"x": [1, 4]}
