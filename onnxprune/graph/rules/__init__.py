"""Op rules, one module per op family. Each rule maps a node's tracked channel axes to its outputs.

The table that says which rule serves which op and opset range is ``onnxprune.graph.optable``.
"""
