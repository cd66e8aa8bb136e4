"""The input shapes a model is measured at: what validation feeds, latency timing, MACs and size targets use.

A detector declared ``[batch, 3, height, width]`` says nothing about the size it runs at; measuring it at
an arbitrary default describes a model nobody deploys. Per input, in order:

1. ``--data``: the arrays' per-sample shape (an image folder: the size it is resized to);
2. ``--input-shape NAME:D,D,...``: the shape the user gave;
3. what the graph implies for its free dims, conservatively: a size stated in the model's metadata
   (``imgsz``, ``input_size``...), or - when the default size contradicts fixed dims elsewhere in the graph
   (a Flatten into a Gemm of fixed width, a fixed-size position table added to the tokens, an output
   declared at a fixed size) - the smallest size at which ONNX shape inference finds no contradiction;
   a sequence input no longer than the graph's position table;
4. otherwise batch 1 and every other free dim DEFAULT_FREE_DIM, stated as such.

Axis 0 is the batch: one sample for MACs and latency (or the declared fixed batch), more samples for
validation. The result is carried in ``DataConfig.input_shapes`` with a free batch written as 0, so every
consumer reads one set of shapes.
"""

from __future__ import annotations

import ast
import os
import re
import zipfile
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.data import DEFAULT_FREE_DIM, DataSource
from onnxprune.errors import InputError, OptionError

# Sizes tried, smallest first, when the default contradicts the graph: multiples of 8 up to 1024, then of 32
# up to 2048 (strided vision backbones take multiples of 8 to 32; a sequence length is tried the same way).
SEARCH_SIZES = tuple(range(8, 1025, 8)) + tuple(range(1056, 2049, 32))
# Metadata keys whose value states the input size the model was exported for (ultralytics writes imgsz).
SIZE_KEYS = re.compile(r"^(imgsz|img_size|image_size|input_size|input_shape|imagesize|inputsize)$", re.IGNORECASE)
# Initializers with more elements than this are shape-only stand-ins during the consistency check.
_SMALL = 4096
HOW_TO_CHANGE = "--input-shape NAME:D,D,... changes them"


@dataclass(frozen=True)
class DeployShapes:
    """Per input: the shape (axis 0 = 0 where the batch is free), where it came from, and what values feed it."""

    shapes: dict[str, tuple[int, ...]]
    sources: dict[str, str]
    values: dict[str, str]

    def one_batch(self, name: str) -> list[int]:
        """The shape one run takes: a free batch as 1."""
        shape = self.shapes[name]
        return [1 if i == 0 and d <= 0 else d for i, d in enumerate(shape)]

    def section(self) -> dict:
        """The report's ``shapes`` section."""
        return {"inputs": {n: {"shape": self.one_batch(n), "source": self.sources[n], "values": self.values[n]}
                           for n in self.shapes},
                "used_by": "MACs, latency, size and latency targets and synthetic validation inputs (batch 1 for "
                           "MACs and latency)",
                "note": HOW_TO_CHANGE}


def deploy_shapes(model: ir.Model, data=None, given: dict[str, tuple] | None = None) -> DeployShapes:
    """The shapes ``model`` is measured at (module docstring), from ``data`` (a path or DataSource),
    ``given`` (--input-shape) and the graph. OptionError when --input-shape contradicts --data."""
    given = dict(given or {})
    inputs = [v for v in model.graph.inputs if v.name not in model.graph.initializers]
    known = {v.name for v in inputs}
    unknown = sorted(set(given) - known)
    if unknown:
        raise OptionError(f"--input-shape names unknown input(s) {', '.join(unknown)}; the inputs are "
                          f"{', '.join(sorted(known))}")
    declared = {v.name: _dims(v) for v in inputs}
    shapes, sources, values = {}, {}, {}
    if data is not None:
        source = data if isinstance(data, DataSource) else DataSource(data)
        for name, shape in data_shapes(source, declared).items():
            if name in given and list(given[name][1:]) != list(shape[1:]):
                raise OptionError(f"--input-shape {name}:{','.join(map(str, given[name]))} contradicts the data: "
                                  f"its samples are {list(shape[1:])}; validation and latency run on the data "
                                  "(drop --input-shape, or give data of that shape)")
            shapes[name], sources[name] = shape, f"--data ({source.describe()})"
            values[name] = "the data's values"
    ints = {v.name: (v.dtype is not None and v.dtype.is_integer()) for v in inputs}
    for name, shape in given.items():
        if name not in shapes:
            shapes[name], sources[name] = tuple(shape), "--input-shape"
    free = [n for n in declared if n not in shapes and any(not _fixed(d) for d in declared[n][1:])]
    implied, why = implied_size(model, free) if free else (None, "")
    for name, dims in declared.items():
        if name in shapes:
            continue
        open_dims = any(not _fixed(d) for d in dims[1:])
        size = implied if implied is not None else DEFAULT_FREE_DIM
        shapes[name] = tuple(d if _fixed(d) else (0 if i == 0 else size) for i, d in enumerate(dims))
        sources[name] = ("declared" if not open_dims else why if implied is not None else
                         f"default: free dims {DEFAULT_FREE_DIM} (nothing in the graph fixes them)")
    for name in shapes:
        values.setdefault(name, "synthetic: integers the graph allows" if ints.get(name) else
                          "synthetic: N(0, 1) noise")
    return DeployShapes(shapes, sources, values)


def _dims(value: ir.Value) -> list:
    return [] if value.shape is None else [d if isinstance(d, int) else None for d in value.shape]


def _fixed(d) -> bool:
    return isinstance(d, int) and d > 0


def data_shapes(source: DataSource, declared: dict[str, list]) -> dict[str, tuple[int, ...]]:
    """Per-sample shape of each input in the data (axis 0: the declared fixed batch, else 0), read from the
    .npz headers without loading the arrays (an image folder: channels and the size images are resized to)."""
    out = {}
    if source.images:
        if len(declared) != 1:
            return out  # DataSource refuses this when the data is read
        (name, dims), = declared.items()
        if len(dims) == 4:
            size = source.input_size or tuple(dims[2:])
            channels = dims[1] if _fixed(dims[1]) else 3
            if all(_fixed(d) for d in size):
                out[name] = (dims[0] if _fixed(dims[0]) else 0, channels, *size)
        return out
    headers = npz_shapes(source.path)
    for name, dims in declared.items():
        if name in headers and len(headers[name]) == len(dims) and len(dims):
            out[name] = (dims[0] if _fixed(dims[0]) else 0, *headers[name][1:])
    return out


def npz_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """{array name: shape} of an .npz, from each member's header (no array is read)."""
    try:
        with zipfile.ZipFile(path) as z:
            shapes = {}
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shapes[info.filename[:-4]] = tuple(read(f)[0])
            return shapes
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc})") from None


def implied_size(model: ir.Model, names: list[str]) -> tuple[int | None, str]:
    """The size the free non-batch dims of inputs ``names`` take, and why: a metadata size consistent with
    the graph, the position table's length for a sequence input, or the smallest size at which the graph's
    fixed dims agree when the default contradicts them. (None, "") when nothing says otherwise."""
    meta = metadata_size(model)
    checker = _ShapeChecker(model, names)
    if not checker.usable:
        return None, ""
    if meta is not None and checker.consistent(meta):
        return meta, f"model metadata (size {meta})"
    if checker.consistent(DEFAULT_FREE_DIM):
        from onnxprune.graph.inputs import position_table_rows

        rows = position_table_rows(model) if any(checker.integer.values()) else None
        if rows is not None and rows < DEFAULT_FREE_DIM:
            return rows, f"the graph: its position table has {rows} rows"
        return None, ""
    for size in SEARCH_SIZES:
        if checker.consistent(size):
            return size, (f"the graph: free dims {DEFAULT_FREE_DIM} contradict fixed dims in it; {size} is the "
                          "smallest size shape inference accepts")
    return None, ""


def metadata_size(model: ir.Model) -> int | None:
    """A square input size stated in the model's metadata (``imgsz: [640, 640]``, ``input_size: 320``)."""
    for key, text in (model.metadata_props or {}).items():
        if not SIZE_KEYS.match(key.strip()):
            continue
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            continue
        sizes = [value] if isinstance(value, int) else list(value) if isinstance(value, (list, tuple)) else []
        sizes = [s for s in sizes if isinstance(s, int) and s > 3]  # spatial sizes, not a channel count
        if sizes and len(set(sizes)) == 1:
            return sizes[0]
    return None


class _ShapeChecker:
    """ONNX shape inference (strict) of the model with the free non-batch dims of some inputs fixed: does
    the graph accept a size? Large weights enter as shape-only graph inputs, so the check stays cheap."""

    def __init__(self, model: ir.Model, names: list[str]) -> None:
        self.proto = proto = shape_only_proto(model)
        self.names = set(names)
        self.integer = {v.name: v.dtype is not None and v.dtype.is_integer()
                        for v in model.graph.inputs if v.name in self.names}
        self.usable = self._infers(proto)  # the graph as declared: if that fails, it says nothing

    def consistent(self, size: int) -> bool:
        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto)
        for inp in proto.graph.input:
            if inp.name in self.names:
                for i, d in enumerate(inp.type.tensor_type.shape.dim):
                    if i > 0 and not d.HasField("dim_value"):
                        d.Clear()
                        d.dim_value = size
        return self._infers(proto)

    @staticmethod
    def _infers(proto: onnx.ModelProto) -> bool:
        try:
            onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
        except Exception:  # any inference error: the size (or the graph) is not accepted
            return False
        return True


def shape_only_proto(model: ir.Model) -> onnx.ModelProto:
    """``model``'s structure with its large initializers as graph inputs of their dims and type (no data),
    and no inferred intermediate shapes (each check infers afresh)."""
    proto = ir.to_proto(model) if _weight_bytes(model) <= 64 << 20 else None
    if proto is None:
        # large models: serialise with every big weight swapped for a shape-only external reference
        saved = {}
        try:
            for v in model.graph.initializers.values():
                t = v.const_value
                if t is not None and t.size > _SMALL:
                    saved[v] = t
                    v.const_value = ir.ExternalTensor("shape-only", 0, 0, t.dtype, shape=t.shape, name=v.name)
            proto = ir.to_proto(model)
        finally:
            for v, t in saved.items():
                v.const_value = t
    keep = []
    for init in proto.graph.initializer:
        if int(np.prod(init.dims)) > _SMALL:
            proto.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:
            keep.append(init)
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
    del proto.graph.value_info[:]
    return proto


def _weight_bytes(model: ir.Model) -> int:
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


def measured_at_deploy_shapes(config, model: ir.Model):
    """``config`` (a validated PruneConfig) with its data shapes, and its validation options' shapes, set to
    the deploy shapes of ``model``; and those shapes (for the report)."""
    from dataclasses import replace

    deploy = deploy_shapes(model, config.data.source, config.data.input_shapes)
    checks = config.validation.checks
    if checks is not None:
        checks = replace(checks, input_shapes=deploy.shapes)
    return replace(config, data=replace(config.data, input_shapes=deploy.shapes),
                   validation=replace(config.validation, checks=checks)), deploy
