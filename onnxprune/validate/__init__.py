"""Proving a pruned model with onnxruntime: fidelity, latency, size and edge readiness.

``validate_models`` is ``onnxprune validate``; prune runs the same sections (``suite``)."""

from onnxprune.validate.fidelity import Tolerances, compare_models, synthetic_inputs
from onnxprune.validate.suite import ValidationOptions, validate_models

__all__ = ["Tolerances", "ValidationOptions", "compare_models", "synthetic_inputs", "validate_models"]
