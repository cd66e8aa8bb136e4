"""Op families of the twin; importing this package registers them all."""

from onnxprune.twin.ops import (  # noqa: F401
    conv,
    elementwise,
    linear,
    norm,
    pool,
    reduce,
    resize,
    shape,
)
