"""How two versions of one output agree, kind by kind (vectorised numpy): top-k agreement, decoded
detections (score level, class-wise NMS, IoU matching), CTC strings, probability-map regions, identical
values, cosine and SNR; ``METRICS`` maps each kind to its measure. ``validate.tasks`` chooses which kind reads
which output."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("top1", "topk", "detection", "ctc", "regions", "mask", "equal", "cosine", "snr")
# Kinds that read the task's answers; on noise inputs they measure nothing.
TASK_KINDS = ("top1", "topk", "detection", "ctc", "regions", "mask", "equal")
DEFAULT_AGREEMENT = 0.99  # detection F1, CTC strings, mask IoU
DEFAULT_SNR_DB = 20.0
DEFAULT_TOPK = 5
SCORE_LEVEL = 0.25  # detection score level, on the [0, 1] scale of the reference's scores
MATCH_IOU = 0.5  # a pruned detection matches a reference detection of the same class at this IoU
NMS_IOU = 0.5
MAX_CANDIDATES = 1000  # per image, before NMS (highest scores first)
MAX_DETECTIONS = 300  # per image, after NMS
MAP_LEVEL = 0.3  # DBNet's binarisation level: text regions are p > 0.3
REGION_SCORE = 0.6  # DBNet (PaddleOCR) keeps a region whose mean probability reaches 0.6
REGION_MIN_SIDE = 3  # ... and whose box is at least 3 pixels on its shorter side
BLANK_SHARE = 0.2  # a CTC output's blank is the argmax of at least this share of steps
SNR_CAP_DB = 300.0  # identical outputs: a finite figure (JSON has no infinity)


# ---------------------------------------------------------------- how each kind reads its output(s)

@dataclass(frozen=True)
class TopK:
    k: int = 1


@dataclass(frozen=True)
class Sequences:
    time_major: bool  # [T, N, C] instead of [N, T, C]
    blank: int


@dataclass(frozen=True)
class Rows:
    """Cosine over rows of the last ``dims`` axes (``dims`` None: the whole output is one vector)."""
    dims: int | None = None


@dataclass(frozen=True)
class Head:
    """A detection head, or a boxes + scores pair (``pair``: boxes [N, A, 4] first, scores second)."""
    anchors_last: bool = False  # [N, F, A] (YOLOv8) instead of [N, A, F]
    objectness: bool = False  # column 4 is objectness, classes from column 5 (YOLOv5 / YOLOX)
    corners: bool = False  # boxes are (x0, y0, x1, y1), not (cx, cy, w, h)
    grid: int = 0  # raw YOLOX boxes (cell offsets, log sizes) on a square grid of this many cells at stride 32
    sigmoid: bool = False  # scores are logits
    background: bool = False  # class 0 of softmax scores is background
    pair: bool = False


@dataclass(frozen=True)
class Map:
    level: float = MAP_LEVEL
    score: float = REGION_SCORE
    min_side: int = REGION_MIN_SIDE


# ---------------------------------------------------------------- the measures (vectorised numpy)

def topk_agreement(ref: np.ndarray, out: np.ndarray, k: int = 1) -> float:
    """Share of samples whose reference argmax is among the pruned model's k highest."""
    r, o = ref.reshape(ref.shape[0], -1), out.reshape(out.shape[0], -1)
    if k == 1:
        return float(np.mean(r.argmax(1) == o.argmax(1)))
    top = np.argpartition(-o, min(k, o.shape[1]) - 1, axis=1)[:, :k]
    return float(np.mean((top == r.argmax(1)[:, None]).any(1)))


def wilson_interval(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a share measured on ``n`` independent units: how far the true share on new
    inputs may lie from it (all 32 of 32 agreeing still allows 0.893)."""
    if n <= 0:
        return 0.0, 1.0
    centre, half = share + z * z / (2 * n), z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return float(max(0.0, (centre - half) / (1 + z * z / n))), float(min(1.0, (centre + half) / (1 + z * z / n)))


SHARE_KINDS = ("top1", "topk", "ctc")  # figures that are shares of samples


def ctc_strings(logits: np.ndarray, blank: int = 0, time_major: bool = False) -> list[tuple[int, ...]]:
    """Greedy CTC decoding: per sequence the argmax per step, repeats collapsed, blanks dropped."""
    best = logits.argmax(-1)
    if time_major:
        best = best.T
    prev = np.concatenate([np.full((best.shape[0], 1), -1), best[:, :-1]], axis=1)
    keep = (best != prev) & (best != blank)
    return [tuple(row[m].tolist()) for row, m in zip(best, keep)]


def ctc_agreement(ref: np.ndarray, out: np.ndarray, spec: Sequences) -> float:
    a, b = ctc_strings(ref, spec.blank, spec.time_major), ctc_strings(out, spec.blank, spec.time_major)
    return float(np.mean([x == y for x, y in zip(a, b)]))


def mask_iou(ref: np.ndarray, out: np.ndarray, level: float = MAP_LEVEL) -> float:
    """Mean over samples of the IoU of the regions above ``level`` (1 where both are empty)."""
    r = ref.reshape(ref.shape[0], -1) > level
    o = out.reshape(out.shape[0], -1) > level
    inter, union = (r & o).sum(1), (r | o).sum(1)
    return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))


def row_cosine(ref: np.ndarray, out: np.ndarray, dims: int | None = None) -> float:
    """Mean cosine over rows of the last ``dims`` axes; ``dims`` None: one cosine over the whole output."""
    width = ref[0].size if dims is None and ref.ndim else int(np.prod(ref.shape[ref.ndim - (dims or 0):]))
    r = ref.astype(np.float64).reshape(-1, max(width, 1)) if dims else ref.astype(np.float64).reshape(1, -1)
    o = out.astype(np.float64).reshape(r.shape)
    nr, no = np.linalg.norm(r, axis=1), np.linalg.norm(o, axis=1)
    both = (nr > 0) & (no > 0)
    cos = np.where(both, (r * o).sum(1) / np.where(both, nr * no, 1.0), (nr == no).astype(float))
    return float(cos.mean()) if cos.size else 1.0


def equal_share(ref: np.ndarray, out: np.ndarray) -> float:
    """Share of the values that are identical: labels, indices and token ids are right or wrong (a class
    index 3 -> 4 barely moves a cosine)."""
    return float(np.mean(ref == out)) if ref.size else 1.0


def snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    r, o = ref.astype(np.float64).ravel(), out.astype(np.float64).ravel()
    noise, signal = float(np.square(r - o).sum()), float(np.square(r).sum())
    if noise == 0:
        return SNR_CAP_DB
    return -SNR_CAP_DB if signal == 0 else min(SNR_CAP_DB, 10 * math.log10(signal / noise))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of corner boxes a [P, 4] and b [R, 4]: [P, R]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


@dataclass
class Detections:
    """One image's decoded detections: corner boxes [K, 4], scores [K], classes [K], best first."""
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float = NMS_IOU) -> Detections:
    """Class-wise greedy NMS over the MAX_CANDIDATES best; at most MAX_DETECTIONS kept."""
    order = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
    b, c = boxes[order], classes[order]
    overlap = (box_iou(b, b) >= iou) & (c[:, None] == c[None, :])
    keep = np.ones(len(order), dtype=bool)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1:] &= ~overlap[i, i + 1:]
    kept = order[keep][:MAX_DETECTIONS]
    return Detections(boxes[kept], scores[kept], classes[kept])


def _yolox_grid(cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres and strides of a square YOLOX head with ``cells`` x ``cells`` cells at stride 32
    (levels at strides 8, 16, 32, in that order)."""
    grids, strides = [], []
    for scale, stride in ((4, 8), (2, 16), (1, 32)):
        n = cells * scale
        xv, yv = np.meshgrid(np.arange(n), np.arange(n))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((n * n, 1), stride))
    return np.concatenate(grids).astype(np.float64), np.concatenate(strides).astype(np.float64)


def _head_arrays(arrays: list[np.ndarray], spec: Head) -> tuple[np.ndarray, np.ndarray]:
    """Corner boxes [N, A, 4] and class scores [N, A, C] on a [0, 1] scale."""
    if spec.pair:
        boxes = arrays[0].astype(np.float64)
        scores = arrays[1].astype(np.float64)
        scores = scores[..., None] if scores.ndim == 2 else scores
    else:
        head = arrays[0].astype(np.float64)
        head = np.swapaxes(head, 1, 2) if spec.anchors_last else head
        boxes = head[..., :4]
        scores = head[..., 5:] * head[..., 4:5] if spec.objectness else head[..., 4:]
    if spec.sigmoid:
        scores = 1 / (1 + np.exp(-scores))
    if spec.background:
        scores = scores[..., 1:]
    if spec.grid:
        centre, stride = _yolox_grid(spec.grid)
        xy = (boxes[..., :2] + centre) * stride
        wh = np.exp(np.clip(boxes[..., 2:4], -20, 20)) * stride
        boxes = np.concatenate([xy, wh], -1)
    if not spec.corners:
        boxes = np.concatenate([boxes[..., :2] - boxes[..., 2:4] / 2, boxes[..., :2] + boxes[..., 2:4] / 2], -1)
    return boxes, scores


def decode_detections(arrays: list[np.ndarray], spec: Head, level: float = SCORE_LEVEL) -> list[Detections]:
    """Per image: each anchor's best class where its score reaches ``level``, then class-wise NMS."""
    boxes, scores = _head_arrays(arrays, spec)
    best, cls = scores.max(-1), scores.argmax(-1)
    out = []
    for n in range(boxes.shape[0]):
        keep = best[n] >= level
        out.append(nms(boxes[n][keep], best[n][keep], cls[n][keep]))
    return out


def matched(ref: Detections, out: Detections, iou: float = MATCH_IOU) -> int:
    """Pruned detections (best first) matched one-to-one to the unmatched reference detection of the same
    class with the highest IoU >= ``iou``."""
    if not len(ref.scores) or not len(out.scores):
        return 0
    overlap = box_iou(out.boxes, ref.boxes) * (out.classes[:, None] == ref.classes[None, :])
    free = np.ones(len(ref.scores), dtype=bool)
    hits = 0
    for row in overlap:  # out is sorted best first by nms
        cand = np.where(free, row, -1.0)
        j = int(cand.argmax())
        if cand[j] >= iou:
            free[j] = False
            hits += 1
    return hits


def detection_f1(ref: list[np.ndarray], out: list[np.ndarray], spec: Head) -> float:
    """F1 of the pruned model's decoded detections against the reference's, pooled over images (1 when
    neither has any)."""
    a, b = decode_detections(ref, spec), decode_detections(out, spec)
    hits = sum(matched(x, y) for x, y in zip(a, b))
    total = sum(len(x.scores) + len(y.scores) for x, y in zip(a, b))
    return 1.0 if total == 0 else 2 * hits / total


def map_regions(prob: np.ndarray, spec: Map) -> Detections:
    """A DBNet-style post-processor's regions of one [H, W] map: connected components above ``spec.level``
    whose mean probability reaches ``spec.score`` and whose box is at least ``spec.min_side`` pixels on its
    shorter side, as corner boxes (one class)."""
    from scipy import ndimage

    labels, count = ndimage.label(prob > spec.level)
    if count == 0:
        return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int))
    slices = ndimage.find_objects(labels)
    boxes = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=np.float64)
    scores = np.asarray(ndimage.mean(prob, labels, index=np.arange(1, count + 1)), dtype=np.float64)
    keep = (scores >= spec.score) & (np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= spec.min_side)
    order = np.argsort(-scores[keep], kind="stable")
    return Detections(boxes[keep][order], scores[keep][order], np.zeros(int(keep.sum()), dtype=int))


def region_f1(ref: np.ndarray, out: np.ndarray, spec: Map) -> float:
    """F1 of the pruned map's regions against the reference's (boxes matched by IoU >= 0.5), pooled over
    samples; 1 when neither has any."""
    a = [map_regions(m.reshape(m.shape[-2:]), spec) for m in ref]
    b = [map_regions(m.reshape(m.shape[-2:]), spec) for m in out]
    hits = sum(matched(x, y) for x, y in zip(a, b))
    total = sum(len(x.scores) + len(y.scores) for x, y in zip(a, b))
    return 1.0 if total == 0 else 2 * hits / total


@dataclass(frozen=True)
class Metric:
    """One kind: its measure over the check's arrays, its default threshold (a TargetConfig field or a
    number), the scale of one unit of margin, and what it says."""
    measure: Callable[[list[np.ndarray], list[np.ndarray], Any], float]
    default: str | float
    unit: float | None  # None: 1 - threshold (the share of disagreement allowed)
    says: str


METRICS: dict[str, Metric] = {
    "top1": Metric(lambda r, o, s: topk_agreement(r[0], o[0], 1), "budget_top1", None, "top-1 agreement"),
    "topk": Metric(lambda r, o, s: topk_agreement(r[0], o[0], s.k), "budget_top1", None, "top-k agreement"),
    "detection": Metric(detection_f1, DEFAULT_AGREEMENT, None, "decoded-detection F1"),
    "ctc": Metric(lambda r, o, s: ctc_agreement(r[0], o[0], s), DEFAULT_AGREEMENT, None, "same decoded string"),
    "regions": Metric(lambda r, o, s: region_f1(r[0], o[0], s), DEFAULT_AGREEMENT, None, "map-region F1"),
    "mask": Metric(lambda r, o, s: mask_iou(r[0], o[0], s.level), DEFAULT_AGREEMENT, None, "map pixel IoU"),
    "equal": Metric(lambda r, o, s: equal_share(r[0], o[0]), DEFAULT_AGREEMENT, None, "share of identical values"),
    "cosine": Metric(lambda r, o, s: row_cosine(r[0], o[0], s.dims), "budget_cosine", None, "cosine"),
    "snr": Metric(lambda r, o, s: snr_db(r[0], o[0]), DEFAULT_SNR_DB, 10.0, "SNR dB"),
}
