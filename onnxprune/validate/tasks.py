"""Task-aware agreement between a model's outputs and its pruned version's: what ``--ratio auto`` budgets and
``onnxprune validate`` reports per output.

A raw-output cosine of 0.99 can hide changed answers (a detector whose decoded boxes moved) and can flag
harmless ones (logits that shifted without changing any argmax). So each output is read as what it is,
chosen from its shape and the reference's values, with the reason stated:

- classifier [N, C] / [N, C, 1, 1]: top-1 agreement (top-k when asked);
- YOLO-style detection head [N, 4+C, A], [N, A, 4+C], [N, A, 5+C] (objectness), or a boxes + scores pair:
  decoded detections (score level, class-wise NMS) of both models matched by IoU >= 0.5 and class: F1;
- per-step class sequences [N, T, C] / [T, N, C] whose argmax is mostly a blank class (CTC): the share of
  sequences decoded to the same string;
- probability map [N, 1, H, W]: the regions a DBNet-style post-processor boxes (components above 0.3)
  matched by IoU >= 0.5: F1. Pixel IoU of the map above 0.3 (kind mask) and cosine both fell to 0.73 and
  0.84 on PP-OCRv4's detector pruned 10% while its text boxes stayed (recall 0.99 -> 0.98): too strict;
- embeddings (unit-norm or pooled [N, D] rows whose argmax says nothing, hidden states [N, S, D]): mean
  row-wise cosine;
- anything else: cosine of the whole output.

On synthetic (noise) inputs decoded answers mean little (noise yields no detection and no text), so every
output is budgeted by cosine there, as before this module existed.

``--budget-metric KIND[=THRESHOLD][:OUTPUT]`` (repeatable, or comma-separated) replaces the choice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxprune.errors import OptionError
from onnxprune.validate.measures import (
    BLANK_SHARE,
    DEFAULT_TOPK,
    KINDS,
    MAP_LEVEL,
    METRICS,
    REGION_MIN_SIDE,
    REGION_SCORE,
    TASK_KINDS,
    Head,
    Map,
    Rows,
    Sequences,
    TopK,
    decode_detections,
    map_regions,
)


@dataclass(frozen=True)
class OutputCheck:
    """One budgeted figure: ``output`` (a graph output name; "boxes+scores" for a detection pair), its
    ``kind`` (one of KINDS), the minimum ``threshold`` and ``why`` this kind was chosen. ``indices`` (the
    outputs read, in graph order) and ``spec`` (how they are read) are fixed when the check is made."""

    output: str
    kind: str
    threshold: float
    why: str
    indices: tuple[int, ...] = ()
    spec: Any = None
    stated: bool = False  # given by --budget-metric (validate: a failure exits 1)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.output}"


# ---------------------------------------------------------------- reading an output's shape and values

def _is_probability(a: np.ndarray, axis: int = -1) -> bool:
    """Non-negative rows summing to 1 along ``axis`` (a softmax)."""
    return a.size > 0 and a.shape[axis] > 1 and bool(a.min() >= 0) and bool(
        np.allclose(a.astype(np.float64).sum(axis), 1.0, atol=1e-3))


def _in_unit(a: np.ndarray) -> bool:
    """Values in [0, 1], up to float32 rounding (onnxruntime's Sigmoid can return 1.0000001)."""
    return a.size > 0 and bool(a.min() >= -1e-6) and bool(a.max() <= 1 + 1e-6)


def _shape(a: np.ndarray) -> str:
    return str(list(a.shape))


Reading = tuple[Any, str]  # (spec, why)


def classifier_shaped(shape) -> bool:
    """[N, classes] or [N, classes, 1, 1] with more than one class: outputs where top-k means something."""
    shape = list(shape)
    return (len(shape) == 2 and shape[1] > 1) or (len(shape) == 4 and shape[1] > 1 and shape[2:] == [1, 1])


def read_classifier(a: np.ndarray, forced: bool, k: int = 1, beside: str | None = None) -> Reading:
    """``beside``: another output of the model that holds class probabilities (then raw [N, C] values next to
    it are box or landmark regressions, as in MTCNN)."""
    shape = list(a.shape)
    if not classifier_shaped(a.shape):
        raise _NotThis(f"{_shape(a)} is not classifier-shaped ([N, C] or [N, C, 1, 1])")
    if not forced and not _is_probability(a.reshape(a.shape[0], -1)):
        r = a.reshape(a.shape[0], -1)
        if beside is not None and not _in_unit(r):
            raise _NotThis(f"{_shape(a)}: raw values next to the class probabilities of '{beside}': a regression")
        if np.allclose(np.linalg.norm(r.astype(np.float64), axis=1), 1.0, atol=1e-3):
            raise _NotThis(f"{_shape(a)} rows have unit norm: an embedding")
        share = np.bincount(r.argmax(1)).max() / len(r) if len(r) else 1.0
        if len(r) >= 4 and share >= 0.9 and shape[1] >= 64:
            raise _NotThis(f"{_shape(a)}: {100 * share:.0f}% of rows peak at the same index, a feature "
                           "vector rather than class scores")
        z = r.astype(np.float64) - r.max(1, keepdims=True)
        peak = float(np.mean(1 / np.exp(z).sum(1)))  # mean top softmax probability
        if shape[1] >= 32 and not _in_unit(r) and peak < 10 / shape[1]:
            raise _NotThis(f"{_shape(a)}: the softmax of its rows is nearly flat (top {peak:.3f}), feature values "
                           "rather than class logits")
    return TopK(k), f"{_shape(a)}: classifier, {shape[1]} classes"


def read_sequences(a: np.ndarray, forced: bool, batch: int | None) -> Reading:
    if a.ndim != 3 or a.shape[-1] < 3:
        raise _NotThis(f"{_shape(a)} is not a per-step class sequence [N, T, C] or [T, N, C]")
    time_major = batch is not None and a.shape[1] == batch and a.shape[0] != batch
    steps = a.shape[0] if time_major else a.shape[1]
    best = a.argmax(-1).ravel()
    counts = np.bincount(best, minlength=a.shape[-1])
    blank = 0 if counts[0] >= counts[-1] else a.shape[-1] - 1
    share = counts[blank] / max(best.size, 1)
    if not forced and (steps < 2 or share < BLANK_SHARE):
        raise _NotThis(f"{_shape(a)}: no blank class (class 0 or the last) wins {100 * BLANK_SHARE:.0f}% of steps")
    layout = "[T, N, C]" if time_major else "[N, T, C]"
    return Sequences(time_major, blank), (f"{_shape(a)}: per-step class sequence {layout} (CTC), {a.shape[-1]} "
                                          f"classes, blank = class {blank} (argmax of {100 * share:.0f}% of steps)")


def read_head(a: np.ndarray, forced: bool) -> Reading:
    if a.ndim != 3 or min(a.shape[1:]) < 5:
        raise _NotThis(f"{_shape(a)} is not a detection head [N, 4+C, A] or [N, A, 4+C]")
    anchors_last = a.shape[1] < a.shape[2]
    head = np.swapaxes(a, 1, 2) if anchors_last else a
    features, anchors = head.shape[2], head.shape[1]
    objectness = not anchors_last and features >= 6  # YOLOv5 / YOLOX exports put anchors first, with objectness
    scores = head[..., 4:]
    sigmoid = not _in_unit(scores)
    if sigmoid and not forced:
        raise _NotThis(f"{_shape(a)}: the columns after the 4 box values are not scores in [0, 1]")
    if not forced and _in_unit(head[..., :4]):  # probabilities everywhere (a softmax over steps, say): no boxes
        raise _NotThis(f"{_shape(a)}: every value is in [0, 1], no box coordinates")
    w, h = head[..., 2], head[..., 3]
    grid = 0
    if np.mean((w <= 0) | (h <= 0)) > 0.01:  # raw sizes in log space: YOLOX without decoding in the graph
        cells = math.isqrt(anchors // 21)
        if 21 * cells * cells != anchors:
            raise _NotThis(f"{_shape(a)}: boxes are raw (non-positive sizes) and the anchor count is not a "
                           "square YOLOX grid at strides 8/16/32")
        grid = cells
    spec = Head(anchors_last=anchors_last, objectness=objectness, grid=grid, sigmoid=sigmoid)
    classes = features - (5 if objectness else 4)
    layout = (f"[N, 4+C, A] (YOLOv8 style), {classes} classes" if anchors_last
              else f"[N, A, {'5' if objectness else '4'}+C] ({'objectness, ' if objectness else ''}YOLOv5/YOLOX "
                   f"style), {classes} classes")
    extra = (f"; raw boxes decoded on a {32 * grid}x{32 * grid} YOLOX grid" if grid else "") + (
        "; scores are logits: sigmoid applied" if sigmoid else "")
    return spec, f"{_shape(a)}: detection head {layout}, {anchors} anchors{extra}"


def read_pair(boxes: np.ndarray, scores: np.ndarray, forced: bool) -> Reading:
    if not (boxes.ndim == 3 and boxes.shape[2] == 4 and scores.ndim in (2, 3)
            and scores.shape[:2] == boxes.shape[:2]):
        raise _NotThis(f"{_shape(boxes)} + {_shape(scores)} are not boxes [N, A, 4] + scores [N, A, C]")
    background = scores.ndim == 3 and scores.shape[2] >= 2 and _is_probability(scores)
    sigmoid = not _in_unit(scores)
    if sigmoid and not forced:
        raise _NotThis(f"{_shape(scores)} are not scores in [0, 1]")
    corners = bool(np.mean((boxes[..., 2] >= boxes[..., 0]) & (boxes[..., 3] >= boxes[..., 1])) >= 0.99)
    spec = Head(corners=corners, sigmoid=sigmoid, background=background, pair=True)
    classes = (scores.shape[2] if scores.ndim == 3 else 1) - background
    return spec, (f"boxes {_shape(boxes)} ({'corners' if corners else 'centre, size'}) + scores {_shape(scores)}"
                  f" ({classes} classes{', class 0 is background' if background else ''}): detection pair")


def read_map(a: np.ndarray, forced: bool) -> Reading:
    if a.ndim != 4 or a.shape[1] != 1 or min(a.shape[2:]) < 2:
        raise _NotThis(f"{_shape(a)} is not a map [N, 1, H, W]")
    if not forced and not _in_unit(a):
        raise _NotThis(f"{_shape(a)}: values outside [0, 1], not a probability map")
    return Map(), (f"{_shape(a)}: probability map; a DBNet-style post-processor boxes its regions above "
                   f"{MAP_LEVEL:g} (mean >= {REGION_SCORE:g}, >= {REGION_MIN_SIDE} px): those boxes must stay")


def read_embedding(a: np.ndarray, forced: bool) -> Reading:
    if a.ndim not in (2, 3) or a.shape[-1] < (2 if forced else 16):  # narrow rows (boxes, landmarks): whole
        raise _NotThis(f"{_shape(a)} is not an embedding [N, D] or hidden states [N, S, D]")
    what = "embedding rows" if a.ndim == 2 else "hidden states, one row per token"
    return Rows(1), f"{_shape(a)}: {what}; mean row-wise cosine"


def read_exact(a: np.ndarray, forced: bool) -> Reading:
    if np.issubdtype(a.dtype, np.floating):
        raise _NotThis(f"{_shape(a)} holds floats: their values never repeat exactly (cosine or snr compare them)")
    return None, f"{_shape(a)} {a.dtype}: labels, indices or ids; share of identical values"


def read_whole(a: np.ndarray, forced: bool) -> Reading:
    return Rows(None), f"{_shape(a)}: cosine of the whole output"


def _embedding_or_whole(a: np.ndarray) -> Reading:
    """Asked for cosine: row-wise where the output is an embedding or hidden states, else the whole output."""
    try:
        return read_embedding(a, False)
    except _NotThis:
        return read_whole(a, True)


class _NotThis(Exception):
    """An output cannot be read as a kind; the message says why."""


# Which readings the automatic choice tries, in order, for one output (detection pairs are tried first).
AUTO_ORDER = ("detection", "ctc", "top1", "regions", "embedding", "cosine")


def _reading(kind: str, a: np.ndarray, forced: bool, batch: int | None, k: int = DEFAULT_TOPK,
             beside: str | None = None) -> tuple[str, Reading]:
    """(kind, (spec, why)) for one output read as ``kind`` ("embedding" is kind cosine over rows); raises
    _NotThis. ``beside``: another output holding class probabilities."""
    if kind == "snr":
        return "snr", (None, f"{_shape(a)}: SNR of the whole output")
    readers: dict[str, Callable[[], tuple[str, Reading]]] = {
        "top1": lambda: ("top1", read_classifier(a, forced, beside=beside)),
        "topk": lambda: ("topk", read_classifier(a, forced, k)),
        "ctc": lambda: ("ctc", read_sequences(a, forced, batch)),
        "detection": lambda: ("detection", read_head(a, forced)),
        "regions": lambda: ("regions", read_map(a, forced)),
        "mask": lambda: ("mask", read_map(a, forced)),
        "equal": lambda: ("equal", read_exact(a, forced)),
        "embedding": lambda: ("cosine", read_embedding(a, forced)),
        "cosine": lambda: ("cosine", _embedding_or_whole(a)),
    }
    return readers[kind]()


# ---------------------------------------------------------------- --budget-metric

_SPEC = re.compile(r"^(?P<kind>auto|top1|topk|top(?P<k>\d+)|detection|ctc|regions|mask|equal|cosine|snr)"
                   r"(?:=(?P<threshold>[^:]+))?(?::(?P<output>.+))?$")


@dataclass(frozen=True)
class MetricRequest:
    """One ``--budget-metric`` item: KIND[=THRESHOLD][:OUTPUT]."""
    kind: str
    threshold: float | None = None
    output: str | None = None
    k: int = DEFAULT_TOPK
    text: str = ""


def parse_metric_requests(items: list[str] | tuple[str, ...]) -> list[MetricRequest]:
    """Every item (repeatable option, or comma-separated), checked; OptionError on unknown kinds, bad
    thresholds and contradictions."""
    out: list[MetricRequest] = []
    for item in items:
        for text in (t.strip() for t in str(item).split(",")):
            m = _SPEC.match(text)
            if not m:
                raise OptionError(f"--budget-metric '{text}': expected KIND[=THRESHOLD][:OUTPUT] with KIND one of "
                                  f"auto, {', '.join(KINDS)} (or topK, e.g. top3)")
            kind, k = m["kind"], DEFAULT_TOPK
            if m["k"] is not None:
                kind, k = ("top1", 1) if m["k"] == "1" else ("topk", int(m["k"]))
                if k < 1:
                    raise OptionError(f"--budget-metric '{text}': top-k needs k >= 1")
            threshold = None
            if m["threshold"] is not None:
                try:
                    threshold = float(m["threshold"])
                except ValueError:
                    raise OptionError(f"--budget-metric '{text}': threshold '{m['threshold']}' is not a number") \
                        from None
                if kind == "auto":
                    raise OptionError(f"--budget-metric '{text}': auto takes no threshold (the chosen kinds use "
                                      "their own); give KIND=THRESHOLD")
                if not math.isfinite(threshold) or (kind != "snr" and not 0 <= threshold <= 1):
                    raise OptionError(f"--budget-metric '{text}': the threshold of {kind} must be in [0, 1]"
                                      if kind != "snr" else f"--budget-metric '{text}': SNR threshold must be finite")
            out.append(MetricRequest(kind, threshold, m["output"], k, text))
    seen: dict[str | None, str] = {}
    for r in out:
        if r.kind != "auto" and r.output in seen and seen[r.output] != r.text:
            where = f"output '{r.output}'" if r.output else "every output"
            raise OptionError(f"--budget-metric: '{seen[r.output]}' and '{r.text}' both set {where}; give one")
        seen[r.output] = r.text
    return out


def needs_real_inputs(requests: list[MetricRequest]) -> list[str]:
    """The requests that read task answers (meaningless on noise inputs)."""
    return [r.text for r in requests if r.kind in TASK_KINDS or r.kind == "auto"]


# ---------------------------------------------------------------- the budget

@dataclass
class TaskBudget:
    """Per-output checks against the original model's outputs (the interface ``--ratio auto`` plans with)."""

    checks: list[OutputCheck]
    synthetic: bool = False
    notes: list[str] = field(default_factory=list)

    @classmethod
    def choose(cls, names: list[str], reference: list[np.ndarray], target: Any, synthetic: bool,
               batch: int | None = None, requests: list[MetricRequest] | None = None,
               refuse_unused: bool = True) -> TaskBudget:
        """The checks for outputs ``names`` (the original's outputs ``reference`` on the search inputs): from
        ``requests`` (default: ``target.budget_metrics`` parsed) where given, else chosen from the shapes and
        values. ``target``: a TargetConfig (thresholds); ``batch``: the number of samples (finds [T, N, C]).
        ``refuse_unused``: a --budget-top1/--budget-cosine that no check reads is an error (the search's
        budget; reports that only restate it pass False)."""
        requests = parse_metric_requests(getattr(target, "budget_metrics", ())) if requests is None else requests
        known = set(names) | {f"{a}+{b}" for a in names for b in names if a != b}
        unknown = [r.text for r in requests if r.output is not None and r.output not in known]
        if unknown:
            raise OptionError(f"--budget-metric {', '.join(unknown)}: no such output; the outputs are "
                              f"{', '.join(names)} (a boxes + scores pair: BOXES+SCORES)")
        if synthetic:
            wrong = needs_real_inputs(requests)
            if wrong:
                raise OptionError(f"--budget-metric {', '.join(wrong)}: task metrics need real inputs (--data); "
                                  "on synthetic inputs outputs are compared by cosine or snr")
        chooser = _Chooser(names, reference, target, synthetic, batch)
        checks = chooser.checks(requests)
        if refuse_unused and not synthetic:
            _refuse_unused_thresholds(target, checks)
        notes = ["synthetic inputs: decoded answers (classes, boxes, strings) mean little on noise, so every output "
                 "is compared by cosine"] if synthetic else []
        return cls(checks, synthetic, notes)

    def measure(self, reference: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float]:
        """One figure per check (key ``kind:output``) and ``margin``: the smallest (figure - threshold) in units
        of the disagreement the threshold allows (1 - threshold for shares and cosine, 10 dB for SNR), so >= 0
        means every check is met."""
        figures: dict[str, float] = {}
        margin = math.inf
        for c in self.checks:
            metric = METRICS[c.kind]
            value = float(metric.measure([reference[i] for i in c.indices], [outputs[i] for i in c.indices], c.spec))
            figures[c.key] = value
            unit = metric.unit if metric.unit is not None else max(1.0 - c.threshold, 1e-6)
            margin = min(margin, (value - c.threshold) / unit if math.isfinite(value) else -math.inf)  # NaN: worst
        figures["margin"] = margin if math.isfinite(margin) else (0.0 if margin > 0 else -1e9)
        return figures

    def met(self, measured: dict[str, float]) -> bool:
        return all(measured.get(c.key, -math.inf) >= c.threshold for c in self.checks)

    def passed(self, measured: dict[str, float]) -> bool | None:
        """validate's verdict: None when no check was stated (--budget-metric), else whether all stated met."""
        stated = [c for c in self.checks if c.stated]
        return None if not stated else all(measured.get(c.key, -math.inf) >= c.threshold for c in stated)

    def describe(self) -> str:
        parts = [f"{METRICS[c.kind].says} >= {c.threshold:g} on {c.output} ({c.why})" for c in self.checks]
        return "; ".join(parts + self.notes)

    def headline(self, measured: dict[str, float]) -> str:
        return ", ".join(f"{c.kind} {c.output} {_fmt(measured.get(c.key))}" for c in self.checks)

    def rows(self, measured: dict[str, float]) -> list[dict]:
        """One dict per check for reports (JSON-safe)."""
        return [{"output": c.output, "kind": c.kind, "says": METRICS[c.kind].says, "value": measured.get(c.key),
                 "threshold": c.threshold, "passed": measured.get(c.key, -math.inf) >= c.threshold,
                 "stated": c.stated, "why": c.why} for c in self.checks]


def _refuse_unused_thresholds(target: Any, checks: list[OutputCheck]) -> None:
    """--budget-top1 / --budget-cosine given (not at their default) while no check uses them."""
    from dataclasses import fields

    defaults = {f.name: f.default for f in fields(target)} if hasattr(target, "__dataclass_fields__") else {}
    for option, kinds in (("budget_top1", ("top1", "topk")), ("budget_cosine", ("cosine",))):
        if option in defaults and getattr(target, option) != defaults[option] and not any(
                c.kind in kinds and c.threshold == getattr(target, option) for c in checks):
            raise OptionError(f"--{option.replace('_', '-')} is the threshold of {' and '.join(kinds)} checks, and "
                              f"none uses it here; the budget is: "
                              + "; ".join(f"{c.kind} >= {c.threshold:g} on {c.output}" for c in checks))


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


class _Chooser:
    """Builds the checks for one model's outputs: requested kinds first, the automatic choice elsewhere."""

    def __init__(self, names: list[str], reference: list[np.ndarray], target: Any, synthetic: bool,
                 batch: int | None) -> None:
        self.names, self.reference, self.target, self.synthetic, self.batch = names, reference, target, synthetic, batch
        self.probabilities = [n for n, a in zip(names, reference) if np.issubdtype(a.dtype, np.floating)
                              and classifier_shaped(a.shape) and _is_probability(a.reshape(a.shape[0], -1))]

    def threshold(self, kind: str, given: float | None) -> float:
        if given is not None:
            return given
        if kind == "cosine" and self.synthetic:
            return float(getattr(self.target, "budget_synthetic_cosine", 0.94))
        default = METRICS[kind].default
        return float(getattr(self.target, default, 0.99)) if isinstance(default, str) else float(default)

    def checks(self, requests: list[MetricRequest]) -> list[OutputCheck]:
        per_output = {r.output: r for r in requests if r.output is not None}
        default = next((r for r in requests if r.output is None and r.kind != "auto"), None)
        stated_auto = any(r.kind == "auto" and r.output is None for r in requests)
        done: set[int] = set()
        checks: list[OutputCheck] = []
        # requested pairs first: they consume two outputs
        for name, r in per_output.items():
            if "+" in name and name not in self.names and r.kind != "auto":
                a, b = (self.names.index(n) for n in name.split("+", 1))
                checks.append(self.pair_check(r, a, b))
                done |= {a, b}
        if default is None and not self.synthetic:
            for check in self.auto_pairs(done, stated_auto):
                checks.append(check)
                done |= set(check.indices)
        for i, name in enumerate(self.names):
            if i in done:
                continue
            r = per_output.get(name) or default
            if r is None or r.kind == "auto":  # auto:OUTPUT: the chosen kind here, whatever the default says
                checks.append(self.auto(i, stated=stated_auto or r is not None))
            else:
                checks.append(self.forced(i, r, stated=True))
        if default is not None and default.kind in TASK_KINDS:
            fitted = [c for c in checks if c.kind == default.kind]
            if not fitted:
                raise OptionError(f"--budget-metric {default.text}: no output can be read as {default.kind}")
        return sorted(checks, key=lambda c: c.indices)

    def forced(self, i: int, r: MetricRequest, stated: bool) -> OutputCheck:
        a, name = self.reference[i], self.names[i]
        if r.output is None and r.kind in TASK_KINDS:  # a kind for every output: where it fits
            try:
                kind, (spec, why) = _reading(r.kind, a, False, self.batch, r.k)
            except _NotThis:
                return self.auto(i, stated=stated)
        else:
            try:
                kind, (spec, why) = _reading(r.kind, a, True, self.batch, r.k)
            except _NotThis as exc:
                raise OptionError(f"--budget-metric {r.text}: output '{name}' cannot be read as {r.kind}: {exc}") \
                    from None
        return OutputCheck(name, kind, self.threshold(kind, r.threshold), f"{why} (--budget-metric {r.text})",
                           (i,), spec, stated)

    def auto(self, i: int, stated: bool) -> OutputCheck:
        a, name = self.reference[i], self.names[i]
        if not self.synthetic and not np.issubdtype(a.dtype, np.floating) and a.size:
            spec, why = read_exact(a, False)
            return OutputCheck(name, "equal", self.threshold("equal", None), why, (i,), spec, stated)
        if self.synthetic or not np.issubdtype(a.dtype, np.floating) or a.ndim == 0 or a.size == 0:
            why = ("synthetic inputs" if self.synthetic else f"{_shape(a)} {a.dtype}") + ": cosine of the whole output"
            return OutputCheck(name, "cosine", self.threshold("cosine", None), why, (i,), Rows(None), stated)
        skipped = []
        for kind in AUTO_ORDER:
            beside = next((n for n in self.probabilities if n != name), None)
            try:
                got, (spec, why) = _reading(kind, a, False, self.batch, beside=beside)
            except _NotThis as exc:
                if kind == "top1" and "classifier-shaped" not in str(exc):  # the shape fits, the values not
                    skipped.append(str(exc))
                continue
            check = OutputCheck(name, got, self.threshold(got, None), why, (i,), spec, stated)
            if got in ("detection", "regions") and self.vacuous(check):  # no other task reading either
                return OutputCheck(name, "cosine", self.threshold("cosine", None),
                                   f"{why}; but the reference has none: decoded agreement would hold whatever "
                                   "changes, so cosine of the whole output", (i,), Rows(None), stated)
            if skipped:
                check = OutputCheck(name, got, check.threshold, f"{why} ({'; '.join(skipped)})", (i,), spec, stated)
            return check
        raise AssertionError("read_whole reads every output")

    def pair_check(self, r: MetricRequest, a: int, b: int) -> OutputCheck:
        if r.kind != "detection":
            raise OptionError(f"--budget-metric {r.text}: a pair of outputs (BOXES+SCORES) is read as detection only")
        try:
            spec, why = read_pair(self.reference[a], self.reference[b], True)
        except _NotThis as exc:
            raise OptionError(f"--budget-metric {r.text}: {exc}") from None
        return OutputCheck(r.output or "", "detection", self.threshold("detection", r.threshold),
                           f"{why} (--budget-metric {r.text})", (a, b), spec, True)

    def auto_pairs(self, done: set[int], stated: bool) -> list[OutputCheck]:
        """Boxes [N, A, 4] next to scores [N, A, C] with the same N and A."""
        out = []
        for a, boxes in enumerate(self.reference):
            if a in done or boxes.ndim != 3 or boxes.shape[2] != 4:
                continue
            for b, scores in enumerate(self.reference):
                if b == a or b in done or scores.shape[:2] != boxes.shape[:2] or scores.ndim not in (2, 3):
                    continue
                try:
                    spec, why = read_pair(boxes, scores, False)
                except _NotThis:
                    continue
                check = OutputCheck(f"{self.names[a]}+{self.names[b]}", "detection", self.threshold("detection", None),
                                    why, (a, b), spec, stated)
                if self.vacuous(check):
                    continue
                out.append(check)
                done |= {a, b}
                break
        return out

    def vacuous(self, check: OutputCheck) -> bool:
        """A detection (or region) check whose reference has none at all would always pass."""
        if check.kind == "regions":
            ref = self.reference[check.indices[0]]
            return not any(len(map_regions(m.reshape(m.shape[-2:]), check.spec).scores) for m in ref)
        dets = decode_detections([self.reference[i] for i in check.indices], check.spec)
        return not any(len(d.scores) for d in dets)
