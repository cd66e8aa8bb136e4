"""Generated graphs (tests/graphgen.py) against onnxruntime: every registry op between a producer and a
consumer, pruned by lossless lumping, explicit removals and ratio 0.3. Nothing may compute a different
result or raise anything but an onnxprune error. ``tools/fuzz.py`` runs the same cases at scale."""

from __future__ import annotations

import graphgen
import numpy as np
import pytest
from onnx import numpy_helper

from onnxprune.graph.optable import TABLE

CHUNKS, PER_CHUNK = 10, 100  # 1000 cases: every op about nine times; ~2 s of CPU per chunk

def _attr(node, name, default=None):
    return next((a for a in node.attribute if a.name == name), default)


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_generated_graphs_prune_exactly(chunk):
    failures = []
    for seed in range(chunk * PER_CHUNK, (chunk + 1) * PER_CHUNK):
        case, ref = graphgen.valid_case(seed)
        for check in ("lumping", "remove", "ratio"):
            outcome, detail = graphgen.check_one(case, check, ref)
            assert outcome in graphgen.OUTCOMES
            if outcome in ("WRONG", "crash"):
                failures.append(f"[{check} {outcome}] {case.describe()}\n    {detail.strip()[-600:]}")
    assert not failures, "\n".join(failures)


def test_every_registry_entry_has_a_generator_case():
    """Each op of the registry has templates, and each entry's opset range is reached by one of them."""
    missing = []
    for e in TABLE:
        lo, hi = e.since, e.until if e.until is not None else 23
        tpls = graphgen.TEMPLATES.get(e.op, [])
        if not any(t.since <= hi and lo <= t.until for t in tpls):
            missing.append(f"{e.op} (opsets {lo}..{hi})")
    assert not missing, "registry entries without a generator case: " + ", ".join(missing)
    assert set(graphgen.OPS) <= {e.op for e in TABLE}, "templates for ops the registry does not list"


def test_generator_is_seeded():
    a, b = graphgen.make_case(7), graphgen.make_case(7)
    assert a is not None and a.model.SerializeToString() == b.model.SerializeToString()
    assert a.planted == b.planted and a.remove == b.remove


def test_planted_channels_are_what_they_say():
    """The planting the differential checks rely on: dead rows are zero, proportional rows are c times
    another row, in the producer's output-channel layout (Conv, ConvTranspose, Gemm with/without transB)."""
    seen = set()
    for seed in range(0, 400):
        case = graphgen.make_case(seed)
        if case is None or case.producer in seen or "dead" not in case.planted or "prop" not in case.planted:
            continue
        p = next(n for n in case.model.graph.node if n.name == "p")
        w = numpy_helper.to_array(next(t for t in case.model.graph.initializer if t.name == p.input[1]))
        axis = {"Conv": 0, "ConvTranspose": 1, "MatMul": 1}.get(p.op_type)
        if p.op_type == "Gemm":
            axis = 0 if _attr(p, "transB") is not None and _attr(p, "transB").i else 1
        rows = np.moveaxis(w.astype(np.float64), axis, 0).reshape(w.shape[axis], -1)
        for j in case.planted["dead"]:
            assert not rows[j].any()
        for j in case.planted["prop"]:
            ratios = [rows[j] / rows[i] for i in range(len(rows)) if i != j and np.all(rows[i] != 0)]
            assert any(np.allclose(r, r[0], rtol=1e-2) and r[0] > 0 for r in ratios), (seed, j)
        seen.add(case.producer)
    assert seen == set(graphgen.PRODUCERS)
