"""Real architectures for tests: onnx's light zoo models (given random weights) and PaddleOCR."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = ["resnet50", "densenet121", "inception_v1", "inception_v2", "squeezenet", "vgg19", "shufflenet"]


def light_model(name: str, seed: int = 0) -> onnx.ModelProto:
    """A light zoo model with every ConstantOfShape weight replaced by a seeded random initializer.

    Weights are scaled like He initialisation so activations stay in range; BN variances positive."""
    model = onnx.load(LIGHT_DIR / f"light_{name}.onnx")
    rng = np.random.default_rng(seed)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    keep = []
    consumers = {}
    for node in model.graph.node:
        for i, name_in in enumerate(node.input):
            consumers.setdefault(name_in, []).append((node, i))
    for node in model.graph.node:
        if node.op_type != "ConstantOfShape":
            keep.append(node)
            continue
        shape = [int(s) for s in inits[node.input[0]]] if node.input[0] in inits else []
        uses = consumers.get(node.output[0], [])
        op, idx = (uses[0][0].op_type, uses[0][1]) if uses else ("", 0)
        arr = _random_weight(rng, shape, op, idx)
        model.graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def _random_weight(rng, shape, op, idx) -> np.ndarray:
    if op == "BatchNormalization" and idx == 4:  # variance
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if op == "BatchNormalization" and idx == 1:  # scale
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:])) if op != "Gemm" else shape[1]
        return (rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))).astype(np.float32)
    return (rng.standard_normal(shape) * 0.1).astype(np.float32)


def paddleocr_models() -> dict[str, Path]:
    """PaddleOCR det/rec/cls ONNX files shipped in the rapidocr-onnxruntime wheel."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("rapidocr-onnxruntime is not installed (pip install --no-deps rapidocr-onnxruntime)")
    models = Path(list(spec.submodule_search_locations)[0]) / "models"
    found = {}
    for path in sorted(models.glob("*.onnx")):
        kind = "det" if "_det_" in path.name else "rec" if "_rec_" in path.name else "cls"
        found[kind] = path
    return found
