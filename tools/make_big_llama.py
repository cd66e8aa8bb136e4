"""Write a synthetic LLaMA-style decoder as ONNX with external data (about 4 GB of fp32 weights by default).

    python tools/make_big_llama.py OUT.onnx [--hidden 4096] [--ffn 11008] [--layers 5] [--heads 32]
                                            [--vocab 1000] [--rmsnorm decomposed|op] [--seed 0]

The layout is what a torch exporter writes for a LLaMA block without KV cache: token embedding Gather,
per layer RMSNorm (Pow/ReduceMean/Add/Sqrt/Div/Mul, or opset 23's RMSNormalization with ``--rmsnorm op``),
q/k/v/o MatMuls on constant weights, attention as Reshape/Transpose/MatMul/Softmax/MatMul, the SwiGLU FFN
(gate and up MatMuls, gate * Sigmoid(gate) * up, down MatMul), residual Adds, final RMSNorm and lm head.
Weights go to ``OUT.data`` beside the model.

The weights are never all in memory: each is an onnx-ir LazyTensor whose random values (from a generator
seeded by ``--seed`` and the tensor's index) are made when the saver asks for its bytes, one at a time,
so the peak memory of this script is about one weight matrix.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx_ir as ir

FLOAT = ir.DataType.FLOAT


class _Builder:
    """Appends nodes to one graph; weights are lazy tensors seeded by their creation index."""

    def __init__(self, graph: ir.Graph, seed: int, opset: int) -> None:
        self.graph = graph
        self.seed = seed
        self.opset = opset
        self.count = 0

    def op(self, op_type: str, *inputs: ir.Value, **attributes) -> ir.Value:
        node = ir.node(op_type, list(inputs), attributes=attributes or None)
        self.graph.append(node)
        return node.outputs[0]

    def weight(self, name: str, shape: tuple[int, ...], scale: float) -> ir.Value:
        """A random normal fp32 initializer made lazily (seed, index) at save time."""
        index = self.count
        self.count += 1

        def make() -> ir.Tensor:
            rng = np.random.default_rng([self.seed, index])
            data = rng.standard_normal(shape, dtype=np.float32)
            data *= np.float32(scale)
            return ir.tensor(data, name=name)

        return self._init(name, ir.LazyTensor(make, dtype=FLOAT, shape=ir.Shape(shape), name=name))

    def ones(self, name: str, size: int) -> ir.Value:
        """A norm scale: around one, so the residual stream stays in range."""
        rng = np.random.default_rng([self.seed, self.count, 1])
        self.count += 1
        return self.const(name, (1.0 + 0.1 * rng.standard_normal(size)).astype(np.float32))

    def const(self, name: str, array: np.ndarray) -> ir.Value:
        return self._init(name, ir.tensor(array, name=name))

    def _init(self, name: str, tensor: ir.TensorProtocol) -> ir.Value:
        value = ir.Value(name=name, shape=ir.Shape(tensor.shape), type=ir.TensorType(tensor.dtype),
                         const_value=tensor)
        self.graph.register_initializer(value)
        return value


def rms_norm(b: _Builder, x: ir.Value, name: str, hidden: int, mode: str) -> ir.Value:
    scale = b.ones(f"{name}.weight", hidden)
    if mode == "op":
        return b.op("RMSNormalization", x, scale, axis=-1, epsilon=1e-5)
    two = b.const(f"{name}.two", np.array(2.0, np.float32))
    eps = b.const(f"{name}.eps", np.array(1e-5, np.float32))
    axes = b.const(f"{name}.axes", np.array([-1], np.int64))
    mean = b.op("ReduceMean", b.op("Pow", x, two), axes, keepdims=1)
    return b.op("Mul", b.op("Div", x, b.op("Sqrt", b.op("Add", mean, eps))), scale)


def attention(b: _Builder, x: ir.Value, p: str, hidden: int, heads: int) -> ir.Value:
    head_dim = hidden // heads
    std = hidden ** -0.5
    split = b.const(f"{p}.split_heads", np.array([0, 0, heads, head_dim], np.int64))
    merge = b.const(f"{p}.merge_heads", np.array([0, 0, hidden], np.int64))

    def project(which: str) -> ir.Value:
        y = b.op("MatMul", x, b.weight(f"{p}.{which}_proj.weight", (hidden, hidden), std))
        return b.op("Transpose", b.op("Reshape", y, split), perm=[0, 2, 1, 3])  # [B, H, S, D]

    q, k, v = project("q"), project("k"), project("v")
    kt = b.op("Transpose", k, perm=[0, 1, 3, 2])
    scale = b.const(f"{p}.scale", np.array(head_dim ** -0.5, np.float32))
    probs = b.op("Softmax", b.op("Mul", b.op("MatMul", q, kt), scale), axis=-1)
    ctx = b.op("Reshape", b.op("Transpose", b.op("MatMul", probs, v), perm=[0, 2, 1, 3]), merge)
    return b.op("MatMul", ctx, b.weight(f"{p}.o_proj.weight", (hidden, hidden), std))


def swiglu(b: _Builder, x: ir.Value, p: str, hidden: int, ffn: int) -> ir.Value:
    gate = b.op("MatMul", x, b.weight(f"{p}.gate_proj.weight", (hidden, ffn), hidden ** -0.5))
    up = b.op("MatMul", x, b.weight(f"{p}.up_proj.weight", (hidden, ffn), hidden ** -0.5))
    act = b.op("Mul", gate, b.op("Sigmoid", gate))  # SiLU as exporters decompose it
    return b.op("MatMul", b.op("Mul", act, up), b.weight(f"{p}.down_proj.weight", (ffn, hidden), ffn ** -0.5))


def build(hidden: int = 4096, ffn: int = 11008, layers: int = 5, heads: int = 32, vocab: int = 1000,
          rmsnorm: str = "decomposed", seed: int = 0) -> ir.Model:
    """The model, its weights lazy (made when saved)."""
    opset = 23 if rmsnorm == "op" else 18
    ids = ir.Value(name="input_ids", shape=ir.Shape(["batch", "seq"]), type=ir.TensorType(ir.DataType.INT64))
    graph = ir.Graph([ids], [], nodes=[], opset_imports={"": opset}, name="llama")
    b = _Builder(graph, seed, opset)
    x = b.op("Gather", b.weight("embed_tokens.weight", (vocab, hidden), 1.0), ids, axis=0)
    for i in range(layers):
        p = f"layers.{i}"
        x = b.op("Add", x, attention(b, rms_norm(b, x, f"{p}.input_layernorm", hidden, rmsnorm),
                                     f"{p}.self_attn", hidden, heads))
        x = b.op("Add", x, swiglu(b, rms_norm(b, x, f"{p}.post_attention_layernorm", hidden, rmsnorm),
                                  f"{p}.mlp", hidden, ffn))
    x = rms_norm(b, x, "norm", hidden, rmsnorm)
    logits = b.op("MatMul", x, b.weight("lm_head.weight", (hidden, vocab), hidden ** -0.5))
    logits.name = "logits"
    graph.outputs.append(logits)
    # names as exporters give them: a weight's consumer after its module ("/layers.0.mlp.up_proj/MatMul");
    # intermediate values carry no type or shape (no value_info): shape inference fills them in
    for n, node in enumerate(graph):
        module = next((v.name[:-len(".weight")] for v in node.inputs if v.is_initializer() and
                       v.name.endswith(".weight")), None)
        node.name = f"/{module}/{node.op_type}" if module else f"/{node.op_type}_{n}"
        for j, out in enumerate(node.outputs):
            out.type, out.shape = None, None
            if out.name is None:
                out.name = f"{node.name}_output_{j}"
    logits.type, logits.shape = ir.TensorType(FLOAT), ir.Shape(["batch", "seq", vocab])
    return ir.Model(graph, ir_version=10 if opset >= 23 else 8, producer_name="onnxprune-make_big_llama")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--ffn", type=int, default=11008)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--rmsnorm", choices=["decomposed", "op"], default="decomposed")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    model = build(args.hidden, args.ffn, args.layers, args.heads, args.vocab, args.rmsnorm, args.seed)
    data = args.out.with_name(args.out.name + ".data")
    ir.save(model, args.out, external_data=data.name)
    print(f"wrote {args.out} and {data} ({data.stat().st_size / 1e9:.2f} GB of weights)")


if __name__ == "__main__":
    main()
