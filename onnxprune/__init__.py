"""onnxprune: structured pruning of neural networks directly on ONNX graphs."""

__version__ = "0.1.0"

from onnxprune.api import analyze, make_plan, prune  # noqa: E402

__all__ = ["analyze", "make_plan", "prune", "__version__"]
