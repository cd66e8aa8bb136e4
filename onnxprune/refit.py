"""``--refit``: closed-form least-squares refit of every consumer that lost input channels.

A consumer (Conv with group 1, Gemm, MatMul with a constant 2-D weight) computes Y = X W (+ b) with X
its input rows (a Conv's rows are im2col patches) and W [K, N]. After surgery it reads only the kept
channels X_S. Its weight (and bias, as an extra constant column, where the layer has one) is
re-solved so that, on calibration inputs, it reproduces the ORIGINAL model's output of that layer:

    (X_S^T X_S + lambda I) W' = X_S^T Y,   lambda = 1e-3 * mean(diag(X_S^T X_S))

X_S are the pruned model's own activations (earlier errors are corrected, not compounded), Y the
original model's tensor (a MatMul's following bias Add included, whose constant is refit too). Only
X_S^T X_S, X_S^T Y and ||Y||^2 are accumulated, batch by batch in onnxruntime (extra graph outputs on
copies), so no activation is ever held for the whole calibration set. A layer that also lost output
channels is refit on its kept outputs only. The bias column is not regularised.

Layers are refit level by level: a level holds the layers none of whose inputs depend on another
refit layer of the same or a later level, and each level reads activations of the model with every
earlier level already refit (``sequential``; one pass over the unrefit model is the cheaper option,
measured in tools/bench_refit.py). A refit that would not lower a layer's calibration error (ridge
shrinkage can cost more than it gains where the pruned layer was already exact) keeps its weights.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.errors import PlanError, ValidationError
from onnxprune.graph import Analysis, optable
from onnxprune.graph.edit import set_constant_input
from onnxprune.graph.traits import attr
from onnxprune.io import exposing
from onnxprune.plan import Plan
from onnxprune.surgery import bias_after

RIDGE = 1e-3  # lambda as a fraction of the mean diagonal of X_S^T X_S
SYNTHETIC_SAMPLES = 128  # calibration samples drawn when there is no --data
SYNTHETIC_BATCH = 32
# Level by level (True) or one pass over the unrefit pruned model (False): see tools/bench_refit.py.
SEQUENTIAL = True
_CHUNK_VALUES = 4 * 1024 * 1024  # float64 values of one block of rows (32 MB)

Batches = Callable[[], Iterable[dict[str, np.ndarray]]]


@dataclass
class Layer:
    """One consumer to refit, and how its weights read as Z [K (+1 bias row), N]."""

    node: ir.Node
    rows: Callable[[np.ndarray], Iterator[np.ndarray]]  # input activation -> blocks of X rows [r, K]
    weight: int  # input index of the weight
    out_axis: int  # axis of the weight indexing output channels
    weight_scale: float  # Y = weight_scale * X W + bias_scale * b
    bias: tuple[ir.Node, int, float] | None  # (node, input index, scale) of the fitted constant column
    x: str  # the activation it reads (pruned model)
    y: str  # the tensor it must reproduce (original model)
    out_keep: np.ndarray | None  # original output channels it still computes (None: all)

    @property
    def name(self) -> str:
        return self.node.name or self.node.outputs[0].name

    def current(self) -> np.ndarray:
        """Its weights now, as Z (scales included)."""
        w = self.node.inputs[self.weight].const_value.numpy().astype(np.float64)
        z = np.moveaxis(w, self.out_axis, -1).reshape(-1, w.shape[self.out_axis]) * self.weight_scale
        if self.bias is None:
            return z
        node, index, scale = self.bias
        return np.vstack([z, node.inputs[index].const_value.numpy().astype(np.float64).reshape(1, -1) * scale])

    def write(self, z: np.ndarray) -> None:
        """Store Z back as weight (and bias), in the constants' own layout and dtype."""
        old = self.node.inputs[self.weight].const_value.numpy()
        if self.bias is not None:
            node, index, scale = self.bias
            b = node.inputs[index].const_value.numpy()
            set_constant_input(node, index, (z[-1] / scale).reshape(b.shape).astype(b.dtype))
            z = z[:-1]
        moved = np.moveaxis(old, self.out_axis, -1).shape
        w = np.moveaxis((z / self.weight_scale).reshape(moved), -1, self.out_axis)
        set_constant_input(self.node, self.weight, w.astype(old.dtype))

    def targets(self, y: np.ndarray, channel_axis: int) -> np.ndarray:
        """The original tensor as rows [r, N] over the kept output channels."""
        rows = np.moveaxis(y, channel_axis, -1)
        rows = rows.reshape(-1, rows.shape[-1])
        return rows if self.out_keep is None else rows[:, self.out_keep]


@dataclass
class Normal:
    """Streamed normal equations of one layer: G = X^T X, H = X^T Y, ||Y||^2 (X with the bias column)."""

    g: np.ndarray
    h: np.ndarray
    yy: float = 0.0
    rows: int = 0

    @classmethod
    def empty(cls, k: int, n: int) -> Normal:
        return cls(np.zeros((k, k)), np.zeros((k, n)))

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        self.g += x.T @ x
        self.h += x.T @ y
        self.yy += float(np.einsum("ij,ij->", y, y))
        self.rows += len(x)

    def relative_error(self, z: np.ndarray) -> float:
        """||X Z - Y|| / ||Y|| from the accumulated sums alone."""
        sq = self.yy - 2.0 * float(np.einsum("ij,ij->", z, self.h)) + float(np.einsum("ij,ij->", z, self.g @ z))
        return float(np.sqrt(max(sq, 0.0) / self.yy)) if self.yy > 0 else 0.0

    def solve(self, bias: bool) -> np.ndarray | None:
        """The ridge solution Z (the bias row, if any, last and unregularised); None if X is all zero."""
        k = len(self.g) - (1 if bias else 0)
        lam = RIDGE * float(np.mean(np.diag(self.g)[:k])) if k else 0.0
        if lam <= 0:
            return None
        a = self.g.copy()
        a[np.arange(k), np.arange(k)] += lam
        try:
            return np.linalg.solve(a, self.h)
        except np.linalg.LinAlgError:
            return np.linalg.lstsq(a, self.h, rcond=None)[0]


# -- layers ---------------------------------------------------------------------------------------
def conv_pads(node: ir.Node, spatial: tuple[int, ...], kernel: tuple[int, ...], strides: list[int],
              dilations: list[int]) -> list[tuple[int, int]]:
    """(begin, end) padding per spatial axis, from ``pads`` or ``auto_pad`` at this input size."""
    auto = attr(node, "auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small = total // 2
            pads.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        return pads
    if auto == "VALID":
        return [(0, 0)] * len(spatial)
    p = list(attr(node, "pads", None) or [0] * (2 * len(spatial)))
    return list(zip(p[:len(spatial)], p[len(spatial):]))


def im2col(x: np.ndarray, kernel: tuple[int, ...], strides: list[int], dilations: list[int],
           pads: list[tuple[int, int]]) -> np.ndarray:
    """Patches of ``x`` [N, C, *spatial] as rows [N * out positions, C * prod(kernel)], in the layout of
    the weight reshaped to [out, C * prod(kernel)] (positions in C order)."""
    xp = np.pad(x, [(0, 0), (0, 0), *pads])
    out = [(xp.shape[2 + i] - (d * (k - 1) + 1)) // s + 1 for i, (k, s, d) in enumerate(zip(kernel, strides, dilations))]
    taps = int(np.prod(kernel))
    cols = np.empty((x.shape[0], x.shape[1], taps, *out), dtype=x.dtype)
    for t, offset in enumerate(np.ndindex(*kernel)):
        window = tuple(slice(o * d, o * d + s * (n - 1) + 1, s) for o, d, s, n in zip(offset, dilations, strides, out))
        cols[:, :, t] = xp[(slice(None), slice(None), *window)]
    cols = cols.reshape(x.shape[0], x.shape[1] * taps, -1)
    return cols.transpose(0, 2, 1).reshape(-1, x.shape[1] * taps)


def _conv_rows(node: ir.Node, kernel: tuple[int, ...], bias: bool) -> Callable[[np.ndarray], Iterator[np.ndarray]]:
    spatial_rank = len(kernel)
    strides = list(attr(node, "strides", None) or [1] * spatial_rank)
    dilations = list(attr(node, "dilations", None) or [1] * spatial_rank)

    def rows(x: np.ndarray) -> Iterator[np.ndarray]:
        pads = conv_pads(node, x.shape[2:], kernel, strides, dilations)
        per_sample = int(np.prod(x.shape[2:])) * x.shape[1] * int(np.prod(kernel))
        step = max(1, _CHUNK_VALUES // max(per_sample, 1))
        for i in range(0, len(x), step):
            yield _with_ones(im2col(x[i:i + step].astype(np.float64), kernel, strides, dilations, pads), bias)

    return rows


def _matrix_rows(bias: bool) -> Callable[[np.ndarray], Iterator[np.ndarray]]:
    def rows(x: np.ndarray) -> Iterator[np.ndarray]:
        flat = x.reshape(-1, x.shape[-1])
        step = max(1, _CHUNK_VALUES // max(flat.shape[1], 1))
        for i in range(0, len(flat), step):
            yield _with_ones(flat[i:i + step].astype(np.float64), bias)

    return rows


def _with_ones(x: np.ndarray, bias: bool) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))]) if bias else x


def _conv_layer(node: ir.Node, aff, out_keep, opset: int) -> Layer | str:
    w = node.inputs[aff.weight].const_value
    if attr(node, "group", 1) != 1:
        return "grouped or depthwise convolution: refit solves ungrouped convolutions only"
    has_bias = len(node.inputs) > 2 and node.inputs[2] is not None
    if has_bias and node.inputs[2].const_value is None:
        return "its bias is computed at run time"
    kernel = tuple(int(d) for d in w.shape[2:])
    bias = (node, 2, 1.0) if has_bias else None
    return Layer(node, _conv_rows(node, kernel, has_bias), aff.weight, 0, 1.0, bias, node.inputs[0].name,
                 node.outputs[0].name, out_keep)


def _gemm_layer(node: ir.Node, aff, out_keep, opset: int) -> Layer | str:
    if attr(node, "transA", 0):
        return "Gemm with transA: refit reads rows of A as samples"
    if aff.weight_scale == 0:
        return "Gemm with alpha 0 ignores its weight"
    c = node.inputs[2] if len(node.inputs) > 2 else None
    bias = None
    if c is not None:
        n = node.inputs[aff.weight].const_value.shape[aff.weight_out_axis]
        if c.const_value is None or c.const_value.size != n or aff.bias_scale == 0:
            return "its C input is not a constant per-output bias"
        bias = (node, 2, aff.bias_scale)
    return Layer(node, _matrix_rows(bias is not None), aff.weight, aff.weight_out_axis, aff.weight_scale, bias,
                 node.inputs[0].name, node.outputs[0].name, out_keep)


def _matmul_layer(node: ir.Node, aff, out_keep, opset: int) -> Layer | str:
    w = node.inputs[1].const_value if len(node.inputs) > 1 else None
    if w is None or len(w.shape) != 2:
        return "MatMul without a constant 2-D weight as its second input"
    # the exported Linear's bias Add, refit with the weight when its constant is [.., N] and read only here
    found = bias_after(node, opset)
    add, index, shape = found if found is not None else (None, -1, [])
    if add is not None and (not shape or shape[-1] != int(w.shape[1]) or len(add.inputs[index].uses()) != 1
                            or add.inputs[index].is_graph_output()):
        add = None
    bias = (add, index, 1.0) if add is not None else None
    y = add.outputs[0].name if add is not None else node.outputs[0].name
    return Layer(node, _matrix_rows(bias is not None), 1, 1, 1.0, bias, node.inputs[0].name, y, out_keep)


# Op type -> (node, affine, kept outputs, opset) -> Layer, or why the layer is left as it is.
LAYERS: dict[str, Callable] = {"Conv": _conv_layer, "Gemm": _gemm_layer, "MatMul": _matmul_layer}
# Where each op's input and output hold their channels (rows read the rest)
CHANNEL_AXIS = {"Conv": 1, "Gemm": -1, "MatMul": -1}


def _removed_roots(analysis: Analysis, plan: Plan) -> np.ndarray:
    removed = np.zeros(len(analysis.roots), dtype=bool)
    for gid, cls in plan.removed.items():
        removed[analysis.groups[gid].classes[cls]] = True
    return removed


def pruned_layers(analysis: Analysis, plan: Plan) -> tuple[list[Layer], list[dict]]:
    """The consumers that lost input channels under ``plan`` (applied), in graph order; and the ones
    refit leaves alone, with why."""
    removed = _removed_roots(analysis, plan)
    keep = lambda atoms: ~removed[analysis.roots[atoms]]  # noqa: E731
    touched: dict[int, ir.Node] = {}
    for p in analysis.params:
        if p.role == "consumer" and not keep(p.atoms).all():
            touched.setdefault(id(p.node), p.node)
    layers, skipped = [], []
    order = {id(n): i for i, n in enumerate(analysis.model.graph)}
    for node in sorted(touched.values(), key=lambda n: order.get(id(n), len(order))):
        found = consumer_layer(analysis, node, keep)
        if isinstance(found, str):
            skipped.append({"layer": node.name or node.outputs[0].name, "op": node.op_type, "why": found})
        else:
            layers.append(found)
    return layers, skipped


def consumer_layer(analysis: Analysis, node: ir.Node, keep) -> Layer | str:
    """``node`` as a layer the refit can solve (``keep(atoms)``: which channels remain), or why not."""
    make = LAYERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if make is None:
        return f"{node.op_type}: refit solves Conv, Gemm and MatMul layers"
    if node.graph is not analysis.model.graph:
        return "inside a subgraph"
    aff = optable.traits(node, analysis.opset).affine()
    if aff is None or node.inputs[aff.weight] is None or node.inputs[aff.weight].const_value is None:
        return "its weight is not a constant"
    consumers = [p for p in analysis.params if p.node is node and p.role == "consumer"]
    if any(p.blocks > 1 or p.input_index != aff.weight for p in consumers):
        return "grouped or depthwise convolution: refit solves ungrouped layers only"
    producer = next((p for p in analysis.params if p.node is node and p.role == "producer"
                     and p.input_index == aff.weight), None)
    out_keep = None
    if producer is not None:
        kept = keep(producer.atoms)
        out_keep = None if kept.all() else np.nonzero(kept)[0]
    return make(node, aff, out_keep, analysis.opset)


def _levels(layers: list[Layer]) -> list[list[Layer]]:
    """Layers grouped so that no layer reads (through any path) the output of one in its own or a
    later group: refitting group i changes the inputs of groups > i only."""
    at = {id(layer.node): i for i, layer in enumerate(layers)}
    upstream: list[set[int]] = []  # per layer: the layers its input depends on (any path, any node order)
    for layer in layers:
        seen, found, todo = set(), set(), [layer.node.inputs[0]]
        while todo:
            node = todo.pop().producer()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if id(node) in at:
                found.add(at[id(node)])
            todo.extend(v for v in node.inputs if v is not None)
        upstream.append(found)
    level: dict[int, int] = {}

    def level_of(i: int) -> int:  # the layer DAG is acyclic (the graph is)
        if i not in level:
            level[i] = 1 + max((level_of(j) for j in upstream[i]), default=-1)
        return level[i]

    out: dict[int, list[Layer]] = {}
    for i, layer in enumerate(layers):
        out.setdefault(level_of(i), []).append(layer)
    return [out[k] for k in sorted(out)]


# -- running -------------------------------------------------------------------------------------
Model = bytes | Path  # what onnxruntime loads: serialized bytes, or a file with its external data beside it


def has_external_data(model: ir.Model) -> bool:
    """Some initializer still lives in an external file (then onnxruntime must load a file, not bytes)."""
    return any(isinstance(v.const_value, ir.ExternalTensor) for v in model.graph.initializers.values())


def snapshot(model: ir.Model, folder: Path) -> Model:
    """``model`` as onnxruntime can load it later, whatever happens to it meanwhile: bytes, or (external
    data) a copy saved in ``folder``."""
    if not has_external_data(model):
        return ir.to_proto(model).SerializeToString()
    path = Path(folder) / "original.onnx"
    ir.save(model, path, external_data=path.name + ".data")
    return path


def original_exposing(original: Model, names: list[str]) -> tuple[Model, set[str]]:
    """The original with ``names`` as outputs (a file beside the snapshot's data where it has some),
    and the tensor names it computes."""
    if isinstance(original, bytes):
        proto = onnx.load_from_string(original)
        loadable: Model = exposing(proto, names)
    else:
        proto = onnx.load(original, load_external_data=False)
        loadable = original.with_name("reference.onnx")
        loadable.write_bytes(exposing(proto, names))
    return loadable, {o for n in proto.graph.node for o in n.output} | {i.name for i in proto.graph.input}


def _pruned(model: ir.Model, names: list[str], folder: Path) -> Model:
    """The pruned model as it is now with ``names`` as extra outputs: bytes, or a file (external data)."""
    if not has_external_data(model):
        return exposing(ir.to_proto(model), names)
    values = {v.name: v for node in model.graph for v in node.outputs}
    extra = [values[n] for n in dict.fromkeys(names) if n in values and not values[n].is_graph_output()]
    model.graph.outputs.extend(extra)
    try:
        path = Path(folder) / "pruned.onnx"
        ir.save(model, path, external_data=path.name + ".data")
    finally:
        for _ in extra:
            model.graph.outputs.pop()
    return path


def fetch_tensors(sess, names: list[str], feeds: dict[str, np.ndarray], role: str) -> dict[str, np.ndarray]:
    """``names`` on one batch: graph inputs straight from the feeds, the rest from the session."""
    todo = [n for n in dict.fromkeys(names) if n not in feeds]
    try:
        got = dict(zip(todo, sess.run(todo, feeds))) if todo else {}
    except Exception as exc:  # onnxruntime's own exception types: one line for the user
        raise ValidationError(f"onnxruntime cannot run the {role} on the --refit calibration inputs: "
                              f"{str(exc).splitlines()[0][:300]}") from exc
    return {n: feeds[n] if n in feeds else got[n] for n in names}


def refit_model(model: ir.Model, analysis: Analysis, plan: Plan, original: Model, batches: Batches,
                sequential: bool | None = None, status: Callable[[str], object] = lambda line: None) -> dict:
    """Refit every consumer ``plan`` (already applied to ``model``) took input channels from, on
    ``batches`` (a callable returning an iterable of feeds); ``original`` is the unpruned model
    (``snapshot``). Returns the report section: per layer the relative calibration error before and after."""
    with tempfile.TemporaryDirectory(prefix="onnxprune-refit-") as tmp:
        return _refit_model(model, analysis, plan, original, batches, sequential, status, Path(tmp))


def _refit_model(model: ir.Model, analysis: Analysis, plan: Plan, original: Model, batches: Batches,
                 sequential: bool | None, status: Callable, tmp: Path) -> dict:
    from onnxprune.runtime import session

    sequential = SEQUENTIAL if sequential is None else sequential
    layers, skipped = pruned_layers(analysis, plan)
    rows: list[dict] = []
    if layers:
        loadable, known = original_exposing(original, [layer.y for layer in layers])
        ref = session(loadable, role="original model for --refit")
        for layer in [la for la in layers if la.y not in known]:
            layers.remove(layer)
            skipped.append({"layer": layer.name, "op": layer.node.op_type,
                            "why": f"its output '{layer.y}' is not a tensor of the original model"})
        levels = _levels(layers) if sequential else [layers]
        for level in levels:
            rows += _refit_level(model, level, ref, batches, status, len(rows), len(layers), tmp)
    return {"layers": rows, "skipped": skipped,
            "passes": "sequential (each level of layers reads the model with the earlier levels refit)"
                      if sequential else "one (every layer reads the pruned model before any refit)",
            "ridge": f"lambda = {RIDGE:g} x mean diagonal of X^T X"}


def _refit_level(model: ir.Model, level: list[Layer], ref, batches: Batches, status: Callable, done: int,
                 total: int, tmp: Path) -> list[dict]:
    from onnxprune.runtime import session

    pruned = session(_pruned(model, [la.x for la in level], tmp), role="pruned model for --refit")
    normals: list[Normal | None] = [None] * len(level)
    for feeds in batches():
        xs = fetch_tensors(pruned, [la.x for la in level], feeds, "pruned model")
        ys = fetch_tensors(ref, [la.y for la in level], feeds, "original model")
        for i, la in enumerate(level):
            axis = CHANNEL_AXIS[la.node.op_type]
            y = la.targets(ys[la.y].astype(np.float64), axis)
            start = 0
            for x in la.rows(xs[la.x]):
                if normals[i] is None:
                    normals[i] = Normal.empty(x.shape[1], y.shape[1])
                normals[i].add(x, y[start:start + len(x)])
                start += len(x)
            if start != len(y):
                raise PlanError(f"refit of '{la.name}': {start} input rows for {len(y)} output rows; this is a bug "
                                "in onnxprune, please report it with the model")
    out = []
    for i, (la, normal) in enumerate(zip(level, normals)):
        row = {"layer": la.name, "op": la.node.op_type, "samples_rows": normal.rows if normal else 0}
        z0 = la.current()
        before = normal.relative_error(z0) if normal is not None else 0.0
        z = normal.solve(la.bias is not None) if normal is not None else None
        after = normal.relative_error(z) if z is not None else before
        refit = z is not None and after < before
        if refit:
            la.write(z)
        row.update(error_before=before, error_after=after if refit else before, refit=refit)
        if not refit:
            row["why"] = ("no calibration rows" if normal is None else "the inputs are all zero" if z is None
                          else "the refit would not lower the error")
        status(f"refit {done + i + 1}/{total} {la.name}: relative error {before:.3g} -> {row['error_after']:.3g}")
        out.append(row)
    return out


def calibration_batches(context, original: Model, samples: int | None = None) -> tuple[Batches, str]:
    """The feeds --refit solves on: --data (in the pipeline's calibration batches), else seeded synthetic
    inputs (SYNTHETIC_SAMPLES samples), within ``context.fit_window`` where --ratio auto set one; ``samples``:
    at most about that many (--ratio auto's quick probes); and what they are, for the report."""
    if context.config.data.source is not None:
        calib = context.calibration()
        start, stop = context.fit_window or (0, calib.samples)
        stop = min(stop, calib.samples - calib.samples % calib.batch)  # whole batches where the batch is fixed
        limit = stop - start if samples is None else min(samples, stop - start)

        def first() -> Iterator[dict[str, np.ndarray]]:  # the window's first ``limit`` samples, batch by batch
            for i in range(start, start + limit, calib.batch):
                yield {k: v[i:min(i + calib.batch, start + limit)] for k, v in calib.feeds.items()}

        where = f" ({start} to {start + limit})" if start else ""
        return first, f"{context.config.data.source.describe()}, {limit} samples{where}"
    from onnxprune.runtime import fixed_batch, session, synthetic_inputs

    sess = session(original, role="original model for --refit")
    shapes = context.config.data.input_shapes or None
    given_batch = shapes and all(s and s[0] > 0 for s in shapes.values())  # --input-shape fixed every batch
    batch = fixed_batch(sess) or (None if given_batch else SYNTHETIC_BATCH)
    count = -(-(samples or SYNTHETIC_SAMPLES) // batch) if batch else 4
    seed = context.config.data.seed

    def batches() -> Iterator[dict[str, np.ndarray]]:
        for i in range(count):
            yield synthetic_inputs(sess, seed + i, batch=batch or 1, overrides=shapes)

    what = f"{count} batches of {batch}" if batch else f"{count} batches of the --input-shape shapes"
    return batches, f"synthetic inputs (seed {seed}; no --data), {what}"


def refit_candidate(model: ir.Model, analysis: Analysis, plan: Plan, original: Model, context,
                    status: Callable[[str], object] = lambda line: None, samples: int | None = None) -> dict:
    """The pipeline's step: refit ``model`` (pruned by ``plan``) on the calibration inputs (``samples``: on
    about that many of them only); its report."""
    if not plan.removed:
        return {"layers": [], "skipped": [], "inputs": "none needed: nothing was removed"}
    batches, what = calibration_batches(context, original, samples)
    section = refit_model(model, analysis, plan, original, batches, status=status)
    section["inputs"] = what
    from onnxprune.transforms import RefitSelection

    if RefitSelection().applies(context.config):
        from onnxprune.refit_select import SELECTION, selected_groups

        section["selection"] = (SELECTION if selected_groups(plan) else f"applied to no group: each of the {len(plan.removed)} "
                                "pruned groups kept the criterion's choice (its why says which consumer is not refit)")
    return section
