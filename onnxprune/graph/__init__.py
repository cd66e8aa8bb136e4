"""Channel-group analysis: which channels of which tensors must be removed together."""

from onnxprune.graph.groups import Analysis, Group, analyze_groups

__all__ = ["Analysis", "Group", "analyze_groups"]
