"""What lets a large model prune at about the cost of loading and saving it: slab-wise weight access
(onnxprune.weights), whose blocks and lazily sliced Selection hold exactly the values an in-memory
computation gives, for memory-mapped external data as for in-memory tensors; and data-free scoring that
never reads the weights of groups --ignore leaves whole."""

from __future__ import annotations

import errno
import io as _io
import os
import subprocess
import sys

import numpy as np
import onnx_ir as ir
import pytest

from onnxprune import io, weights
from onnxprune.errors import OptionError


@pytest.fixture
def small_slabs(monkeypatch):
    """Slabs of a few hundred bytes, so every test tensor is cut into many blocks and gathers."""
    monkeypatch.setattr(weights, "SLAB_BYTES", 200)
    monkeypatch.setattr(weights, "_GATHER_BYTES", 300)
    monkeypatch.setattr(weights, "_COPY_BYTES", 300)


def _external(tmp_path, arrays: dict[str, np.ndarray]) -> ir.Model:
    """A model whose initializers are ``arrays``, saved with external data and loaded back (mapped)."""
    x = ir.Value(name="x", shape=ir.Shape([1]), type=ir.TensorType(ir.DataType.FLOAT))
    graph = ir.Graph([x], [], nodes=[], opset_imports={"": 18})
    for name, a in arrays.items():
        graph.register_initializer(ir.Value(name=name, shape=ir.Shape(a.shape),
                                            type=ir.TensorType(ir.DataType.from_numpy(a.dtype)),
                                            const_value=ir.tensor(a, name=name)))
    node = ir.node("Identity", [x])
    graph.append(node)
    graph.outputs.append(node.outputs[0])
    node.outputs[0].name = "y"
    ir.save(ir.Model(graph, ir_version=8), tmp_path / "m.onnx", external_data="m.onnx.data")
    return ir.load(tmp_path / "m.onnx")


ARRAYS = {"w2": np.random.default_rng(0).standard_normal((37, 53)).astype(np.float32),
          "w4": np.random.default_rng(1).standard_normal((9, 7, 3, 5)).astype(np.float32),
          "h": np.random.default_rng(2).standard_normal((11, 13)).astype(np.float16)}


@pytest.mark.parametrize("name, axis", [("w2", 0), ("w2", 1), ("w4", 0), ("w4", 1), ("w4", 3), ("h", 1)])
def test_slabs_are_the_moved_array_and_give_bit_identical_row_sums(tmp_path, small_slabs, name, axis):
    model = _external(tmp_path, ARRAYS)
    tensor = model.graph.initializers[name].const_value
    assert isinstance(tensor, ir.ExternalTensor)
    moved = np.moveaxis(ARRAYS[name], axis, 0)
    blocks = [b.copy() for b in weights.slabs(tensor, axis)]
    assert len(blocks) > 1
    np.testing.assert_array_equal(np.concatenate(blocks), moved)
    # the scoring reductions on mapped data, to the bit of the same blocks of the in-memory array
    in_memory = list(weights.slabs(ir.tensor(ARRAYS[name]), axis))
    assert [len(b) for b in in_memory] == [len(b) for b in blocks]
    for stat in (lambda r: np.square(r, dtype=np.float64).sum(axis=1),
                 lambda r: np.abs(r).sum(axis=1, dtype=np.float64)):
        mapped = [stat(b.reshape(b.shape[0], -1)) for b in weights.slabs(tensor, axis)]
        direct = [stat(b.reshape(b.shape[0], -1)) for b in in_memory]
        assert np.concatenate(mapped).tobytes() == np.concatenate(direct).tobytes()


@pytest.mark.parametrize("name, axis", [("w2", 0), ("w2", 1), ("w4", 1), ("w4", 3), ("h", 1)])
def test_axis_sums_are_the_same_mapped_and_in_memory_and_equal_the_direct_sums(tmp_path, monkeypatch, name, axis):
    monkeypatch.setattr(weights, "_SUM_BYTES", 100)  # many blocks per tensor
    tensor = _external(tmp_path, ARRAYS)
    tensor = tensor.graph.initializers[name].const_value
    a = ARRAYS[name]
    rest = tuple(i for i in range(a.ndim) if i != axis)
    for elementwise in (lambda w: np.square(w, dtype=np.float64), lambda w: np.abs(w).astype(np.float64)):
        mapped = weights.axis_sums(tensor, axis, elementwise)
        in_memory = weights.axis_sums(ir.tensor(a), axis, elementwise)
        assert mapped.tobytes() == in_memory.tobytes()
        np.testing.assert_allclose(mapped, elementwise(a).sum(axis=rest), rtol=1e-12)


@pytest.mark.parametrize("external", [True, False])
def test_selection_writes_and_computes_exactly_np_compress(tmp_path, small_slabs, external):
    a = ARRAYS["w4"]
    source = _external(tmp_path, ARRAYS).graph.initializers["w4"].const_value if external else ir.tensor(a)
    rng = np.random.default_rng(3)
    steps = [(1, rng.random(7) > 0.4), (0, rng.random(9) > 0.5), (3, rng.random(5) > 0.3)]
    expected = a
    for axis, keep in steps:
        expected = np.compress(keep, expected, axis=axis)
    sel = weights.Selection(source, steps, "w4")
    assert tuple(sel.shape) == expected.shape and sel.dtype == ir.DataType.FLOAT and sel.name == "w4"
    out = _io.BytesIO()
    sel.tofile(out)  # streamed, before anything computed it whole
    assert out.getvalue() == expected.tobytes()
    np.testing.assert_array_equal(sel.numpy(), expected)
    assert sel.tobytes() == expected.tobytes()
    assert weights.file_of(sel) == (str(tmp_path / "m.onnx.data") if external else None)


@pytest.mark.parametrize("kernel_copy", ["available", "refused", "absent"])
def test_selection_of_rows_copies_exactly_np_compress_into_a_file(tmp_path, small_slabs, monkeypatch, kernel_copy):
    """Rows cut from an external-data weight are copied file to file in runs of consecutive rows (the
    kernel's copy_file_range, or reads and writes where it refuses or is absent): the bytes are those of
    np.compress on the in-memory array, written at the file's position, which moves past them."""
    model = _external(tmp_path, ARRAYS)
    rng = np.random.default_rng(4)
    cases = [("w2", [(0, rng.random(37) > 0.3)]),
             ("w2", [(0, np.arange(37) >= 20), (0, np.arange(17) % 3 != 1)]),  # the second cuts what the first kept
             ("w4", [(0, np.array([True, False, False, True, True, True, False, False, True]))]),
             ("h", [(0, np.arange(11) < 0)])]  # every row
    copies = []
    if kernel_copy == "refused":
        def refuse(*args):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(os, "copy_file_range", refuse)
    elif kernel_copy == "absent":
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    else:
        real = os.copy_file_range
        monkeypatch.setattr(os, "copy_file_range", lambda *a: copies.append(a[2]) or real(*a))
    expected = [b"head"]
    with open(tmp_path / "out.bin", "wb") as f:
        f.write(b"head")  # a buffered write not yet flushed: the copy lands after it
        for name, steps in cases:
            a = ARRAYS[name]
            for axis, keep in steps:
                a = np.compress(keep, a, axis=axis)
            expected.append(a.tobytes())
            weights.Selection(model.graph.initializers[name].const_value, steps, name).tofile(f)
            assert f.tell() == sum(map(len, expected))
            in_memory = _io.BytesIO()  # no file to copy into: written a slab at a time
            weights.Selection(model.graph.initializers[name].const_value, steps, name).tofile(in_memory)
            assert in_memory.getvalue() == expected[-1]
        f.write(b"tail")
    assert (tmp_path / "out.bin").read_bytes() == b"".join(expected) + b"tail"
    if kernel_copy == "available":  # one copy per run of kept rows, never the rows one by one
        assert len(copies) == 7 + 6 + 3 and sum(copies) == sum(map(len, expected[1:]))


def test_saving_over_the_file_a_selection_reads_is_refused(tmp_path):
    model = _external(tmp_path, ARRAYS)
    value = model.graph.initializers["w2"]
    value.const_value = weights.Selection(value.const_value, [(0, np.arange(37) % 2 == 0)], "w2")
    for name in ("w4", "h"):  # only the Selection still reads m.onnx.data
        model.graph.initializers[name].const_value = ir.tensor(ARRAYS[name], name=name)
    before = (tmp_path / "m.onnx.data").read_bytes()
    with pytest.raises(OptionError, match="weights are read from that file"):
        io.save_model(model, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx.data").read_bytes() == before
    out = io.save_model(model, tmp_path / "out.onnx", external_data=True)
    saved = ir.load(out).graph.initializers["w2"].const_value.numpy()
    np.testing.assert_array_equal(saved, ARRAYS["w2"][::2])


@pytest.mark.parametrize("name", ["energy", "l1", "fpgm"])
def test_groups_left_whole_by_ignore_are_not_scored_and_the_others_score_the_same(name):
    from pathlib import Path

    from onnxprune.config import from_keywords
    from onnxprune.criteria.base import ScoreContext
    from onnxprune.graph import analyze_groups
    from onnxprune.pipeline import load_normalized, score

    model = load_normalized(Path(__file__).resolve().parent.parent / "models" / "digits_resnet.onnx")
    analysis = analyze_groups(model)
    prunable = [g.id for g in analysis.prunable_groups]
    ignored = analysis.groups[prunable[0]]
    plain = score(analysis, ScoreContext(model, from_keywords(0.3, name, validate=False).validate()))
    config = from_keywords(0.3, name, validate=False, ignore=[f"^{ignored.name}$"]).validate()
    scores = score(analysis, ScoreContext(model, config))
    assert sorted(scores.keys()) == sorted(set(prunable) - {ignored.id})
    for gid in scores.keys():
        assert scores[gid].tobytes() == plain[gid].tobytes()
    assert analysis.groups[ignored.id].prunable  # the analysis itself is untouched


_HEAVY = ("onnxruntime", "torch", "scipy", "transformers", "onnxscript")


def test_no_validate_prune_imports_no_runtime_or_torch(tiny_files, tmp_path):
    """``--no-validate`` with a data-free criterion reads and writes weights only: onnxruntime, torch and
    scipy stay unloaded (each costs tens of MiB of resident memory before any weight is read)."""
    model, _ = tiny_files
    out = tmp_path / "out.onnx"
    code = ("import runpy, sys\n"
            f"sys.argv = ['onnxprune', {str(model)!r}, {str(out)!r}, '--ratio', '0.3', '--no-validate', '--quiet']\n"
            "try:\n    runpy.run_module('onnxprune', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            f"print(','.join(sorted(m for m in {_HEAVY!r} if m in sys.modules)))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert out.exists()
    assert res.stdout.strip() == "", f"imported: {res.stdout.strip()}"
