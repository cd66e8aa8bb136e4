"""--target-flops / --target-params: the predicted size of a plan is the size after surgery, and the
chosen ratio is the smallest that meets the target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from zoo import light_model

import onnxprune
from onnxprune.errors import OptionError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["digits_cnn", "digits_resnet", "shufflenet", "densenet121", "inception_v1"])
@pytest.mark.parametrize("target", [{"target_flops": 0.5}, {"target_params": 0.6},
                                    {"target_flops": 0.6, "allocation": "global", "normalize": "lamp"}])
def test_predicted_size_is_the_size_after_surgery_and_meets_the_target(name, target):
    model = ROOT / "models" / f"{name}.onnx" if name.startswith("digits") else light_model(name)
    _, report = onnxprune.prune(model, validate=False, **target)
    t = report["target"]
    assert t["predicted"] == {"flops": report["flops_after"], "params": report["params_after"]}
    key = "flops" if "target_flops" in target else "params"
    assert t["predicted"][key] <= t["asked"][key]
    # one step smaller would not have met it (bisection to 1e-4 in the ratio)
    _, less = onnxprune.prune(model, validate=False, ratio=max(0.0, t["ratio"] - 2e-4),
                              **{k: v for k, v in target.items() if not k.startswith("target")})
    assert less[f"{key}_after"] > t["asked"][key] or less[f"{key}_after"] == report[f"{key}_after"]


def test_target_errors(tmp_path):
    cnn = ROOT / "models" / "digits_cnn.onnx"
    with pytest.raises(OptionError, match="cannot be reached"):
        onnxprune.prune(cnn, target_flops=100)  # 100 MACs: the frozen classifier alone is more
    with pytest.raises(OptionError, match="no --ratio"):
        onnxprune.prune(cnn, ratio=0.2, target_flops=0.5)
    res = subprocess.run([sys.executable, "-m", "onnxprune", str(cnn), str(tmp_path / "o.onnx"), "--target-flops",
                          "half"], capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "--target-flops 'half'" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "onnxprune", str(cnn), str(tmp_path / "o.onnx"), "--target-flops",
                          "3.5M", "--no-validate"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert "target" in res.stdout


def test_target_latency_times_candidates_and_reports_them():
    _, report = onnxprune.prune(ROOT / "models" / "digits_cnn.onnx", target_latency="0.9x", validate=False)
    t = report["target"]
    lat = t["latency"]
    assert lat["threads"] == 1 and lat["batch"] == 1 and lat["original_ms"] > 0
    assert t["asked"]["latency"] == pytest.approx(0.9 * lat["original_ms"], rel=1e-3)
    # the chosen plan is one the search timed within the target (the figures are measurements)
    assert lat["pruned_ms"] <= t["asked"]["latency"] and 0 < t["ratio"] <= 0.99


@pytest.mark.parametrize("bad", ["fast", "1.5x", "-3", "0"])
def test_target_latency_errors(bad):
    with pytest.raises(OptionError, match="--target-latency"):
        onnxprune.prune(ROOT / "models" / "digits_cnn.onnx", target_latency=bad)


def test_targets_use_a_gradient_criterion():
    """Gradients are scored once; the size search then allocates by those scores."""
    _, report = onnxprune.prune(ROOT / "models" / "digits_cnn.onnx", criterion="taylor", target_flops=0.5,
                                data=ROOT / "models" / "digits_calib.npz", validate=False)
    assert report["criterion"] == "taylor" and "by score" in " ".join(g["why"] for g in report["groups"])
    assert report["target"]["predicted"]["flops"] == report["flops_after"] <= report["target"]["asked"]["flops"]
