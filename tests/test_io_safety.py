"""Nothing IN references is ever opened for writing, and bad input is one clear line, exit 2.

Every case runs through the real CLI entry point (``onnxprune.cli.main``; one case in a subprocess)
and proves IN's files are byte-identical afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from conftest import run_subprocess
from onnx import external_data_helper, helper

from onnxprune import api, io
from onnxprune.errors import OptionError

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "models" / "digits_cnn.onnx"


def external_model(folder: Path, locations: tuple[str, ...], name: str = "in.onnx") -> Path:
    """digits_cnn with its weights spread over the external-data files ``locations`` (round robin)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(CNN)
    for i, tensor in enumerate(model.graph.initializer):
        if not tensor.HasField("raw_data"):
            tensor.raw_data = onnx.numpy_helper.to_array(tensor).tobytes()
            del tensor.float_data[:]
        external_data_helper.set_external_data(tensor, location=locations[i % len(locations)])
    external_data_helper.write_external_data_tensors(model, str(folder))
    onnx.save(model, folder / name)
    assert set(io.referenced_files(folder / name)) == {folder / loc for loc in locations}
    return folder / name


@pytest.mark.parametrize("case", ["data_named_after_out", "out_is_data_file", "second_data_file",
                                  "data_in_other_folder"])
def test_out_colliding_with_in_data_is_refused(tmp_path, cli, digests, case):
    src = tmp_path / "src"
    if case == "data_named_after_out":  # OUT.data would be IN's (only) data file
        model, out = external_model(src, ("o.onnx.data",)), src / "o.onnx"
    elif case == "out_is_data_file":  # OUT itself is IN's data file
        model, out = external_model(src, ("in.onnx.data",)), src / "in.onnx.data"
    elif case == "second_data_file":  # IN reads two files; OUT.data is the second
        model, out = external_model(src, ("w.bin", "p.onnx.data")), src / "p.onnx"
    else:  # IN's data lives in a subfolder that OUT is written into
        (src / "w").mkdir(parents=True)
        model, out = external_model(src, ("w/o.onnx.data",)), src / "w" / "o.onnx"
    before = digests(tmp_path)
    res = cli(model, out, "--ratio", "0.3")
    res.assert_refused("input model", "choose another")
    assert digests(tmp_path) == before  # IN and its data untouched, nothing new written


def test_out_beside_in_data_works_and_leaves_in_alone(tmp_path, cli, digests):
    model = external_model(tmp_path, ("in.onnx.data",))
    before = digests(tmp_path)
    res = cli(model, tmp_path / "o.onnx", "--ratio", "0.3")
    assert res.code == 0, res.err
    after = digests(tmp_path)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {"o.onnx", "o.onnx.data"}
    assert io.referenced_files(tmp_path / "o.onnx") == [tmp_path / "o.onnx.data"]


def test_hard_link_to_in_is_refused(tmp_path, cli, digests):
    model = tmp_path / "in.onnx"
    model.write_bytes(CNN.read_bytes())
    os.link(model, tmp_path / "alias.onnx")
    before = digests(tmp_path)
    cli(model, tmp_path / "alias.onnx", "--ratio", "0.3").assert_refused("is the input model")
    assert digests(tmp_path) == before


def test_api_save_never_writes_over_the_weights_it_reads(tmp_path, digests):
    """A model handed to the API still reads IN's data file: saving onto that file is refused."""
    model = external_model(tmp_path, ("o.onnx.data",))
    before = digests(tmp_path)
    with pytest.raises(OptionError, match="weights are read from that file"):
        api.prune(ir.load(model), ratio=0.3, validate=False, output=tmp_path / "o.onnx")
    with pytest.raises(OptionError, match="weights are read from that file"):
        io.save_model(ir.load(model), tmp_path / "o.onnx.data")
    assert digests(tmp_path) == before


def _not_a_model(folder: Path) -> Path:
    path = folder / "tensor.onnx"  # valid protobuf bytes, but a TensorProto
    path.write_bytes(onnx.numpy_helper.from_array(np.ones(4, np.float32)).SerializeToString())
    return path


def _no_nodes(folder: Path) -> Path:
    path = folder / "empty_graph.onnx"
    graph = helper.make_graph([], "g", [], [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), path)
    return path


def _random_bytes(folder: Path) -> Path:
    path = folder / "noise.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def _data_is_a_directory(folder: Path) -> Path:
    model = external_model(folder, ("in.onnx.data",))
    (folder / "in.onnx.data").unlink()
    (folder / "in.onnx.data").mkdir()
    return model


@pytest.mark.parametrize("make", [_not_a_model, _no_nodes, _random_bytes, _data_is_a_directory],
                         ids=lambda f: f.__name__.strip("_"))
def test_bad_input_is_one_line(tmp_path, cli, digests, make):
    (tmp_path / "in").mkdir()
    model = make(tmp_path / "in")
    before = digests(tmp_path)
    cli(model, tmp_path / "o.onnx", "--ratio", "0.3").assert_refused(model.name)
    assert digests(tmp_path) == before


def test_collision_through_the_console_entry_point(tmp_path, digests):
    """The same refusal from ``python -m onnxprune`` in a fresh process: stderr and exit code."""
    model = external_model(tmp_path, ("o.onnx.data",))
    before = digests(tmp_path)
    run_subprocess(model, tmp_path / "o.onnx").assert_refused()
    assert digests(tmp_path) == before


def test_quantize_output_onto_in_is_refused(tmp_path, cli):
    """--quantize writes OUT.int8.onnx: with OUT = m.onnx that is IN when IN is m.int8.onnx."""
    model = tmp_path / "m.int8.onnx"
    model.write_bytes(CNN.read_bytes())
    before = model.read_bytes()
    cli(model, tmp_path / "m.onnx", "--ratio", "0.3", "--quantize", "dynamic").assert_refused(
        "--quantize output", "is the input model")
    assert model.read_bytes() == before


def test_save_inputs_onto_a_model_is_refused(tmp_path, cli, digests):
    """``onnxprune validate A B --save-inputs B``: the inputs file may not replace either model."""
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(CNN.read_bytes())
    b.write_bytes(CNN.read_bytes())
    before = digests(tmp_path)
    for target in (a, b):
        cli("validate", a, b, "--save-inputs", target, "--no-latency").assert_refused(
            "--save-inputs file", "is the input model")
    assert digests(tmp_path) == before


@pytest.mark.parametrize("flag, target, fragment", [
    ("--report", "in.onnx", "is the input model"),
    ("--report", "w.bin", "external data file"),
    ("--plot", "w.bin", "external data file"),
    ("--report", "o.onnx", "is the output model"),
    ("--report", "o.onnx.data", "is the output model or its data file"),
    ("--report", "missing/r.json", "does not exist"),
])
def test_side_outputs_never_overwrite_in_or_out(tmp_path, cli, digests, flag, target, fragment):
    """--report and --plot are checked like OUT, before any work: nothing is written."""
    model = external_model(tmp_path, ("w.bin",))
    before = digests(tmp_path)
    cli(model, tmp_path / "o.onnx", "--ratio", "0.3", flag, tmp_path / target).assert_refused(fragment)
    assert digests(tmp_path) == before
