"""Every test model's twin output matches onnxruntime (max error <= 1e-4 of the output's magnitude):
bundled digits models, onnx's light zoo, PaddleOCR det/rec/cls, and the torch-built architectures
with both exporters. Gradients reach every weight matrix."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_archs
import zoo

from onnxprune.passes.normalize import normalize
from onnxprune.twin import Twin
from onnxprune.validate.fidelity import output_metrics, session, synthetic_inputs

ROOT = Path(__file__).resolve().parent.parent
RTOL = 1e-4
# Saturated sigmoid/softmax outputs of random-weight models are ~1e-7 apart between ORT's and torch's
# exp; the value before the activation is compared at 1e-4 too (see _expose_pre_activations).
ATOL_FLOOR = 1e-6
SMALL = {"digits_cnn", "digits_resnet", "ocr_cls", "ocr_rec"} | {
    f"{a}_{e}" for a in torch_archs.ARCHS for e in torch_archs.EXPORTERS}

MODEL_IDS = (
    ["digits_cnn", "digits_resnet"]
    + [f"light_{n}" for n in zoo.LIGHT_MODELS]
    + ["ocr_det", "ocr_rec", "ocr_cls"]
    + [f"{a}_{e}" for a in torch_archs.ARCHS for e in torch_archs.EXPORTERS]
)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("twin_archs")


def _load(model_id: str, export_dir: Path) -> onnx.ModelProto:
    if model_id.startswith("digits_"):
        return onnx.load(ROOT / "models" / f"{model_id}.onnx")
    if model_id.startswith("light_"):
        return zoo.light_model(model_id.removeprefix("light_"))
    if model_id.startswith("ocr_"):
        return onnx.load(zoo.paddleocr_models()[model_id.removeprefix("ocr_")])
    for exporter in torch_archs.EXPORTERS:
        if model_id.endswith("_" + exporter):
            path = torch_archs.export_arch(model_id.removesuffix("_" + exporter), exporter, export_dir)
            return onnx.load(path)
    raise KeyError(model_id)


def _expose_pre_activations(model: onnx.ModelProto) -> onnx.ModelProto:
    """Add the input of a final Softmax/LogSoftmax/Sigmoid as a graph output: random-weight models
    saturate these, which would hide errors upstream."""
    producers = {o: n for n in model.graph.node for o in n.output}
    names = {o.name for o in model.graph.output}
    for out in list(model.graph.output):
        node = producers.get(out.name)
        if node is not None and node.op_type in ("Softmax", "LogSoftmax", "Sigmoid") and node.input[0] not in names:
            model.graph.output.append(onnx.helper.make_tensor_value_info(node.input[0], out.type.tensor_type.elem_type, None))
            names.add(node.input[0])
    return model


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_twin_matches_onnxruntime(model_id, export_dir):
    proto = _expose_pre_activations(_load(model_id, export_dir))
    sess = session(proto.SerializeToString())
    feeds = synthetic_inputs(sess, seed=0, batch=2)
    expected = sess.run(None, feeds)
    twin = Twin(ir.serde.deserialize_model(proto))
    with torch.no_grad():
        outs = twin(feeds)
    assert [o.name for o in sess.get_outputs()] == twin.output_names
    for name, ref, out in zip(twin.output_names, expected, outs):
        got = out.detach().numpy()
        assert got.shape == ref.shape, name
        m = output_metrics(ref, got)
        assert m["max_rel"] <= RTOL or m["max_abs"] <= ATOL_FLOOR, f"{model_id} output {name}: {m}"
        assert np.abs(ref).max() > 0, f"{model_id} output {name} is all zeros: a weak comparison"
    if model_id in SMALL:
        # Gradients reach every weight matrix. PaddleOCR keeps its weights in Constant nodes (buffers
        # in the twin); normalize() lifts them to initializers, as the pruning pipeline does.
        twin = Twin(normalize(ir.serde.deserialize_model(proto)))
        outs = twin(feeds)
        sum(o.float().pow(2).mean() for o in outs if o.dtype.is_floating_point).backward()
        weights = [(name, p) for name, p in twin.named_onnx_parameters() if p.dim() >= 2]
        assert weights, f"{model_id}: no weight matrices became parameters"
        for name, p in weights:
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{model_id}: no gradient for {name}"


def _export_at(name: str, dynamo: bool, opset: int, path: Path) -> Path:
    """torch_archs' exporters are fixed at opsets 13/17/18; this reaches the ends of the range."""
    model, x = torch_archs.build_arch(name), torch.from_numpy(torch_archs.reference_input(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=opset, external_data=False,
                              input_names=["input"], output_names=["output"], verbose=False)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, do_constant_folding=False,
                              input_names=["input"], output_names=["output"])
    return path


@pytest.mark.parametrize(("dynamo", "opset"), [(False, 11), (True, 21)], ids=["torchscript11", "dynamo21"])
@pytest.mark.parametrize("name", list(torch_archs.ARCHS))
def test_twin_matches_onnxruntime_at_opsets_11_and_21(name, dynamo, opset, tmp_path):
    path = _export_at(name, dynamo, opset, tmp_path / f"{name}.onnx")
    model = ir.load(path)
    assert model.opset_imports[""] == opset
    x = torch_archs.reference_input(name)
    (expected,) = session(path).run(None, {"input": x})
    with torch.no_grad():
        (out,) = Twin(model)(input=x)
    m = output_metrics(expected, out.numpy())
    assert m["max_rel"] <= RTOL, f"{name} opset {opset}: {m}"


def test_models_cover_both_exporters_and_opsets(export_dir):
    """The torch architectures reach the twin at opsets 13, 17 and 18 (TorchScript and dynamo)."""
    seen = set()
    for exporter in torch_archs.EXPORTERS:
        path = torch_archs.export_arch("transformer_block", exporter, export_dir)
        seen.add(ir.load(path).opset_imports[""])
    assert seen == {13, 17, 18}
