"""What an op rule sees of one node, and the records it leaves (dims, params, rewrites)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

if TYPE_CHECKING:
    from onnxprune.graph.groups import Analysis
    from onnxprune.graph.rules.quant import Quantized

Keep = Callable[[np.ndarray], np.ndarray]  # atoms -> bool mask of kept positions


def value_dims(v: ir.Value | None) -> list | None:
    """Dims of a value as int (static), str (symbolic) or None (unknown); None if its rank is unknown."""
    if v is None:
        return None
    if v.const_value is not None:
        return list(v.const_value.shape)
    if v.shape is None:
        return None
    return [d if isinstance(d, int) else (getattr(d, "value", None) or None) for d in v.shape]


@dataclass
class Dim:
    """The tracked channel axis of an activation and the atom at each position."""

    axis: int
    atoms: np.ndarray


@dataclass
class ParamMember:
    """A constant input of a node that is sliced along ``axis`` when channels go."""

    node: ir.Node
    input_index: int
    axis: int
    atoms: np.ndarray
    role: str  # "producer" (output filters), "consumer" (input columns), "param" (per-channel values)
    blocks: int = 1  # >1: grouped-conv input columns, laid out per conv group
    # The DequantizeLinear that computes this input from stored integers (a quantized weight or bias):
    # the integers are what gets sliced (``quant.stored_slices``), ``array`` reads the dequantized values.
    quant: Quantized | None = None

    @property
    def value(self) -> ir.Value:
        return self.node.inputs[self.input_index]

    def array(self) -> np.ndarray:
        """The member's values as the node reads them (dequantized for a quantized weight)."""
        if self.quant is not None:
            from onnxprune.graph.rules.quant import dequantized

            return dequantized(self.quant)
        return self.value.const_value.numpy()

    def slabs(self) -> Iterator[np.ndarray]:
        """The member's values in blocks with its axis first (see ``weights.slabs``): a large stored
        weight is never resident whole; a quantized one is dequantized first."""
        from onnxprune.weights import slabs

        if self.quant is not None:
            yield np.moveaxis(self.array(), self.axis, 0)
            return
        yield from slabs(self.value.const_value, self.axis)

    def stored(self) -> list[tuple[ir.Node, int, int]]:
        """(node, input index, axis) of every constant that is sliced when this member's channels go."""
        if self.quant is not None:
            from onnxprune.graph.rules.quant import stored_slices

            return stored_slices(self.quant, self.axis)
        return [(self.node, self.input_index, self.axis)]


@dataclass
class Rewrite:
    """A literal (attribute or constant input) that states a channel count or offset."""

    node: ir.Node
    what: str
    apply: Callable[[Keep], None]


class RuleUnsupported(Exception):
    """Raised by a rule for a configuration it cannot prove exact; becomes a freeze reason."""


@dataclass
class NodeContext:
    analysis: Analysis
    node: ir.Node
    opset: int
    handled: set[int] = field(default_factory=set)  # inputs whose tracked channel axis the rule followed
    shapes_read: set[int] = field(default_factory=set)  # Shape-result inputs the rule followed
    quantized: dict[int, Quantized] = field(default_factory=dict)  # integer weights of QOperator ops, by input

    # -- reading the node ---------------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"{self.node.op_type} node '{self.node.name}'"

    def input(self, i: int) -> ir.Value | None:
        return self.node.inputs[i] if i < len(self.node.inputs) else None

    def dim(self, i: int) -> Dim | None:
        v = self.input(i)
        return self.analysis.dims.get(v) if v is not None else None

    def take(self, i: int) -> Dim | None:
        """The tracked dim of input i, marking it as handled by this rule."""
        self.handled.add(i)
        return self.dim(i)

    def take_data_input(self) -> Dim | None:
        """The tracked dim of input 0 (handled); any other input carrying channels is unsupported."""
        d = self.take(0)
        for i in range(1, len(self.node.inputs)):
            if self.take(i) is not None:
                raise RuleUnsupported(f"input {i} carries channels")
        return d

    def const(self, i: int) -> np.ndarray | None:
        v = self.input(i)
        if v is None or v.const_value is None:
            return None
        return v.const_value.numpy()

    def is_const(self, i: int) -> bool:
        v = self.input(i)
        return v is not None and v.const_value is not None

    def is_weight(self, i: int) -> bool:
        """Input i is a constant, or a quantized constant (a DequantizeLinear of stored integers) the
        surgery can slice."""
        from onnxprune.graph.rules.quant import stored_weight

        return self.is_const(i) or stored_weight(self.input(i)) is not None

    def weight_shape(self, i: int) -> tuple[int, ...]:
        """The dims of a (possibly quantized) constant input."""
        from onnxprune.graph.rules.quant import stored_weight

        dq = None if self.is_const(i) else stored_weight(self.input(i))
        return tuple((dq.inputs[0] if dq is not None else self.input(i)).const_value.shape)

    def attr_int(self, name: str, default: int | None = None) -> int | None:
        a = self.node.attributes.get(name)
        return a.as_int() if a is not None else default

    def attr_ints(self, name: str, default=None):
        a = self.node.attributes.get(name)
        return list(a.as_ints()) if a is not None else default

    def ints(self, attr: str, index: int) -> list[int] | None:
        """An int list given as attribute (old opsets) or constant input (new ones); None if absent.

        Raises RuleUnsupported if it is an input computed at run time."""
        if attr in self.node.attributes:
            return self.attr_ints(attr)
        v = self.input(index)
        if v is None:
            return None
        arr = self.const(index)
        if arr is None:
            raise RuleUnsupported(f"input '{v.name}' ({attr}) is computed at run time")
        return [int(x) for x in np.atleast_1d(arr)]

    def shape(self, v: ir.Value | None) -> list | None:
        """Dims as int (static), str (symbolic) or None (unknown); None if the rank is unknown."""
        return value_dims(v)

    def known_shape(self, v: ir.Value | None) -> list:
        """Like ``shape`` but an unknown rank makes the rule unsupported."""
        s = self.shape(v)
        if s is None:
            raise RuleUnsupported(f"the shape of '{v.name if v is not None else '?'}' is unknown")
        return s

    def rank(self, v: ir.Value | None) -> int:
        return len(self.known_shape(v))

    def size(self, v: ir.Value, axis: int) -> int:
        s = self.shape(v)
        if s is None or not isinstance(s[axis], int):
            raise RuleUnsupported(f"size of axis {axis} of '{v.name}' is not static")
        return s[axis]

    # -- recording ----------------------------------------------------------------------------
    def set_output(self, j: int, axis: int, atoms: np.ndarray) -> None:
        out = self.node.outputs[j]
        self.analysis.dims[out] = Dim(axis, np.asarray(atoms, dtype=np.int64))

    def new_space(self, size: int) -> np.ndarray:
        return self.analysis.store.new_space(size, self.node.name or self.node.op_type)

    def frozen_source(self, v: ir.Value, size: int, why: str) -> np.ndarray:
        """Atoms for channels that come from a tensor we cannot slice (graph input, frozen op...)."""
        return self.analysis.store.new_space(size, v.name or "?", frozen=f"{self.where}: {why}")

    def couple(self, a: np.ndarray, b: np.ndarray) -> None:
        if len(a) != len(b):
            raise RuleUnsupported(f"coupled channel axes differ in size ({len(a)} vs {len(b)})")
        self.analysis.store.couple(a, b)

    def param(self, i: int, axis: int, atoms: np.ndarray, role: str, blocks: int = 1) -> None:
        """Input i (a constant or a quantized constant) is sliced along ``axis`` when ``atoms`` go."""
        from onnxprune.graph.rules.quant import dequantize_view, stored_slices, stored_weight

        v = self.input(i)
        q = self.quantized.get(i)
        if q is None and not self.is_const(i):
            dq = stored_weight(v)
            if dq is None:
                raise RuleUnsupported(f"input '{v.name if v is not None else i}' is computed at run time, not a constant")
            q = dequantize_view(dq)
        shape = q.shape if q is not None else v.const_value.shape
        size = shape[axis]
        expected = len(atoms) // blocks if blocks > 1 else len(atoms)
        if size != expected:
            raise RuleUnsupported(f"constant '{v.name}' axis {axis} has {size} entries, expected {expected}")
        axis = axis % max(len(shape), 1)
        if q is not None and len(stored_slices(q, axis)) > 1 and blocks > 1:  # raises for unsliceable blocks
            raise RuleUnsupported(f"per-channel quantization of '{v.name}' along grouped conv input columns")
        self.analysis.params.append(ParamMember(self.node, i, axis, np.asarray(atoms, dtype=np.int64), role, blocks,
                                                quant=q))

    def rewrite(self, what: str, apply: Callable[[Keep], None]) -> None:
        self.analysis.rewrites.append(Rewrite(self.node, what, apply))

    def balance(self, atoms: np.ndarray, blocks: int, unit: str = "conv groups") -> None:
        """Each of ``blocks`` equal runs of ``atoms`` (its ``unit``) must lose the same number of channels."""
        self.analysis.balances.append((np.asarray(atoms).reshape(blocks, -1), self.where, unit))

    def computed_weight(self, i: int, out_axis: int) -> None:
        """Weight input ``i`` is not a constant (a quantized model's DequantizeLinear, a weight computed
        from inputs): nothing it reads or makes can be sliced. Its output channels become a frozen group,
        so the analysis says why instead of showing no group at all."""
        w = self.input(i)
        src = w.producer() if w is not None else None
        if src is None:
            why = f"its weight '{w.name if w is not None else '?'}' is a graph input, not a constant"
        else:
            from onnxprune.graph.rules.quant import not_sliceable

            why = (f"its weight '{w.name}' is computed by {src.op_type} node '{src.name}', not stored as a constant"
                   + (f" ({not_sliceable(src, w)})" if src.op_type in ("DequantizeLinear", "QuantizeLinear") else ""))
        self.freeze_inputs(why)
        out = self.node.outputs[0]
        shape = self.shape(out)
        if shape is not None and out_axis < len(shape) and isinstance(shape[out_axis], int):
            self.set_output(0, out_axis, self.frozen_source(out, shape[out_axis], why))

    def freeze_inputs(self, reason: str) -> None:
        for i, v in enumerate(self.node.inputs):
            d = self.analysis.dims.get(v) if v is not None else None
            if d is not None:
                self.analysis.store.freeze(d.atoms, f"{self.where}: {reason}")
            self.handled.add(i)
