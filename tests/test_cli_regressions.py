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


def _auto(cli, tmp_path, tiny_files, *extra) -> dict:
    model, calib = tiny_files
    # MACs as auto's objective: on a model that runs in microseconds a timed speedup is noise
    res = cli(model, tmp_path / "o.onnx", "--ratio", "auto", "--data", calib, "--budget-top1", "0.3", "--quiet",
              "--auto-objective", "macs", "--report", tmp_path / "r.json", *extra)
    assert res.code == 0, res.err
    return json.loads((tmp_path / "r.json").read_text())


def _group(report: dict, name: str) -> dict:
    return next(g for g in report["groups"] if g["name"] == name)


def test_auto_honours_allocation_options(cli, tmp_path, tiny_files):
    """Was: --ratio auto dropped --ignore, --override, --max-group-ratio and --allocation."""
    plain = _auto(cli, tmp_path, tiny_files)
    # with --data auto allocates by measured sensitivity unless --allocation is given
    assert plain["channels_removed"] > 0 and plain["allocation"]["mode"] == "sensitivity"
    assert _group(_auto(cli, tmp_path, tiny_files, "--ignore", "conv1"), "conv1")["removed"] == 0
    assert _group(_auto(cli, tmp_path, tiny_files, "--override", "conv1=0.5"), "conv1")["removed"] == 4
    capped = _auto(cli, tmp_path, tiny_files, "--max-group-ratio", "0.125")
    assert max(g["removed"] for g in capped["groups"]) <= 1
    local = _auto(cli, tmp_path, tiny_files, "--allocation", "local")
    assert local["allocation"]["mode"] == "local" and local["auto"]["allocation"].startswith("local")
    assert _group(local, "conv1")["removed"] == _group(local, "conv2")["removed"]  # one ratio in every group


def test_auto_honours_transforms(cli, tmp_path, tiny_files):
    """Was: --ratio auto dropped --compensate and --merge (now on by default; --no-merge turns it off)."""
    merged = _auto(cli, tmp_path, tiny_files)
    assert "folded into nearly proportional" in " ".join(g["why"] for g in merged["groups"])
    plain = _auto(cli, tmp_path, tiny_files, "--no-merge")
    assert "folded into nearly proportional" not in " ".join(g["why"] for g in plain["groups"])
    assert plain["transforms"]["merge"] is False
    compensated = _auto(cli, tmp_path, tiny_files, "--no-merge", "--compensate")
    assert "compensated" in " ".join(g["why"] for g in compensated["groups"])


def test_auto_honours_gaussian_feature(cli, tmp_path, tiny_files):
    """Was: --ratio auto --criterion gaussian always fitted l1."""
    base = _auto(cli, tmp_path, tiny_files, "--criterion", "gaussian")
    feature = _auto(cli, tmp_path, tiny_files, "--criterion", "gaussian", "--gaussian-feature", "sum")
    whys = " ".join(g["why"] for g in feature["groups"])
    assert "sum within" in whys and "l1 within" in " ".join(g["why"] for g in base["groups"])


@pytest.mark.parametrize("extra, fragment", [
    (["--ratio", "auto", "--gaussian-k", "0.5", "--criterion", "gaussian"], "--gaussian-k"),
    (["--ratio", "auto", "--criterion", "gaussian", "--allocation", "global"], "--allocation"),
    (["--ratio", "0.3", "--budget-top1", "0.5"], "--budget-top1"),
    (["--ratio", "0.3", "--singularity-tau", "0.1"], "--singularity-tau"),
    (["--ratio", "0.3", "--lr", "0.1"], "--lr"),
    (["--ratio", "0.3", "--latency-threads", "2"], "--latency-threads"),
    (["--ratio", "0.3", "--allocation", "local", "--normalize", "lamp"], "--normalize"),
    (["--criterion", "lumping", "--max-group-ratio", "0.5"], "--max-group-ratio"),
    (["--remove", "conv1:0", "--ignore", "x"], "--ignore"),
    (["--ratio", "0.3", "--no-validate", "--data", str(CALIB)], "--data"),
    (["--ratio", "0.3", "--no-validate", "--seed", "3"], "--seed"),
    (["--ratio", "0.3", "--mean", "0.5"], "--mean"),
    (["--ratio", "0.3", "--no-validate", "--plot", "p.png"], "--plot"),
    (["--ratio", "0.3", "--criterion", "dirichlet", "--data", str(CALIB), "--dirichlet-mass", "0.5"],
     "--dirichlet-mass"),
    (["--ratio", "0.3", "--criterion", "dirichlet", "--data", str(CALIB), "--dirichlet-samples", "2"],
     "--dirichlet-samples"),
])
def test_options_that_would_be_ignored_are_refused(cli, tmp_path, tiny_files, extra, fragment):
    res = cli(tiny_files[0], tmp_path / "o.onnx", *extra)
    res.assert_refused(fragment)
    assert not (tmp_path / "o.onnx").exists()


def test_auto_refuses_gaussian_tails(cli, tmp_path, tiny_files):
    cli(tiny_files[0], tmp_path / "o.onnx", "--ratio", "auto", "--criterion", "gaussian",
        "--gaussian-outside").assert_refused("--gaussian-outside")


def test_the_pipeline_modules_import_no_runtime():
    """Only the stages that run onnxruntime or torch import them (validation, auto's budget, gradients)."""
    code = ("import sys, onnxprune.pipeline, onnxprune.planners, onnxprune.config, onnxprune.transforms, "
            "onnxprune.auto, onnxprune.targets\n"
            "print(sorted(m for m in ('torch', 'onnxruntime', 'scipy.stats') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr
