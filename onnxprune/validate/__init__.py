"""Proving a pruned model with onnxruntime: fidelity now; latency and edge readiness build on it."""

from onnxprune.validate.fidelity import compare_models, synthetic_inputs

__all__ = ["compare_models", "synthetic_inputs"]
