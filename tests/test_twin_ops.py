"""Every op of the twin against the ONNX backend node test cases (their expected outputs, and
onnxruntime where it runs the case), and old-opset variants against onnxruntime.

A backend case is selected when all of its ops are registered at the case's opset and its data are
plain tensors. Each selected case must either match (within float tolerances, integers exactly) or be
listed below as an expected unsupported variant, and then it must raise UnsupportedOpError.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import twin_cases

from onnxprune.errors import UnsupportedOpError
from onnxprune.twin import Twin, registered_ops, supports

# Case-name pattern -> why the twin refuses it (with UnsupportedOpError).
EXPECTED_UNSUPPORTED = {
    r"test_cast(like)?_.*(FLOAT8|FLOAT4|INT4|UINT4|INT2|UINT2|E8M0)": "torch has no float8/float4/int4/int2 tensors",
    r"test_(add|sub|div|mod|max|min|less|greater|less_equal|greater_equal)_uint(16|32|64)(_expanded)?$":
        "torch CPU has no arithmetic/comparison kernels for uint16/32/64",
    r"test_bitwise_not_3d$": "torch CPU has no bitwise_not kernel for uint16",
    r"test_training_dropout(_default)?(_mask)?$": "Dropout in training mode is random",
    r"test_equal_string": "string tensors",
    r"test_resize_downsample_(scales|sizes)_(linear|cubic)_antialias$": "Resize antialias when downsampling",
}

# Cases whose generated expected outputs differ from onnxruntime; the twin follows onnxruntime (it is
# what the pruned models are validated with), so these compare against onnxruntime.
ORT_IS_REFERENCE = {
    "test_resize_downsample_scales_linear_align_corners":
        "the reference uses the fractional output length (scale * in) in align_corners; ORT the integer one",
    "test_resize_downsample_scales_cubic_align_corners": "as above",
    "test_averagepool_2d_ceil_last_window_starts_on_pad": "expected values are rounded to 4 decimals",
}


def _selected() -> list[str]:
    names = []
    for name, case in twin_cases.node_cases().items():
        ops = twin_cases.case_ops(case.model)
        if all(supports(op, opset, domain) for domain, op, opset in ops) and twin_cases.case_data(case) is not None:
            names.append(name)
    return names


SELECTED = _selected()


def _unsupported_reason(name: str) -> str | None:
    for pattern, reason in EXPECTED_UNSUPPORTED.items():
        if re.search(pattern, name):
            return reason
    return None


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


def assert_close(out: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Floats: max |diff| <= tol * max |expected| (tol 1e-4 for float32/64), NaNs in the same places;
    integers and bools: same dtype, exactly equal."""
    assert out.shape == expected.shape, f"{what}: shape {out.shape} != {expected.shape}"
    if expected.dtype.name == "bfloat16":
        expected, tol = expected.astype(np.float32), 1e-2
    elif expected.dtype == np.float16:
        tol = 1e-3
    else:
        tol = 1e-4
    if expected.dtype.kind == "f":
        assert out.dtype.kind == "f", f"{what}: dtype {out.dtype} != {expected.dtype}"
        o, e = out.astype(np.float64), expected.astype(np.float64)
        assert np.array_equal(np.isnan(o), np.isnan(e)), f"{what}: NaNs differ"
        finite = ~np.isnan(e)
        if finite.any():
            assert np.array_equal(np.isinf(o[finite]), np.isinf(e[finite])), f"{what}: infinities differ"
            ok = finite & ~np.isinf(e)
            scale = max(np.abs(e[ok]).max() if ok.any() else 0.0, 1e-6)
            err = np.abs(o[ok] - e[ok]).max() / scale if ok.any() else 0.0
            assert err <= tol, f"{what}: relative error {err:.3g} > {tol}"
    else:
        assert out.dtype == expected.dtype, f"{what}: dtype {out.dtype} != {expected.dtype}"
        np.testing.assert_array_equal(out, expected, err_msg=what)


@pytest.mark.parametrize("name", SELECTED)
def test_backend_node_case(name):
    case = twin_cases.node_cases()[name]
    feeds, expected = twin_cases.case_data(case)
    reason = _unsupported_reason(name)
    if reason is not None:
        with pytest.raises(UnsupportedOpError) as info:
            Twin(ir.serde.deserialize_model(case.model))(feeds)
        assert case.model.graph.node[0].op_type in str(info.value) or "feed" in str(info.value)
        return
    twin = Twin(ir.serde.deserialize_model(case.model))
    with torch.no_grad():
        outs = [_numpy(o) for o in twin(feeds)]
    from_ort = _onnxruntime_outputs(case.model, feeds)
    if name in ORT_IS_REFERENCE:
        assert from_ort is not None, name
        expected = from_ort
    assert len(outs) == len(expected)
    for i, (o, e) in enumerate(zip(outs, expected)):
        assert_close(o, np.asarray(e), f"{name} output {i} vs the expected output")
    if from_ort is not None:  # and against onnxruntime wherever it runs the case (all but ~20)
        for i, (o, r) in enumerate(zip(outs, from_ort)):
            assert_close(o, r, f"{name} output {i} vs onnxruntime")


def _onnxruntime_outputs(model: onnx.ModelProto, feeds) -> list[np.ndarray] | None:
    """onnxruntime's outputs, or None when it cannot load or run the case (new opsets, bfloat16...)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)
    except Exception:  # noqa: BLE001 - any load/run failure means onnxruntime cannot check this case
        return None


DATA_CASES = [p for p in twin_cases.data_case_dirs()
              if all(supports(op, v, d) for d, op, v in twin_cases.case_ops(onnx.load(p / "model.onnx")))]


@pytest.mark.parametrize("folder", DATA_CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_backend_data_case(folder):
    """The pytorch-converted / pytorch-operator / simple cases, shipped as files with their data."""
    model, feeds, expected = twin_cases.data_case(folder)
    with torch.no_grad():
        outs = Twin(ir.serde.deserialize_model(model))(feeds)
    assert len(outs) == len(expected)
    for i, (o, e) in enumerate(zip(outs, expected)):
        assert_close(_numpy(o), e, f"{folder.name} output {i}")


def test_lists_name_real_cases():
    """Every exclusion pattern and ORT override still names a selected case (no stale entries)."""
    for pattern in EXPECTED_UNSUPPORTED:
        assert any(re.search(pattern, n) for n in SELECTED), pattern
    for name in ORT_IS_REFERENCE:
        assert name in SELECTED, name


def test_every_registered_op_has_backend_cases():
    covered = set()
    for name in SELECTED:
        if _unsupported_reason(name) is None:
            covered |= {(d, op) for d, op, _ in twin_cases.case_ops(twin_cases.node_cases()[name].model)}
    missing = [k for k in registered_ops() if k not in covered]
    assert not missing, f"registered ops without a passing backend case: {missing}"
    assert len(SELECTED) > 1000 and len(DATA_CASES) > 100


# ---------------------------------------------------------------- old opsets, against onnxruntime
# The backend cases are written at recent opsets; these single-node models cover the older forms
# (axes/pads/min/max/starts as attributes, Resize-10) that real exporters still emit.

def _single_node(op: str, opset: int, inputs: dict[str, np.ndarray], attrs: dict,
                 const_inputs: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    const_inputs = const_inputs or {}
    names = list(inputs) + list(const_inputs)
    node = helper.make_node(op, names, ["y"], **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(v, k) for k, v in const_inputs.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


_X = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
_POS = np.abs(_X) + 0.1
_F32 = np.float32

OLD_OPSET_CASES = {
    "clip6": ("Clip", 6, {"x": _X}, {"min": -0.5, "max": 0.7}, None),
    "clip6_default": ("Clip", 6, {"x": _X}, {"max": 0.2}, None),
    "pad2_constant": ("Pad", 2, {"x": _X}, {"pads": [0, 1, 2, 0, 0, 0, 1, 3], "value": 1.5}, None),
    "pad2_reflect": ("Pad", 2, {"x": _X}, {"pads": [0, 0, 2, 1, 0, 0, 1, 3], "mode": "reflect"}, None),
    "pad2_edge": ("Pad", 2, {"x": _X}, {"pads": [0, 0, 2, 1, 0, 0, 1, 3], "mode": "edge"}, None),
    "slice9": ("Slice", 9, {"x": _X}, {"starts": [1, -3], "ends": [100, -1], "axes": [1, 3]}, None),
    "squeeze11": ("Squeeze", 11, {"x": _X[:, :1]}, {"axes": [1]}, None),
    "unsqueeze11": ("Unsqueeze", 11, {"x": _X}, {"axes": [0, -1]}, None),
    "reducesum11": ("ReduceSum", 11, {"x": _X}, {"axes": [1, -1], "keepdims": 0}, None),
    "reducesum11_all": ("ReduceSum", 11, {"x": _X}, {}, None),
    "resize10_nearest_up": ("Resize", 10, {"x": _X}, {"mode": "nearest"},
                            {"scales": np.array([1, 1, 2, 3], _F32)}),
    "resize10_nearest_down": ("Resize", 10, {"x": _X}, {"mode": "nearest"},
                              {"scales": np.array([1, 1, 0.5, 0.6], _F32)}),
    "resize10_linear_up": ("Resize", 10, {"x": _X}, {"mode": "linear"}, {"scales": np.array([1, 1, 2, 1.5], _F32)}),
    "softmax11_axis2": ("Softmax", 11, {"x": _X}, {"axis": 2}, None),
    "logsoftmax11": ("LogSoftmax", 11, {"x": _X}, {}, None),
    "upsample9_nearest": ("Upsample", 9, {"x": _X}, {"mode": "nearest"}, {"scales": np.array([1, 1, 2, 2], _F32)}),
}
for _op in ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
            "ReduceLogSumExp", "ReduceSumSquare"):
    OLD_OPSET_CASES[f"{_op.lower()}13"] = (_op, 13, {"x": _POS}, {"axes": [0, 2], "keepdims": 1}, None)


@pytest.mark.parametrize("case", list(OLD_OPSET_CASES))
def test_old_opset_against_onnxruntime(case):
    op, opset, inputs, attrs, consts = OLD_OPSET_CASES[case]
    model = _single_node(op, opset, inputs, attrs, consts)
    (expected,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)
    with torch.no_grad():
        (out,) = Twin(ir.serde.deserialize_model(model))(inputs)
    assert_close(out.numpy(), expected, case)


def test_old_opset_cases_cover_every_registered_range():
    """Each registered (op, opset range) is exercised by a backend case or an old-opset case."""
    hit = set()
    models = [twin_cases.node_cases()[name].model for name in SELECTED]
    models += [onnx.load(p / "model.onnx") for p in DATA_CASES]
    for model in models:
        for d, op, v in twin_cases.case_ops(model):
            hit |= {(d, op, r) for r in registered_ops()[(d, op)] if r[0] <= v <= r[1]}
    for op, opset, *_ in OLD_OPSET_CASES.values():
        hit |= {("", op, r) for r in registered_ops()[("", op)] if r[0] <= opset <= r[1]}
    missing = [(k, r) for k, ranges in registered_ops().items() for r in ranges if (k[0], k[1], r) not in hit]
    assert not missing, missing
