"""Op registry of the twin: (domain, op_type) -> implementations, each valid over an opset RANGE.

A builder receives a :class:`NodeInfo` (attributes, opset, which optional inputs/outputs exist) once,
when the twin is built, and returns a kernel ``kernel(*inputs) -> Tensor | tuple``. Work that depends
only on attributes happens in the builder, so the forward pass does no attribute parsing.
Missing optional inputs reach the kernel as ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from onnxprune.errors import UnsupportedOpError

Kernel = Callable[..., Any]
Builder = Callable[["NodeInfo"], Kernel]

# Opset numbers of the default domain can be written as "" or "ai.onnx".
_DOMAIN_ALIASES = {"ai.onnx": ""}
MAX_OPSET = 10_000


@dataclass
class NodeInfo:
    """What a builder may know about its node: no tensors except constant inputs."""

    op_type: str
    domain: str
    opset: int
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    inputs_present: tuple[bool, ...] = ()
    outputs_present: tuple[bool, ...] = ()

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def has_input(self, i: int) -> bool:
        return i < len(self.inputs_present) and self.inputs_present[i]

    def has_output(self, i: int) -> bool:
        return i < len(self.outputs_present) and self.outputs_present[i]

    def where(self) -> str:
        return f"{self.op_type} (domain '{self.domain or 'ai.onnx'}', opset {self.opset}) at node '{self.name}'"

    def unsupported(self, reason: str) -> UnsupportedOpError:
        """The error to raise for a variant of a registered op that the twin does not implement."""
        return UnsupportedOpError(f"the torch twin does not support {self.where()}: {reason}")


@dataclass(frozen=True)
class _Entry:
    since: int
    until: int  # inclusive
    builder: Builder


_REGISTRY: dict[tuple[str, str], list[_Entry]] = {}


def register(*op_types: str, domain: str = "", since: int = 1, until: int = MAX_OPSET) -> Callable[[Builder], Builder]:
    """Register a builder for ``op_types`` in ``domain`` for model opsets ``since..until`` (inclusive)."""

    def deco(builder: Builder) -> Builder:
        for op in op_types:
            entries = _REGISTRY.setdefault((domain, op), [])
            for e in entries:
                if not (until < e.since or since > e.until):
                    raise ValueError(f"overlapping opset ranges for {domain}::{op}")
            entries.append(_Entry(since, until, builder))
        return builder

    return deco


def _load_ops() -> None:
    import onnxprune.twin.ops  # noqa: F401  (registers every op family)


def lookup(domain: str, op_type: str, opset: int) -> Builder | None:
    _load_ops()
    domain = _DOMAIN_ALIASES.get(domain, domain)
    for e in _REGISTRY.get((domain, op_type), ()):
        if e.since <= opset <= e.until:
            return e.builder
    return None


def supports(op_type: str, opset: int, domain: str = "") -> bool:
    """Whether some implementation covers ``op_type`` at model opset ``opset``."""
    return lookup(domain, op_type, opset) is not None


def registered_ops() -> dict[tuple[str, str], list[tuple[int, int]]]:
    """(domain, op_type) -> the opset ranges implemented, for documentation and tests."""
    _load_ops()
    return {k: sorted((e.since, e.until) for e in v) for k, v in sorted(_REGISTRY.items())}
