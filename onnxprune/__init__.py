"""onnxprune: structured pruning of neural networks directly on ONNX graphs."""

__version__ = "0.1.0"

from onnxprune.api import analyze, make_plan, prune, validate_models  # noqa: E402
from onnxprune.config import PruneConfig  # noqa: E402

__all__ = ["PruneConfig", "analyze", "make_plan", "prune", "validate_models", "__version__"]
