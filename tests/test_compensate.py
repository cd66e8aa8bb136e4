"""Mean compensation: with BatchNormalization statistics that hold on the data, the pruned model's
outputs are right on average; where padding or a max pool makes the mean unknowable it is not done."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import onnxprune


def _run(model_bytes, x, names=None):
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(names, {"x": x})


def _classifier(pool="GlobalAveragePool"):
    """x -> conv 3x3 (padded) -> BN -> ReLU -> pool -> Flatten -> Gemm; BN statistics measured on x."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    inits = {"w": w, "g": rng.uniform(0.5, 1.5, 16), "b": rng.standard_normal(16), "mu": np.zeros(16),
             "var": np.ones(16), "fc": rng.standard_normal((16, 4)), "fcb": np.zeros(4)}
    pool_node = (helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool") if pool == "GlobalAveragePool"
                 else helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[8, 8]))
    nodes = [helper.make_node("Conv", ["x", "w"], ["z"], name="conv", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("BatchNormalization", ["z", "g", "b", "mu", "var"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"), pool_node,
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], name="head")]

    def build(inits):
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                                  [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    x = rng.standard_normal((512, 3, 8, 8)).astype(np.float32)
    probe = build(inits)
    probe.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    z = _run(probe.SerializeToString(), x, ["z"])[0]
    inits["mu"], inits["var"] = z.mean(axis=(0, 2, 3)), z.var(axis=(0, 2, 3))  # statistics that hold on x
    return build(inits), x


def test_compensation_keeps_outputs_right_on_average():
    model, x = _classifier()
    ref = _run(model.SerializeToString(), x)[0].mean(axis=0)
    errors = {}
    for compensate in (False, True):
        pruned, report = onnxprune.prune(model, ratio=0.5, criterion="l1", allocation="local", merge=False,
                                         compensate=compensate, validate=False)
        out = _run(ir.to_proto(pruned).SerializeToString(), x)[0].mean(axis=0)
        errors[compensate] = np.abs(out - ref).max()
        row = next(g for g in report["groups"] if g["name"] == "conv")
        assert row["removed"] == 8 and (("mean-compensated" in row["why"]) == compensate)
    assert errors[True] < 0.1 * errors[False], errors


def test_no_compensation_through_a_max_pool():
    model, _ = _classifier(pool="MaxPool")
    _, report = onnxprune.prune(model, ratio=0.5, criterion="l1", allocation="local", compensate=True, validate=False)
    row = next(g for g in report["groups"] if g["name"] == "conv")
    assert "not compensated: MaxPool 'pool' does not keep the mean" in row["why"]


def test_compensation_from_calibration_data_where_there_is_no_batchnorm(tmp_path):
    """No BN statistics (folded away): the means are measured on --data in onnxruntime instead."""
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((16, 3, 3, 3)), "wb": rng.standard_normal(16),
             "fc": rng.standard_normal((16, 4)), "fcb": np.zeros(4)}
    nodes = [helper.make_node("Conv", ["x", "w", "wb"], ["z"], name="conv", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["z"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], name="head")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((256, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    ref = _run(model.SerializeToString(), x)[0].mean(axis=0)
    errors = {}
    for data in (None, tmp_path / "calib.npz"):
        pruned, report = onnxprune.prune(model, ratio=0.5, criterion="l1", allocation="local", compensate=True,
                                         data=data, validate=False)
        errors[data is not None] = np.abs(_run(ir.to_proto(pruned).SerializeToString(), x)[0].mean(axis=0) - ref).max()
        row = next(g for g in report["groups"] if g["name"] == "conv")
        assert ("mean-compensated from calibration data" in row["why"]) == (data is not None)
    assert errors[True] < 1e-3 * errors[False] + 1e-5, errors
