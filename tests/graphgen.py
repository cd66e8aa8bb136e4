"""Seeded generated graphs for the differential test: producer -> OP (a variant) -> consumer, checked
against onnxruntime.

Every entry of the op registry (``onnxprune.graph.optable.TABLE``) has templates here (``TEMPLATES``);
seed ``s`` builds a case for op ``OPS[s % len(OPS)]`` so any run of ``len(OPS)`` consecutive seeds covers
every op. A case is a small graph: a Conv / ConvTranspose / Gemm / MatMul producer ``p`` with planted
dead, constant, proportional (c > 0) and negatively coupled (c < 0) channels, the op under test in one
of its attribute variants (opsets 11-23 where the variant exists, older where only older opsets have
it), then a Conv / ConvTranspose / Gemm / MatMul consumer, in fp32 or fp16.

``check_case`` prunes it three ways in-process and compares with onnxruntime:

- ``lumping``: lossless lumping must reproduce the original outputs;
- ``remove``: removing explicit channels of ``p`` must equal the original with the consumers' input
  weights for those channels zeroed (the oracle; the analysis says which weights read them);
- ``ratio``: l1 at ratio 0.3 must run, keep the declared output shapes and equal the same oracle.

Each check ends as ``exact`` (outputs equal within tolerance; ``kept`` when nothing was removed),
``frozen`` (the channels were frozen, with a reason), ``refused`` (an onnxprune error), ``WRONG`` (a
model that runs and computes something else, or states wrong shapes) or ``crash`` (any other
exception, or a pruned model onnxruntime cannot run).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from oracle import zero_positions

from onnxprune.api import load_normalized, make_plan
from onnxprune.criteria.lumping import lumping_plan
from onnxprune.errors import OnnxPruneError
from onnxprune.graph import analyze_groups
from onnxprune.plan import Plan, plan_from_removals
from onnxprune.surgery import apply_plan

C = 8  # channels of the producer under test
HW = 6  # spatial size
OUTCOMES = ["exact", "kept", "frozen", "refused", "WRONG", "crash"]
CHECKS = ["lumping", "remove", "ratio"]
FLOAT_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16}


# ---------------------------------------------------------------------------------------------
# graph builder
# ---------------------------------------------------------------------------------------------


@dataclass
class T:
    """A tensor of the graph under construction and the axis its channels are on (None: mixed)."""

    name: str
    axis: int | None


class Builder:
    def __init__(self, rng: np.random.Generator, opset: int, dtype: np.dtype) -> None:
        self.rng, self.opset, self.dtype = rng, opset, np.dtype(dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.feeds: dict[str, np.ndarray] = {}
        self.n = 0
        self._shapes: dict[str, list[int]] = {}
        self.hw = int(rng.choice([HW, HW, 8]))
        self.share = bool(rng.random() < 0.5)
        self.main: tuple[str, str] | None = None  # (kind, layout) of producer "p", for second producers
        self._int_consts: dict[tuple, str] = {}  # 8: room for reshapes that divide by the channel count

    @property
    def elem(self) -> int:
        return FLOAT_TYPES[self.dtype]

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    def input(self, shape: list[int]) -> str:
        name = f"in{len(self.inputs)}"
        self.inputs.append(helper.make_tensor_value_info(name, self.elem, shape))
        self.feeds[name] = self.rng.standard_normal(shape).astype(self.dtype)
        self._shapes[name] = list(shape)
        return name

    def const(self, arr, dtype=None) -> str:
        arr = np.asarray(arr)
        if dtype is not None:
            arr = arr.astype(dtype)
        elif arr.dtype.kind == "f":
            arr = arr.astype(self.dtype)
        name = self.name("k")
        self.inits.append(numpy_helper.from_array(arr, name))
        self._shapes[name] = list(arr.shape)
        return name

    def ints(self, values) -> str:
        """An int64 constant; identical ones are often shared, as exporters and optimisers do, so a
        rewrite of one node's literal must not change another's."""
        arr = np.array(values, dtype=np.int64)
        key = (arr.shape, arr.tobytes())
        if key in self._int_consts and self.share:
            return self._int_consts[key]
        self._int_consts[key] = name = self.const(arr)
        return name

    def weight(self, *shape: int, scale: float = 0.5) -> np.ndarray:
        return self.rng.standard_normal(shape) * scale

    def op(self, op: str, inputs: list[str | None], n_out: int = 1, name: str | None = None, **attrs):
        name = name or self.name(op.lower())
        outs = [f"{name}_o{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, ["" if i is None else i for i in inputs], outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def model(self, outputs: list[str]) -> onnx.ModelProto:
        # ONNX inference does not know com.microsoft ops: their outputs' shapes are stated
        custom = [helper.make_tensor_value_info(o, self.elem, self._shapes[o])
                  for n in self.nodes if n.domain == MS for o in n.output if o in self._shapes and o not in outputs]
        g = helper.make_graph(self.nodes, "g", self.inputs,
                              [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs],
                              self.inits, value_info=custom)
        opsets = [helper.make_opsetid("", self.opset)]
        if any(n.domain == MS for n in self.nodes):
            opsets.append(helper.make_opsetid(MS, 1))
        m = helper.make_model(g, opset_imports=opsets, ir_version=min(10, onnx.IR_VERSION))
        inferred = onnx.shape_inference.infer_shapes(m, data_prop=True)
        known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
        for out in m.graph.output:
            if out.name in known and known[out.name].type.tensor_type.elem_type:
                out.CopyFrom(known[out.name])
        return m

    def shape(self, name: str) -> list[int]:
        """Static shape of a tensor built so far (ONNX shape inference on the partial graph)."""
        if name not in self._shapes:
            m = self.model([name])
            t = m.graph.output[0].type.tensor_type
            if not t.HasField("shape") or any(not d.HasField("dim_value") for d in t.shape.dim):
                raise Unbuildable(f"no static shape for {name}")
            self._shapes[name] = [d.dim_value for d in t.shape.dim]
        return self._shapes[name]

    def elem_of(self, name: str) -> int:
        m = self.model([name])
        return m.graph.output[0].type.tensor_type.elem_type


class Unbuildable(Exception):
    """The random choices made a graph ONNX rejects; the case is rebuilt with other choices."""


# ---------------------------------------------------------------------------------------------
# producers and consumers
# ---------------------------------------------------------------------------------------------

PRODUCERS = ["Conv", "ConvTranspose", "Gemm", "MatMul"]


def producer(b: Builder, kind: str, layout: str, name: str = "p", cout: int = C, x: str | None = None) -> T:
    """A producer of ``cout`` fresh channels. layout: "img" NCHW, "vec" [N, C], "seq" [1, T, C], "nhwc"."""
    rng = b.rng
    if layout == "img" and kind not in ("Conv", "ConvTranspose"):
        kind = "Conv"
    if layout in ("vec",) and kind not in ("Gemm", "MatMul"):
        kind = "Gemm"
    if layout in ("seq", "nhwc"):
        kind = "MatMul"
    if kind == "Conv":
        x = x or b.input([1, 3, b.hw, b.hw])
        cin = b.shape(x)[1]
        k = int(rng.choice([1, 3]))
        return T(b.op("Conv", [x, b.const(b.weight(cout, cin, k, k)), b.const(b.weight(cout))], name=name,
                      kernel_shape=[k, k], pads=[k // 2] * 4), 1)
    if kind == "ConvTranspose":
        x = x or b.input([1, 3, HW // 2 if rng.random() < 0.3 else HW, HW])
        cin = b.shape(x)[1]
        stride = int(rng.choice([1, 2])) if b.shape(x)[2] < HW else 1
        k = 3 if stride == 1 else 2
        return T(b.op("ConvTranspose", [x, b.const(b.weight(cin, cout, k, k)), b.const(b.weight(cout))], name=name,
                      kernel_shape=[k, k], strides=[stride, stride], pads=[1, 1, 1, 1] if stride == 1 else [0] * 4,
                      output_shape=[HW, HW] if stride == 2 else None) if stride == 2 else
                 b.op("ConvTranspose", [x, b.const(b.weight(cin, cout, k, k)), b.const(b.weight(cout))], name=name,
                      kernel_shape=[k, k], pads=[1, 1, 1, 1]), 1)
    if kind == "Gemm":
        x = x or b.input([2, 5])
        cin = b.shape(x)[1]
        trans_b = int(rng.integers(2))
        w = b.weight(cout, cin) if trans_b else b.weight(cin, cout)
        bias = b.weight(*([1, cout] if rng.random() < 0.3 else [cout]))
        attrs = {"transB": trans_b}
        if rng.random() < 0.4:
            attrs["alpha"] = float(rng.choice([0.5, 2.0, -1.5]))
        if rng.random() < 0.4:
            attrs["beta"] = float(rng.choice([0.5, 2.0, -1.0]))
        inputs = [x, b.const(w)] + ([b.const(bias)] if rng.random() < 0.85 else [])
        return T(b.op("Gemm", inputs, name=name, **attrs), 1)
    # MatMul (+ bias Add): channels on the last axis
    shape = {"vec": [2, 5], "seq": [1, 4, 5], "nhwc": [1, HW, HW, 3]}.get(layout, [1, 4, 5])
    x = x or b.input(shape)
    cin = b.shape(x)[-1]
    y = b.op("MatMul", [x, b.const(b.weight(cin, cout))], name=name)
    if rng.random() < 0.8:
        y = b.op("Add", [y, b.const(b.weight(cout))], name=name + "_bias")
    return T(y, len(b.shape(x)) - 1)


def consumer(b: Builder, t: T, name: str = "q") -> str:
    """A Conv/ConvTranspose/Gemm/MatMul that reads ``t``'s channel axis (the last axis if mixed)."""
    rng = b.rng
    elem = b.elem_of(t.name)
    x = t.name
    if elem != b.elem:
        x = b.op("Cast", [x], to=b.elem)
    shape = b.shape(x)
    r = len(shape)
    a = t.axis if t.axis is not None and t.axis < r else r - 1
    if r == 0:
        x, shape, r, a = b.op("Reshape", [x, b.ints([1, 1])]), [1, 1], 2, 1
    if r == 1:
        x = b.op("Unsqueeze", [x, b.ints([0])]) if b.opset >= 13 else b.op("Unsqueeze", [x], axes=[0])
        shape, r, a = [1] + shape, 2, 1
    c = shape[a]
    k = 5
    if r == 4 and a == 1:
        if c % 2 == 0 and rng.random() < 0.15:  # grouped: each half of the channels feeds its own outputs
            return b.op("Conv", [x, b.const(b.weight(6, c // 2, 1, 1)), b.const(b.weight(6))], name=name,
                        kernel_shape=[1, 1], group=2)
        if rng.random() < 0.7:
            kk = int(rng.choice([1, 3]))
            return b.op("Conv", [x, b.const(b.weight(k, c, kk, kk)), b.const(b.weight(k))], name=name,
                        kernel_shape=[kk, kk], pads=[kk // 2] * 4)
        return b.op("ConvTranspose", [x, b.const(b.weight(c, k, 3, 3)), b.const(b.weight(k))], name=name,
                    kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    if r == 2 and a == 1 and rng.random() < 0.6:
        trans_b = int(rng.integers(2))
        attrs = {"transB": trans_b}
        if rng.random() < 0.3:
            attrs["alpha"] = float(rng.choice([0.5, -2.0]))
        w = b.weight(k, c) if trans_b else b.weight(c, k)
        return b.op("Gemm", [x, b.const(w), b.const(b.weight(k))], name=name, **attrs)
    if r == 2 and a == 0:
        return b.op("Gemm", [x, b.const(b.weight(c, k)), b.const(b.weight(k))], name=name, transA=1)
    if a != r - 1:
        perm = [i for i in range(r) if i != a] + [a]
        x = b.op("Transpose", [x], perm=perm)
    return b.op("MatMul", [x, b.const(b.weight(c, k))], name=name)


# ---------------------------------------------------------------------------------------------
# templates: one or more per registry op
# ---------------------------------------------------------------------------------------------


@dataclass
class Template:
    op: str
    build: Callable[[Builder, T], T]  # from the producer's output to the tensor the consumer reads
    layouts: tuple[str, ...] = ("img",)
    since: int = 11
    until: int = 23
    fp16: bool = True  # onnxruntime has fp16 kernels for the op


TEMPLATES: dict[str, list[Template]] = {}


def template(op: str, layouts=("img",), since: int = 11, until: int = 23, fp16: bool = True):
    def deco(fn):
        TEMPLATES.setdefault(op, []).append(Template(op, fn, tuple(layouts), since, until, fp16))
        return fn
    return deco


ANY = ("img", "vec", "seq", "nhwc")


def _per_channel(b: Builder, t: T, values: np.ndarray) -> str:
    """A constant that broadcasts along ``t``'s channel axis."""
    r = len(b.shape(t.name))
    shape = [1] * (r - t.axis)
    shape[0] = len(values)
    return b.const(np.asarray(values).reshape(shape))


def _operand(b: Builder, t: T, positive: bool = False) -> str:
    """A second operand: scalar, per-channel or full constant, a graph input, or another tracked tensor."""
    rng = b.rng
    shape = b.shape(t.name)
    kind = rng.choice(["scalar", "channel", "full", "input", "self", "other", "producer"])
    if kind == "producer" and b.main is not None:  # a second producer from the same input: two groups coupled
        p2 = producer(b, *b.main, name=b.name("p"), x=b.inputs[0].name)
        if b.shape(p2.name) == shape and p2.axis == t.axis:
            return b.op("Add", [b.op("Abs", [p2.name]), b.const(np.array(0.5))]) if positive else p2.name
        kind = "self"
    fix = (lambda a: np.abs(a) + 0.5) if positive else (lambda a: a)
    if kind == "scalar":
        return b.const(fix(b.weight(1)) if rng.random() < 0.5 else np.array(fix(b.weight(1))[0]))
    if kind == "channel":
        return _per_channel(b, t, fix(b.weight(shape[t.axis])))
    if kind == "full":
        return b.const(fix(b.weight(*shape)))
    if kind == "input":
        x = b.input(shape)
        return b.op("Add", [b.op("Abs", [x]), b.const(np.array(0.5))]) if positive else x
    other = b.op("Sigmoid", [t.name]) if kind == "self" else b.op("Relu", [t.name])
    return b.op("Add", [b.op("Abs", [other]), b.const(np.array(0.5))]) if positive else other


_POSITIVE_IN = {"Log", "Sqrt", "Reciprocal"}
_UNIT_IN = {"Asin", "Acos", "Atanh"}


def _unary_template(op: str, since: int = 11, fp16: bool = True, attrs: Callable | None = None) -> None:
    @template(op, ANY, since=since, fp16=fp16)
    def build(b: Builder, t: T) -> T:
        x = t.name
        if op in _POSITIVE_IN:
            x = b.op("Add", [b.op("Abs", [x]), _per_channel(b, t, np.abs(b.weight(C)) + 0.5)
                             if b.rng.random() < 0.5 else b.const(np.array(0.5))])
        elif op == "Acosh":
            x = b.op("Add", [b.op("Abs", [x]), b.const(np.array(1.0))])
        elif op in _UNIT_IN:
            x = b.op("Mul", [b.op("Tanh", [x]), b.const(np.array(0.9))])
        elif op in ("Tan", "Exp", "Sinh", "Cosh"):
            x = b.op("Mul", [x, b.const(np.array(0.3))])
        return T(b.op(op, [x], **(attrs(b) if attrs else {})), t.axis)


for _op in ["Relu", "Sigmoid", "Tanh", "Erf", "Softplus", "Softsign", "Abs", "Neg", "Exp", "Log", "Sqrt",
            "Reciprocal", "Floor", "Ceil", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh",
            "Acosh", "Atanh", "Sign", "Identity"]:
    _unary_template(_op)
_unary_template("Round", since=11)
_unary_template("LeakyRelu", attrs=lambda b: {"alpha": float(b.rng.choice([0.01, 0.2, -0.5, 1.5]))})
_unary_template("Elu", attrs=lambda b: {"alpha": float(b.rng.choice([1.0, 0.5, 2.0]))})
_unary_template("Selu", attrs=lambda b: {} if b.rng.random() < 0.5 else {"alpha": 1.5, "gamma": 0.8})
_unary_template("Celu", since=12, fp16=False, attrs=lambda b: {"alpha": float(b.rng.choice([1.0, 0.5]))})
_unary_template("HardSigmoid", attrs=lambda b: {"alpha": float(b.rng.choice([0.2, 0.5])),
                                                "beta": float(b.rng.choice([0.5, 0.0, 0.3]))})
_unary_template("HardSwish", since=14)
_unary_template("Mish", since=18)
_unary_template("Gelu", since=20, attrs=lambda b: {"approximate": str(b.rng.choice(["none", "tanh"]))})
_unary_template("ThresholdedRelu", since=11, attrs=lambda b: {"alpha": float(b.rng.choice([0.0, 0.5, -0.5]))})
_unary_template("Shrink", attrs=lambda b: {"lambd": float(b.rng.choice([0.0, 0.5])),
                                           "bias": float(b.rng.choice([0.0, 0.3]))})


@template("Clip", ANY)
def _clip(b: Builder, t: T) -> T:
    lo = b.const(np.array(float(b.rng.choice([-0.5, 0.0, 0.2]))))
    hi = b.const(np.array(float(b.rng.choice([0.5, 1.0, -0.1]))))
    inputs = [t.name] + [[lo, hi], [lo], ["", hi], []][int(b.rng.integers(4))]
    return T(b.op("Clip", inputs), t.axis)


@template("Dropout", ANY)
def _dropout(b: Builder, t: T) -> T:
    if b.opset >= 12 and b.rng.random() < 0.5:
        return T(b.op("Dropout", [t.name, b.const(np.array(0.3)), b.const(np.array(False))], n_out=2)[0], t.axis)
    return T(b.op("Dropout", [t.name], **({"ratio": 0.2} if b.opset < 12 else {})), t.axis)


@template("Cast", ANY)
def _cast(b: Builder, t: T) -> T:
    to = int(b.rng.choice([TensorProto.DOUBLE, TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT32]))
    return T(b.op("Cast", [b.op("Cast", [t.name], to=to)], to=b.elem), t.axis)


@template("CastLike", ANY, since=15)
def _castlike(b: Builder, t: T) -> T:
    like = b.const(np.zeros(1, dtype=b.rng.choice([np.float64, np.int32])))
    return T(b.op("CastLike", [b.op("CastLike", [t.name, like]), b.const(np.zeros(1))]), t.axis)


@template("Not", ANY)
def _not(b: Builder, t: T) -> T:
    return T(b.op("Not", [b.op("Greater", [t.name, b.const(np.array(0.1))])]), t.axis)


@template("IsNaN", ANY, fp16=False)
def _isnan(b: Builder, t: T) -> T:
    return T(b.op("Where", [b.op("IsNaN", [t.name]), b.const(np.array(3.0)), t.name]), t.axis)


@template("IsInf", ANY, fp16=False)
def _isinf(b: Builder, t: T) -> T:
    attrs = {"detect_negative": int(b.rng.integers(2))}
    return T(b.op("Where", [b.op("IsInf", [t.name], **attrs), b.const(np.array(3.0)), t.name]), t.axis)


# -- broadcasting n-ary ops -----------------------------------------------------------------------


def _binary(op: str, positive_second: bool = False, since: int = 11, fp16: bool = True, attrs=None) -> None:
    @template(op, ANY, since=since, fp16=fp16)
    def build(b: Builder, t: T) -> T:
        x = t.name
        other = _operand(b, t, positive=positive_second)
        args = [x, other] if b.rng.random() < 0.7 or op in ("Div", "Pow", "Mod") else [other, x]
        if op == "Pow":
            x = b.op("Add", [b.op("Abs", [x]), b.const(np.array(0.5))]) if b.rng.random() < 0.5 else x
            e = b.const(np.array(float(b.rng.choice([2.0, 3.0, 0.5 if x != t.name else 2.0]))))
            args = [x, e] if b.rng.random() < 0.6 else [x, b.op("Round", [other])]
            if x == t.name and args[1] != e:
                args = [x, e]
        return T(b.op(op, args, **(attrs or {})), t.axis)


for _op in ["Add", "Sub", "Mul", "Max", "Min"]:
    _binary(_op)
_binary("Div", positive_second=True)
_binary("Pow", positive_second=True)
_binary("Mod", positive_second=True, attrs={"fmod": 1})


def _variadic(op: str) -> None:
    @template(op, ANY)
    def build(b: Builder, t: T) -> T:
        n = int(b.rng.integers(1, 4))
        return T(b.op(op, [t.name] + [_operand(b, t) for _ in range(n - 1)]), t.axis)


for _op in ["Sum", "Mean"]:
    _variadic(_op)


@template("PRelu", ANY)
def _prelu(b: Builder, t: T) -> T:
    shape = b.shape(t.name)
    kind = b.rng.integers(3)
    slope = (b.const(b.weight(1)) if kind == 0 else _per_channel(b, t, b.weight(shape[t.axis])) if kind == 1
             else b.const(b.weight(*shape[1:])))
    return T(b.op("PRelu", [t.name, slope]), t.axis)


@template("Where", ANY)
def _where(b: Builder, t: T) -> T:
    cond = b.op("Greater", [t.name, _operand(b, t)])
    other = _operand(b, t)
    args = [cond, t.name, other] if b.rng.random() < 0.5 else [cond, other, t.name]
    return T(b.op("Where", args), t.axis)


def _compare(op: str, since: int = 11) -> None:
    @template(op, ANY, since=since)
    def build(b: Builder, t: T) -> T:
        x = b.op("Round", [b.op("Mul", [t.name, b.const(np.array(2.0))])]) if op == "Equal" else t.name
        other = b.const(np.array(0.0)) if op == "Equal" and b.rng.random() < 0.5 else _operand(b, t)
        if op == "Equal":
            other = b.op("Round", [other])
        return T(b.op("Cast", [b.op(op, [x, other])], to=b.elem), t.axis)


for _op in ["Equal", "Greater", "Less"]:
    _compare(_op)
_compare("GreaterOrEqual", since=12)
_compare("LessOrEqual", since=12)


def _logical(op: str) -> None:
    @template(op, ANY)
    def build(b: Builder, t: T) -> T:
        p = b.op("Greater", [t.name, _operand(b, t)])
        q = b.op("Less", [t.name, _operand(b, t)]) if b.rng.random() < 0.7 else b.const(np.array(True))
        return T(b.op("Cast", [b.op(op, [p, q])], to=b.elem), t.axis)


for _op in ["And", "Or", "Xor"]:
    _logical(_op)


def _bitwise(op: str) -> None:
    @template(op, ANY, since=18)
    def build(b: Builder, t: T) -> T:
        x = b.op("Cast", [b.op("Mul", [t.name, b.const(np.array(8.0))])], to=TensorProto.INT32)
        shape = b.shape(t.name)
        mask = (b.const(np.array(int(b.rng.integers(1, 16)), dtype=np.int32)) if b.rng.random() < 0.5 else
                b.const(b.rng.integers(0, 16, [shape[t.axis]] + [1] * (len(shape) - t.axis - 1)).astype(np.int32)))
        return T(b.op("Cast", [b.op(op, [x, mask])], to=b.elem), t.axis)


for _op in ["BitwiseAnd", "BitwiseOr", "BitwiseXor"]:
    _bitwise(_op)


# -- linear ops in the middle (the producers and consumers cover the plain forms) ----------------


@template("Conv")
def _conv_mid(b: Builder, t: T) -> T:
    kind = b.rng.choice(["depthwise", "grouped", "plain", "multiplier"])
    c = b.shape(t.name)[1]
    if kind == "depthwise":
        y = b.op("Conv", [t.name, b.const(b.weight(c, 1, 3, 3)), b.const(b.weight(c))], group=c, pads=[1] * 4,
                 kernel_shape=[3, 3])
    elif kind == "multiplier":
        y = b.op("Conv", [t.name, b.const(b.weight(2 * c, 1, 1, 1))], group=c, kernel_shape=[1, 1])
    elif kind == "grouped":
        y = b.op("Conv", [t.name, b.const(b.weight(c, c // 2, 1, 1)), b.const(b.weight(c))], group=2,
                 kernel_shape=[1, 1])
    else:
        y = b.op("Conv", [t.name, b.const(b.weight(6, c, 1, 1))], kernel_shape=[1, 1], strides=[2, 2])
    return T(y, 1)


@template("ConvTranspose")
def _convt_mid(b: Builder, t: T) -> T:
    c = b.shape(t.name)[1]
    if b.rng.random() < 0.5:
        return T(b.op("ConvTranspose", [t.name, b.const(b.weight(c, 1, 2, 2))], group=c, kernel_shape=[2, 2],
                      strides=[2, 2]), 1)
    return T(b.op("ConvTranspose", [t.name, b.const(b.weight(c, 2, 1, 1))], group=2, kernel_shape=[1, 1]), 1)


@template("Gemm", ("vec",))
def _gemm_mid(b: Builder, t: T) -> T:
    c = b.shape(t.name)[1]
    y = b.op("Gemm", [t.name, b.const(b.weight(c, 6)), b.const(b.weight(1, 6))],
             alpha=float(b.rng.choice([1.0, 0.5])), beta=float(b.rng.choice([1.0, 3.0])))
    return T(b.op("Relu", [y]), 1)


@template("MatMul", ("seq", "nhwc"))
def _matmul_mid(b: Builder, t: T) -> T:
    shape = b.shape(t.name)
    if b.rng.random() < 0.5:  # rows of a constant A read the channels on the second to last axis
        xt = b.op("Transpose", [t.name], perm=list(range(len(shape) - 2)) + [len(shape) - 1, len(shape) - 2])
        return T(b.op("MatMul", [b.const(b.weight(3, shape[-1])), xt]), None)
    return T(b.op("MatMul", [t.name, b.op("Transpose", [t.name], perm=list(range(len(shape) - 2)) +
                                            [len(shape) - 1, len(shape) - 2])]), None)


# -- normalisations -----------------------------------------------------------------------------


@template("BatchNormalization")
def _bn(b: Builder, t: T) -> T:
    c = b.shape(t.name)[1]
    return T(b.op("BatchNormalization", [t.name, b.const(b.weight(c) + 1), b.const(b.weight(c)),
                                         b.const(b.weight(c)), b.const(np.abs(b.weight(c)) + 0.5)],
                  epsilon=1e-3), 1)


@template("InstanceNormalization")
def _in(b: Builder, t: T) -> T:
    c = b.shape(t.name)[1]
    return T(b.op("InstanceNormalization", [t.name, b.const(b.weight(c) + 1), b.const(b.weight(c))]), 1)


@template("LayerNormalization", ANY, since=17)
def _ln(b: Builder, t: T) -> T:
    shape = b.shape(t.name)
    axis = int(b.rng.integers(-len(shape), len(shape)))
    norm = shape[axis % len(shape):]
    return T(b.op("LayerNormalization", [t.name, b.const(b.weight(*norm) + 1), b.const(b.weight(*norm))],
                  axis=axis), t.axis)


def _softmax(op: str) -> None:
    @template(op, ANY)
    def build(b: Builder, t: T) -> T:
        r = len(b.shape(t.name))
        axis = int(b.rng.integers(-r, r))
        return T(b.op(op, [t.name], axis=axis), t.axis)


for _op in ["Softmax", "LogSoftmax", "Hardmax"]:
    _softmax(_op)


@template("LpNormalization", ANY)
def _lpn(b: Builder, t: T) -> T:
    r = len(b.shape(t.name))
    return T(b.op("LpNormalization", [t.name], axis=int(b.rng.integers(-r, r)), p=int(b.rng.choice([1, 2]))), t.axis)


@template("MeanVarianceNormalization")
def _mvn(b: Builder, t: T) -> T:
    axes = [[0, 2, 3], [2, 3], [1], [0, 1, 2, 3]][int(b.rng.integers(4))]
    return T(b.op("MeanVarianceNormalization", [t.name], **({"axes": axes} if b.rng.random() < 0.8 else {})), 1)


# -- pools, Pad, Resize --------------------------------------------------------------------------


def _pool(op: str) -> None:
    @template(op, ("img", "img", "img", "nhwc"))
    def build(b: Builder, t: T) -> T:
        rng = b.rng
        if op.startswith("Global"):
            return T(b.op(op, [t.name], **({"p": 3} if op == "GlobalLpPool" else {})), t.axis)
        k = int(rng.choice([2, 3]))
        attrs = {"kernel_shape": [k, k]}
        if rng.random() < 0.5:
            attrs["strides"] = [2, 2]
        if rng.random() < 0.5:
            attrs["pads"] = [1, 1, 1, 1] if k == 3 else [0, 1, 0, 1]
        if op != "LpPool" and rng.random() < 0.3:
            attrs["ceil_mode"] = 1
        if op == "AveragePool" and rng.random() < 0.5:
            attrs["count_include_pad"] = 1
        if op == "LpPool":
            attrs["p"] = int(rng.choice([1, 2, 3]))
        if op == "MaxPool" and rng.random() < 0.3:
            attrs["dilations"] = [2, 2]
            attrs.pop("ceil_mode", None)
        if op == "MaxPool" and rng.random() < 0.3:
            y, idx = b.op(op, [t.name], n_out=2, **attrs)
            return T(b.op("Add", [y, b.op("Cast", [idx], to=b.elem)]), t.axis)
        return T(b.op(op, [t.name], **attrs), t.axis)


for _op in ["MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"]:
    _pool(_op)


@template("Pad", ANY)
def _pad(b: Builder, t: T) -> T:
    rng = b.rng
    r = len(b.shape(t.name))
    pads = [0] * (2 * r)
    for a in rng.choice(r, size=int(rng.integers(1, 3)), replace=False):
        pads[a] = int(rng.choice([0, 1, 2, -1]))
        pads[a + r] = int(rng.choice([0, 1, 2, -1]))
    modes = ["constant", "reflect", "edge"] + (["wrap"] if b.opset >= 19 else [])
    mode = str(rng.choice(modes))
    if mode != "constant":
        pads = [max(p, 0) for p in pads]
    value = rng.choice([None, 0.0, 0.7])
    inputs = [t.name, b.ints(pads)]
    if value is not None and mode == "constant":
        inputs.append(b.const(np.array(value)))
    if b.opset >= 18 and rng.random() < 0.3:
        axes = list(range(r))
        rng.shuffle(axes)
        sel = axes[:2]
        p2 = [pads[a] for a in sel] + [pads[a + r] for a in sel]
        inputs = [t.name, b.ints(p2), inputs[2] if len(inputs) > 2 else "", b.ints(sel)]
    return T(b.op("Pad", inputs, mode=mode), t.axis)


@template("Pad", ANY, since=10, until=10)
def _pad_attr(b: Builder, t: T) -> T:
    r = len(b.shape(t.name))
    pads = [0] * (2 * r)
    a = int(b.rng.integers(r))
    pads[a], pads[a + r] = 1, int(b.rng.integers(2))
    value = float(b.rng.choice([0.0, 0.5]))
    return T(b.op("Pad", [t.name], pads=pads, mode="constant", **({"value": value} if value else {})), t.axis)


@template("Resize", ANY, since=11)
def _resize(b: Builder, t: T) -> T:
    rng = b.rng
    shape = b.shape(t.name)
    r = len(shape)
    mode = str(rng.choice(["nearest", "linear", "cubic"] if r == 4 else ["nearest", "linear"]))
    ctm = str(rng.choice(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_crop_and_resize"]))
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
    if mode == "nearest":
        attrs["nearest_mode"] = str(rng.choice(["round_prefer_floor", "floor", "ceil"]))
    if mode == "linear" and r not in (2, 4):
        attrs["mode"] = mode = "nearest"
    if ctm == "tf_crop_and_resize":
        attrs["extrapolation_value"] = float(rng.choice([0.0, 0.5]))
    scale = [1.0] * r
    spatial = [a for a in range(r) if a != t.axis and shape[a] > 1 and a > 0]
    for a in spatial[-2:]:
        scale[a] = float(rng.choice([2.0, 0.5, 1.5]))
    if rng.random() < 0.2:
        scale[t.axis] = float(rng.choice([2.0, 0.5]))
    roi = ""
    if ctm == "tf_crop_and_resize":
        lo, hi = [0.0] * r, [1.0] * r
        for a in rng.choice(r, size=2, replace=False):
            lo[a], hi[a] = float(rng.choice([0.0, 0.1])), float(rng.choice([1.0, 0.8, 1.2]))
        roi = b.const(np.array(lo + hi, dtype=np.float32), dtype=np.float32)
    elif rng.random() < 0.3 and b.opset < 13:
        roi = b.const(np.zeros(0, np.float32), dtype=np.float32)
    if b.opset < 13 and roi == "":
        roi = b.const(np.zeros(0, np.float32), dtype=np.float32)
    if rng.random() < 0.5:
        inputs = [t.name, roi, b.const(np.array(scale, dtype=np.float32), dtype=np.float32)]
    else:
        sizes = [max(1, int(s * n)) for s, n in zip(scale, shape)]
        if rng.random() < 0.2:
            sizes[t.axis] = shape[t.axis] - 2
        empty = b.const(np.zeros(0, np.float32), dtype=np.float32) if b.opset < 13 else ""
        inputs = [t.name, roi, empty, b.ints(sizes)]
        if b.opset >= 18 and rng.random() < 0.2:
            attrs["keep_aspect_ratio_policy"] = str(rng.choice(["not_larger", "not_smaller"]))
    if b.opset >= 18 and mode != "nearest" and rng.random() < 0.2:
        attrs["antialias"] = 1
    if b.opset >= 18 and rng.random() < 0.2 and ctm != "tf_crop_and_resize":
        axes = sorted(set(spatial[-2:] + ([t.axis] if rng.random() < 0.3 else [])))
        if axes:
            attrs["axes"] = axes
            if len(inputs) == 3:
                inputs[2] = b.const(np.array([scale[a] for a in axes], dtype=np.float32), dtype=np.float32)
            else:
                inputs[3] = b.ints([max(1, int(scale[a] * shape[a])) for a in axes])
    return T(b.op("Resize", inputs, **attrs), t.axis)


@template("Resize", ANY, since=10, until=10)
def _resize10(b: Builder, t: T) -> T:
    shape = b.shape(t.name)
    scale = [1.0] * len(shape)
    for a in range(2, len(shape)):
        scale[a] = float(b.rng.choice([2.0, 1.0]))
    if b.rng.random() < 0.3:
        scale[t.axis] = 2.0
    return T(b.op("Resize", [t.name, b.const(np.array(scale, np.float32), dtype=np.float32)],
                  mode=str(b.rng.choice(["nearest", "linear"]))), t.axis)


@template("Upsample", ANY, since=7, until=9)
def _upsample(b: Builder, t: T) -> T:
    shape = b.shape(t.name)
    scale = [1.0] * len(shape)
    for a in range(2, len(shape)):
        scale[a] = float(b.rng.choice([2.0, 1.5, 1.0]))
    if b.rng.random() < 0.3:
        scale[t.axis] = float(b.rng.choice([2.0, 1.5]))
    mode = str(b.rng.choice(["nearest", "linear"])) if len(shape) == 4 else "nearest"
    if b.opset >= 9:
        return T(b.op("Upsample", [t.name, b.const(np.array(scale, np.float32), dtype=np.float32)], mode=mode), t.axis)
    return T(b.op("Upsample", [t.name], scales=scale, mode=mode), t.axis)


# -- layout ops ----------------------------------------------------------------------------------


@template("Concat", ANY)
def _concat(b: Builder, t: T) -> T:
    rng = b.rng
    shape = b.shape(t.name)
    r = len(shape)
    axis = t.axis if rng.random() < 0.6 else int(rng.choice([a for a in range(r) if a != t.axis] or [t.axis]))
    other_shape = list(shape)
    other_shape[axis] = int(rng.choice([2, 3, shape[axis]]))
    kind = rng.choice(["producer", "const", "input", "self"])
    if kind == "self":
        other = b.op("Relu", [t.name])
    elif kind == "producer" and axis == t.axis:
        x = b.inputs[0].name
        layout = {1: "img" if r == 4 else "vec"}.get(t.axis, "seq" if r == 3 else "nhwc")
        cout = other_shape[axis]
        if b.shape(x)[1:] and layout == "img" and len(b.shape(x)) == 4:
            other = b.op("Conv", [x, b.const(b.weight(cout, b.shape(x)[1], 1, 1))], name="p2", kernel_shape=[1, 1])
            if b.shape(other) != other_shape:
                other = b.const(b.weight(*other_shape))
        else:
            other = b.const(b.weight(*other_shape))
    elif kind == "input":
        other = b.input(other_shape)
    else:
        other = b.const(b.weight(*other_shape))
    args = [t.name, other] if rng.random() < 0.6 else [other, t.name]
    return T(b.op("Concat", args, axis=axis - r if rng.random() < 0.3 else axis), t.axis)


@template("Split", ANY)
def _split(b: Builder, t: T) -> T:
    rng = b.rng
    shape = b.shape(t.name)
    r = len(shape)
    axis = t.axis if rng.random() < 0.7 else int(rng.integers(r))
    n = shape[axis]
    if n < 2:
        axis, n = t.axis, shape[t.axis]
    pieces = [[n // 2, n - n // 2], [1, n - 1], [n - 3, 3] if n > 3 else [1, n - 1], None][int(rng.integers(4))]
    if pieces is None:
        k = int(rng.choice([2, 3])) if b.opset >= 18 else 2
        if b.opset >= 18:
            outs = b.op("Split", [t.name], n_out=k, axis=axis, num_outputs=k)
        else:
            outs = b.op("Split", [t.name], n_out=2, axis=axis) if n % 2 == 0 else \
                b.op("Split", [t.name], n_out=2, axis=axis, **({"split": [1, n - 1]} if b.opset < 13 else {}))
    elif b.opset >= 13:
        outs = b.op("Split", [t.name, b.ints(pieces)], n_out=len(pieces), axis=axis)
    else:
        outs = b.op("Split", [t.name], n_out=len(pieces), axis=axis, split=pieces)
    how = rng.choice(["concat", "first", "swap"])
    if how == "first":
        return T(outs[0], t.axis)
    if how == "swap":
        outs = outs[::-1]
    mid = [b.op("Relu", [outs[0]])] + list(outs[1:])
    if axis == t.axis and rng.random() < 0.3:  # one piece through a different op (Split -> MaxPool -> Concat)
        if r == 4 and t.axis == 1:
            mid[-1] = b.op("MaxPool", [mid[-1]], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    return T(b.op("Concat", mid, axis=axis), t.axis)


@template("Slice", ANY)
def _slice(b: Builder, t: T) -> T:
    rng = b.rng
    shape = b.shape(t.name)
    r = len(shape)
    axes = sorted(set([t.axis if rng.random() < 0.7 else int(rng.integers(r))] +
                      ([int(rng.integers(r))] if rng.random() < 0.3 else [])))
    starts, ends, steps = [], [], []
    for a in axes:
        n = shape[a]
        step = int(rng.choice([1, 1, 2, -1, -2]))
        if step > 0:
            s, e = int(rng.choice([0, 1, -n])), int(rng.choice([n, n - 1, 2 ** 62, -1]))
        else:
            s, e = int(rng.choice([-1, n - 1, 2 ** 62])), int(rng.choice([-n - 1, 0, -(2 ** 62)]))
        if len(range(*slice(s, e, step).indices(n))) == 0:
            s, e, step = 0, n, 1
        starts.append(s), ends.append(e), steps.append(step)
    inputs = [t.name, b.ints(starts), b.ints(ends)]
    if rng.random() < 0.8 or any(st != 1 for st in steps) or axes != list(range(len(axes))):
        inputs.append(b.ints([a - r if rng.random() < 0.3 else a for a in axes]))
        if rng.random() < 0.7 or any(st != 1 for st in steps):
            inputs.append(b.ints(steps))
    return T(b.op("Slice", inputs), t.axis)


@template("Gather", ANY)
def _gather(b: Builder, t: T) -> T:
    rng = b.rng
    shape = b.shape(t.name)
    r = len(shape)
    axis = t.axis if rng.random() < 0.6 else int(rng.integers(r))
    n = shape[axis]
    kind = rng.choice(["perm", "subset", "dup", "neg", "scalar"])
    idx = {"perm": rng.permutation(n), "subset": np.sort(rng.choice(n, size=max(1, n // 2), replace=False)),
           "dup": np.array([0, 0] + list(range(1, n))), "neg": np.array([-1, 0] + list(range(1, n - 1))),
           "scalar": np.array(int(rng.integers(n)))}[kind]
    if kind == "scalar" and axis == t.axis:
        idx = np.array([int(rng.integers(n))])
    y = b.op("Gather", [t.name, b.const(idx.astype(np.int64))], axis=axis)
    new_axis = t.axis if axis != t.axis else t.axis
    if kind == "scalar" and axis < t.axis:
        new_axis = t.axis - 1
    return T(y, new_axis)


@template("Transpose", ANY)
def _transpose(b: Builder, t: T) -> T:
    r = len(b.shape(t.name))
    perm = [int(p) for p in b.rng.permutation(r)]
    if b.rng.random() < 0.2:
        return T(b.op("Transpose", [t.name]), r - 1 - t.axis)
    return T(b.op("Transpose", [t.name], perm=perm), perm.index(t.axis))


@template("Unsqueeze", ANY)
def _unsqueeze(b: Builder, t: T) -> T:
    r = len(b.shape(t.name))
    axes = sorted(set(int(a) for a in b.rng.choice(r + 1, size=int(b.rng.integers(1, 3)), replace=True)))
    out_r = r + len(axes)
    kept = [i for i in range(out_r) if i not in axes]
    y = b.op("Unsqueeze", [t.name, b.ints(axes)]) if b.opset >= 13 else b.op("Unsqueeze", [t.name], axes=axes)
    return T(y, kept[t.axis])


@template("Squeeze", ANY)
def _squeeze(b: Builder, t: T) -> T:
    shape = b.shape(t.name)
    ones = [a for a, n in enumerate(shape) if n == 1 and a != t.axis]
    x = t.name
    if not ones:
        x = b.op("Unsqueeze", [x, b.ints([0])]) if b.opset >= 13 else b.op("Unsqueeze", [x], axes=[0])
        shape, t = [1] + shape, T(x, t.axis + 1)
        ones = [0]
    axes = ones if b.rng.random() < 0.5 else ones[:1]
    if b.rng.random() < 0.2:
        y = b.op("Squeeze", [x])
        axes = [a for a, n in enumerate(shape) if n == 1]
    elif b.opset >= 13:
        y = b.op("Squeeze", [x, b.ints(axes)])
    else:
        y = b.op("Squeeze", [x], axes=axes)
    if t.axis in axes:
        return T(y, None)
    return T(y, t.axis - sum(a < t.axis for a in axes))


@template("Flatten", ANY)
def _flatten(b: Builder, t: T) -> T:
    r = len(b.shape(t.name))
    axis = int(b.rng.integers(0, r + 1))
    return T(b.op("Flatten", [t.name], axis=axis), 1 if t.axis >= axis else 0)


@template("Reshape", ANY)
def _reshape(b: Builder, t: T) -> T:
    rng = b.rng
    shape = b.shape(t.name)
    r, a = len(shape), t.axis
    n = shape[a]
    options = []
    # keep the axes, with 0 and -1 entries
    options.append(([0 if rng.random() < 0.5 else s for s in shape[:-1]] + [-1], a))
    # merge the axes after the channel axis
    options.append(([0] * (a + 1) + [-1], a))
    # split the channel axis into [2, n / 2] (heads) or [n / 2, 2]
    if n % 2 == 0:
        k = int(rng.choice([2, n // 2]))
        options.append((shape[:a] + [k, n // k] + shape[a + 1:], a + 1))
    # the channel count copied by a 0 into a position that is not the channel axis
    if r >= 2:
        perm_target = list(shape)
        j = (a + 1) % r
        perm_target[a], perm_target[j] = shape[j], shape[a]
        if a < r:
            t_list = list(perm_target)
            if shape[j] == shape[a]:
                t_list[j] = 0
            options.append((t_list, j))
        zero_elsewhere = [shape[j] if i == a else (0 if i == j and shape[j] == n else s) for i, s in enumerate(shape)]
        options.append((zero_elsewhere, None))
    # the channel count stated at the front and copied by a 0 at the channel position: the channels land
    # on axis 0, and the 0 would carry the new count into axis a
    if a >= 1 and n > 1:
        options.append(([n] + list(shape[1:a]) + [0, -1], 0))
    if r >= 2 and b.opset >= 14 and rng.random() < 0.3:
        options.append(([s for s in shape[:-1]] + [0, -1] if r < 5 else shape, None))
    target, axis = options[int(rng.integers(len(options)))]
    allowzero = {"allowzero": 1} if b.opset >= 14 and 0 not in target and rng.random() < 0.3 else {}
    return T(b.op("Reshape", [t.name, b.ints(target)], **allowzero), axis)


@template("Expand", ANY)
def _expand(b: Builder, t: T) -> T:
    rng = b.rng
    shape = b.shape(t.name)
    r = len(shape)
    kind = rng.choice(["batch", "literal", "ones", "pooled"])
    x = t.name
    if kind == "pooled" and r == 4 and t.axis == 1:
        x = b.op("GlobalAveragePool", [x])
        return T(b.op("Expand", [x, b.ints([1, shape[1], HW, HW])]), 1)
    if kind == "batch":
        return T(b.op("Expand", [x, b.ints([2] + [1] * (r - 1))]), t.axis)
    if kind == "ones":  # a shorter shape broadcasts from the right; its last entry may equal the channel count
        k = int(rng.integers(1, r + 1))
        tail = [1] * k
        if rng.random() < 0.5 and shape[-1] == 1 or shape[-1] == shape[t.axis]:
            tail[-1] = shape[-1]
        return T(b.op("Expand", [x, b.ints(tail)]), t.axis)
    return T(b.op("Expand", [x, b.ints(shape)]), t.axis)


@template("Tile", ANY)
def _tile(b: Builder, t: T) -> T:
    r = len(b.shape(t.name))
    reps = [1] * r
    for a in b.rng.choice(r, size=int(b.rng.integers(1, 3)), replace=False):
        reps[a] = int(b.rng.choice([1, 2]))
    return T(b.op("Tile", [t.name, b.ints(reps)]), t.axis)


@template("Shape", ANY)
def _shape(b: Builder, t: T) -> T:
    rng = b.rng
    shape = b.shape(t.name)
    r = len(shape)
    kind = rng.choice(["same", "gather_concat", "start", "arith", "flatten"])
    y = b.op("Relu", [t.name])
    if kind == "same":
        return T(b.op("Reshape", [y, b.op("Shape", [t.name])]), t.axis)
    if kind == "start" and b.opset >= 15:
        s = b.op("Shape", [t.name], start=int(rng.integers(0, r)))
        head = b.op("Shape", [t.name], end=r - len(b.shape(s)))
        return T(b.op("Reshape", [y, b.op("Concat", [head, s], axis=0)]), t.axis)
    s = b.op("Shape", [t.name])
    if kind == "flatten":  # x.view(x.size(0), -1)
        head = b.op("Slice", [s, b.ints([0]), b.ints([1])] + ([b.ints([0])] if rng.random() < 0.5 else []))
        flat = b.op("Reshape", [y, b.op("Concat", [head, b.ints([-1])], axis=0)])
        return T(flat, 1 if t.axis >= 1 else None)
    if kind == "arith":  # a channel count computed with: 2 * C entries
        g = b.op("Gather", [s, b.ints([t.axis])], axis=0)
        g2 = b.op("Mul", [g, b.ints([2])])
        rest = [b.op("Gather", [s, b.ints([i])], axis=0) for i in range(r) if i != t.axis]
        tgt = b.op("Concat", rest[:max(0, len(rest) - 1)] + [g2], axis=0) if rest else g2
        return T(b.op("Reshape", [y, tgt]), None)
    parts = [b.op("Gather", [s, b.ints([i])], axis=0) for i in range(r)]
    return T(b.op("Reshape", [y, b.op("Concat", parts, axis=0)]), t.axis)


@template("Size", ANY)
def _size(b: Builder, t: T) -> T:
    n = b.op("Cast", [b.op("Size", [t.name])], to=b.elem)
    return T(b.op("Div", [t.name, n]), t.axis)


def _reduce(op: str) -> None:
    axes_input_since = 13 if op == "ReduceSum" else 18

    @template(op, ANY)
    def build(b: Builder, t: T) -> T:
        rng = b.rng
        shape = b.shape(t.name)
        r = len(shape)
        x = t.name
        if op in ("ReduceLogSum", "ReduceProd"):
            x = b.op("Add", [b.op("Abs", [x]), b.const(np.array(0.5))])
        cand = [a for a in range(r) if a != t.axis]
        axes = [int(rng.choice(cand))] if cand and rng.random() < 0.8 else [t.axis]
        keep = int(rng.integers(2))
        attrs = {"keepdims": keep}
        if b.opset >= axes_input_since:
            if rng.random() < 0.15:
                attrs["noop_with_empty_axes"] = 1
                y = b.op(op, [x], **attrs)
                return T(y, t.axis)
            y = b.op(op, [x, b.ints(axes)], **attrs)
        else:
            y = b.op(op, [x], axes=axes, **attrs)
        if t.axis in axes:
            return T(y, None)
        return T(y, t.axis if keep else t.axis - sum(a < t.axis for a in axes))


for _op in ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]:
    _reduce(_op)


def _arg(op: str) -> None:
    @template(op, ANY)
    def build(b: Builder, t: T) -> T:
        shape = b.shape(t.name)
        r = len(shape)
        cand = [a for a in range(r) if a != t.axis and shape[a] > 1]
        axis = int(b.rng.choice(cand)) if cand and b.rng.random() < 0.8 else t.axis
        keep = int(b.rng.integers(2))
        attrs = {"axis": axis, "keepdims": keep}
        if b.rng.random() < 0.3:
            attrs["select_last_index"] = 1
        y = b.op("Cast", [b.op(op, [t.name], **attrs)], to=b.elem)
        if axis == t.axis:
            return T(y, None)
        return T(y, t.axis if keep or axis > t.axis else t.axis - 1)


for _op in ["ArgMax", "ArgMin"]:
    _arg(_op)


# -- attention and onnxruntime's fused (com.microsoft) ops ----------------------------------------------
MS = "com.microsoft"


def _seq(b: Builder, t: T) -> list[int]:
    """[batch, sequence, channels] with the channels last, as the attention ops read them."""
    shape = b.shape(t.name)
    if len(shape) != 3 or t.axis != 2:
        raise Unbuildable("an attention op reads [batch, sequence, hidden]")
    return shape


def _ms(b: Builder, op: str, inputs: list[str | None], shape: list[int], n_out: int = 1, **attrs) -> str:
    """A com.microsoft node; ONNX inference does not know it, so its (first) output's shape is recorded here."""
    out = b.op(op, inputs, n_out=n_out, domain=MS, **attrs)
    out = out if n_out == 1 else out[0]
    b._shapes[out] = list(shape)
    return out


def _heads(b: Builder, width: int) -> int:
    return int(b.rng.choice([n for n in (1, 2, 4) if width % n == 0]))


@template("Attention", ("seq",), since=23, fp16=False)
def _onnx_attention(b: Builder, t: T) -> T:
    """Q = the channels, K/V the channels, a coupled tensor or an untracked input; optional per-head mask."""
    shape = _seq(b, t)
    n = _heads(b, shape[2])
    kv = [t.name, b.op("Relu", [t.name]), b.input(shape)][int(b.rng.integers(3))]
    attrs = {"q_num_heads": n, "kv_num_heads": n, "is_causal": int(b.rng.integers(2))}
    inputs = [t.name, kv, t.name if b.rng.random() < 0.5 else kv]
    if b.rng.random() < 0.5:
        inputs.append(b.const(b.weight(1, n, shape[1], shape[1]) if b.rng.random() < 0.5 else b.weight(shape[1], shape[1])))
    return T(b.op("Attention", inputs, **attrs), 2)


@template("Attention", ("seq",), fp16=False)
def _ms_attention(b: Builder, t: T) -> T:
    """com.microsoft Attention: the channels are the rows of its packed q|k|v weights; it makes heads."""
    shape = _seq(b, t)
    n, d = int(b.rng.choice([1, 2, 4])), int(b.rng.choice([2, 4]))
    inputs = [t.name, b.const(b.weight(shape[2], 3 * n * d)), b.const(b.weight(3 * n * d))]
    attrs = {"num_heads": n, "unidirectional": int(b.rng.integers(2))}
    return T(_ms(b, "Attention", inputs, [*shape[:2], n * d], **attrs), 2)


@template("MultiHeadAttention", ("seq",), fp16=False)
def _mha(b: Builder, t: T) -> T:
    shape = _seq(b, t)
    n = _heads(b, shape[2])
    kv = [t.name, b.op("Sigmoid", [t.name]), b.input(shape)][int(b.rng.integers(3))]
    inputs = [t.name, kv, kv if b.rng.random() < 0.5 else t.name,
              b.const(b.weight(3 * shape[2])) if b.rng.random() < 0.5 else None, None]
    if b.rng.random() < 0.5:
        inputs.append(b.const(b.weight(1, n, shape[1], shape[1])))
    return T(_ms(b, "MultiHeadAttention", inputs, shape, num_heads=n), 2)


@template("GroupQueryAttention", ("seq",), fp16=False)
def _gqa(b: Builder, t: T) -> T:
    """Projections of the channels (onnxruntime wants head sizes that are multiples of 8) into 2 query
    heads and 1 or 2 KV heads, packed or separate."""
    shape = _seq(b, t)
    n, kvn, d = 2, int(b.rng.choice([1, 2])), 8

    def proj(width: int) -> str:
        return b.op("MatMul", [t.name, b.const(b.weight(shape[2], width))])

    qkv = [proj((n + 2 * kvn) * d), None, None] if b.rng.random() < 0.5 else [proj(n * d), proj(kvn * d),
                                                                               proj(kvn * d)]
    lengths = [b.const(np.full(shape[0], shape[1] - 1), np.int32), b.const(np.array(shape[1]), np.int32)]
    return T(_ms(b, "GroupQueryAttention", [*qkv, None, None, *lengths], [*shape[:2], n * d],
                 num_heads=n, kv_num_heads=kvn), 2)


@template("RotaryEmbedding", ("seq",), fp16=False)
def _rotary(b: Builder, t: T) -> T:
    shape = _seq(b, t)
    n = int(b.rng.choice([n for n in (1, 2, 4) if shape[2] % (2 * n) == 0]))
    half = shape[2] // n // 2
    positions = b.const(np.tile(np.arange(shape[1]), (shape[0], 1)), np.int64)
    attrs = {"interleaved": int(b.rng.integers(2))}
    if b.rng.random() < 0.5:
        attrs["num_heads"] = n
    inputs = [t.name, positions, b.const(b.weight(shape[1] + 2, half)), b.const(b.weight(shape[1] + 2, half))]
    return T(_ms(b, "RotaryEmbedding", inputs, shape, **attrs), 2)


def _ms_gelu(op: str) -> None:
    @template(op, ANY, fp16=False)
    def build(b: Builder, t: T) -> T:
        shape = b.shape(t.name)
        inputs = [t.name]
        if op == "BiasGelu" or (op == "FastGelu" and b.rng.random() < 0.5):
            inputs.append(b.const(b.weight(shape[-1])))
        attrs = {"alpha": float(b.rng.choice([1.702, 0.5]))} if op == "QuickGelu" else {}
        return T(_ms(b, op, inputs, shape, **attrs), t.axis)


for _op in ["BiasGelu", "FastGelu", "QuickGelu", "Gelu"]:
    _ms_gelu(_op)


def _skip_norm(op: str) -> None:
    @template(op, ("seq",), fp16=False)
    def build(b: Builder, t: T) -> T:
        shape = _seq(b, t)
        c = shape[2]
        skip = [t.name, b.input(shape), b.const(b.weight(*shape))][int(b.rng.integers(3))]
        params = [b.const(b.weight(c) + 1)] + ([b.const(b.weight(c))] if op == "SkipLayerNormalization" else [])
        bias = [b.const(b.weight(c))] if b.rng.random() < 0.5 else []
        return T(_ms(b, op, [t.name, skip, *params, *bias], shape), 2)


for _op in ["SkipLayerNormalization", "SkipSimplifiedLayerNormalization"]:
    _skip_norm(_op)


@template("EmbedLayerNormalization", ("seq",), fp16=False)
def _embed_ln(b: Builder, t: T) -> T:
    """Token embeddings (their width fixed by the tables) added to the channels."""
    shape = _seq(b, t)
    c, vocab = shape[2], 11
    ids = b.const(b.rng.integers(0, vocab, shape[:2]), np.int32)
    tables = [b.const(b.weight(vocab, c)), b.const(b.weight(shape[1] + 2, c))]
    e = _ms(b, "EmbedLayerNormalization", [ids, None, *tables, None, b.const(b.weight(c) + 1),
                                           b.const(b.weight(c))], shape, n_out=2)  # onnxruntime wants mask_index
    return T(b.op("Add", [t.name, e]), 2)


# -- recurrent layers -----------------------------------------------------------------------------


def _recurrent(op: str, gates: int) -> None:
    @template(op, ("seq",), since=7, fp16=False)
    def build(b: Builder, t: T) -> T:
        """The channels feed W's columns; the hidden units are new channels, read from Y (through the
        exporters' Transpose + Reshape of [seq, dirs, batch, H]) or from Y_h. onnxruntime runs layout 0
        only."""
        shape = _seq(b, t)
        rng, c, h = b.rng, shape[2], int(b.rng.choice([3, 5]))
        dirs = int(rng.choice([1, 2]))
        x = b.op("Transpose", [t.name], perm=[1, 0, 2])  # [seq, batch, features]
        attrs = {"hidden_size": h, "direction": "bidirectional" if dirs == 2 else str(rng.choice(["forward", "reverse"]))}
        if op == "GRU":
            attrs["linear_before_reset"] = int(rng.integers(2))
        if op == "RNN" and rng.random() < 0.5:
            attrs["activations"] = ["Relu"] * dirs
        bias = b.const(b.weight(dirs, 2 * gates * h)) if rng.random() < 0.8 else None
        state = b.const(b.weight(dirs, shape[0], h)) if rng.random() < 0.5 else None
        inputs = [x, b.const(b.weight(dirs, gates * h, c)), b.const(b.weight(dirs, gates * h, h)), bias, None, state]
        if op == "LSTM" and rng.random() < 0.5:
            inputs += [b.const(b.weight(dirs, shape[0], h)), b.const(b.weight(dirs, 3 * h))]  # initial_c, peepholes
        y, y_h = b.op(op, inputs, n_out=2, **attrs)
        if rng.random() < 0.3:
            return T(y_h, 2)
        y = b.op("Transpose", [y], perm=[0, 2, 1, 3])
        return T(b.op("Reshape", [y, b.ints([shape[1], shape[0], dirs * h])]), 2)


for _op, _gates in (("LSTM", 4), ("GRU", 3), ("RNN", 1)):
    _recurrent(_op, _gates)


# -- quantized graphs (QDQ, QOperator, dynamic) ---------------------------------------------------------
def _qparams(b: Builder, t: T | None, per_channel: bool, dtype=np.uint8) -> tuple[str, str, dict]:
    """A scale and zero point (a random non-zero point half the time), per tensor or along ``t``'s axis."""
    rng = b.rng
    n = b.shape(t.name)[t.axis] if per_channel else None
    shape = [n] if n else []
    scale = b.const(np.asarray(rng.uniform(0.01, 0.05, shape), np.float32), np.float32)
    lo, hi = (0, 255) if dtype == np.uint8 else (-100, 100)
    zp = rng.integers(lo, hi, shape) if rng.random() < 0.5 else np.full(shape, 128 if dtype == np.uint8 else 0)
    return scale, b.const(np.asarray(zp), dtype), ({"axis": t.axis} if n else {})


@template("QuantizeLinear", ANY, since=13, fp16=False)
def _qdq_activation(b: Builder, t: T) -> T:
    """QuantizeLinear -> DequantizeLinear with the same constants, per tensor or per channel."""
    scale, zp, attrs = _qparams(b, t, b.rng.random() < 0.5, np.uint8 if b.rng.random() < 0.5 else np.int8)
    q = b.op("QuantizeLinear", [t.name, scale, zp], **attrs)
    return T(b.op("DequantizeLinear", [q, scale, zp], **attrs), t.axis)


@template("DequantizeLinear", since=13, fp16=False)
def _dq_weight(b: Builder, t: T) -> T:
    """A Conv whose weight (and bias) are DequantizeLinear of stored integers: plain or depthwise, per tensor
    or per output channel, zero points zero or not."""
    rng = b.rng
    c = b.shape(t.name)[1]
    depthwise = rng.random() < 0.4
    m = c if depthwise else 6
    w = np.clip(np.round(b.weight(m, 1 if depthwise else c, 3, 3) / 0.02), -127, 127)
    per_channel = rng.random() < 0.6
    ws = np.asarray(rng.uniform(0.01, 0.03, [m] if per_channel else []), np.float32)
    wz = rng.integers(-5, 5, ws.shape) if rng.random() < 0.3 else np.zeros(ws.shape)
    attrs = {"axis": 0} if per_channel else {}
    wq = b.op("DequantizeLinear", [b.const(w + wz.reshape(-1, 1, 1, 1) if per_channel else w + wz, np.int8),
                                   b.const(ws, np.float32), b.const(wz, np.int8)], **attrs)
    inputs = [t.name, wq]
    if rng.random() < 0.6:
        bs = np.asarray(rng.uniform(1e-4, 1e-3, [m]), np.float32)
        inputs.append(b.op("DequantizeLinear", [b.const(rng.integers(-2000, 2000, m), np.int32), b.const(bs, np.float32)],
                           axis=0))
    return T(b.op("Conv", inputs, kernel_shape=[3, 3], pads=[1] * 4, group=c if depthwise else 1), 1)


@template("QLinearConv", since=13, fp16=False)
def _qlinear_conv(b: Builder, t: T) -> T:
    """A QOperator Conv (plain or depthwise, per-tensor or per-channel weight scales, optional int32 bias)."""
    rng = b.rng
    c = b.shape(t.name)[1]
    xs, xz, _ = _qparams(b, t, False)
    ys, yz, _ = _qparams(b, t, False)
    depthwise = rng.random() < 0.4
    m = c if depthwise else 6
    w = b.const(np.clip(np.round(b.weight(m, 1 if depthwise else c, 3, 3) / 0.02), -127, 127), np.int8)
    ws = np.asarray(rng.uniform(0.01, 0.03, [m] if rng.random() < 0.6 else []), np.float32)
    inputs = [b.op("QuantizeLinear", [t.name, xs, xz]), xs, xz, w, b.const(ws, np.float32),
              b.const(np.zeros(ws.shape), np.int8), ys, yz]
    if rng.random() < 0.5:
        inputs.append(b.const(rng.integers(-2000, 2000, m), np.int32))
    y = b.op("QLinearConv", inputs, kernel_shape=[3, 3], pads=[1] * 4, group=c if depthwise else 1)
    return T(b.op("DequantizeLinear", [y, ys, yz]), 1)


@template("QLinearMatMul", ("seq", "nhwc"), since=13, fp16=False)
def _qlinear_matmul(b: Builder, t: T) -> T:
    c = b.shape(t.name)[-1]
    xs, xz, _ = _qparams(b, t, False)
    ys, yz, _ = _qparams(b, t, False)
    w = b.const(np.clip(np.round(b.weight(c, 6) / 0.02), -127, 127), np.int8)
    ws = np.asarray(b.rng.uniform(0.01, 0.03, [6] if b.rng.random() < 0.5 else []), np.float32)  # per column
    y = b.op("QLinearMatMul", [b.op("QuantizeLinear", [t.name, xs, xz]), xs, xz, w, b.const(ws, np.float32),
                               b.const(np.zeros(ws.shape), np.int8), ys, yz])
    return T(b.op("DequantizeLinear", [y, ys, yz]), len(b.shape(t.name)) - 1)


@template("DynamicQuantizeLinear", ANY, fp16=False)
def _dynamic_quantize(b: Builder, t: T) -> T:
    q, scale, zp = b.op("DynamicQuantizeLinear", [t.name], n_out=3)
    return T(b.op("DequantizeLinear", [q, scale, zp]), t.axis)


def _integer_op(op: str, layouts) -> None:
    @template(op, layouts, fp16=False)
    def build(b: Builder, t: T) -> T:
        shape = b.shape(t.name)
        q, scale, zp = b.op("DynamicQuantizeLinear", [t.name], n_out=3)
        w = np.clip(np.round(b.weight(*([6, shape[1], 1, 1] if op == "ConvInteger" else [shape[-1], 6])) / 0.02)
                    + 128, 0, 255)
        y = b.op(op, [q, b.const(w, np.uint8), zp, b.const(np.uint8(128), np.uint8)])
        y = b.op("Mul", [b.op("Cast", [y], to=TensorProto.FLOAT), b.op("Mul", [scale, b.const(np.float32(0.02))])])
        return T(y, 1 if op == "ConvInteger" else len(shape) - 1)


_integer_op("ConvInteger", ("img",))
_integer_op("MatMulInteger", ("seq", "nhwc"))


OPS = sorted(TEMPLATES)


# ---------------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    seed: int
    op: str
    opset: int
    dtype: np.dtype
    producer: str  # op type of the producer "p"
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    planted: dict[str, list[int]] = field(default_factory=dict)
    remove: list[int] = field(default_factory=list)

    def describe(self) -> str:
        ops = " -> ".join(n.op_type for n in self.model.graph.node)
        return (f"seed {self.seed}: {self.op} opset {self.opset} {self.dtype.name} producer {self.producer} "
                f"planted {self.planted} remove {self.remove}: {ops}")


def make_case(seed: int, attempt: int = 0, dtype=None) -> Case | None:
    """A case for ``seed`` (op ``OPS[seed % len(OPS)]``), or None if this attempt's random choices make
    no valid graph; dtype forces fp32/fp16."""
    op = OPS[seed % len(OPS)]
    rng = np.random.default_rng([seed, attempt])
    templates = TEMPLATES[op]
    tpl = templates[int(rng.integers(len(templates)))]
    lo, hi = (max(11, tpl.since), tpl.until) if tpl.until >= 11 else (tpl.since, tpl.until)
    opset = int(rng.integers(lo, hi + 1))
    dt = np.dtype(dtype) if dtype is not None else np.dtype(
        np.float16 if tpl.fp16 and rng.random() < 0.25 else np.float32)
    b = Builder(rng, opset, dt)
    layout = str(rng.choice(tpl.layouts))
    kind = str(rng.choice(PRODUCERS))
    try:
        p = producer(b, kind, layout)
        b.main = (kind, layout)
        y = tpl.build(b, p)
        if y.axis is not None and rng.random() < 0.35:  # compose: a second op after the first
            follow = [t for ts in TEMPLATES.values() for t in ts
                      if t.since <= opset <= t.until and (dt == np.float32 or t.fp16)]
            y = follow[int(rng.integers(len(follow)))].build(b, y)
        outs = [consumer(b, y)]
        if rng.random() < 0.15:  # fan-out: the producer is also read by a consumer of its own
            outs.append(consumer(b, p, name="q2"))
        model = b.model(outs)
        onnx.checker.check_model(model, full_check=True)
    except Exception:  # noqa: BLE001  # random choices that make no valid graph (checked by valid_case)
        return None
    prod = next(n for n in model.graph.node if n.name == "p")
    planted = _plant(model, prod, rng)
    remove = sorted(set(int(i) for i in rng.choice(C, size=int(rng.integers(1, 4)), replace=False)))
    return Case(seed, op, opset, dt, prod.op_type, model, b.feeds, planted, remove)


def valid_case(seed: int) -> tuple[Case, list[np.ndarray]]:
    """The first attempt for ``seed`` that onnxruntime runs to finite outputs, with those outputs."""
    for attempt in range(40):
        case = make_case(seed, attempt)
        if case is None:
            continue
        try:
            ref = run(case.model, case.feeds)
        except Exception:
            continue
        if all(np.isfinite(r).all() for r in ref):
            return case, ref
    raise RuntimeError(f"seed {seed}: no valid graph for {OPS[seed % len(OPS)]} in 40 attempts")


def _plant(model: onnx.ModelProto, prod: onnx.NodeProto, rng: np.random.Generator) -> dict[str, list[int]]:
    """Dead (0), constant (bias only), proportional (c > 0) and negatively coupled (c < 0) channels of p."""
    inits = {t.name: t for t in model.graph.initializer}
    w = numpy_helper.to_array(inits[prod.input[1]]).copy()
    axis = {"Conv": 0, "ConvTranspose": 1, "MatMul": 1}.get(prod.op_type)
    if prod.op_type == "Gemm":
        trans_b = next((a.i for a in prod.attribute if a.name == "transB"), 0)
        axis = 0 if trans_b else 1
    bias_name = prod.input[2] if len(prod.input) > 2 and prod.input[2] else None
    if prod.op_type == "MatMul":
        add = next((n for n in model.graph.node if n.name == "p_bias"), None)
        bias_name = add.input[1] if add is not None else None
    bias = numpy_helper.to_array(inits[bias_name]).copy() if bias_name else None
    order = [int(i) for i in rng.permutation(C)]
    planted: dict[str, list[int]] = {}

    def row(i):
        idx = [slice(None)] * w.ndim
        idx[axis] = i
        return tuple(idx)

    def set_bias(j, v):
        if bias is not None:
            bias.reshape(-1)[j] = v

    def bias_of(i):
        return bias.reshape(-1)[i] if bias is not None else 0.0

    for kind in ("dead", "const", "prop", "neg"):
        for _ in range(int(rng.integers(0, 3))):
            if len(order) < 3:
                break
            j = order.pop()
            if kind == "dead":
                w[row(j)] = 0
                set_bias(j, 0)
            elif kind == "const":
                w[row(j)] = 0
                set_bias(j, float(rng.choice([0.5, -1.0, 2.0])))
            else:
                i = order[0]
                c = float(rng.choice([0.5, 2.0, 1.0])) * (1 if kind == "prop" else -1)
                w[row(j)] = c * w[row(i)]
                set_bias(j, c * bias_of(i))
            planted.setdefault(kind, []).append(j)
    inits[prod.input[1]].CopyFrom(numpy_helper.from_array(w, prod.input[1]))
    if bias_name:
        inits[bias_name].CopyFrom(numpy_helper.from_array(bias, bias_name))
    return planted


# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 4
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    s = _session(model)
    names = {i.name for i in s.get_inputs()}
    return s.run(None, {k: v for k, v in feeds.items() if k in names})


def _close(got: list[np.ndarray], want: list[np.ndarray], dtype: np.dtype) -> str | None:
    """None if equal within tolerance, else what differs."""
    rel = 1e-5 if dtype == np.float32 else 2e-2
    for k, (g, w) in enumerate(zip(got, want)):
        if g.shape != w.shape:
            return f"output {k}: shape {g.shape} != {w.shape}"
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        # The oracle zeroes weights: a removed channel that overflowed to inf (fp16) makes 0 * inf = nan
        # there, where the pruned model never computes it. Positions the oracle cannot state are skipped.
        finite = np.isfinite(w64)
        g64, w64 = g64[finite], w64[finite]
        scale = max(float(np.max(np.abs(w64))) if w64.size else 0.0, 1e-3)
        err = float(np.max(np.abs(g64 - w64))) if w64.size else 0.0
        if not err <= rel * scale:
            return f"output {k}: max abs error {err:.3g} vs scale {scale:.3g}"
    return None


def _declared(model: onnx.ModelProto, outs: list[np.ndarray]) -> str | None:
    for vi, o in zip(model.graph.output, outs):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            if len(dims) != o.ndim or any(d is not None and d != n for d, n in zip(dims, o.shape)):
                return f"declared output shape {dims} but it computes {list(o.shape)}"
    return None


def _oracle(case: Case, plan: Plan, fold_bn: bool) -> onnx.ModelProto:
    """The model as analysed (not pruned) with the removed channels made invisible where they are read:
    consumer weights for them zeroed, and where two activations contract them (MatMul), their
    positions in A masked to zero. A fresh analysis of the same model has the same group ids."""
    m = load_normalized(onnx.ModelProto.FromString(case.model.SerializeToString()), fold_bn=fold_bn)
    an = analyze_groups(m)
    removed = np.zeros(len(an.roots), dtype=bool)
    for gid, cls in plan.removed.items():
        removed[an.groups[gid].classes[cls]] = True
    for p in an.params:
        dead = removed[an.roots[p.atoms]]
        if p.role == "consumer" and dead.any():
            zero_positions(p, dead)
    for node in list(m.graph):
        if node.op_type != "MatMul":
            continue
        a, bv = node.inputs[0], node.inputs[1]
        da, db = an.dims.get(a), an.dims.get(bv)
        if da is None or db is None or da.axis != len(a.shape) - 1 or db.axis != len(bv.shape) - 2:
            continue
        dead = removed[an.roots[da.atoms]]
        if dead.any():
            mask = (~dead).astype(a.dtype.numpy())
            mv = ir.Value(name=f"{node.name}_oracle_mask", const_value=ir.tensor(mask), shape=ir.Shape(mask.shape),
                          type=ir.TensorType(a.dtype))
            m.graph.register_initializer(mv)
            mul = ir.Node("", "Mul", [a, mv], name=f"{node.name}_oracle_mul")
            m.graph.insert_before(node, mul)
            node.replace_input_with(0, mul.outputs[0])
    return ir.to_proto(m)


def check_one(case: Case, check: str, ref: list[np.ndarray]) -> tuple[str, str]:
    """(outcome, detail) of one check of one case."""
    oracle = None
    try:
        m = load_normalized(onnx.ModelProto.FromString(case.model.SerializeToString()), fold_bn=check == "lumping")
        an = analyze_groups(m)
        group = next((g for g in an.groups if any(p.node.name == "p" for p in g.producers)), None)
        frozen = "; ".join(group.frozen) if group is not None and group.frozen else ""
        if check == "lumping":
            plan = lumping_plan(an)
        elif check == "remove":
            if frozen:
                return "frozen", frozen
            plan = plan_from_removals(an, ["p:" + ",".join(map(str, case.remove))])
        else:
            plan = make_plan(an, 0.3, "l1")
        if check != "lumping" and plan.count():
            oracle = _oracle(case, plan, fold_bn=False)
        apply_plan(an, plan)
        pruned = ir.to_proto(m)
    except OnnxPruneError as exc:
        if "bug in onnxprune" in str(exc):  # the surgery's own consistency check caught a wrong rewrite
            return "crash", f"{type(exc).__name__}: {exc}"
        return ("frozen" if "frozen" in str(exc) else "refused"), f"{type(exc).__name__}: {exc}"
    except Exception:
        return "crash", traceback.format_exc(limit=6)
    try:
        got = run(pruned, case.feeds)
    except Exception as exc:
        return "crash", f"onnxruntime cannot run the pruned model: {str(exc).splitlines()[0][:300]}"
    want = ref if oracle is None else run(oracle, case.feeds)
    bad = _close(got, want, case.dtype) or _declared(pruned, got)
    if bad:
        return "WRONG", bad
    if not plan.count():
        return ("frozen", frozen) if frozen else ("kept", "nothing removed")
    return "exact", f"{plan.count()} channels removed"


def run_seed(seed: int, checks: list[str] = CHECKS) -> tuple[Case, dict[str, tuple[str, str]]]:
    """The case of ``seed`` and the outcome of each check."""
    case, ref = valid_case(seed)
    return case, {c: check_one(case, c, ref) for c in checks}
