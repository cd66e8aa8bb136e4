"""Shared fixtures: the CLI run in-process through its real entry point, a tiny model and its data, file
fingerprints."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def assert_refused(self, *fragments: str) -> None:
        """A clean user error: exit 2, one 'onnxprune: error:' line, no traceback."""
        assert self.code == 2, (self.code, self.err)
        lines = self.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("onnxprune: error: "), self.err
        assert "Traceback" not in self.err
        for f in fragments:
            assert f in lines[0], (f, lines[0])


@pytest.fixture
def cli(capsys):
    """``cli(*args)``: ``onnxprune.cli.main`` in this process; (exit code, stdout, stderr)."""
    from onnxprune.cli import main

    def run(*args) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_subprocess(*args, timeout: int = 300) -> CliResult:
    """``python -m onnxprune`` in a fresh interpreter (the console entry point's path)."""
    res = subprocess.run([sys.executable, "-m", "onnxprune", *map(str, args)], capture_output=True, text=True,
                         timeout=timeout)
    return CliResult(res.returncode, res.stdout, res.stderr)


def tiny_cnn(classifier: bool = True) -> onnx.ModelProto:
    """x[N,2,6,6] -> Conv(8) -> BN -> Relu -> Conv(8) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(4):
    two prunable groups of 8, a classifier-shaped output, seeded weights with distinct norms. Without
    ``classifier`` a 1x1 Conv(4) head replaces the pool and Gemm: the output is a feature map."""
    rng = np.random.default_rng(0)

    def init(name, *shape, scale=1.0):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [init("w1", 8, 2, 3, 3, scale=0.5), init("b1", 8, scale=0.1),
             numpy_helper.from_array(rng.uniform(0.2, 2.0, 8).astype(np.float32), "gamma"),
             init("beta", 8, scale=0.2), init("mean", 8, scale=0.1),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "var"),
             init("w2", 8, 8, 3, 3, scale=0.3), init("b2", 8, scale=0.1), init("wf", 4, 8), init("bf", 4, scale=0.1)]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"], name="bn1"),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])]
    if not classifier:  # y becomes a feature map: Conv(4) over r2
        inits[-2:] = [init("wf", 4, 8, 1, 1), init("bf", 4, scale=0.1)]
        nodes[-3:] = [helper.make_node("Conv", ["r2", "wf", "bf"], ["y"], name="head")]
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tiny_attention() -> onnx.ModelProto:
    """x[1,4,8] -> one self-attention layer of 2 heads of 4 (q, k, v, o projections) -> y[1,4,8]: whole heads
    with --attention-unit head, head dimensions with dim."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), n) for n in ("wq", "wk", "wv", "wo")]
    inits += [numpy_helper.from_array(np.array(s, dtype=np.int64), n)
              for n, s in (("split", [1, 4, 2, 4]), ("merge", [1, 4, 8]))]
    nodes = []
    for p in "qkv":
        nodes += [helper.make_node("MatMul", ["x", f"w{p}"], [f"{p}0"], name=f"{p}_proj"),
                  helper.make_node("Reshape", [f"{p}0", "split"], [f"{p}1"], name=f"{p}_split"),
                  helper.make_node("Transpose", [f"{p}1"], [f"{p}2"], name=f"{p}_heads",
                                   perm=[0, 2, 3, 1] if p == "k" else [0, 2, 1, 3])]
    nodes += [helper.make_node("MatMul", ["q2", "k2"], ["s"], name="scores"),
              helper.make_node("Softmax", ["s"], ["a"], name="softmax", axis=-1),
              helper.make_node("MatMul", ["a", "v2"], ["c"], name="context"),
              helper.make_node("Transpose", ["c"], ["c1"], name="unheads", perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["c1", "merge"], ["c2"], name="merge"),
              helper.make_node("MatMul", ["c2", "wo"], ["y"], name="o_proj")]
    graph = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory) -> tuple[Path, Path]:
    """(tiny model file, its calibration .npz of 32 samples with labels), written once per session."""
    d = tmp_path_factory.mktemp("tiny")
    model, data = d / "tiny.onnx", d / "calib.npz"
    onnx.save(tiny_cnn(), model)
    x = np.random.default_rng(1).standard_normal((32, 2, 6, 6)).astype(np.float32)
    np.savez(data, x=x, labels=np.arange(32) % 4)
    return model, data


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``: compare before and after to prove nothing was written."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def digests():
    return file_digests


@pytest.fixture(scope="session")
def tiny_bert_file(tmp_path_factory) -> Path:
    """A 2-layer BERT (random weights from a transformers config: vocab 100, 2 token types, 32 positions)
    exported by the TorchScript exporter at opset 17: forward(input_ids, attention_mask, token_type_ids)
    -> last_hidden_state, batch and sequence free."""
    import torch
    import transformer_archs

    torch.manual_seed(0)
    encoder = transformer_archs.bert_encoder(token_types=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = (torch.randint(0, 100, (2, 16)), torch.ones(2, 16, dtype=torch.long), torch.zeros(2, 16, dtype=torch.long))
    path = tmp_path_factory.mktemp("bert") / "bert.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder, example, path, dynamo=False, opset_version=17, input_names=names,
                          output_names=["last_hidden_state"],
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]})
    return path


@pytest.fixture(scope="session")
def transformer_export(tmp_path_factory):
    """``transformer_export(arch, exporter)``: (model file, .npz of its reference inputs) of a tiny
    random-weight transformer from ``transformer_archs``, exported once per session: the folder is shared
    by the xdist workers (the parent of their temp dirs) and each export runs under a lock, so no model is
    exported twice."""
    import fcntl

    import transformer_archs

    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if base.name.startswith("popen-gw") else base) / "transformers"
    folder.mkdir(exist_ok=True)

    def get(arch: str, exporter: str) -> tuple[Path, Path]:
        path, data = folder / f"{arch}_{exporter}.onnx", folder / f"{arch}.npz"
        with open(folder / f"{arch}_{exporter}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not data.exists():
                part = folder / f"{arch}.{exporter}.npz"  # per lock: atomic replace, identical contents
                np.savez(part, **transformer_archs.inputs(arch))
                part.replace(data)
            if not path.exists():
                tmp = folder / "tmp" / exporter
                tmp.mkdir(parents=True, exist_ok=True)
                transformer_archs.export(arch, exporter, tmp).replace(path)
        return path, data

    return get
