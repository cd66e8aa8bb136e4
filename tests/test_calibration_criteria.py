"""wanda and flap: scores equal a numpy reference on activations computed independently; streamed
statistics equal one big batch; flap's bias fold keeps the output mean on the calibration data; the CLI
runs them with --data and refuses them without."""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
from conftest import ROOT
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.config import DataConfig, PruneConfig, ScoreConfig, TargetConfig
from onnxprune.criteria import REGISTRY, ScoreContext
from onnxprune.criteria.activations import ChannelStats, measure_activation_stats
from onnxprune.criteria.gradient import Calibration
from onnxprune.graph import analyze_groups
from onnxprune.pipeline import load_normalized


def _model(nodes, inits: dict, x_shape: list, y_shape: list):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def mlp():
    """x[N, 6] -> Gemm(12) -> Relu -> Gemm(5) (transB) -> y: one prunable group of 12 read by the last Gemm."""
    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((6, 12)), "b1": rng.standard_normal(12) + 0.5,
             "w2": rng.standard_normal((5, 12)) * rng.uniform(0.1, 2, 12), "b2": rng.standard_normal(5)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["a"], name="relu"),
             helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], name="fc2", transB=1)]
    return _model(nodes, inits, ["N", 6], ["N", 5]), "a"


def matmul_mlp(bias_add: bool):
    """x[N, 3, 6] -> MatMul(12) + b -> Relu -> MatMul(5) [+ b2]: a consumer without a bias slot, whose
    exported Linear bias is the Add after it (or which has none: the fold adds one)."""
    rng = np.random.default_rng(4)
    inits = {"w1": rng.standard_normal((6, 12)), "b1": rng.standard_normal(12) + 0.5,
             "w2": rng.standard_normal((12, 5)) * rng.uniform(0.1, 2, (12, 1))}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="mm1"),
             helper.make_node("Add", ["h0", "b1"], ["h"], name="add1"),
             helper.make_node("Relu", ["h"], ["a"], name="relu"),
             helper.make_node("MatMul", ["a", "w2"], ["y0" if bias_add else "y"], name="mm2")]
    if bias_add:
        inits["b2"] = rng.standard_normal((1, 5))
        nodes.append(helper.make_node("Add", ["y0", "b2"], ["y"], name="add2"))
    return _model(nodes, inits, ["N", 3, 6], ["N", 3, 5]), "a"


def cnn(flatten: bool):
    """x[N, 2, 5, 5] -> Conv(6, pad 1) -> Relu -> Conv(4, pad 1) -> y, or with ``flatten`` -> Flatten -> Gemm(3):
    there each of the 6 channels owns 25 positions of the Gemm's input (a class over several positions)."""
    rng = np.random.default_rng(1)
    inits = {"w1": rng.standard_normal((6, 2, 3, 3)), "b1": rng.standard_normal(6)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="conv1", pads=[1] * 4),
             helper.make_node("Relu", ["h"], ["a"], name="relu")]
    if flatten:
        inits.update(fc=rng.standard_normal((150, 3)), fcb=rng.standard_normal(3))
        nodes += [helper.make_node("Flatten", ["a"], ["f"], name="flat"),
                  helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], name="fc")]
        return _model(nodes, inits, ["N", 2, 5, 5], ["N", 3]), "f"
    inits.update(w2=rng.standard_normal((4, 6, 3, 3)) * rng.uniform(0.1, 2, (1, 6, 1, 1)), b2=rng.standard_normal(4))
    nodes.append(helper.make_node("Conv", ["a", "w2", "b2"], ["y"], name="conv2", pads=[1] * 4))
    return _model(nodes, inits, ["N", 2, 5, 5], ["N", 4, 5, 5]), "a"


def _activation(model, name: str, x: np.ndarray) -> np.ndarray:
    """The tensor ``name`` on all of x in one onnxruntime run (the reference: no streaming)."""
    probe = type(model)()
    probe.CopyFrom(model)
    probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([name], {"x": x})[0].astype(np.float64)


def _scores(model, name: str, data) -> np.ndarray:
    config = PruneConfig(score=ScoreConfig(criterion=name), target=TargetConfig(ratio=0.3),
                         data=DataConfig(source=data)).validate()
    m = load_normalized(ir.from_proto(model))
    analysis = analyze_groups(m)
    (g,) = analysis.prunable_groups
    return REGISTRY[name].score(analysis, ScoreContext(m, config))[g.id]


def _reference(model, act_name: str, x, criterion: str, consumer: str, flatten_owner: int = 1) -> np.ndarray:
    """Per channel: sum over its positions p of ||W[:, p]|| ||X_p|| (wanda) or Var(X_p) ||W[:, p]||^2 (flap)."""
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    a = _activation(model, act_name, x)
    w = inits[consumer]
    if w.ndim == 4:  # Conv [out, in, kh, kw]: input channel p owns every kernel entry of column p
        cols = np.square(w).sum(axis=(0, 2, 3))
        rows = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)
    else:  # Gemm: column p of x @ W (W [in, out]) or of x @ W^T (transB, W [out, in])
        cols = np.square(w).sum(axis=1) if w.shape[0] == a.shape[1] else np.square(w).sum(axis=0)
        rows = a.T
    per = np.sqrt(cols) * np.linalg.norm(rows, axis=1) if criterion == "wanda" else rows.var(axis=1) * cols
    return per.reshape(-1, flatten_owner).sum(axis=1)  # a channel owning several positions sums them


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(2)
    files = {}
    for name, shape in (("mlp", (96, 6)), ("cnn", (96, 2, 5, 5)), ("seq", (96, 3, 6))):
        x = (rng.standard_normal(shape) + 0.3).astype(np.float32)
        np.savez(d / f"{name}.npz", x=x)
        files[name] = (d / f"{name}.npz", x)
    return files


@pytest.mark.parametrize("criterion", ["wanda", "flap"])
def test_scores_on_an_mlp_equal_the_numpy_reference(calib, criterion):
    model, act = mlp()
    path, x = calib["mlp"]
    got = _scores(model, criterion, path)
    want = _reference(model, act, x, criterion, "w2")
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.ptp(got) > 0.1 * got.max()  # the reference is not flat: the order of channels is tested too


@pytest.mark.parametrize("criterion", ["wanda", "flap"])
def test_scores_on_a_cnn_equal_the_numpy_reference(calib, criterion):
    model, act = cnn(flatten=False)
    path, x = calib["cnn"]
    np.testing.assert_allclose(_scores(model, criterion, path), _reference(model, act, x, criterion, "w2"), rtol=1e-5)


@pytest.mark.parametrize("criterion", ["wanda", "flap"])
def test_a_channel_over_several_positions_scores_the_sum_of_its_positions(calib, criterion):
    """Flatten makes each conv channel 25 positions of the Gemm's input (as a head owns d positions)."""
    model, act = cnn(flatten=True)
    path, x = calib["cnn"]
    got = _scores(model, criterion, path)
    assert got.shape == (6,)
    np.testing.assert_allclose(got, _reference(model, act, x, criterion, "fc", flatten_owner=25), rtol=1e-5)


def test_streamed_statistics_equal_one_big_batch():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((40, 3, 7)) * 0.01 + 1e4  # a large mean: sum of squares minus mean^2 would cancel
    whole, streamed = ChannelStats(), ChannelStats()
    whole.add(a, axis=1)
    for i in range(0, 40, 6):  # uneven batches
        streamed.add(a[i:i + 6], axis=1)
    rows = np.moveaxis(a, 1, 0).reshape(3, -1)
    for s in (whole, streamed):
        assert s.count == 40 * 7
        np.testing.assert_allclose(s.mean, rows.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(s.variance, rows.var(axis=1), rtol=1e-6)
        np.testing.assert_allclose(s.norm, np.linalg.norm(rows, axis=1), rtol=1e-12)


def test_measured_statistics_do_not_depend_on_the_batch_size(calib):
    model, _ = cnn(flatten=False)
    _, x = calib["cnn"]
    m = load_normalized(ir.from_proto(model))
    a = next(v for n in m.graph for v in n.outputs if v.name == "a")
    found = [measure_activation_stats(m, Calibration({"x": x}, None, batch), [(a, 1)])["a"] for batch in (8, 96)]
    assert found[0].count == found[1].count == 96 * 25
    for field in ("mean", "variance", "norm"):
        np.testing.assert_allclose(getattr(found[0], field), getattr(found[1], field), rtol=1e-9)
    # a memory budget too small for two tensors at once: one pass per tensor, the same statistics
    h = next(v for n in m.graph for v in n.outputs if v.name == "h")
    apart = measure_activation_stats(m, Calibration({"x": x}, None, 8), [(a, 1), (h, 1)], budget=1)
    together = measure_activation_stats(m, Calibration({"x": x}, None, 8), [(a, 1), (h, 1)])
    for name in ("a", "h"):
        np.testing.assert_allclose(apart[name].m2, together[name].m2, rtol=1e-12)
    # and they are the activations' own: the independent reference in one run
    ref = np.moveaxis(_activation(model, "a", x), 1, 0).reshape(6, -1)
    np.testing.assert_allclose(found[0].variance, ref.var(axis=1), rtol=1e-5)


BUILDERS = {"mlp": (mlp, "mlp"), "flatten": (lambda: cnn(flatten=True), "cnn"),
            "matmul+add": (lambda: matmul_mlp(True), "seq"), "matmul": (lambda: matmul_mlp(False), "seq")}


@pytest.mark.parametrize("which", list(BUILDERS))
def test_flap_bias_fold_keeps_the_output_mean_on_the_calibration_data(calib, which):
    """Removing channels shifts the output mean by sum_j mean(X_j) W_j; flap folds exactly that into the
    bias (per position of a flattened channel; a MatMul's into the Add after it, or a new one), so the mean
    on the calibration data is kept; without the fold (--no-compensate) it is not."""
    build, data = BUILDERS[which]
    model, _ = build()
    path, x = calib[data]

    def mean_output(m):
        sess = ort.InferenceSession(m.SerializeToString() if hasattr(m, "SerializeToString") else
                                    ir.to_proto(m).SerializeToString(), providers=["CPUExecutionProvider"])
        out = sess.run(None, {"x": x})[0].astype(np.float64)
        return out.reshape(-1, out.shape[-1]).mean(axis=0) if out.ndim == 3 else out.mean(axis=0)

    ref = mean_output(model)
    errors = {}
    for compensate in (True, False):
        pruned, report = onnxprune.prune(model, ratio=0.5, criterion="flap", allocation="local", data=path,
                                         compensate=None if compensate else False, validate=False)
        assert report["channels_removed"] >= 3 and report["transforms"]["compensate"] == compensate
        errors[compensate] = np.abs(mean_output(pruned) - ref).max()
    assert errors[True] < 1e-4 * (1 + np.abs(ref).max()), errors
    assert errors[False] > 100 * errors[True] + 1e-3, errors


def test_flap_folds_into_a_padded_conv_approximately_and_says_so(calib):
    """conv2 pads: its border outputs read zeros over the padding, so the fold is approximate there; the
    channel means of the output still move far less than without it."""
    model, _ = cnn(flatten=False)
    path, x = calib["cnn"]

    def channel_means(m):
        sess = ort.InferenceSession(m.SerializeToString() if hasattr(m, "SerializeToString") else
                                    ir.to_proto(m).SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": x})[0].astype(np.float64).mean(axis=(0, 2, 3))

    ref = channel_means(model)
    errors = {}
    for compensate in (True, False):
        pruned, report = onnxprune.prune(model, ratio=0.5, criterion="flap", allocation="local", data=path,
                                         compensate=compensate, merge=False, validate=False)
        why = report["groups"][0]["why"]
        assert ("approximate where the window reaches the padding" in why) == compensate, why
        errors[compensate] = np.abs(channel_means(pruned) - ref).max()
    assert errors[True] < 0.5 * errors[False], errors


@pytest.mark.parametrize("criterion", ["wanda", "flap"])
def test_cli_prunes_the_digits_model_with_data(cli, tmp_path, criterion):
    out, rep = tmp_path / "out.onnx", tmp_path / "r.json"
    res = cli(ROOT / "models/digits_cnn.onnx", out, "--criterion", criterion, "--ratio", "0.3",
              "--data", ROOT / "models/digits_calib.npz", "--quiet", "--report", rep)
    assert res.code == 0, res.err
    report = json.loads(rep.read_text())
    assert report["criterion"] == criterion and report["channels_removed"] > 0
    section = report["activation_statistics"]
    assert section["samples"] == 256 and section["tensors"] >= 3 and "lamp" in section["normalisation"]
    assert report["transforms"]["compensate"] == (criterion == "flap")
    assert report["validation"]["input_source"].startswith("data file")


@pytest.mark.parametrize("criterion", ["wanda", "flap"])
def test_cli_refuses_them_without_data(cli, tmp_path, criterion):
    res = cli(ROOT / "models/digits_cnn.onnx", tmp_path / "out.onnx", "--criterion", criterion, "--ratio", "0.3")
    res.assert_refused(f"--criterion {criterion}", "needs calibration data")
    assert not (tmp_path / "out.onnx").exists()
