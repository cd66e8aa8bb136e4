"""Reading one node: its attributes and constant inputs. Shared by the registry's traits and the rules'
look-aheads, so each reads attributes the same way."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def attr(node: ir.Node, name: str, default=None):
    """An attribute's Python value (int, float, str, list), or ``default``."""
    a = node.attributes.get(name)
    return a.value if a is not None else default


def const_input(node: ir.Node, index: int) -> np.ndarray | None:
    """The value of a constant input, None if absent or computed at run time."""
    v = node.inputs[index] if index < len(node.inputs) else None
    return None if v is None or v.const_value is None else v.const_value.numpy()


def const_ints(node: ir.Node, name: str, index: int) -> list[int] | None:
    """An int list given as attribute ``name`` (old opsets) or as constant input ``index`` (newer ones,
    e.g. Squeeze axes from opset 13); None if absent or computed at run time."""
    if name in node.attributes:
        return [int(a) for a in attr(node, name)]
    value = const_input(node, index)
    return None if value is None else [int(a) for a in value.ravel()]
