"""The CLI: bad input gets one clear line, exit 2, no traceback, IN untouched, OUT not created."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "models" / "digits_cnn.onnx"


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "onnxprune", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def model(tmp_path) -> Path:
    p = tmp_path / "in.onnx"
    shutil.copy(CNN, p)
    return p


def assert_user_error(res, *fragments):
    assert res.returncode == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("onnxprune: error: "), res.stderr
    assert "Traceback" not in res.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "text", "directory"])
def test_unreadable_input(tmp_path, model, case):
    src = {"missing": tmp_path / "nope.onnx", "empty": tmp_path / "empty.onnx", "truncated": tmp_path / "t.onnx",
           "text": tmp_path / "x.onnx", "directory": tmp_path}[case]
    if case == "empty":
        src.write_bytes(b"")
    elif case == "truncated":
        src.write_bytes(model.read_bytes()[: model.stat().st_size // 3])
    elif case == "text":
        src.write_text("this is not a model\n")
    before = digest(src) if src.is_file() else None
    out = tmp_path / "out.onnx"
    res = run(src, out, "--ratio", "0.3")
    assert_user_error(res, str(src.name) if case != "directory" else "directory")
    assert not out.exists()
    if before is not None:
        assert digest(src) == before


@pytest.mark.parametrize("ratio", ["1", "1.5", "-0.1", "abc", "nan"])
def test_impossible_ratio(tmp_path, model, ratio):
    res = run(model, tmp_path / "o.onnx", "--ratio", ratio)
    assert_user_error(res, "ratio")
    assert not (tmp_path / "o.onnx").exists()


def test_unknown_criterion(tmp_path, model):
    assert_user_error(run(model, tmp_path / "o.onnx", "--criterion", "magic"), "unknown criterion 'magic'")


def test_out_equals_in_is_refused(model):
    before = digest(model)
    assert_user_error(run(model, model, "--ratio", "0.3"), "is the input model")
    assert digest(model) == before
    # also through another spelling of the same path
    assert_user_error(run(model, model.parent / "." / model.name, "--ratio", "0.3"), "is the input model")


def test_unwritable_output(tmp_path, model):
    assert_user_error(run(model, tmp_path / "no" / "such" / "dir" / "o.onnx"), "does not exist")


def test_missing_external_data(tmp_path):
    m = onnx.load(CNN)
    onnx.save(m, tmp_path / "ext.onnx", save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    (tmp_path / "ext.onnx.data").unlink()
    res = run(tmp_path / "ext.onnx", tmp_path / "o.onnx")
    assert_user_error(res, "external data", "ext.onnx.data")
    assert not (tmp_path / "o.onnx").exists()


def test_debug_shows_traceback(tmp_path):
    res = run(tmp_path / "missing.onnx", tmp_path / "o.onnx", "--debug")
    assert res.returncode == 2 and "Traceback" in res.stderr and "onnxprune: error:" in res.stderr


def test_prune_writes_model_and_report(tmp_path, model):
    before = digest(model)
    out, rep = tmp_path / "o.onnx", tmp_path / "r.json"
    res = run(model, out, "--ratio", "0.3", "--allocation", "local", "--report", rep)
    assert res.returncode == 0, res.stderr
    assert digest(model) == before
    report = json.loads(rep.read_text())
    for key in ("params_before", "params_after", "flops_before", "flops_after", "groups", "validation", "remove"):
        assert key in report
    assert report["params_after"] < report["params_before"]
    assert report["flops_after"] < report["flops_before"]
    kept = {g["name"]: (g["kept"], g["channels"]) for g in report["groups"] if not g["frozen"]}
    assert kept and all(k == c - int(0.3 * c) for k, c in kept.values())
    out_info = report["validation"]["outputs"]["logits"]
    assert set(out_info) >= {"max_abs", "mean_abs", "max_rel", "cosine"}
    assert "params" in res.stdout and "validation" in res.stdout
    # the output is deterministic: same command, same bytes
    res2 = run(model, tmp_path / "o2.onnx", "--ratio", "0.3", "--allocation", "local", "--quiet")
    assert res2.returncode == 0 and res2.stdout == "" and res2.stderr == ""
    assert digest(out) == digest(tmp_path / "o2.onnx")


def test_remove_replays_a_report(tmp_path, model):
    """The report's NAME:I,J list reproduces the same model through --remove."""
    rep = tmp_path / "r.json"
    assert run(model, tmp_path / "a.onnx", "--ratio", "0.25", "--no-merge", "--report", rep, "--no-validate").returncode == 0
    specs = json.loads(rep.read_text())["remove"]
    assert specs
    args = [a for s in specs for a in ("--remove", s)]
    res = run(model, tmp_path / "b.onnx", *args, "--no-validate")
    assert res.returncode == 0, res.stderr
    a, b = onnx.load(tmp_path / "a.onnx"), onnx.load(tmp_path / "b.onnx")
    wa = {i.name: numpy_helper.to_array(i) for i in a.graph.initializer}
    wb = {i.name: numpy_helper.to_array(i) for i in b.graph.initializer}
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])


def test_remove_errors(tmp_path, model):
    assert_user_error(run(model, tmp_path / "o.onnx", "--remove", "nosuchconv:1"), "no Conv/Gemm/MatMul producer")
    assert_user_error(run(model, tmp_path / "o.onnx", "--remove", "oops"), "NAME:I,J")
    res = run("analyze", model, "--json")
    first = json.loads(res.stdout)["groups"][0]["producers"][0].split(":")[0]
    assert_user_error(run(model, tmp_path / "o.onnx", "--remove", f"{first}:0,999"), "out of range")
    frozen = [g for g in json.loads(res.stdout)["groups"] if g["frozen"]][0]
    name = frozen["producers"][0].split(":")[0]
    assert_user_error(run(model, tmp_path / "o.onnx", "--remove", f"{name}:0"), "frozen", "graph output")


def test_analyze_lists_groups_and_reasons(model):
    res = run("analyze", model)
    assert res.returncode == 0, res.stderr
    assert "channel groups" in res.stdout and "frozen: tensor 'logits' is a graph output" in res.stdout
    data = json.loads(run("analyze", model, "--json").stdout)
    assert data["groups_prunable"] == sum(g["prunable"] for g in data["groups"]) > 0


def test_external_data_round_trip(tmp_path):
    m = onnx.load(CNN)
    onnx.save(m, tmp_path / "ext.onnx", save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    out = tmp_path / "sub"
    out.mkdir()
    res = run(tmp_path / "ext.onnx", out / "p.onnx", "--ratio", "0.3")
    assert res.returncode == 0, res.stderr
    assert (out / "p.onnx.data").is_file()
    assert not list(out.glob(".*tmp*"))  # no temp files left behind
    refs = onnx.load(out / "p.onnx", load_external_data=False)
    locations = {e.value for t in refs.graph.initializer if t.data_location == TensorProto.EXTERNAL
                 for e in t.external_data if e.key == "location"}
    assert locations == {"p.onnx.data"}
    onnx.checker.check_model(onnx.load(out / "p.onnx"))  # its data loads from beside it


def test_a_prune_that_removes_nothing_writes_in_byte_for_byte(tmp_path, model):
    """A re-serialisation would add the value types onnx-ir knows (51 value_info entries on the digits ResNet)."""
    res = run(model, tmp_path / "same.onnx", "--ratio", "0")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "same.onnx").read_bytes() == model.read_bytes()
    onnx.save(onnx.load(CNN), tmp_path / "ext.onnx", save_as_external_data=True, location="ext.onnx.data",
              size_threshold=0)
    res = run(tmp_path / "ext.onnx", tmp_path / "same_ext.onnx", "--ratio", "0", "--no-validate")
    assert res.returncode == 0, res.stderr
    refs = onnx.load(tmp_path / "same_ext.onnx", load_external_data=False)  # its own data file, not IN's
    assert {e.value for t in refs.graph.initializer for e in t.external_data if e.key == "location"} == {
        "same_ext.onnx.data"}


def test_truncated_external_data(tmp_path):
    m = onnx.load(CNN)
    onnx.save(m, tmp_path / "ext.onnx", save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    data = tmp_path / "ext.onnx.data"
    data.write_bytes(data.read_bytes()[:1000])
    res = run(tmp_path / "ext.onnx", tmp_path / "o.onnx")
    assert_user_error(res, "truncated", "ext.onnx.data")
    assert not (tmp_path / "o.onnx").exists()


def test_pruning_path_imports_no_heavy_optional_modules():
    """Start-up is most of a small prune's wall time: torch, scipy.stats and onnxruntime load only
    where they are used (validation, analyze's statistics), never on import."""
    code = ("import sys, onnxprune, onnxprune.api, onnxprune.cli; "
            "print(sorted(m for m in ('torch', 'scipy.stats', 'onnxruntime') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


@pytest.mark.parametrize("quiet", [False, True])
def test_a_long_run_shows_progress_when_piped(cli, model, tmp_path, monkeypatch, quiet):
    """Piped (CI, a log file), the terminal's bars are off; a run longer than progress.LOG_INTERVAL prints its
    stage as plain lines on stderr instead, so a ten-minute auto shows it is alive. --quiet prints none."""
    import onnxprune.progress as progress

    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)  # every stage counts as long here
    res = cli(model, tmp_path / "out.onnx", "--ratio", "0.3", *(["--quiet"] if quiet else []))
    assert res.code == 0
    lines = [ln for ln in res.err.splitlines() if ln.startswith("onnxprune: ")]
    if quiet:
        assert res.err == ""
    else:
        assert {"onnxprune: loading", "onnxprune: saving"} <= set(lines) and len(lines) == len(res.err.splitlines())
