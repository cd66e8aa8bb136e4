"""ONNX backend node test cases as (model, inputs, expected outputs).

The onnx wheel ships the generators of the backend node tests (``onnx.backend.test.case.node``,
the code that writes ``onnx/backend/test/data/node/<case>/``) but not the generated folder, so the
cases are generated in memory here (about 9 s, once per process).

Helper for the twin's op tests (not a test file itself)."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


@functools.cache
def node_cases() -> dict[str, onnx.backend.test.case.test_case.TestCase]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # generators divide by zero on purpose, etc.
        with np.errstate(all="ignore"):
            return {c.name: c for c in collect_testcases(None) if c.model is not None}


def case_ops(model: onnx.ModelProto) -> set[tuple[str, str, int]]:
    """(domain, op_type, model opset of that domain) of every node, subgraphs included."""
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    found = set()

    def walk(graph):
        for node in graph.node:
            domain = "" if node.domain == "ai.onnx" else node.domain
            found.add((domain, node.op_type, opsets.get(domain, 1)))
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return found


def case_data(case) -> tuple[dict[str, np.ndarray], list[np.ndarray]] | None:
    """Inputs by name and expected outputs of the first data set; None unless all are plain arrays."""
    inputs, outputs = case.data_sets[0]
    inits = {i.name for i in case.model.graph.initializer}
    names = [i.name for i in case.model.graph.input if i.name not in inits]
    if not all(isinstance(v, (np.ndarray, np.generic, onnx.TensorProto)) for v in [*inputs, *outputs]):
        return None  # sequences and optionals: the twin takes tensors only
    return dict(zip(names, map(_array, inputs))), [_array(v) for v in outputs]


def _array(value) -> np.ndarray:
    """TensorProto values (bfloat16, float8, int4 cases) become ml_dtypes arrays."""
    return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)


DATA_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data"
DATA_KINDS = ("pytorch-converted", "pytorch-operator", "simple")


def data_case_dirs() -> list[Path]:
    """The backend cases the onnx wheel does ship as files (model.onnx + test_data_set_0/*.pb)."""
    return sorted(p for kind in DATA_KINDS for p in (DATA_DIR / kind).iterdir() if (p / "model.onnx").is_file())


def data_case(folder: Path) -> tuple[onnx.ModelProto, dict[str, np.ndarray], list[np.ndarray]]:
    model = onnx.load(folder / "model.onnx")
    data = folder / "test_data_set_0"
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]

    def read(path: Path) -> np.ndarray:
        t = onnx.TensorProto()
        t.ParseFromString(path.read_bytes())
        return numpy_helper.to_array(t)

    inputs = [read(p) for p in sorted(data.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))]
    outputs = [read(p) for p in sorted(data.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1]))]
    return model, dict(zip(names, inputs)), outputs
