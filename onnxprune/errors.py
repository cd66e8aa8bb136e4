"""Errors a user can cause. The CLI prints them as one line and exits 2."""


class OnnxPruneError(Exception):
    """Base class: a problem with the user's input or options, not a bug."""


class InputError(OnnxPruneError):
    """A model or data file is missing, empty, truncated or not ONNX."""


class OptionError(OnnxPruneError):
    """An option value is impossible (bad ratio, unknown criterion, OUT == IN...)."""


class PlanError(OnnxPruneError):
    """A plan does not fit the model it is applied to."""


class ValidationError(OnnxPruneError):
    """The pruned model does not match the original's interface or fails to run."""


class UnsupportedOpError(OnnxPruneError):
    """The torch twin has no implementation for an op (or one of its attribute variants)."""
