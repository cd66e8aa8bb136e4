"""Proving a pruned model with onnxruntime: fidelity, latency, size and edge readiness.

``validate_models`` is ``onnxprune validate``; prune runs the same sections (``suite``). The names below load
their module (and onnxruntime) on first use, so the onnxruntime-free parts of this package (the task metrics
that ``--ratio auto`` budgets with and the CLI's help read) import without it."""

from importlib import import_module

_HOMES = {"Tolerances": "fidelity", "compare_models": "fidelity", "synthetic_inputs": "fidelity",
          "ValidationOptions": "suite", "validate_models": "suite"}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(f"onnxprune.validate.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'onnxprune.validate' has no attribute {name!r}")
