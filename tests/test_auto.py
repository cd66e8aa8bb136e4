"""--ratio auto: lossless first, then the most pruning (a ratio, or gaussian's k) within the fidelity budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import onnxprune
from onnxprune.config import TargetConfig
from onnxprune.errors import InputError, OptionError
from onnxprune.validate.measures import wilson_interval
from onnxprune.validate.tasks import TaskBudget

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "models" / "digits_cnn.onnx"
CALIB = ROOT / "models" / "digits_calib.npz"


def test_budget_checks_classifiers_by_top1_and_others_by_cosine():
    hidden = np.random.default_rng(0).standard_normal((2, 3, 64))  # no class wins: hidden states, not CTC
    ref = [np.array([[3.0, 1.0], [0.0, 2.0]]), hidden]
    budget = TaskBudget.choose(["logits", "hidden"], ref, TargetConfig(auto=True), synthetic=False, batch=2)
    assert [c.kind for c in budget.checks] == ["top1", "cosine"]
    same_top1 = [np.array([[1.0, 0.9], [0.0, 5.0]]), hidden]
    assert budget.met(budget.measure(ref, same_top1))
    flipped = [np.array([[1.0, 3.0], [0.0, 2.0]]), -hidden]
    measured = budget.measure(ref, flipped)
    assert measured["top1:logits"] == 0.5 and measured["cosine:hidden"] == pytest.approx(-1.0)
    assert not budget.met(measured)


# --allocation global: one ratio raised in steps (the default allocates by measured sensitivity, in
# test_auto_planner.py); MACs as the objective, so the search does not depend on timing.
@pytest.mark.parametrize("criterion, allocation, key", [("l1", "global", "ratio"), ("gaussian", None, "k")])
def test_auto_with_data_stays_within_its_budget(tmp_path, criterion, allocation, key):
    _, report = onnxprune.prune(CNN, ratio="auto", criterion=criterion, data=CALIB, output=tmp_path / "auto.onnx",
                                allocation=allocation, auto_objective="macs")
    auto = report["auto"]
    assert auto["inputs"].startswith("data file") and "top-1" in auto["budget"]
    assert auto["searched"] == key and auto[key] > 0 and report["flops_after"] < report["flops_before"]
    chosen = [t for t in auto["search"] if t[key] == auto[key]]
    assert chosen and chosen[-1]["within_budget"] and chosen[-1]["top1:logits"] >= 0.99
    # every larger value that was tried is over budget, every smaller one within
    assert all(not t["within_budget"] for t in auto["search"] if t[key] > auto[key])
    assert all(t["within_budget"] for t in auto["search"] if t[key] < auto[key])
    assert "largest tried within the budget" in auto["stopped"]
    # what the sample count can tell: every sample no fit saw agreed, and how low the agreement may still be
    samples = auto["samples"]
    fit, held = samples["refit"][1], samples["budget"][1] - samples["budget"][0]
    assert samples["refit"][0] == 0 and samples["budget"][1] == samples["total"]
    low = wilson_interval(1.0, fit + held)[0]
    assert f"measured on {fit + held} samples no fit saw" in auto["evidence"] and f"{low:.3f}" in auto["evidence"]


def test_auto_without_data_meets_the_digits_target(tmp_path):
    """The issue's acceptance: no data, >= 30% of MACs removed, test accuracy within 1 point."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import digits_models as dm
    finally:
        sys.path.pop(0)
    out = tmp_path / "auto.onnx"
    _, report = onnxprune.prune(CNN, ratio="auto", output=out, auto_objective="macs")
    auto = report["auto"]
    assert "synthetic" in auto["inputs"] and "BatchNormalization" in auto["inputs"]
    assert auto["budget"].startswith("cosine >=") and "gave cosine" in auto["stopped"]
    test = np.load(ROOT / "models" / "digits_test.npz")
    before = dm.onnx_accuracy(str(CNN), test["input"], test["labels"])
    after = dm.onnx_accuracy(str(out), test["input"], test["labels"])
    assert 1 - report["flops_after"] / report["flops_before"] >= 0.30
    assert after >= before - 0.01


def test_input_moments_match_the_first_batchnorm():
    """The noise auto uses without data has the mean and spread the first BN implies (the digits
    inputs have mean -0.39 and std 0.64)."""
    from onnxprune.api import load_normalized
    from onnxprune.auto import input_moments

    (mu, sigma), = input_moments(load_normalized(CNN)).values()
    assert mu.shape == sigma.shape == (1,)
    test = np.load(ROOT / "models" / "digits_test.npz")["input"]
    assert abs(mu[0] - test.mean()) < 0.1 and abs(sigma[0] - test.std()) < 0.05


def test_auto_option_errors(tmp_path):
    with pytest.raises(OptionError, match="auto"):
        onnxprune.prune(CNN, ratio="auto", remove=["x:1"])
    with pytest.raises(OptionError, match="lumping"):
        onnxprune.prune(CNN, ratio="auto", criterion="lumping")
    np.savez(tmp_path / "bad.npz", wrong=np.zeros((4, 1, 16, 16), np.float32))
    with pytest.raises(InputError, match="no array for model input 'input'"):
        onnxprune.prune(CNN, ratio="auto", data=tmp_path / "bad.npz")
    np.savez(tmp_path / "shape.npz", input=np.zeros((4, 3, 16, 16), np.float32))
    with pytest.raises(InputError, match="expects"):
        onnxprune.prune(CNN, ratio="auto", data=tmp_path / "shape.npz")
    res = subprocess.run([sys.executable, "-m", "onnxprune", str(CNN), str(tmp_path / "o.onnx"), "--ratio", "auto",
                          "--data", str(tmp_path / "missing.npz")], capture_output=True, text=True)
    assert res.returncode == 2 and "no such data file" in res.stderr and "Traceback" not in res.stderr


def test_auto_keeps_the_round_to_it_is_given():
    _, report = onnxprune.prune(CNN, ratio="auto", round_to=8, validate=False, auto_objective="macs")
    assert "round-to 8" in report["auto"]["allocation"]
    touched = [g for g in report["groups"] if g["removed"]]
    assert touched and all(g["kept"] % 8 == 0 for g in touched)
