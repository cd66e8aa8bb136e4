"""What an op computes, as far as lossless transforms need to know: semantic traits per op registry
entry, each a function of the node (its attributes and constant inputs).

The channel rules (``graph/rules``) say where channels go; these traits say what happens to their
values: whether a channel that is exactly 0 stays 0, whether c * x maps to c * f(x) for c > 0,
whether a channel constant over space stays constant (and at which value), whether the spatial mean
is kept, which inputs of a Conv/Gemm are its weight and bias and how they are scaled, and the MACs of
a node. An op without traits, or a node whose attributes the trait cannot read, gets the
conservative answer (False / None): lumping, merging and compensation then leave its channels alone.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxprune.graph.nodes import attr, const_input

Pred = Callable[[ir.Node], bool]
ValueMap = Callable[[float], float]

# How an all-zero channel propagates through a node (``zero_rule``):
UNARY = "unary"  # input 0 alone decides: 0 -> 0 iff ``maps_zero_to_zero``
ALL = "all"  # 0 iff every input is 0 at the channel (Add, Max, ...): other tensors must be 0 there too
ANY = "any"  # 0 iff some input is 0 at the channel (Mul of finite values)
FIRST = "first"  # 0 iff input 0 is 0 at the channel (Div, PRelu, Pow with a positive exponent)
POSITIONS = "positions"  # channels only move (Concat, Split, ...): each output position is an input position
OFFSET = "offset"  # per-channel affine (BatchNormalization, depthwise Conv): 0 iff input 0 is and the offset is


# -- reading nodes ------------------------------------------------------------------------------
def _has_input(node: ir.Node, index: int) -> bool:
    return index < len(node.inputs) and node.inputs[index] is not None


def _scalar_input(node: ir.Node, index: int, default: float | None) -> float | None:
    """A scalar constant input (Clip min/max, Pad value); ``default`` if absent; None if computed."""
    if not _has_input(node, index):
        return default
    arr = const_input(node, index)
    return float(arr.reshape(-1)[0]) if arr is not None and arr.size == 1 else None


# -- node-dependent facts -----------------------------------------------------------------------
def _clip_range(node: ir.Node) -> tuple[float, float] | None:
    if "min" in node.attributes or "max" in node.attributes:  # opset < 11
        return float(attr(node, "min", -math.inf)), float(attr(node, "max", math.inf))
    lo, hi = _scalar_input(node, 1, -math.inf), _scalar_input(node, 2, math.inf)
    return None if lo is None or hi is None else (lo, hi)


def _pad_fill(node: ir.Node) -> float | None:
    """The value a Pad writes at new positions that do not copy the input: 0.0 for edge/reflect/wrap
    (they copy), the constant otherwise; None if computed at run time."""
    mode = attr(node, "mode", "constant")
    if mode != "constant":
        return 0.0
    if "value" in node.attributes:  # opset < 11: an attribute
        return float(attr(node, "value", 0.0))
    return _scalar_input(node, 2, 0.0)


def _pad_copies(node: ir.Node) -> bool:
    """Every output position copies an input position (edge/reflect/wrap, or no padding at all)."""
    if attr(node, "mode", "constant") != "constant":
        return True
    pads = attr(node, "pads") if "pads" in node.attributes else const_input(node, 1)
    return pads is not None and not np.any(np.asarray(pads) != 0)


def _resize_extrapolates(node: ir.Node) -> bool:
    """tf_crop_and_resize writes ``extrapolation_value`` outside the crop box."""
    return attr(node, "coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize"


def _resize_zero_ok(node: ir.Node) -> bool:
    return not _resize_extrapolates(node) or float(attr(node, "extrapolation_value", 0.0)) == 0.0


def _resize_keeps_constant(node: ir.Node) -> bool:
    # nearest picks, linear weights sum to 1; cubic may overshoot with exclude_outside, crops extrapolate
    return attr(node, "mode", "nearest") in ("nearest", "linear", "bilinear") and not _resize_extrapolates(node)


def _avgpool_pads(node: ir.Node) -> bool:
    """Positions near the border average over padding (counted as zeros, or fewer terms)."""
    auto = attr(node, "auto_pad", "NOTSET")
    return auto not in ("NOTSET", "VALID") or any(attr(node, "pads", []) or [])


def _avgpool_keeps_constant(node: ir.Node) -> bool:
    return not _avgpool_pads(node) or not attr(node, "count_include_pad", 0)


def _only_one_runtime_input(node: ir.Node) -> bool:
    """Mul/Div by constants only: scaling is positively homogeneous, a product of two tensors is not."""
    return sum(1 for v in node.inputs if v is not None and v.const_value is None) <= 1


def _constants_zero(node: ir.Node) -> bool:
    """Add/Sub/Max...: homogeneous only when every constant operand is 0."""
    return all(v is None or v.const_value is None or not np.any(v.const_value.numpy()) for v in node.inputs)


def _div_by_constant(node: ir.Node) -> bool:
    return const_input(node, 1) is not None


def _divisor_nonzero(node: ir.Node) -> bool:
    """0 / d is 0 only for d != 0: a constant divisor without zeros (a tensor could be 0: NaN)."""
    d = const_input(node, 1)
    return d is not None and bool(np.all(d != 0))


def _pow_positive_exponent(node: ir.Node) -> bool:
    e = const_input(node, 1)
    return e is not None and bool(np.all(e > 0))


def _leaky_alpha(node: ir.Node) -> float:
    return float(attr(node, "alpha", 0.01))


# -- value maps of a constant channel (scalar functions) -----------------------------------------
def _identity(_node: ir.Node) -> ValueMap:
    return lambda v: v


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def _softplus(v: float) -> float:
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def _value_maps() -> dict[str, Callable[[ir.Node], ValueMap | None]]:
    def clip(node):
        r = _clip_range(node)
        return None if r is None else (lambda v, r=r: min(max(v, r[0]), r[1]))

    def leaky(node):
        a = _leaky_alpha(node)
        return lambda v: v if v >= 0 else a * v

    def elu(node):
        a = float(attr(node, "alpha", 1.0))
        return lambda v: v if v > 0 else a * math.expm1(v)

    def selu(node):
        a = float(attr(node, "alpha", 1.67326319217681884765625))
        g = float(attr(node, "gamma", 1.05070102214813232421875))
        return lambda v: g * (v if v > 0 else a * math.expm1(v))

    def celu(node):
        a = float(attr(node, "alpha", 1.0))
        return lambda v: max(0.0, v) + min(0.0, a * math.expm1(v / a))

    def hard_sigmoid(node):
        a, b = float(attr(node, "alpha", 0.2)), float(attr(node, "beta", 0.5))
        return lambda v: min(max(a * v + b, 0.0), 1.0)

    def gelu(node):
        if attr(node, "approximate", "none") == "tanh":
            return lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
        return lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2)))

    def fixed(f):
        return lambda _node: f

    return {
        "Relu": fixed(lambda v: max(v, 0.0)), "LeakyRelu": leaky, "Clip": clip, "Elu": elu, "Selu": selu,
        "Celu": celu, "HardSigmoid": hard_sigmoid, "Gelu": gelu,
        "HardSwish": fixed(lambda v: v * min(max(v / 6 + 0.5, 0.0), 1.0)),
        "Sigmoid": fixed(_sigmoid), "Tanh": fixed(math.tanh), "Softplus": fixed(_softplus),
        "Softsign": fixed(lambda v: v / (1 + abs(v))), "Mish": fixed(lambda v: v * math.tanh(_softplus(v))),
        "Neg": fixed(lambda v: -v), "Abs": fixed(abs), "Erf": fixed(math.erf),
    }


# -- elementwise arithmetic on per-channel constants (numpy broadcasting) ----------------------------
Arith = Callable[[list], np.ndarray]


def _prelu(args: list) -> np.ndarray:
    x, slope = args
    return np.where(x < 0, slope * x, x)


_ARITH: dict[str, Arith] = {
    "Add": lambda a: a[0] + a[1], "Sub": lambda a: a[0] - a[1], "Mul": lambda a: a[0] * a[1],
    # variadic ops fold pairwise: the inputs broadcast against each other, they need not share a shape
    "Div": lambda a: a[0] / a[1], "Max": lambda a: functools.reduce(np.maximum, a),
    "Min": lambda a: functools.reduce(np.minimum, a), "Sum": lambda a: functools.reduce(np.add, a),
    "Mean": lambda a: functools.reduce(np.add, a) / len(a), "PRelu": _prelu,
}


# -- the linear role of producers and consumers ---------------------------------------------------
@dataclass(frozen=True)
class Affine:
    """Y = weight_scale * (X (*) W) + bias_scale * B along the channel axes of a Conv/Gemm/MatMul."""

    weight: int  # input index of the weight
    bias: int | None  # input index of the bias slot (None: the op has none)
    weight_scale: float = 1.0  # Gemm alpha
    bias_scale: float = 1.0  # Gemm beta
    weight_out_axis: int = 0  # axis of the weight that indexes output channels
    reads_every_position: bool = False  # as a consumer: each output position sums every input position alike
    out_per_group: bool = False  # output channels = weight dims[weight_out_axis] * group (ConvTranspose)
    pads: bool = False  # a Conv of one group that would read every position alike but for its zero padding

    def output_channels(self, node: ir.Node, weight_dims) -> int:
        """Output channels read off the weight's dims."""
        count = int(weight_dims[self.weight_out_axis])
        return count * int(attr(node, "group", 1)) if self.out_per_group else count


def _conv_affine(node: ir.Node) -> Affine:
    group = attr(node, "group", 1)
    padded = attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID") or any(attr(node, "pads", []) or [])
    return Affine(1, 2, reads_every_position=group == 1 and not padded, pads=group == 1 and padded)


def _conv_transpose_affine(_node: ir.Node) -> Affine:
    return Affine(1, 2, weight_out_axis=1, out_per_group=True)  # positions gather unequal input counts


def _gemm_affine(node: ir.Node) -> Affine:
    # C computed at run time adds something per position that is not a bias we can edit
    c_const = not _has_input(node, 2) or node.inputs[2].const_value is not None
    return Affine(1, 2, float(attr(node, "alpha", 1.0)), float(attr(node, "beta", 1.0)),
                  weight_out_axis=0 if attr(node, "transB", 0) else 1, reads_every_position=c_const)


def _matmul_affine(node: ir.Node) -> Affine:
    w = node.inputs[1].const_value if len(node.inputs) > 1 and node.inputs[1] is not None else None
    return Affine(1, None, weight_out_axis=len(w.shape) - 1 if w is not None else -1, reads_every_position=True)


# -- per-channel normalisations -------------------------------------------------------------------
@dataclass(frozen=True)
class Norm:
    """Per-channel normalisation y = scale * (x - mean) / sqrt(var + eps) + shift (input indices)."""

    scale: int
    shift: int
    mean: int | None  # running statistics (None: computed per instance)
    var: int | None
    epsilon: float


def _bn_norm(node: ir.Node) -> Norm:
    if attr(node, "training_mode", 0):  # statistics of the batch, not the stored ones
        return Norm(1, 2, None, None, float(attr(node, "epsilon", 1e-5)))
    return Norm(1, 2, 3, 4, float(attr(node, "epsilon", 1e-5)))


def _instance_norm(node: ir.Node) -> Norm:
    return Norm(1, 2, None, None, float(attr(node, "epsilon", 1e-5)))


def _norm_offset(node: ir.Node, param: Callable[[int], np.ndarray | None]) -> np.ndarray | None:
    """Per channel: what the normalisation outputs for an all-zero channel."""
    n = _bn_norm(node) if node.op_type == "BatchNormalization" else _instance_norm(node)
    shift = param(n.shift)
    if shift is None:
        return None
    if n.mean is None:  # an all-zero instance normalises to 0: only the shift is left
        return shift
    scale, mean, var = param(n.scale), param(n.mean), param(n.var)
    if scale is None or mean is None or var is None:
        return None
    return shift - mean * scale / np.sqrt(var + n.epsilon)


def _depthwise(node: ir.Node) -> bool:
    """A grouped Conv/ConvTranspose whose every output channel reads one input channel (per channel)."""
    w = node.inputs[1] if _has_input(node, 1) else None
    dims = w.const_value.shape if w is not None and w.const_value is not None else (w.shape if w is not None else None)
    group = attr(node, "group", 1)  # a quantized weight (DequantizeLinear output) has its inferred shape
    if dims is None or len(dims) < 2 or group < 2 or not all(isinstance(d, int) for d in dims[:2]):
        return False
    per_output = dims[1] if node.op_type == "Conv" else dims[0] // group  # inputs each output reads
    return per_output == 1


def _bias_offset(node: ir.Node, param: Callable[[int], np.ndarray | None]) -> np.ndarray | None:
    """Depthwise Conv/ConvTranspose: a zero channel comes out as its bias (0 without one)."""
    if not _has_input(node, 2):
        return 0.0
    return param(2)


# -- MACs -------------------------------------------------------------------------------------------
def _static(shape) -> list[int] | None:
    if shape is None:
        return None
    return [d if isinstance(d, int) and d > 0 else 1 for d in shape]


def _shapes(node: ir.Node) -> tuple[list[int], list[int], list[int]] | None:
    out = _static(node.outputs[0].shape)
    w = _static(node.inputs[1].shape if len(node.inputs) > 1 and node.inputs[1] is not None else None)
    a = _static(node.inputs[0].shape)
    return None if out is None or w is None or a is None else (out, w, a)


def _conv_macs(node: ir.Node) -> int | None:
    s = _shapes(node)
    return None if s is None else int(np.prod(s[0])) * int(np.prod(s[1][1:]))


def _conv_transpose_macs(node: ir.Node) -> int | None:
    s = _shapes(node)
    return None if s is None else int(np.prod(s[2])) * int(np.prod(s[1][1:]))


def _gemm_macs(node: ir.Node) -> int | None:
    s = _shapes(node)
    if s is None:
        return None
    out, _, a = s
    return int(np.prod(out)) * (a[0] if attr(node, "transA", 0) else a[-1])


def _matmul_macs(node: ir.Node) -> int | None:
    s = _shapes(node)
    return None if s is None else int(np.prod(s[0])) * (s[2][-1] if s[2] else 1)


# -- the spec per op and the resolved traits of a node ----------------------------------------------
def _const(value: bool) -> Pred:
    return lambda _node: value


@dataclass(frozen=True)
class Spec:
    """The semantic traits of one registry entry; each predicate is evaluated on the node."""

    zero_rule: str | None = None
    zero_ok: Pred = _const(True)  # the node's attributes keep the zero rule valid (Pad value, Clip range)
    homogeneous: Pred = _const(False)
    channel_local: bool = False
    keeps_constant: Pred = _const(False)
    keeps_mean: Pred = _const(False)
    keeps_moments: bool = False  # (roughly) keeps each channel's mean and variance: moves, pools, pads
    rectifies: Pred = _const(False)  # computes max(x, 0)
    reads_values: bool = True  # False: only the shape is read (Shape, Size)
    combine: str | None = None  # "sum": the output is the sum of the inputs; "concat": they are joined
    contracts: bool = False  # sums products over the channel axis (MatMul of two activations)
    value_map: Callable[[ir.Node], ValueMap | None] | None = None
    arith: Arith | None = None  # the op on numpy values (inputs broadcast): what it makes of constants
    offset: Callable | None = None  # (node, param) -> per-channel output of a zero channel (OFFSET rule)
    affine: Callable[[ir.Node], Affine] | None = None
    norm: Callable[[ir.Node], Norm] | None = None
    macs: Callable[[ir.Node], int | None] | None = None
    shapes: Callable[[ir.Node], list] | None = None  # output (dims, dtype) of ops ONNX inference does not know
    stored_weight: int | None = None  # input holding a quantized weight's stored integers (counted as parameters)


@dataclass(frozen=True)
class Traits:
    """The traits of one node (see ``traits``)."""

    node: ir.Node
    spec: Spec

    @property
    def known(self) -> bool:
        return self.spec is not UNKNOWN

    @property
    def zero_rule(self) -> str | None:
        """How an all-zero channel propagates (module constants), None if it does not or is unknown."""
        return self.spec.zero_rule if self.spec.zero_rule and self.spec.zero_ok(self.node) else None

    def maps_zero_to_zero(self) -> bool:
        """A channel that is 0 in input 0 (and the same position of every other tensor input) is 0 out."""
        return self.zero_rule is not None

    def positively_homogeneous(self) -> bool:
        """f(c x) = c f(x) for every c > 0, channel by channel."""
        return self.spec.zero_rule is not None and self.spec.zero_ok(self.node) and self.spec.homogeneous(self.node)

    @property
    def channel_local(self) -> bool:
        """Output channel k depends on input channel k (and constants) only."""
        return self.spec.channel_local

    def keeps_constant(self) -> bool:
        """A channel constant over every position stays constant (value: ``value_map``)."""
        return self.spec.keeps_constant(self.node) and self.value_map() is not None

    def keeps_mean(self) -> bool:
        """The mean over positions of each channel is unchanged."""
        return self.spec.keeps_mean(self.node)

    @property
    def keeps_moments(self) -> bool:
        return self.spec.keeps_moments

    def rectifies(self) -> bool:
        return self.spec.rectifies(self.node)

    @property
    def reads_values(self) -> bool:
        return self.spec.reads_values

    @property
    def contracts(self) -> bool:
        """Sums products over the channel axis: a channel whose product is 0 adds nothing."""
        return self.spec.contracts

    @property
    def combine(self) -> str | None:
        """"sum" (Add, Sum) or "concat" (Concat): how several tensor inputs make the output."""
        return self.spec.combine

    def value_map(self) -> ValueMap | None:
        """The scalar function applied to a channel that is constant (channel-local ops), or None."""
        return self.spec.value_map(self.node) if self.spec.value_map is not None else None

    def arith(self, values: list[np.ndarray]) -> np.ndarray | None:
        """The op applied to constant inputs (each a number per channel, broadcast), or None if the
        registry has no arithmetic for it."""
        return self.spec.arith(values) if self.spec.arith is not None else None

    def offset(self, param: Callable[[int], np.ndarray | None]) -> np.ndarray | float | None:
        """Per channel: the output for an all-zero input channel (OFFSET ops); ``param(i)`` gives
        input i per channel."""
        return self.spec.offset(self.node, param) if self.spec.offset is not None else None

    def affine(self) -> Affine | None:
        """Weight and bias inputs and their scales (Conv, ConvTranspose, Gemm, MatMul), else None."""
        return self.spec.affine(self.node) if self.spec.affine is not None else None

    def norm(self) -> Norm | None:
        """Parameter inputs of a per-channel normalisation, else None."""
        return self.spec.norm(self.node) if self.spec.norm is not None else None

    def output_shapes(self) -> list:
        """(dims, dtype) or None per output, for ops ONNX shape inference does not know (custom domains);
        empty where the registry does not say."""
        return self.spec.shapes(self.node) if self.spec.shapes is not None else []

    def macs(self) -> int | None:
        """Multiply-accumulates at the node's static shapes (free dims as 1), None if not counted."""
        return self.spec.macs(self.node) if self.spec.macs is not None else None

    @property
    def stored_weight(self) -> ir.Value | None:
        """The tensor holding the integers of a quantized weight this node reads, if it reads one."""
        i = self.spec.stored_weight
        return self.node.inputs[i] if i is not None and i < len(self.node.inputs) else None


UNKNOWN = Spec()

_MAPS = _value_maps()
_TRUE = _const(True)


def _unary(op: str, zero: bool, homogeneous: bool = False, **kw) -> Spec:
    return Spec(UNARY if zero else None, homogeneous=_const(homogeneous), channel_local=True,
                keeps_constant=_TRUE if op in _MAPS else _const(False), value_map=_MAPS.get(op), **kw)


def _move(**kw) -> Spec:
    """Ops that only move values (layout, Identity, Dropout at inference)."""
    return Spec(POSITIONS, homogeneous=_TRUE, channel_local=True, keeps_constant=_TRUE, keeps_mean=_TRUE,
                keeps_moments=True, value_map=_identity, **kw)


SPECS: dict[str, Spec] = {
    # 0 -> 0 and positively homogeneous
    "Relu": _unary("Relu", True, True, rectifies=_TRUE),
    "LeakyRelu": _unary("LeakyRelu", True, True),
    "Neg": _unary("Neg", True, True),
    # 0 -> 0 only
    **{op: _unary(op, True) for op in ("Tanh", "Elu", "Selu", "Celu", "Gelu", "Erf", "Softsign", "Mish",
                                       "HardSwish", "Abs", "Sign", "Sin", "Tan", "Asin", "Atan", "Sinh",
                                       "Asinh", "Atanh", "Floor", "Ceil", "Round", "Sqrt")},
    "ThresholdedRelu": Spec(UNARY, zero_ok=lambda n: float(attr(n, "alpha", 1.0)) >= 0, channel_local=True),
    "Shrink": Spec(UNARY, zero_ok=lambda n: float(attr(n, "lambd", 0.5)) >= 0, channel_local=True),
    "Clip": Spec(UNARY, zero_ok=lambda n: (r := _clip_range(n)) is not None and r[0] <= 0 <= r[1],
                 homogeneous=lambda n: (r := _clip_range(n)) is not None and r[0] in (0.0, -math.inf)
                 and r[1] == math.inf, rectifies=lambda n: _clip_range(n) == (0.0, math.inf),
                 channel_local=True, keeps_constant=_TRUE, value_map=_MAPS["Clip"]),
    # 0 -> something else
    **{op: _unary(op, False) for op in ("Sigmoid", "HardSigmoid", "Softplus", "Exp", "Log", "Reciprocal",
                                        "Cos", "Cosh", "Acos", "Acosh")},
    "Identity": _move(), "Dropout": _move(), "Cast": Spec(UNARY, channel_local=True),
    # several tensor inputs
    **{op: Spec(ALL, homogeneous=_constants_zero, channel_local=True, arith=_ARITH[op],
                combine="sum" if op in ("Add", "Sum") else None) for op in ("Add", "Sub", "Sum", "Mean", "Max", "Min")},
    "Mul": Spec(ANY, homogeneous=_only_one_runtime_input, channel_local=True, arith=_ARITH["Mul"]),
    "Div": Spec(FIRST, zero_ok=_divisor_nonzero, homogeneous=_div_by_constant, channel_local=True,
                arith=_ARITH["Div"]),
    "PRelu": Spec(FIRST, homogeneous=_TRUE, channel_local=True, arith=_prelu),
    "Pow": Spec(FIRST, zero_ok=_pow_positive_exponent, channel_local=True),
    # pools and resampling
    "MaxPool": Spec(POSITIONS, homogeneous=_TRUE, channel_local=True, keeps_constant=_TRUE, keeps_moments=True,
                    value_map=_identity),
    "AveragePool": Spec(POSITIONS, homogeneous=_TRUE, channel_local=True, keeps_constant=_avgpool_keeps_constant,
                        keeps_mean=lambda n: not _avgpool_pads(n), keeps_moments=True, value_map=_identity),
    "LpPool": Spec(POSITIONS, homogeneous=_TRUE, channel_local=True),
    "GlobalAveragePool": Spec(POSITIONS, homogeneous=_TRUE, channel_local=True, keeps_constant=_TRUE,
                              keeps_mean=_TRUE, keeps_moments=True, value_map=_identity),
    "GlobalMaxPool": Spec(POSITIONS, homogeneous=_TRUE, channel_local=True, keeps_constant=_TRUE,
                          keeps_moments=True, value_map=_identity),
    "GlobalLpPool": Spec(POSITIONS, homogeneous=_TRUE, channel_local=True),
    "Pad": Spec(POSITIONS, zero_ok=lambda n: _pad_fill(n) == 0.0, homogeneous=_TRUE, channel_local=True,
                keeps_constant=_pad_copies, keeps_moments=True, value_map=_identity),
    "Resize": Spec(POSITIONS, zero_ok=_resize_zero_ok, homogeneous=_TRUE, channel_local=True,
                   keeps_constant=_resize_keeps_constant, keeps_moments=True, value_map=_identity),
    "Upsample": Spec(POSITIONS, homogeneous=_TRUE, channel_local=True, keeps_moments=True,
                     keeps_constant=lambda n: attr(n, "mode", "nearest") in ("nearest", "linear", "bilinear"),
                     value_map=_identity),
    # layout
    **{op: _move() for op in ("Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze")},
    # they only pick positions: a constant channel stays constant
    "Concat": Spec(POSITIONS, homogeneous=_TRUE, channel_local=True, combine="concat", keeps_constant=_TRUE,
                   value_map=_identity),
    **{op: Spec(POSITIONS, homogeneous=_TRUE, channel_local=True, keeps_constant=_TRUE, value_map=_identity)
       for op in ("Split", "Slice", "Gather", "Expand", "Tile")},
    # reductions over other axes than the channel's (the channel rule freezes the rest)
    **{op: Spec(UNARY, homogeneous=_TRUE, channel_local=True, keeps_constant=_TRUE, value_map=_identity,
                keeps_mean=_const(op == "ReduceMean")) for op in ("ReduceMean", "ReduceMax", "ReduceMin")},
    **{op: Spec(UNARY, homogeneous=_TRUE, channel_local=True) for op in ("ReduceSum", "ReduceL1", "ReduceL2")},
    **{op: Spec(UNARY, channel_local=True) for op in ("ReduceSumSquare", "ReduceProd")},
    "CastLike": Spec(UNARY, channel_local=True),
    "Shape": Spec(reads_values=False), "Size": Spec(reads_values=False),
    # per-channel normalisations
    "BatchNormalization": Spec(OFFSET, channel_local=True, offset=_norm_offset, norm=_bn_norm),
    "InstanceNormalization": Spec(OFFSET, channel_local=True, offset=_norm_offset, norm=_instance_norm),
    # producers and consumers (a depthwise conv is per channel: OFFSET)
    "Conv": Spec(OFFSET, zero_ok=_depthwise, offset=_bias_offset, affine=_conv_affine, macs=_conv_macs),
    "ConvTranspose": Spec(OFFSET, zero_ok=_depthwise, offset=_bias_offset, affine=_conv_transpose_affine,
                          macs=_conv_transpose_macs),
    "Gemm": Spec(affine=_gemm_affine, macs=_gemm_macs),
    # rows of A and columns of B pass through, the contraction sums products: 0 where a factor is 0
    "MatMul": Spec(ANY, contracts=True, affine=_matmul_affine, macs=_matmul_macs),
}
