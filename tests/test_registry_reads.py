"""What normalisation and validation read from the op registry: output channels, BN folding, constant folds."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.graph.optable import traits
from onnxprune.passes.normalize import fold_batchnorm


@pytest.mark.parametrize("op, attrs, dims, expected", [
    ("Conv", {"group": 2}, [16, 4, 3, 3], 16),
    ("ConvTranspose", {"group": 2}, [8, 6, 3, 3], 12),
    ("Gemm", {"transB": 1}, [10, 32], 10),
    ("Gemm", {}, [32, 10], 10),
    ("MatMul", {}, [32, 7], 7),
    ("Relu", {}, [4, 4], None),
])
def test_output_channels(op, attrs, dims, expected):
    node = ir.from_proto(helper.make_node(op, ["x", "w"], ["y"], **attrs))
    affine = traits(node, 17).affine()
    assert (affine.output_channels(node, dims) if affine is not None else None) == expected


@pytest.mark.parametrize("training_mode, folded", [(0, 1), (1, 0)])
def test_batchnorm_folds_only_with_stored_statistics(training_mode, folded):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")] + [
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), n) for n in ("g", "b", "m", "v")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], training_mode=training_mode),
             helper.make_node("Relu", ["n"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]))
    assert fold_batchnorm(model) == folded
    assert [n.op_type for n in model.graph] == (["Conv", "Relu"] if folded else ["Conv", "BatchNormalization", "Relu"])
