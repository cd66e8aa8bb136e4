"""The Twin module: runs an onnx-ir graph with torch ops, initializers as named parameters."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir
import torch
from torch import nn

from onnxprune.errors import InputError, PlanError, UnsupportedOpError
from onnxprune.twin.dtypes import (
    FLOAT_TYPES,
    as_tensor,
    numpy_from_torch,
    tensor_from_ir,
)
from onnxprune.twin.registry import NodeInfo, lookup

# value name -> (axis, index_map or None, gate Parameter / tensor / size)
GateSpec = tuple[int, Sequence[int] | np.ndarray | torch.Tensor | None, torch.Tensor | int]


def _key(i: int, name: str) -> str:
    """A module-attribute-safe key for an ONNX name (which may hold '.', '/', ':')."""
    return f"v{i}_" + re.sub(r"\W", "_", name)[:80]


def _attr_value(attr: ir.Attr) -> Any:
    if attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
        return attr  # subgraph ops are not registered; kept so the builder can say so
    value = attr.value
    return list(value) if isinstance(value, tuple) else value


def _topological(graph: ir.Graph, known: set[str]) -> list[ir.Node]:
    """Nodes in an order where every input is computed first (ONNX requires it; checked, not trusted)."""
    order, pending, ready = [], list(graph), set(known)
    while pending:
        rest = []
        for node in pending:
            if all(v is None or v.name in ready for v in node.inputs):
                order.append(node)
                ready.update(v.name for v in node.outputs)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted({v.name for n in rest for v in n.inputs if v is not None and v.name not in ready})
            raise InputError(f"the graph has a cycle or undefined values: {missing[:5]}")
        pending = rest
    return order


class Twin(nn.Module):
    """An ONNX graph as a torch module.

    - Float initializers are ``nn.Parameter``s: ``twin.parameter(onnx_name)``,
      ``twin.named_onnx_parameters()``. Other initializers and Constant nodes are buffers.
    - ``twin(input=x)``, ``twin({"input": x})`` or ``twin(x)`` (graph-input order) returns a tuple of
      output tensors in graph-output order; ``twin.run(feeds)`` returns a dict name -> tensor.
    - Gates (see :meth:`set_gates`) multiply chosen values along an axis by trainable factors.
    - :meth:`write_back` copies the parameters into an onnx-ir model's initializers by name.
    """

    def __init__(self, model: ir.Model, gates: Mapping[str, GateSpec] | None = None):
        super().__init__()
        graph = model.graph
        opsets = {("" if d == "ai.onnx" else d): v for d, v in model.opset_imports.items()}
        self.input_names = [v.name for v in graph.inputs if v.name not in graph.initializers]
        self.output_names = [v.name for v in graph.outputs]
        self._param_keys: dict[str, str] = {}  # onnx name -> attribute key
        self._buffer_keys: dict[str, str] = {}
        self._slots: dict[str, int] = {}

        def slot(name: str) -> int:
            return self._slots.setdefault(name, len(self._slots))

        for i, (name, value) in enumerate(graph.initializers.items()):
            tensor = tensor_from_ir(value.const_value, f" (initializer '{name}')")
            key = _key(i, name)
            if tensor.dtype in FLOAT_TYPES:
                self.register_parameter(key, nn.Parameter(tensor))
                self._param_keys[name] = key
            else:
                self.register_buffer(key, tensor)
                self._buffer_keys[name] = key
            slot(name)
        # Graph inputs that also have an initializer (old exporters) may be fed; else the initializer is used.
        self._feed_slots = [(v.name, slot(v.name)) for v in graph.inputs]
        # (slot, attribute key) of every initializer and Constant: read into the value table per forward
        self._init_slots = [(self._slots[name], key) for name, key in {**self._param_keys, **self._buffer_keys}.items()]

        program = []
        nodes = _topological(graph, set(self._slots))
        for node in nodes:
            info = NodeInfo(
                op_type=node.op_type,
                domain="" if node.domain == "ai.onnx" else node.domain,
                opset=opsets.get("" if node.domain == "ai.onnx" else node.domain, 1),
                name=node.name or f"{node.op_type}_{len(program)}",
                attrs={k: _attr_value(a) for k, a in node.attributes.items()},
                inputs_present=tuple(v is not None and v.name != "" for v in node.inputs),
                outputs_present=tuple(v.name != "" for v in node.outputs),
            )
            builder = lookup(info.domain, info.op_type, info.opset)
            if builder is None:
                raise UnsupportedOpError(f"the torch twin has no implementation of {info.where()}")
            kernel = builder(info)
            if node.op_type == "Constant" and info.domain == "":
                # Constant nodes become buffers once, not work in every forward.
                key = _key(len(self._slots), node.outputs[0].name)
                self.register_buffer(key, kernel())
                self._buffer_keys[node.outputs[0].name] = key
                self._init_slots.append((slot(node.outputs[0].name), key))
                continue
            ins = tuple(slot(v.name) if v is not None and v.name else -1 for v in node.inputs)
            outs = tuple(slot(v.name) if v.name else -1 for v in node.outputs)
            program.append([kernel, ins, outs, (), info])
        self._program = program
        self._output_slots = [self._slots[n] for n in self.output_names]
        self._plan_frees()
        self._gates = nn.ParameterDict()
        self._gate_points: dict[int, tuple[int, torch.Tensor | None, str]] = {}
        if gates:
            self.set_gates(gates)

    def _plan_frees(self) -> None:
        """After each node, drop the values no later node reads (graph outputs are kept)."""
        last: dict[int, int] = {}
        for step, (_, ins, outs, _, _) in enumerate(self._program):
            for s in outs:
                last.setdefault(s, step)  # unused outputs die where they are made
            for s in ins:
                if s >= 0:
                    last[s] = step
        keep = set(self._output_slots)
        frees: dict[int, list[int]] = {}
        for s, step in last.items():
            if s >= 0 and s not in keep:
                frees.setdefault(step, []).append(s)
        for step, entry in enumerate(self._program):
            entry[3] = tuple(frees.get(step, ()))

    # ------------------------------------------------------------------ parameters

    def parameter(self, onnx_name: str) -> nn.Parameter:
        """The parameter of float initializer ``onnx_name``."""
        try:
            return getattr(self, self._param_keys[onnx_name])
        except KeyError:
            raise KeyError(f"no float initializer named {onnx_name!r} in the twin") from None

    def named_onnx_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(ONNX initializer name, parameter) for every float initializer; gates excluded."""
        for name, key in self._param_keys.items():
            yield name, getattr(self, key)

    def write_back(self, model: ir.Model) -> None:
        """Copy every parameter into ``model``'s initializer of the same name (dtype and shape kept)."""
        inits = model.graph.initializers
        for name, param in self.named_onnx_parameters():
            if name not in inits:
                raise PlanError(f"write_back: the model has no initializer '{name}'")
            old = inits[name].const_value
            if tuple(old.shape) != tuple(param.shape):
                raise PlanError(f"write_back: initializer '{name}' has shape {tuple(old.shape)}, "
                                f"the twin's parameter {tuple(param.shape)}")
            array = numpy_from_torch(param).astype(old.dtype.numpy(), copy=False)
            inits[name].const_value = ir.Tensor(array, name=name)

    # ------------------------------------------------------------------ gates

    def set_gates(self, gates: Mapping[str, GateSpec]) -> None:
        """Replace all gates. ``{value_name: (axis, index_map, gate)}``:

        after ``value_name`` is computed (or read, for graph inputs and initializers) it is multiplied
        along ``axis`` by ``gate[index_map]``. ``index_map`` (ints, one per position of that axis) maps
        positions to gate entries, e.g. ``np.repeat(arange(C), H*W)`` for a flattened feature map;
        ``None`` means position i uses gate i. ``gate`` is an int (a new Parameter of that many ones)
        or a tensor; pass the same Parameter at several values to share one gate between them.
        """
        self._gates = nn.ParameterDict()
        self._gate_points = {}
        for i, (name, (axis, index_map, gate)) in enumerate(gates.items()):
            if name not in self._slots:
                raise KeyError(f"set_gates: the graph has no value named {name!r}")
            if isinstance(gate, int):
                gate = nn.Parameter(torch.ones(gate))
            elif not isinstance(gate, nn.Parameter):
                gate = nn.Parameter(torch.as_tensor(gate, dtype=torch.float32))
            key = _key(i, name)
            self._gates[key] = gate
            index = None if index_map is None else torch.as_tensor(np.asarray(index_map), dtype=torch.long)
            if index is not None and index.numel() and int(index.max()) >= gate.numel():
                raise ValueError(f"set_gates: index_map of {name!r} points past the gate's {gate.numel()} entries")
            self._gate_points[self._slots[name]] = (axis, index, key)

    def gate(self, value_name: str) -> nn.Parameter:
        """The gate parameter applied at ``value_name``."""
        point = self._gate_points.get(self._slots.get(value_name, -1))
        if point is None:
            raise KeyError(f"no gate at {value_name!r}")
        return self._gates[point[2]]

    def gates(self) -> dict[str, nn.Parameter]:
        """value name -> gate parameter, for every gate point."""
        names = {s: n for n, s in self._slots.items()}
        return {names[s]: self._gates[key] for s, (_, _, key) in self._gate_points.items()}

    def _gated(self, slot: int, x: torch.Tensor) -> torch.Tensor:
        axis, index, key = self._gate_points[slot]
        g = self._gates[key]
        if index is not None:
            g = g[index]
        axis = axis % x.dim()
        if g.shape[0] != x.shape[axis]:
            raise ValueError(f"gate of {g.shape[0]} entries on an axis of size {x.shape[axis]}")
        shape = [1] * x.dim()
        shape[axis] = -1
        return x * g.to(x.dtype).reshape(shape)

    # ------------------------------------------------------------------ running

    def _feeds(self, args: tuple, feeds: dict) -> dict[str, Any]:
        if len(args) == 1 and isinstance(args[0], Mapping):
            feeds = {**args[0], **feeds}
        elif args:
            if len(args) > len(self.input_names):
                raise InputError(f"the model takes {len(self.input_names)} inputs, got {len(args)}")
            feeds = {**dict(zip(self.input_names, args)), **feeds}
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InputError(f"missing inputs {missing}; the model takes {self.input_names}")
        unknown = [n for n in feeds if n not in self._slots]
        if unknown:
            raise InputError(f"unknown inputs {unknown}; the model takes {self.input_names}")
        return feeds

    def forward(self, *args, **feeds) -> tuple[torch.Tensor, ...]:
        feeds = self._feeds(args, feeds)
        env: list[Any] = [None] * len(self._slots)
        gates = self._gate_points
        for s, key in self._init_slots:
            env[s] = getattr(self, key)
        for name, s in self._feed_slots:
            if name in feeds:
                env[s] = as_tensor(feeds[name])
        for s in list(gates):
            if env[s] is not None:  # graph inputs and initializers are gated when read
                env[s] = self._gated(s, env[s])
        for kernel, ins, outs, frees, info in self._program:
            try:
                result = kernel(*[env[i] if i >= 0 else None for i in ins])
            except UnsupportedOpError:
                raise
            except (RuntimeError, NotImplementedError) as exc:
                if "not implemented for" in str(exc):  # e.g. torch has few uint16/32/64 kernels
                    raise info.unsupported(f"torch has no kernel for these dtypes ({exc})") from exc
                raise RuntimeError(f"twin: {info.where()} failed: {exc}") from exc
            except Exception as exc:
                raise RuntimeError(f"twin: {info.where()} failed: {exc}") from exc
            if isinstance(result, torch.Tensor):
                result = (result,)
            for s, value in zip(outs, result):
                if s >= 0:
                    env[s] = self._gated(s, value) if s in gates else value
            for s in frees:
                env[s] = None
        return tuple(env[s] for s in self._output_slots)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Outputs by name."""
        return dict(zip(self.output_names, self(dict(feeds))))
