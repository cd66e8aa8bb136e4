"""The torch twin: an ONNX -> torch interpreter whose initializers are trainable parameters.

Optional extra: importing this package needs torch (``pip install onnxprune[torch]``);
``import onnxprune`` alone never imports it.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without torch
    from onnxprune.errors import OnnxPruneError

    raise OnnxPruneError(
        "the torch twin (gradient criteria, fine-tuning) needs torch: pip install onnxprune[torch] "
        "(pin the CPU build with -c constraints.txt)"
    ) from exc

from onnxprune.errors import UnsupportedOpError
from onnxprune.twin.interpreter import Twin
from onnxprune.twin.registry import registered_ops, supports

__all__ = ["Twin", "UnsupportedOpError", "registered_ops", "supports"]
