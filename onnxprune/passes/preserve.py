"""Write back only what the plan changed: the output keeps the input's structure elsewhere.

Normalisation rewrites a model so the analysis can read it (Constant nodes become initializers,
constant-only reshapes are folded, trailing empty inputs are dropped, every intermediate shape is
inferred). None of that changes what the model computes, but onnxruntime chooses its graph rewrites
from the structure it is given: a Pad whose omitted ``constant_value`` is spelled as a trailing empty
input is not fused into the Conv after it, the same Pad without it is, and the fused 1-D Conv with
asymmetric pads runs slower (measured: tools/bench_noop_latency.py). So

* a plan that changes nothing writes IN itself (re-read from its source, never the normalised copy);
* a plan that changes something writes the pruned model with what normalisation removed for its own
  convenience put back: trailing empty inputs, and no inferred shapes on values IN left without one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import onnx
import onnx_ir as ir

from onnxprune import io

STRUCTURE = "onnxprune.original_structure"  # model.meta key holding the Structure recorded by normalize


@dataclass(frozen=True)
class Structure:
    """What IN looked like before normalisation, for the parts the plan never needs to change."""

    input_counts: dict[ir.Node, int]  # inputs per node, trailing empty ones included
    typed: frozenset[ir.Value]  # values IN declared a type or shape for (graph I/O, value_info)


def record_structure(model: ir.Model) -> None:
    """Remember IN's structure on ``model.meta`` (called by normalize before it changes anything)."""
    if STRUCTURE in model.meta:  # normalised twice: the first record is IN's
        return
    counts, typed = {}, set(model.graph.inputs) | set(model.graph.outputs)
    for node in model.graph.all_nodes():
        counts[node] = len(node.inputs)
        typed.update(v for v in node.outputs if v.type is not None or v.shape is not None)
    model.meta[STRUCTURE] = Structure(counts, frozenset(typed))


def restore_structure(model: ir.Model) -> ir.Model:
    """Put back what normalisation dropped for its own convenience on every node still in the model:
    trailing empty inputs, and no shape or type on values IN declared none for."""
    structure = model.meta.get(STRUCTURE)
    if structure is None:
        return model
    for node in model.graph.all_nodes():
        count = structure.input_counts.get(node)
        if count is not None and len(node.inputs) < count:
            node.resize_inputs(count)
        for value in node.outputs:
            if value not in structure.typed and not value.is_graph_output():
                value.shape = None
                value.type = None
    return model


def output_model(source: str | os.PathLike | onnx.ModelProto | ir.Model, pruned: ir.Model,
                 changed: bool) -> ir.Model:
    """The model to write: IN as it was when the plan changed nothing (``changed`` False) and IN can be
    read again (a path or a ModelProto; an ir.Model was normalised in place), else ``pruned`` with IN's
    structure restored where the plan did not reach."""
    if not changed and isinstance(source, (str, os.PathLike)):
        return io.load_model(source)
    if not changed and isinstance(source, onnx.ModelProto):
        return ir.from_proto(source)
    return restore_structure(pruned)


def copy_structure(source: ir.Model, copy: ir.Model) -> None:
    """Give ``copy`` (``source`` serialized and read back, not yet changed) the structure recorded on
    ``source``: nodes and values are matched by position, which a round trip keeps."""
    structure = source.meta.get(STRUCTURE)
    if structure is None:
        return
    pairs = list(zip(source.graph.all_nodes(), copy.graph.all_nodes()))
    values = dict(zip(source.graph.inputs, copy.graph.inputs)) | dict(zip(source.graph.outputs, copy.graph.outputs))
    for a, b in pairs:
        values.update(zip(a.outputs, b.outputs))
    copy.meta[STRUCTURE] = Structure({b: structure.input_counts[a] for a, b in pairs if a in structure.input_counts},
                                     frozenset(values[v] for v in structure.typed if v in values))


def restored_bytes(model: ir.Model) -> bytes:
    """``model`` serialized as it will be written (``restore_structure``), leaving ``model`` itself as it is."""
    counts = {node: len(node.inputs) for node in model.graph.all_nodes()}
    kinds = {v: (v.type, v.shape) for node in model.graph.all_nodes() for v in node.outputs}
    restore_structure(model)
    try:
        return ir.to_proto(model).SerializeToString()
    finally:
        for node, n in counts.items():
            if len(node.inputs) > n:
                node.resize_inputs(n)
        for v, (kind, shape) in kinds.items():
            v.type, v.shape = kind, shape
