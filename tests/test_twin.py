"""The twin's API: named parameters, calling conventions, unsupported-op errors, gates, write_back,
the registry's opset ranges, and torch staying optional."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from onnxprune.errors import OnnxPruneError, PlanError, UnsupportedOpError
from onnxprune.io import save_model
from onnxprune.twin import Twin, registered_ops
from onnxprune.twin.registry import register

ROOT = Path(__file__).resolve().parent.parent
CNN = ROOT / "models" / "digits_cnn.onnx"
RELU2 = "/features/features.1/features.1.2/Relu_output_0"  # [N, 64, 16, 16], feeds conv features.3.0
POOL2 = "/features/features.4/MaxPool_output_0"  # [N, 64, 4, 4]
FLAT = "/flatten/Flatten_output_0"  # [N, 1024], channel c owns features [16c, 16c + 16)


def _x(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 16, 16)).astype(np.float32)


def _ort(model_path_or_bytes, x: np.ndarray) -> np.ndarray:
    src = model_path_or_bytes if isinstance(model_path_or_bytes, bytes) else str(model_path_or_bytes)
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


# ---------------------------------------------------------------- parameters and calling

def test_initializers_are_parameters_by_onnx_name():
    model = ir.load(CNN)
    twin = Twin(model)
    names = dict(twin.named_onnx_parameters())
    assert set(names) == set(model.graph.initializers)  # all float in this model
    w = twin.parameter("features.0.0.weight")
    assert isinstance(w, torch.nn.Parameter) and w.requires_grad
    np.testing.assert_array_equal(w.detach().numpy(), model.graph.initializers["features.0.0.weight"].const_value.numpy())
    assert {id(p) for p in twin.parameters()} == {id(p) for p in names.values()}
    with pytest.raises(KeyError, match="no float initializer"):
        twin.parameter("nope")


def test_names_with_odd_characters_and_int_initializers():
    """'.', '/', ':' in names; int64 shape constants are buffers, not parameters."""
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "a/b.c:0"], ["m"]),
         helper.make_node("Reshape", ["m", "shape:0"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(w, "a/b.c:0"), onnx.numpy_helper.from_array(np.array([-1], np.int64), "shape:0")],
    )
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    twin = Twin(model)
    assert [n for n, _ in twin.named_onnx_parameters()] == ["a/b.c:0"]
    assert not any(b.dtype == torch.float32 for b in twin.buffers())
    assert any(b.dtype == torch.int64 for b in twin.buffers())
    x = np.ones((4, 2), np.float32)
    (y,) = twin(x=x)
    np.testing.assert_allclose(y.detach().numpy(), (x @ w).reshape(-1))


def test_calling_conventions():
    twin = Twin(ir.load(CNN))
    x = _x()
    expected = _ort(CNN, x)
    with torch.no_grad():
        for out in (twin(input=x)[0], twin({"input": x})[0], twin(torch.from_numpy(x))[0], twin.run({"input": x})["logits"]):
            np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5)
    assert twin.input_names == ["input"] and twin.output_names == ["logits"]
    with pytest.raises(OnnxPruneError, match="missing inputs"):
        twin()
    with pytest.raises(OnnxPruneError, match="unknown inputs"):
        twin(input=x, other=x)


def test_intermediates_are_freed_after_last_use():
    """Every computed value that is not a graph output is dropped exactly once, at its last reader."""
    twin = Twin(ir.load(CNN))
    freed = [s for *_, frees, _ in twin._program for s in frees]
    produced = {s for _, _, outs, _, _ in twin._program for s in outs}
    assert len(freed) == len(set(freed))
    assert produced - set(freed) == set(twin._output_slots)
    last_reader = {}
    for step, (_, ins, _, _, _) in enumerate(twin._program):
        for s in ins:
            last_reader[s] = step
    for step, (*_, frees, _) in enumerate(twin._program):
        for s in frees:
            assert last_reader.get(s, step) == step


@pytest.mark.parametrize("shape", [[], [0], [2, 3]])
def test_constant_of_shape_matches_onnxruntime_including_an_empty_shape(shape):
    """An empty shape input makes a scalar (BERT's TorchScript export has one); the twin made an error."""
    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [2.5])
    node = helper.make_node("ConstantOfShape", ["s"], ["y"], value=value)
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [helper.make_tensor("s", TensorProto.INT64, [len(shape)], shape)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    expected = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {})[0]
    with torch.no_grad():
        got = Twin(ir.serde.deserialize_model(proto))()[0].numpy()
    assert got.shape == expected.shape == tuple(shape)
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------- unsupported ops

def _one_node_model(op: str, domain: str = "", opset: int = 17, **attrs) -> ir.Model:
    node = helper.make_node(op, ["x"], ["y"], name="my_node", domain=domain, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return ir.serde.deserialize_model(helper.make_model(graph, opset_imports=opsets))


def test_unknown_op_names_op_domain_opset_and_node():
    with pytest.raises(UnsupportedOpError) as info:
        Twin(_one_node_model("FancyOp", domain="com.vendor"))
    msg = str(info.value)
    assert all(s in msg for s in ("FancyOp", "com.vendor", "opset 1", "my_node"))
    assert isinstance(info.value, OnnxPruneError)


def test_subgraph_op_is_unsupported():
    body = helper.make_graph([], "body", [], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])])
    model = _one_node_model("If", then_branch=body, else_branch=body)
    with pytest.raises(UnsupportedOpError, match=r"If \(domain 'ai.onnx', opset 17\) at node 'my_node'"):
        Twin(model)


def test_op_outside_its_opset_range_is_unsupported():
    assert ("", "HardSwish") in registered_ops()
    Twin(_one_node_model("HardSwish", opset=14))
    with pytest.raises(UnsupportedOpError, match="HardSwish.*opset 13"):
        Twin(_one_node_model("HardSwish", opset=13))  # HardSwish exists from opset 14


def test_unsupported_variant_of_registered_op():
    with pytest.raises(UnsupportedOpError, match="AveragePool.*spatial"):
        model = _one_node_model("AveragePool", kernel_shape=[1, 1, 1, 1])
        Twin(model)(x=np.zeros((1, 1, 2, 2, 2, 2), np.float32))


def test_registry_refuses_overlapping_ranges():
    with pytest.raises(ValueError, match="overlapping"):
        register("Relu", since=5, until=6)(lambda node: None)
    assert registered_ops()[("", "Squeeze")] == [(1, 12), (13, 10_000)]


# ---------------------------------------------------------------- gates

def _zero_consumer_inputs(model: ir.Model, weight: str, channel: int) -> None:
    w = model.graph.initializers[weight].const_value.numpy().copy()
    w[:, channel] = 0
    model.graph.initializers[weight].const_value = ir.Tensor(w, name=weight)


def test_zero_gate_equals_zeroing_the_channel():
    x = _x()
    gated = Twin(ir.load(CNN), gates={RELU2: (1, None, 64)})
    with torch.no_grad():
        gated.gate(RELU2)[5] = 0.0
        out = gated(input=x)[0].numpy()
    ref_model = ir.load(CNN)
    _zero_consumer_inputs(ref_model, "features.3.0.weight", 5)  # the next conv ignores channel 5
    with torch.no_grad():
        ref = Twin(ref_model)(input=x)[0].numpy()
        plain = Twin(ir.load(CNN))(input=x)[0].numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert np.abs(out - plain).max() > 1e-3  # the gate really changed something


def test_index_map_gates_a_flattened_channel():
    """A gate on the flattened features with index_map c -> [16c, 16c + 16) equals the same gate
    before Flatten, and equals zeroing the Gemm's input columns."""
    x = _x()
    flat = Twin(ir.load(CNN), gates={FLAT: (1, np.repeat(np.arange(64), 16), 64)})
    pooled = Twin(ir.load(CNN), gates={POOL2: (1, None, 64)})
    with torch.no_grad():
        flat.gate(FLAT)[[3, 40]] = 0.0
        pooled.gate(POOL2)[[3, 40]] = 0.0
        a, b = flat(input=x)[0].numpy(), pooled(input=x)[0].numpy()
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    model = ir.load(CNN)
    w = model.graph.initializers["fc1.weight"].const_value.numpy().copy()
    w[:, 3 * 16:4 * 16] = 0
    w[:, 40 * 16:41 * 16] = 0
    model.graph.initializers["fc1.weight"].const_value = ir.Tensor(w, name="fc1.weight")
    with torch.no_grad():
        np.testing.assert_allclose(a, Twin(model)(input=x)[0].numpy(), rtol=1e-5, atol=1e-5)


def test_gate_gradients_match_finite_differences():
    x = _x(8)
    twin = Twin(ir.load(CNN), gates={RELU2: (1, None, 64)})
    twin.requires_grad_(False)
    gate = twin.gate(RELU2)
    gate.requires_grad_(True)
    loss = twin(input=x)[0].pow(2).mean()
    loss.backward()
    assert gate.grad is not None and gate.grad.shape == (64,)
    assert torch.count_nonzero(gate.grad) > 32
    k = int(torch.argmax(gate.grad.abs()))
    eps = 1e-2
    with torch.no_grad():
        gate[k] += eps
        up = twin(input=x)[0].pow(2).mean().item()
        gate[k] -= 2 * eps
        down = twin(input=x)[0].pow(2).mean().item()
    fd = (up - down) / (2 * eps)
    assert abs(fd - gate.grad[k].item()) <= 1e-2 * abs(fd)


def test_shared_gate_input_gate_and_initializer_gate():
    """One Parameter at two values; gates on a graph input and on an initializer apply when read."""
    shared = torch.nn.Parameter(torch.ones(64))
    twin = Twin(ir.load(CNN), gates={RELU2: (1, None, shared), POOL2: (1, None, shared)})
    assert twin.gate(RELU2) is twin.gate(POOL2) is shared
    assert set(twin.gates()) == {RELU2, POOL2}
    x = _x()
    twin.set_gates({"input": (1, None, torch.zeros(1)), "fc2.bias": (0, None, 10)})
    assert twin.gates().keys() == {"input", "fc2.bias"}
    with torch.no_grad():
        twin.gate("fc2.bias")[:] = 0.0
        out = twin(input=x)[0].numpy()
        (zero_in,) = Twin(ir.load(CNN))(input=np.zeros_like(x))
    # zero input and zero fc2 bias: equals the plain model on zeros minus fc2's bias
    bias = ir.load(CNN).graph.initializers["fc2.bias"].const_value.numpy()
    np.testing.assert_allclose(out, zero_in.numpy() - bias, rtol=1e-5, atol=1e-5)
    with pytest.raises(KeyError):
        twin.set_gates({"no such value": (1, None, 3)})
    with pytest.raises(ValueError, match="past the gate"):
        twin.set_gates({FLAT: (1, np.repeat(np.arange(64), 16), 10)})


# ---------------------------------------------------------------- write_back

def test_write_back_round_trip(tmp_path):
    x = _x()
    model = ir.load(CNN)
    twin = Twin(model)
    with torch.no_grad():
        twin.parameter("fc2.bias").add_(1.0)
        twin.parameter("features.0.0.weight").mul_(0.5)
        expected = twin(input=x)[0].numpy()
    twin.write_back(model)
    out_path = save_model(model, tmp_path / "updated.onnx")
    saved = onnx.load(out_path)
    inits = {t.name: t for t in saved.graph.initializer}
    assert inits["fc2.bias"].data_type == TensorProto.FLOAT
    assert list(inits["features.0.0.weight"].dims) == [32, 1, 3, 3]
    got = _ort(out_path, x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(got - _ort(CNN, x)).max() > 0.5  # the saved model really changed
    original = ir.load(CNN)
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(inits["fc1.weight"]),
                                  original.graph.initializers["fc1.weight"].const_value.numpy())


def test_write_back_refuses_a_model_that_does_not_fit():
    twin = Twin(ir.load(CNN))
    other = ir.load(CNN)
    w = other.graph.initializers["fc2.bias"].const_value.numpy()[:5].copy()
    other.graph.initializers["fc2.bias"].const_value = ir.Tensor(w, name="fc2.bias")
    with pytest.raises(PlanError, match="fc2.bias"):
        twin.write_back(other)


# ---------------------------------------------------------------- torch stays optional

def test_twin_without_torch_names_the_extra():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import onnxprune\n"
            "try:\n    import onnxprune.twin\nexcept Exception as e:\n"
            "    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.startswith("OnnxPruneError") and "pip install onnxprune[torch]" in out


def test_import_onnxprune_does_not_import_torch():
    code = "import sys, onnxprune; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "False"


def test_conv_whose_input_channels_were_all_pruned_gives_its_bias():
    """A pruned branch can lose every channel (a Split part of size 0): ONNX's Conv then outputs its
    bias at every position, where torch's conv would return no channels at all."""
    import onnx_ir as ir
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from onnxprune.twin import Twin

    b = np.array([0.5, -1.0, 2.0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 0, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 5, 5])],
        [numpy_helper.from_array(np.zeros((3, 0, 3, 3), np.float32), "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.zeros((2, 0, 5, 5), np.float32)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = Twin(ir.from_proto(model))(x)[0].detach().numpy()
    assert got.shape == ref.shape == (2, 3, 5, 5) and np.allclose(got, ref)
