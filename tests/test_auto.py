"""--ratio auto: lossless first, then the gaussian rule with the largest k within the fidelity budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import onnxprune
from onnxprune.auto import Budget, fidelity
from onnxprune.errors import InputError, OptionError

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "models" / "digits_cnn.onnx"
CALIB = ROOT / "models" / "digits_calib.npz"


def test_fidelity_budgets_classifiers_by_top1_and_others_by_cosine():
    ref = [np.array([[3.0, 1.0], [0.0, 2.0]]), np.ones((2, 3, 4))]
    same_top1 = [np.array([[1.0, 0.9], [0.0, 5.0]]), np.ones((2, 3, 4))]
    fid = fidelity(ref, same_top1)
    assert fid["top1"] == 1.0 and fid["cosine_other"] == pytest.approx(1.0) and fid["cosine"] < 0.99
    assert Budget().met(fid)
    flipped = [np.array([[1.0, 3.0], [0.0, 2.0]]), -np.ones((2, 3, 4))]
    fid = fidelity(ref, flipped)
    assert fid["top1"] == 0.5 and fid["cosine_other"] == pytest.approx(-1.0) and not Budget().met(fid)


def test_auto_with_data_stays_within_its_budget(tmp_path):
    _, report = onnxprune.prune(CNN, ratio="auto", data=CALIB, output=tmp_path / "auto.onnx")
    auto = report["auto"]
    assert auto["inputs"].startswith("data file") and "top-1" in auto["budget"]
    assert auto["gaussian_k"] > 0 and report["flops_after"] < report["flops_before"]
    chosen = [t for t in auto["search"] if t["k"] == auto["gaussian_k"]]
    assert chosen and chosen[-1]["within_budget"] and chosen[-1]["top1"] >= 0.99
    # every k larger than the chosen one that was tried is over budget, every smaller one within
    assert all(not t["within_budget"] for t in auto["search"] if t["k"] > auto["gaussian_k"])
    assert all(t["within_budget"] for t in auto["search"] if t["k"] < auto["gaussian_k"])
    assert "largest tried within the budget" in auto["stopped"]


def test_auto_option_errors(tmp_path):
    with pytest.raises(OptionError, match="auto"):
        onnxprune.prune(CNN, ratio="auto", remove=["x:1"])
    np.savez(tmp_path / "bad.npz", wrong=np.zeros((4, 1, 16, 16), np.float32))
    with pytest.raises(InputError, match="no array for model input 'input'"):
        onnxprune.prune(CNN, ratio="auto", data=tmp_path / "bad.npz")
    np.savez(tmp_path / "shape.npz", input=np.zeros((4, 3, 16, 16), np.float32))
    with pytest.raises(InputError, match="expects"):
        onnxprune.prune(CNN, ratio="auto", data=tmp_path / "shape.npz")
    res = subprocess.run([sys.executable, "-m", "onnxprune", str(CNN), str(tmp_path / "o.onnx"), "--ratio", "auto",
                          "--data", str(tmp_path / "missing.npz")], capture_output=True, text=True)
    assert res.returncode == 2 and "no such data file" in res.stderr and "Traceback" not in res.stderr
