"""Commands a user ran that broke, each through the real entry point (in-process and as a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_subprocess

CNN = ROOT / "models" / "digits_cnn.onnx"
CALIB = ROOT / "models" / "digits_calib.npz"


@pytest.fixture(scope="module")
def small_calib(tmp_path_factory):
    d = np.load(CALIB)
    path = tmp_path_factory.mktemp("calib") / "c.npz"
    np.savez(path, input=d["input"][:32], labels=d["labels"][:32])
    return path


@pytest.mark.parametrize("criterion", ["taylor", "singularity", "dirichlet"])
def test_gradient_criteria_take_a_numeric_ratio(cli, tmp_path, small_calib, criterion):
    """Was: ValueError: Unknown format code 'g' for object of type 'str'."""
    extra = ["--dirichlet-steps", "3"] if criterion == "dirichlet" else []
    res = cli(CNN, tmp_path / "o.onnx", "--data", small_calib, "--criterion", criterion, "--ratio", "0.5",
              "--no-validate", "--quiet", "--report", tmp_path / "r.json", *extra)
    assert res.code == 0, res.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["criterion"] == criterion and report["channels_removed"] > 0


def test_taylor_numeric_ratio_as_a_subprocess(tmp_path, small_calib):
    res = run_subprocess(CNN, tmp_path / "o.onnx", "--data", small_calib, "--criterion", "taylor", "--ratio", "0.5",
                         "--no-validate", "--quiet")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    assert (tmp_path / "o.onnx").is_file()


def test_auto_leaves_ignored_groups_whole(cli, tmp_path):
    """Was: --ratio auto --ignore '.*' still removed 56 channels."""
    res = cli(CNN, tmp_path / "o.onnx", "--ratio", "auto", "--ignore", ".*", "--no-validate", "--quiet",
              "--report", tmp_path / "r.json")
    if res.code == 2:  # a clean refusal is acceptable too; silently ignoring is not
        res.assert_refused("--ignore")
        return
    assert res.code == 0, res.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["channels_removed"] == 0, report["groups"]


def test_auto_ignore_as_a_subprocess(tmp_path):
    res = run_subprocess(CNN, tmp_path / "o.onnx", "--ratio", "auto", "--ignore", ".*", "--no-validate",
                         "--report", tmp_path / "r.json", "--quiet")
    if res.code == 2:
        res.assert_refused("--ignore")
    else:
        assert res.code == 0, res.err
        assert json.loads((tmp_path / "r.json").read_text())["channels_removed"] == 0


def test_prune_without_validation_never_loads_onnxruntime():
    code = ("import sys, onnxprune\n"
            f"m, r = onnxprune.prune({str(CNN)!r}, ratio=0.3, validate=False)\n"
            "assert r['channels_removed'] > 0\n"
            "print('onnxruntime' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "False", res.stdout + res.stderr
