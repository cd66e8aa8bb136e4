"""--refit: the least-squares refit of pruned consumers (onnxprune.refit)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.errors import OptionError
from onnxprune.graph import analyze_groups
from onnxprune.pipeline import load_normalized
from onnxprune.plan import plan_from_removals
from onnxprune.refit import Normal, conv_pads, im2col, refit_model
from onnxprune.runtime import session
from onnxprune.surgery import apply_plan


def _mlp(form: str, dtype=np.float32, seed: int = 0, hidden: int = 6, relu_after: bool = True) -> onnx.ModelProto:
    """x[N,8] -> dense(hidden) -> dense(5) [-> Relu -> dense(3)]; hidden channel 5 is planted as
    0.5 * h0 + 2 * h1 (its weights and bias are that combination), so removing it loses nothing a refit
    cannot put back. ``form``: "gemm" (Gemm, transB=1) or "matmul" (MatMul + bias Add, as exporters write
    Linear)."""
    rng = np.random.default_rng(seed)
    w1, b1 = rng.standard_normal((8, hidden)), rng.standard_normal(hidden) * 0.1
    w1[:, 5], b1[5] = 0.5 * w1[:, 0] + 2 * w1[:, 1], 0.5 * b1[0] + 2 * b1[1]
    w2, b2 = rng.standard_normal((hidden, 5)), rng.standard_normal(5) * 0.1
    w2[5] *= 4  # the planted channel matters: removing it alone is a large error
    w3, b3 = rng.standard_normal((5, 3)), rng.standard_normal(3) * 0.1
    tp = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits, nodes = [], []

    def dense(i: int, x: str, w: np.ndarray, b: np.ndarray, out: str) -> None:
        if form == "gemm":
            inits.extend([numpy_helper.from_array(w.T.astype(dtype), f"w{i}"), numpy_helper.from_array(b.astype(dtype), f"b{i}")])
            nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [out], name=f"fc{i}", transB=1))
        else:
            inits.extend([numpy_helper.from_array(w.astype(dtype), f"w{i}"), numpy_helper.from_array(b.astype(dtype), f"b{i}")])
            nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], name=f"fc{i}"))
            nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [out], name=f"bias{i}"))

    dense(1, "x", w1, b1, "h1")
    dense(2, "h1", w2, b2, "h2" if relu_after else "y")
    if relu_after:
        nodes.append(helper.make_node("Relu", ["h2"], ["r2"], name="relu2"))
        dense(3, "r2", w3, b3, "y")
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", tp, ["N", 8])],
                              [helper.make_tensor_value_info("y", tp, ["N", 3 if relu_after else 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _outputs(model, x: np.ndarray) -> np.ndarray:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return session(data).run(None, {"x": x})[0].astype(np.float64)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture
def mlp_data(tmp_path):
    def write(dtype=np.float32, n: int = 200):
        path = tmp_path / "calib.npz"
        np.savez(path, x=np.random.default_rng(3).standard_normal((n, 8)).astype(dtype))
        return path

    return write


# -- exactness on a planted dependency ------------------------------------------------------------
@pytest.mark.parametrize("form", ["gemm", "matmul"])
def test_planted_dependency_recovered(form, mlp_data):
    model = _mlp(form)
    pruned, report = onnxprune.prune(model, remove=["fc1:5"], refit=True, data=str(mlp_data()), validate=False)
    (layer,) = report["refit"]["layers"]
    assert layer["layer"] == "fc2" and layer["refit"]
    assert layer["error_before"] > 0.3 and layer["error_after"] < 1e-2
    x = np.random.default_rng(9).standard_normal((64, 8)).astype(np.float32)  # held out
    ref, got = _outputs(model, x), _outputs(ir.to_proto(pruned).SerializeToString(), x)
    assert _rel(got, ref) < 1e-2
    unrefit, _ = onnxprune.prune(model, remove=["fc1:5"], validate=False)
    assert _rel(_outputs(ir.to_proto(unrefit).SerializeToString(), x), ref) > 0.2


def test_fp16_weights_solved_in_float64_and_cast_back(mlp_data):
    model = _mlp("gemm", dtype=np.float16)
    pruned, report = onnxprune.prune(model, remove=["fc1:5"], refit=True, data=str(mlp_data(np.float16)),
                                     validate=False)
    fc2 = next(n for n in pruned.graph if n.name == "fc2")
    assert fc2.inputs[1].const_value.dtype == ir.DataType.FLOAT16 and fc2.inputs[2].const_value.dtype == ir.DataType.FLOAT16
    (layer,) = report["refit"]["layers"]
    assert layer["error_before"] > 0.3 and layer["error_after"] < 1e-2


def test_layer_pruned_on_both_sides_is_refit_on_its_kept_outputs(mlp_data):
    model = _mlp("gemm")
    pruned, report = onnxprune.prune(model, remove=["fc1:5", "fc2:0,3"], refit=True, data=str(mlp_data()),
                                     validate=False)
    rows = {r["layer"]: r for r in report["refit"]["layers"]}
    assert set(rows) == {"fc2", "fc3"}
    # fc2 keeps outputs 1, 2, 4: its refit targets those columns of the original fc2 only
    assert rows["fc2"]["error_after"] < 1e-2 < rows["fc2"]["error_before"]
    fc2 = next(n for n in pruned.graph if n.name == "fc2")
    assert fc2.inputs[1].const_value.shape == (3, 5)
    x = np.random.default_rng(3).standard_normal((200, 8)).astype(np.float32)
    sess = session(_with_output(model, "h2"))
    ref = sess.run(["h2"], {"x": x})[0][:, [1, 2, 4]]
    got = session(_with_output(ir.to_proto(pruned), "h2")).run(["h2"], {"x": x})[0]
    assert _rel(got, ref) < 1e-2


def _with_output(model: onnx.ModelProto, name: str) -> bytes:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.append(onnx.ValueInfoProto(name=name))
    return m.SerializeToString()


# -- the conv path -------------------------------------------------------------------------------
def _numpy_conv(x: np.ndarray, w: np.ndarray, strides, dilations, pads) -> np.ndarray:
    """Direct 2-D convolution (cross-correlation, group 1) by loops: the reference for im2col."""
    xp = np.pad(x, [(0, 0), (0, 0), *pads])
    kh, kw = w.shape[2:]
    oh = (xp.shape[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (xp.shape[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    patch = xp[:, :, i * strides[0] + a * dilations[0], j * strides[1] + b * dilations[1]]
                    out[:, :, i, j] += patch @ w[:, :, a, b].T
    return out


@pytest.mark.parametrize("strides,dilations,pads", [((1, 1), (1, 1), [(1, 1), (1, 1)]),
                                                    ((2, 1), (1, 2), [(0, 2), (1, 0)]),
                                                    ((2, 3), (2, 1), [(0, 0), (0, 0)])])
def test_im2col_matches_numpy_conv(strides, dilations, pads):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 9, 11)), rng.standard_normal((4, 3, 3, 2))
    cols = im2col(x, (3, 2), list(strides), list(dilations), pads)
    ref = _numpy_conv(x, w, strides, dilations, pads)
    got = (cols @ w.reshape(4, -1).T).reshape(2, ref.shape[2], ref.shape[3], 4).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET"])
def test_conv_pads_and_im2col_match_onnxruntime(auto_pad):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 10, 9)).astype(np.float32), rng.standard_normal((4, 3, 3, 4)).astype(np.float32)
    extra = {"pads": [1, 0, 2, 1]} if auto_pad == "NOTSET" else {}
    dilations = [1, 1] if auto_pad.startswith("SAME") else [1, 2]  # onnxruntime refuses dilated SAME
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=auto_pad, strides=[2, 2], dilations=dilations, **extra)
    graph = helper.make_graph([node], "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ref = session(model.SerializeToString()).run(None, {"x": x})[0]
    irnode = ir.from_proto(model).graph.node(0)
    pads = conv_pads(irnode, x.shape[2:], (3, 4), [2, 2], dilations)
    cols = im2col(x.astype(np.float64), (3, 4), [2, 2], dilations, pads)
    got = (cols @ w.reshape(4, -1).T.astype(np.float64)).reshape(2, *ref.shape[2:], 4).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


# -- streaming -----------------------------------------------------------------------------------
def _refit_weights(model: onnx.ModelProto, x: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    m = load_normalized(onnx.ModelProto.FromString(model.SerializeToString()))
    original = ir.to_proto(m).SerializeToString()
    an = analyze_groups(m)
    plan = plan_from_removals(an, ["fc1:5", "fc2:0"])
    apply_plan(an, plan)
    refit_model(m, an, plan, original, lambda: ({"x": x[i:i + batch]} for i in range(0, len(x), batch)))
    return {v.name: v.const_value.numpy().copy() for v in m.graph.initializers.values()}


def test_streaming_equals_one_batch():
    model = _mlp("matmul")
    x = np.random.default_rng(5).standard_normal((96, 8)).astype(np.float32)
    whole, streamed = _refit_weights(model, x, 96), _refit_weights(model, x, 7)
    assert whole.keys() == streamed.keys()
    for name in whole:
        np.testing.assert_allclose(streamed[name], whole[name], rtol=1e-5, atol=1e-6)


def test_normal_equations_error_matches_direct_computation():
    rng = np.random.default_rng(0)
    x, y, z = rng.standard_normal((50, 4)), rng.standard_normal((50, 3)), rng.standard_normal((4, 3))
    n = Normal.empty(4, 3)
    n.add(x[:20], y[:20])
    n.add(x[20:], y[20:])
    assert n.relative_error(z) == pytest.approx(np.linalg.norm(x @ z - y) / np.linalg.norm(y), rel=1e-9)


# -- a refit never makes a layer worse on its calibration data ------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_refit_never_increases_a_layers_calibration_error(seed, tiny_files, tmp_path):
    model, _ = tiny_files
    rng = np.random.default_rng(seed)
    data = tmp_path / "calib.npz"
    # few samples (the solve is underdetermined for some layers) and a ratio that varies with the seed
    np.savez(data, x=rng.standard_normal((int(rng.integers(2, 12)), 2, 6, 6)).astype(np.float32))
    _, report = onnxprune.prune(str(model), ratio=float(rng.uniform(0.1, 0.8)), refit=True, data=str(data),
                                validate=False)
    rows = report["refit"]["layers"]
    assert rows
    for r in rows:
        assert r["error_after"] <= r["error_before"], r
    # also where removing a planted channel is exact: the pruned layer is already right
    exact = _mlp("gemm", seed=seed, relu_after=False)
    path = tmp_path / "exact.onnx"
    w1 = numpy_helper.to_array(exact.graph.initializer[0]).copy()
    w2 = numpy_helper.to_array(exact.graph.initializer[2]).copy()
    w2[:, 5] = 0.0  # fc2 ignores channel 5: removing it changes nothing
    exact.graph.initializer[0].CopyFrom(numpy_helper.from_array(w1, "w1"))
    exact.graph.initializer[2].CopyFrom(numpy_helper.from_array(w2, "w2"))
    onnx.save(exact, path)
    np.savez(data, x=rng.standard_normal((40, 8)).astype(np.float32))
    _, report = onnxprune.prune(str(path), remove=["fc1:5"], refit=True, data=str(data), validate=False)
    (row,) = report["refit"]["layers"]
    assert row["error_after"] <= row["error_before"] < 1e-6


# -- the pipeline, CLI and options ----------------------------------------------------------------
def test_cli_refit_with_data_reports_each_layer(cli, tiny_files, tmp_path):
    model, data = tiny_files
    out, rep = tmp_path / "out.onnx", tmp_path / "report.json"
    res = cli(model, out, "--ratio", "0.5", "--refit", "--data", data, "--report", rep)
    assert res.code == 0, res.err
    report = json.loads(rep.read_text())
    rows = report["refit"]["layers"]
    assert [r["layer"] for r in rows] == ["conv2", "fc"]
    assert all(r["error_after"] < r["error_before"] for r in rows)
    assert f"data file {data}" in report["refit"]["inputs"]
    assert "refit   2 of 2 layers re-solved on data file" in res.out
    for r in rows:
        assert f"{r['layer']:<48} error {r['error_before']:.4f} -> {r['error_after']:.4f}" in res.out


def test_cli_refit_without_data_uses_synthetic_inputs(cli, tiny_files, tmp_path):
    model, _ = tiny_files
    rep = tmp_path / "report.json"
    res = cli(model, tmp_path / "out.onnx", "--ratio", "0.5", "--refit", "--seed", "3", "--no-validate",
              "--report", rep)
    assert res.code == 0, res.err
    report = json.loads(rep.read_text())
    assert report["refit"]["inputs"].startswith("synthetic inputs (seed 3; no --data)")
    assert "re-solved on synthetic inputs (seed 3; no --data)" in res.out
    assert len(report["refit"]["layers"]) == 2


def test_refit_improves_fidelity_and_keeps_shapes(tiny_files):
    model, data = tiny_files
    plain, r0 = onnxprune.prune(str(model), ratio=0.5, data=str(data))
    refit, r1 = onnxprune.prune(str(model), ratio=0.5, data=str(data), refit=True)
    assert r0["params_after"] == r1["params_after"]
    assert r1["validation"]["outputs"]["y"]["cosine"] > r0["validation"]["outputs"]["y"]["cosine"]


def test_refit_runs_inside_auto_trials(cli, tiny_files, tmp_path, monkeypatch):
    import onnxprune.refit

    calls = []
    real = onnxprune.refit.refit_candidate
    monkeypatch.setattr(onnxprune.refit, "refit_candidate", lambda *a, **k: calls.append(1) or real(*a, **k))
    model, data = tiny_files
    rep = tmp_path / "report.json"
    res = cli(model, tmp_path / "out.onnx", "--ratio", "auto", "--refit", "--data", data, "--report", rep,
              "--auto-objective", "macs")
    assert res.code == 0, res.err
    report = json.loads(rep.read_text())
    assert "refit" in report
    probed = [p for p in report["auto"]["sensitivity"] if p["removed"]]
    # every probe of one group, every measured trial, the confirmation of each that met the budget (refit on
    # the budget's samples) and the final model (rebuilt once: it is faster in MACs)
    confirmed = [t for t in report["auto"]["search"] if "confirmation" in t]
    assert confirmed and len(calls) == len(probed) + len(report["auto"]["search"]) + len(confirmed) + 1


def test_refit_with_nothing_removed_is_a_no_op(tiny_files):
    model, data = tiny_files
    _, report = onnxprune.prune(str(model), ratio=0.0, refit=True, data=str(data), validate=False)
    assert report["refit"]["layers"] == [] and report["channels_removed"] == 0


def test_refit_refuses_compensate(cli, tiny_files, tmp_path):
    model, data = tiny_files
    cli(model, tmp_path / "out.onnx", "--ratio", "0.5", "--refit", "--compensate", "--data", data).assert_refused(
        "--compensate", "--refit")
    assert not (tmp_path / "out.onnx").exists()


def test_refit_replaces_flaps_own_compensation(cli, tiny_files, tmp_path):
    """flap folds removed means by default; with --refit the refit solves the biases instead, so the
    combination runs (only an explicit --compensate is refused) and the report has no compensation."""
    model, data = tiny_files
    report = tmp_path / "r.json"
    result = cli(model, tmp_path / "out.onnx", "--ratio", "0.5", "--criterion", "flap", "--refit", "--data", data,
                 "--no-validate", "--report", report)
    assert result.code == 0, result.err
    import json
    doc = json.loads(report.read_text())
    assert doc["transforms"]["compensate"] is False and doc["refit"]["layers"]


def test_refit_replaces_flaps_default_compensation(tiny_files):
    """flap compensates by default; with --refit (which re-solves the bias) it is accepted without it."""
    model, data = tiny_files
    _, report = onnxprune.prune(str(model), ratio=0.5, criterion="flap", refit=True, data=str(data), validate=False)
    assert report["transforms"]["compensate"] is False and report["refit"]["layers"]
    with pytest.raises(OptionError, match="--compensate"):
        onnxprune.prune(str(model), ratio=0.5, criterion="flap", refit=True, compensate=True, data=str(data),
                        validate=False)


def test_data_is_read_by_refit_alone(cli, tiny_files, tmp_path):
    model, data = tiny_files
    assert cli(model, tmp_path / "out.onnx", "--ratio", "0.5", "--refit", "--data", data, "--no-validate").code == 0
    cli(model, tmp_path / "out2.onnx", "--ratio", "0.5", "--data", data, "--no-validate").assert_refused("--data")


def test_sequential_refit_solves_later_layers_on_refit_inputs():
    """fc3 reads fc2: sequentially it is solved on the refit fc2's outputs, so the whole model ends up
    closer to the original than when both are solved on the unrefit model (one pass)."""
    model = _mlp("gemm", seed=1)
    x = np.random.default_rng(5).standard_normal((200, 8)).astype(np.float32)
    errors = {}
    for sequential in (True, False):
        m = load_normalized(onnx.ModelProto.FromString(model.SerializeToString()))
        original = ir.to_proto(m).SerializeToString()
        an = analyze_groups(m)
        plan = plan_from_removals(an, ["fc1:5", "fc2:0,3"])
        apply_plan(an, plan)
        section = refit_model(m, an, plan, original, lambda: [{"x": x}], sequential=sequential)
        assert [r["layer"] for r in section["layers"]] == ["fc2", "fc3"]
        errors[sequential] = _rel(_outputs(ir.to_proto(m).SerializeToString(), x), _outputs(model, x))
    assert errors[True] < 0.5 * errors[False]  # measured: 0.19 against 5.0


def test_refit_of_a_model_with_external_data(mlp_data, tmp_path):
    """Weights in a file beside the model: the refit loads snapshots from files, not bytes."""
    model = _mlp("matmul")
    path = tmp_path / "ext" / "mlp.onnx"
    path.parent.mkdir()
    onnx.save(onnx.ModelProto.FromString(model.SerializeToString()), path, save_as_external_data=True,
              location="mlp.onnx.data", size_threshold=0)  # (a copy: saving makes the proto's weights external)
    out = tmp_path / "out.onnx"
    _, report = onnxprune.prune(str(path), remove=["fc1:5"], refit=True, data=str(mlp_data()), output=str(out))
    (layer,) = report["refit"]["layers"]
    assert layer["error_after"] < 1e-2 < layer["error_before"]
    x = np.random.default_rng(9).standard_normal((64, 8)).astype(np.float32)
    assert _rel(session(out).run(None, {"x": x})[0].astype(np.float64), _outputs(model, x)) < 1e-2


def test_grouped_conv_is_left_alone_with_a_reason(tmp_path):
    """A grouped conv (2 groups of 4) mixes channels within its groups: not solved, and the report says
    why. (A depthwise conv reads each channel alone: it loses no inputs it could recombine.)"""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
             (("w1", (8, 3, 3, 3)), ("b1", (8,)), ("wd", (8, 4, 3, 3)), ("bd", (8,)), ("w3", (4, 8, 1, 1)), ("b3", (4,)))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "wd", "bd"], ["cd"], name="dw", group=2, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["cd"], ["rd"]),
             helper.make_node("Conv", ["rd", "w3", "b3"], ["y"], name="conv3")]
    graph = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _, report = onnxprune.prune(model, remove=["conv1:0,4"], refit=True, validate=False)
    assert [r["layer"] for r in report["refit"]["layers"]] == []
    assert [(s["layer"], s["op"]) for s in report["refit"]["skipped"]] == [("dw", "Conv")]
    assert "grouped or depthwise" in report["refit"]["skipped"][0]["why"]
    assert report["refit"]["inputs"].startswith("synthetic inputs")
