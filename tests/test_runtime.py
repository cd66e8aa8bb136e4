"""onnxruntime stays behind onnxprune.runtime: not loaded without validation, quiet when it is, and
synthetic validation inputs cover every declared input (scalars too)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_subprocess
from onnx import TensorProto, helper, numpy_helper

from onnxprune.data import synthetic_arrays

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "models" / "digits_cnn.onnx"


def test_only_runtime_imports_onnxruntime():
    pattern = re.compile(r"^\s*(import onnxruntime|from onnxruntime)", re.MULTILINE)
    importers = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "onnxprune").rglob("*.py")
                       if pattern.search(p.read_text()))
    assert importers == ["onnxprune/runtime.py"]


def test_prune_without_validation_never_loads_onnxruntime(tmp_path):
    code = f"""
import sys
import onnxprune
from onnxprune import prune
from onnxprune.cli import main
assert 'onnxruntime' not in sys.modules, 'import onnxprune'
prune({str(CNN)!r}, ratio=0.3, validate=False)
prune({str(CNN)!r}, ratio=0.3, validate=False, output={str(tmp_path / 'a.onnx')!r})
assert main([{str(CNN)!r}, {str(tmp_path / 'b.onnx')!r}, '--ratio', '0.3', '--no-validate', '--quiet']) == 0
print(sorted(m for m in sys.modules if m.split('.')[0] == 'onnxruntime'))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    assert (tmp_path / "a.onnx").is_file() and (tmp_path / "b.onnx").is_file()


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64, np.int32, np.uint8, np.bool_])
def test_synthetic_arrays_are_arrays_at_every_rank(dtype):
    feeds = synthetic_arrays({"s": ([], dtype), "v": (["N", 3], dtype)}, seed=1, batch=4)
    assert isinstance(feeds["s"], np.ndarray) and feeds["s"].shape == () and feeds["s"].dtype == dtype
    assert feeds["v"].shape == (4, 3) and feeds["v"].dtype == dtype


def _scalar_flag_model(path: Path) -> Path:
    """Conv -> Relu -> Where(flag, r, -r) -> Conv, with ``flag`` a rank-0 bool input."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1"),
               numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Neg", ["r"], ["n"]),
             helper.make_node("Where", ["flag", "r", "n"], ["s"]),
             helper.make_node("Conv", ["s", "w2"], ["y"], name="conv2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8]),
                                           helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_scalar_bool_input_validates(tmp_path, cli):
    import json

    model = _scalar_flag_model(tmp_path / "flag.onnx")
    res = cli(model, tmp_path / "o.onnx", "--ratio", "0.25", "--report", tmp_path / "r.json", "--latency")
    assert res.code == 0, res.err
    report = json.loads((tmp_path / "r.json").read_text())
    flag = report["validation"]["inputs"]["flag"]
    assert (flag["shape"], flag["dtype"]) == ([], "bool") and flag["min"] in (0.0, 1.0)  # value range stated
    assert report["channels_removed"] == 2


def _batch_one_inside(path: Path) -> Path:
    """Declares a free batch but reshapes to a literal 1: batch-8 validation fails inside onnxruntime,
    and validation falls back to batch 1."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((8, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([1, 4], np.int64), "shape")]
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("MatMul", ["r", "w1"], ["a"], name="mm1"), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("MatMul", ["b", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_onnxruntime_log_lines_do_not_leak(tmp_path, capfd):
    """onnxruntime logs the failures it raises straight to fd 2; validation must keep the terminal clean."""
    from onnxprune import cli

    model = _batch_one_inside(tmp_path / "m.onnx")
    capfd.readouterr()
    assert cli.main([str(model), str(tmp_path / "o.onnx"), "--ratio", "0.25", "--quiet"]) == 0
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_symbolic_shapes_write_no_untyped_value_warnings(tmp_path):
    """PP-OCRv4's recogniser: onnxruntime's symbolic inference names dims ONNX leaves untyped; a shape stored
    without its type made onnx-ir log "The value type ... is not known" on every save (dozens of lines).
    A fresh interpreter: pytest's log capture would hide the lines in process."""
    import zoo

    res = run_subprocess(zoo.paddleocr_models()["rec"], tmp_path / "o.onnx", "--ratio", "0.3", "--no-validate",
                         "--quiet")
    assert (res.code, res.out, res.err) == (0, "", "")
