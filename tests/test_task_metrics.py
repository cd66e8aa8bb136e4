"""Task-aware agreement (onnxprune.validate.tasks): each measure on arrays with known answers, the choice of
kind from shapes and values, --budget-metric's syntax and refusals through the real CLI, validate's verdict."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.config import TargetConfig
from onnxprune.errors import OptionError
from onnxprune.validate.measures import (
    Head,
    ctc_agreement,
    ctc_strings,
    detection_f1,
    equal_share,
    mask_iou,
    row_cosine,
    snr_db,
    topk_agreement,
    wilson_interval,
)
from onnxprune.validate.tasks import TaskBudget, parse_metric_requests

A = 64  # anchors of the synthetic detection heads
CLASSES = 3


def yolo_head(boxes: list[list[tuple]], anchors: int = A, classes: int = CLASSES, seed: int = 0) -> np.ndarray:
    """[N, 4 + classes, anchors] (YOLOv8 layout): per image the given (cx, cy, w, h, class, score) at the first
    anchors, every other anchor a small box scoring below 0.1."""
    rng = np.random.default_rng(seed)
    head = np.zeros((len(boxes), 4 + classes, anchors), np.float32)
    head[:, :2] = rng.uniform(20, 300, (len(boxes), 2, anchors))
    head[:, 2:4] = rng.uniform(5, 20, (len(boxes), 2, anchors))
    head[:, 4:] = rng.uniform(0, 0.1, (len(boxes), classes, anchors))
    for n, image in enumerate(boxes):
        for a, (cx, cy, w, h, cls, score) in enumerate(image):
            head[n, :4, a] = (cx, cy, w, h)
            head[n, 4:, a] = 0.01
            head[n, 4 + cls, a] = score
    return head


REF_BOXES = [[(100, 100, 40, 40, 0, 0.9), (200, 100, 40, 40, 1, 0.8)],
             [(50, 60, 30, 30, 2, 0.7), (250, 250, 60, 40, 0, 0.95)]]


def test_detection_f1_drops_when_one_box_moves_beyond_iou_half():
    ref = yolo_head(REF_BOXES)
    spec = Head(anchors_last=True)
    assert detection_f1([ref], [ref], spec) == 1.0
    # a shift of 10 px on a 40 px box: IoU 30*40/(2*1600-1200) = 0.6 >= 0.5, still a match
    near = yolo_head([[(110, 100, 40, 40, 0, 0.9), REF_BOXES[0][1]], REF_BOXES[1]])
    assert detection_f1([ref], [near], spec) == 1.0
    # a shift of 20 px: IoU 20*40/(3200-800) = 1/3 < 0.5: 3 of 4 detections match on each side, F1 = 2*3/(4+4)
    moved = yolo_head([[(120, 100, 40, 40, 0, 0.9), REF_BOXES[0][1]], REF_BOXES[1]])
    assert detection_f1([ref], [moved], spec) == pytest.approx(0.75)
    # same place, another class: no match either
    relabelled = yolo_head([REF_BOXES[0], [(50, 60, 30, 30, 1, 0.7), REF_BOXES[1][1]]])
    assert detection_f1([ref], [relabelled], spec) == pytest.approx(0.75)
    # a box that falls below the score level is missed: 3 matches, 4 + 3 detections
    faded = yolo_head([[REF_BOXES[0][0], (200, 100, 40, 40, 1, 0.2)], REF_BOXES[1]])
    assert detection_f1([ref], [faded], spec) == pytest.approx(6 / 7)


def test_nms_keeps_one_of_two_overlapping_boxes_of_a_class_but_both_of_two_classes():
    dup = yolo_head([[(100, 100, 40, 40, 0, 0.9), (102, 100, 40, 40, 0, 0.6)]])
    one = yolo_head([[(100, 100, 40, 40, 0, 0.9)]])
    spec = Head(anchors_last=True)
    assert detection_f1([one], [dup], spec) == 1.0  # the duplicate is suppressed
    two_classes = yolo_head([[(100, 100, 40, 40, 0, 0.9), (102, 100, 40, 40, 1, 0.6)]])
    assert detection_f1([one], [two_classes], spec) == pytest.approx(2 / 3)


def test_empty_detections_on_both_sides_agree():
    empty = yolo_head([[], []])
    assert detection_f1([empty], [empty], Head(anchors_last=True)) == 1.0


def test_ctc_strings_collapse_repeats_and_drop_blanks():
    steps = np.array([[1, 1, 0, 1, 2, 2, 0, 0]])
    logits = np.eye(4)[steps]  # [1, 8, 4]
    assert ctc_strings(logits) == [(1, 1, 2)]
    assert ctc_strings(logits.transpose(1, 0, 2), time_major=True) == [(1, 1, 2)]
    assert ctc_strings(logits, blank=3) == [(1, 0, 1, 2, 0)]


def test_ctc_agreement_is_the_share_of_sequences_decoded_alike():
    rng = np.random.default_rng(0)
    steps = np.array([[1, 0, 2, 2, 0, 3], [4, 4, 0, 1, 0, 0], [2, 0, 3, 0, 1, 0], [0, 0, 0, 1, 1, 0]])
    ref = np.eye(5)[steps] + rng.uniform(0, 0.1, (4, 6, 5))
    out = ref.copy()
    out[2, 1] = np.eye(5)[4] * 2  # one blank of sequence 2 becomes class 4: "2 3 1" -> "2 4 3 1"
    out[3, 4] = np.eye(5)[0] * 2  # "1 1" collapses to 1 either way: sequence 3 decodes alike
    assert ctc_strings(out)[2:] == [(2, 4, 3, 1), (1,)]
    from onnxprune.validate.measures import Sequences

    assert ctc_agreement(ref, out, Sequences(False, 0)) == 0.75
    assert ctc_agreement(ref, ref * 3, Sequences(False, 0)) == 1.0


def test_topk_agreement():
    ref = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0], [0.0, 0.0, 1.0]])
    out = np.array([[3.0, 1.0, 0.0], [0.0, 1.0, 2.0], [1.0, 0.0, 2.0], [0.0, 0.0, 1.0]])
    assert topk_agreement(ref, out, 1) == 0.75
    assert topk_agreement(ref, out, 2) == 1.0


def test_cosine_and_snr():
    ref = np.array([[1.0, 0.0], [0.0, 2.0]])
    out = np.array([[1.0, 1.0], [0.0, 3.0]])
    assert row_cosine(ref, out, 1) == pytest.approx((1 / np.sqrt(2) + 1) / 2)
    assert row_cosine(ref, out, None) == pytest.approx(7 / (np.sqrt(5) * np.sqrt(11)))
    assert snr_db(ref, out) == pytest.approx(10 * np.log10(5 / 2))
    assert snr_db(ref, ref) == 300.0


def test_mask_iou_of_the_regions_above_the_level():
    ref = np.zeros((2, 1, 4, 4))
    ref[0, 0, :2] = 0.9  # 8 pixels
    out = ref.copy()
    out[0, 0, 2, :2] = 0.5  # 2 more: IoU 8/10; image 1 empty on both sides: 1
    assert mask_iou(ref, out) == pytest.approx((0.8 + 1.0) / 2)
    assert mask_iou(ref, ref * 0.5) == 1.0  # 0.45 is still text
    assert mask_iou(ref, ref * 0.3) == pytest.approx((0.0 + 1.0) / 2)  # 0.27 is not


def test_region_f1_matches_the_boxes_a_text_detector_would_cut():
    from onnxprune.validate.measures import Map, region_f1

    ref = np.zeros((2, 1, 32, 32))
    ref[0, 0, 2:8, 2:20] = 0.9  # a text line
    ref[0, 0, 12:18, 2:20] = 0.9  # another
    ref[1, 0, 20:26, 5:30] = 0.8
    spec = Map()
    assert region_f1(ref, ref, spec) == 1.0
    thinner = ref.copy()
    thinner[0, 0, 2, 2:20] = 0.1  # one row less: IoU 5/6, the same boxes
    assert region_f1(ref, thinner, spec) == 1.0
    merged = ref.copy()
    merged[0, 0, 8:12, 2:20] = 0.9  # the two lines of image 0 run into one: 1 of 3 regions matches on each side
    assert region_f1(ref, merged, spec) == pytest.approx(2 * 1 / (3 + 2))
    faint = ref.copy()
    faint[1] *= 0.6  # mean 0.48 < 0.6: the post-processor drops it
    assert region_f1(ref, faint, spec) == pytest.approx(2 * 2 / (3 + 2))
    specks = ref.copy()
    specks[1, 0, 0:2, 0:2] = 0.9  # 2 px: below the minimum side, not a region
    assert region_f1(ref, specks, spec) == 1.0


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def chosen(*outputs: np.ndarray, batch: int | None = None, **target) -> list:
    names = [f"o{i}" for i in range(len(outputs))]
    return TaskBudget.choose(names, list(outputs), TargetConfig(**target), False, batch=batch).checks


def test_choice_by_shape_and_values():
    rng = np.random.default_rng(0)
    probs = softmax(rng.standard_normal((8, 10)) * 3)
    (c,) = chosen(probs)
    assert c.kind == "top1" and c.threshold == 0.99 and "classifier, 10 classes" in c.why
    (c,) = chosen(probs[:, :, None, None], budget_top1=0.95)
    assert c.kind == "top1" and c.threshold == 0.95
    unit = rng.standard_normal((8, 128))
    (c,) = chosen(unit / np.linalg.norm(unit, axis=1, keepdims=True))
    assert c.kind == "cosine" and "unit norm" in c.why and "row-wise" in c.why
    (c,) = chosen(rng.standard_normal((8, 384)) * 0.3)  # pooled features: a flat softmax, not class logits
    assert c.kind == "cosine" and "nearly flat" in c.why
    (c,) = chosen(rng.standard_normal((8, 16, 64)), budget_cosine=0.98)
    assert c.kind == "cosine" and "hidden states" in c.why and c.threshold == 0.98
    # per-step softmax whose argmax is mostly class 0: CTC
    steps = np.where(rng.uniform(size=(8, 40)) < 0.6, 0, rng.integers(1, 100, (8, 40)))
    ctc = softmax(np.eye(100)[steps] * 8 + rng.standard_normal((8, 40, 100)))
    (c,) = chosen(ctc)
    assert c.kind == "ctc" and "blank = class 0" in c.why and c.threshold == 0.99
    (c,) = chosen(ctc.transpose(1, 0, 2), batch=8)
    assert c.kind == "ctc" and c.spec.time_major
    (c,) = chosen(yolo_head(REF_BOXES))
    assert c.kind == "detection" and "YOLOv8" in c.why and f"{CLASSES} classes" in c.why
    v8 = yolo_head(REF_BOXES).transpose(0, 2, 1)  # [N, A, 4 + C]
    v5 = np.concatenate([v8[..., :4], v8[..., 4:].max(-1, keepdims=True), v8[..., 4:] > 0.5], -1)  # objectness
    (c,) = chosen(v5)
    assert c.kind == "detection" and c.spec.objectness and "5+C" in c.why  # anchors first: YOLOv5/YOLOX style
    assert TaskBudget.choose(["o"], [v5], TargetConfig(), False).measure([v5], [v5])["detection:o"] == 1.0
    (c,) = chosen(np.ascontiguousarray(v8))  # read with objectness, no score reaches the level: cosine
    assert c.kind == "cosine" and "the reference has none" in c.why
    text = np.zeros((2, 1, 16, 16))
    text[:, :, 4:8, 2:12] = 0.9
    (c,) = chosen(text)
    assert c.kind == "regions" and "0.3" in c.why
    text32 = text.astype(np.float32)
    text32[0, 0, 5, 5] = np.float32(1.0000001)  # onnxruntime's float32 Sigmoid can round above 1
    (c,) = chosen(text32)
    assert c.kind == "regions"
    (c,) = chosen(text * 0.2)  # no region: region agreement would hold whatever happens
    assert c.kind == "cosine" and "the reference has none" in c.why
    (c,) = chosen(rng.standard_normal((2, 1, 16, 16)))  # logits map: not a probability map
    assert c.kind == "cosine" and "whole output" in c.why
    ids = np.arange(16).reshape(2, 8)
    (c,) = chosen(ids)
    assert c.kind == "equal" and "int64" in c.why


def test_integer_labels_are_compared_value_by_value_not_by_cosine():
    labels = np.arange(100) % 7 + 1  # an ArgMax output: class indices
    moved = labels.copy()
    moved[:10] += 1  # 10 of 100 answers change: a cosine barely notices
    assert row_cosine(labels, moved) > 0.99
    assert equal_share(labels, moved) == 0.9
    b = TaskBudget.choose(["label"], [labels], TargetConfig(), False)
    assert [c.kind for c in b.checks] == ["equal"] and not b.met(b.measure([labels], [moved]))
    assert b.met(b.measure([labels], [labels.copy()]))
    with pytest.raises(OptionError, match="holds floats"):  # floats never repeat exactly
        TaskBudget.choose(["y"], [labels.astype(np.float32)], TargetConfig(), False,
                          requests=parse_metric_requests(["equal:y"]))
    with pytest.raises(OptionError, match="need real inputs"):
        TaskBudget.choose(["label"], [labels], TargetConfig(), True, requests=parse_metric_requests(["equal"]))


def test_regressions_next_to_class_probabilities_are_compared_by_cosine():
    rng = np.random.default_rng(0)
    probs, boxes, marks = softmax(rng.standard_normal((8, 2))), rng.standard_normal((8, 4)), rng.standard_normal((8, 10))
    checks = chosen(boxes, marks, probs)  # MTCNN's O-Net: box offsets, 5 landmarks, face/non-face
    assert [c.kind for c in checks] == ["cosine", "cosine", "top1"]
    assert "regression" in checks[0].why and "whole output" in checks[1].why
    (c,) = chosen(marks)  # alone, raw [N, 10] values are class logits
    assert c.kind == "top1"


def test_ambiguous_heads():
    # a detection head with no score above the level: F1 would be 1 whatever happens; cosine instead
    quiet = yolo_head([[], []])
    (c,) = chosen(quiet)
    assert c.kind == "cosine" and "the reference has none" in c.why and "whole output" in c.why
    # [N, 40, 6625]-like logits without a blank majority, columns beyond 4 not in [0, 1]: hidden states
    (c,) = chosen(np.random.default_rng(1).standard_normal((2, 12, 30)))
    assert c.kind == "cosine"
    # forced, the same array is read as asked
    with pytest.raises(OptionError, match="cannot be read as top1"):
        TaskBudget.choose(["o0"], [quiet], TargetConfig(), False, requests=parse_metric_requests(["top1:o0"]))


def test_boxes_and_scores_pair():
    rng = np.random.default_rng(0)
    centre = np.stack(np.meshgrid(np.linspace(0.1, 0.9, 5), np.linspace(0.1, 0.9, 4)), -1).reshape(1, 20, 2)
    centre = np.repeat(centre, 2, axis=0)  # 0.2 apart: no two boxes of 0.1 overlap
    boxes = np.concatenate([centre - 0.05, centre + 0.05], -1)  # corners
    logits = rng.standard_normal((2, 20, 3))
    logits[:, :3, 1] = 6  # three confident faces per image
    logits[:, 3:, 0] = 6  # the rest background (class 0)
    scores = softmax(logits)
    checks = chosen(boxes, scores)
    assert [c.kind for c in checks] == ["detection"] and checks[0].output == "o0+o1"
    assert checks[0].spec.corners and checks[0].spec.background
    b = TaskBudget.choose(["o0", "o1"], [boxes, scores], TargetConfig(), False)
    moved = boxes.copy()
    moved[0, 0] += 0.08  # IoU < 0.5: one of 6 missed on each side
    assert b.measure([boxes, scores], [moved, scores])["detection:o0+o1"] == pytest.approx(10 / 12)


def test_yolox_raw_head_is_decoded_on_its_grid():
    rng = np.random.default_rng(0)
    head = np.zeros((1, 21, 6), np.float32)  # a 32x32 input: 16 + 4 + 1 cells at strides 8, 16, 32
    head[..., :2] = rng.uniform(0, 1, (1, 21, 2))
    head[..., 2:4] = rng.uniform(-1, 1, (1, 21, 2))  # log sizes: some negative
    head[..., 4] = 0.05
    head[..., 5] = 0.9
    head[0, [0, 17], 4] = 0.95  # two objects
    (c,) = chosen(head)
    assert c.kind == "detection" and c.spec.grid == 1 and c.spec.objectness and "32x32 YOLOX grid" in c.why
    b = TaskBudget.choose(["o0"], [head], TargetConfig(), False)
    assert b.measure([head], [head])["detection:o0"] == 1.0
    drop = head.copy()
    drop[0, 17, 4] = 0.1  # the second object's objectness falls: 1 of 2 found
    assert b.measure([head], [drop])["detection:o0"] == pytest.approx(2 / 3)


def test_synthetic_inputs_compare_by_cosine_and_refuse_task_kinds():
    probs = softmax(np.random.default_rng(0).standard_normal((8, 10)))
    b = TaskBudget.choose(["y"], [probs], TargetConfig(budget_synthetic_cosine=0.9), True)
    assert [(c.kind, c.threshold) for c in b.checks] == [("cosine", 0.9)] and "noise" in b.describe()
    with pytest.raises(OptionError, match="need real inputs"):
        TaskBudget.choose(["y"], [probs], TargetConfig(), True, requests=parse_metric_requests(["top1"]))
    b = TaskBudget.choose(["y"], [probs], TargetConfig(), True, requests=parse_metric_requests(["snr=10"]))
    assert [(c.kind, c.threshold) for c in b.checks] == [("snr", 10.0)]


def test_measure_met_margin_and_headline():
    rng = np.random.default_rng(0)
    probs = softmax(rng.standard_normal((10, 4)) * 3)
    feats = rng.standard_normal((10, 6, 8))
    b = TaskBudget.choose(["p", "f"], [probs, feats], TargetConfig(), False)
    flipped = probs.copy()
    flipped[0] = flipped[0][::-1]  # one of 10 argmaxes changes (the reversed row peaks elsewhere)
    m = b.measure([probs, feats], [flipped, feats])
    assert m["top1:p"] == 0.9 and m["cosine:f"] == pytest.approx(1.0)
    assert not b.met(m) and m["margin"] == pytest.approx((0.9 - 0.99) / 0.01)
    ok = b.measure([probs, feats], [probs, feats])
    assert b.met(ok) and ok["margin"] >= 0
    assert "top1 p 0.9" in b.headline(m) and "top-1 agreement >= 0.99 on p" in b.describe()


@pytest.mark.parametrize("text, expected", [
    ("detection", [("detection", None, None)]),
    ("ctc=0.95:logits", [("ctc", 0.95, "logits")]),
    ("cosine:Identity:0", [("cosine", None, "Identity:0")]),  # the output name keeps its colons
    ("top3=0.9", [("topk", 0.9, None)]),
    ("top1,snr=25:emb", [("top1", None, None), ("snr", 25.0, "emb")]),
    ("regions=0.95,mask=0.9:map", [("regions", 0.95, None), ("mask", 0.9, "map")]),
    ("detection:boxes+scores", [("detection", None, "boxes+scores")]),
    ("auto:logits", [("auto", None, "logits")]),
    ("equal=0.95:label", [("equal", 0.95, "label")]),
])
def test_budget_metric_syntax(text, expected):
    assert [(r.kind, r.threshold, r.output) for r in parse_metric_requests([text])] == expected


@pytest.mark.parametrize("text, message", [
    ("f1", "expected KIND"), ("top1=high", "is not a number"), ("top1=1.5", "must be in [0, 1]"),
    ("auto=0.9", "auto takes no threshold"), ("top1:y,cosine:y", "both set output 'y'"), ("top0", "k >= 1"),
])
def test_budget_metric_refusals(text, message):
    with pytest.raises(OptionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_metric_requests([text])


# ---------------------------------------------------------------- through the real CLI


def test_budget_metric_refused_where_it_cannot_apply(cli, tiny_files, tmp_path):
    model, calib = tiny_files
    out = tmp_path / "o.onnx"
    cli(model, out, "--ratio", "0.5", "--budget-metric", "top1").assert_refused("--budget-metric", "--ratio auto")
    cli(model, out, "--ratio", "auto", "--budget-metric", "top1").assert_refused("synthetic", "--data")
    cli(model, out, "--ratio", "auto", "--data", calib, "--budget-metric", "auto").assert_refused("auto:OUTPUT")
    cli(model, out, "--ratio", "auto", "--data", calib, "--budget-metric", "mAP").assert_refused("expected KIND")
    cli(model, out, "--ratio", "auto", "--data", calib, "--budget-metric", "top1:logits").assert_refused(
        "no such output", "the outputs are y")
    cli(model, out, "--ratio", "auto", "--data", calib, "--budget-metric", "ctc").assert_refused(
        "no output can be read as ctc")
    # the model's one output is a classifier: a cosine threshold would be read by nothing
    cli(model, out, "--ratio", "auto", "--data", calib, "--budget-cosine", "0.9").assert_refused(
        "--budget-cosine", "none uses it", "top1 >= 0.99 on y")
    assert not out.exists()


def test_auto_budgets_with_the_stated_metric(cli, tiny_files, tmp_path):
    model, calib = tiny_files
    report = tmp_path / "r.json"
    res = cli(model, tmp_path / "o.onnx", "--ratio", "auto", "--data", calib, "--budget-metric", "cosine=0.9:y",
              "--report", report, "--quiet")
    assert res.code == 0, res.err
    auto = json.loads(report.read_text())["auto"]
    assert [(c["kind"], c["threshold"]) for c in auto["checks"]] == [("cosine", 0.9)]
    assert "--budget-metric cosine=0.9:y" in auto["budget"]
    assert all(t["within_budget"] == (t["cosine:y"] >= 0.9) for t in auto["search"])


def shift_model(head: np.ndarray, delta: np.ndarray) -> onnx.ModelProto:
    """y = x + delta on x of the head's shape: a 'pruned' model whose outputs differ by delta."""
    shape = ["N", *head.shape[1:]]
    graph = helper.make_graph([helper.make_node("Add", ["x", "d"], ["y"])], "shift",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                              [numpy_helper.from_array(delta.astype(np.float32), "d")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_validate_reports_detection_agreement_and_exits_1_below_a_stated_threshold(cli, tmp_path):
    ref = yolo_head(REF_BOXES)
    moved = yolo_head([[(120, 100, 40, 40, 0, 0.9), REF_BOXES[0][1]], REF_BOXES[1]])
    a, b, data = tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "heads.npz"
    onnx.save(shift_model(ref, np.zeros_like(ref[:1])), a)
    onnx.save(shift_model(ref, (moved - ref)[:1]), b)  # moves the first image's box in every sample
    np.savez(data, x=ref[:1])
    common = ("validate", a, b, "--data", data, "--no-latency", "--json", tmp_path / "v.json")
    res = cli(*common)
    assert res.code == 0, res.err  # reported, not enforced
    task = json.loads((tmp_path / "v.json").read_text())["validation"]["task"]
    (check,) = task["checks"]
    assert check["kind"] == "detection" and check["value"] == pytest.approx(0.5) and not check["passed"]
    assert not task["binding"] and "low" in cli(*common[:-2]).out
    assert cli(*common, "--budget-metric", "detection=0.4").code == 0
    res = cli(*common, "--budget-metric", "detection")
    assert res.code == 1 and json.loads((tmp_path / "v.json").read_text())["passed"] is False
    res = cli(*common[:-2], "--budget-metric", "cosine=0.5")  # the raw cosine stays high: passes
    assert res.code == 0 and "pass" in res.out
    cli(*common, "--budget-metric", "top1").assert_refused("no output can be read as top1")
    cli(*common, "--budget-metric", "top1:y").assert_refused("cannot be read as top1", "classifier-shaped")


def test_validate_refuses_task_metrics_on_noise(cli, tiny_files):
    model, _ = tiny_files
    cli("validate", model, model, "--no-latency", "--budget-metric", "top1").assert_refused("synthetic", "--data")
    assert cli("validate", model, model, "--no-latency", "--budget-metric", "cosine=0.99").code == 0


def test_python_api_takes_budget_metrics(tiny_files):
    import onnxprune

    model, calib = tiny_files
    _, report = onnxprune.prune(model, ratio="auto", data=calib, budget_metrics=["snr=3:y"], validate=False)
    assert [(c["kind"], c["threshold"]) for c in report["auto"]["checks"]] == [("snr", 3.0)]
    with pytest.raises(OptionError, match="--ratio auto"):
        onnxprune.prune(model, ratio=0.5, budget_metrics="snr")


def test_the_wilson_interval_says_how_little_a_few_samples_can_tell():
    # every one of n agreeing: the lower end is n / (n + z^2); 32 samples cannot tell 0.99 from 0.9
    assert wilson_interval(1.0, 32)[0] == pytest.approx(32 / (32 + 1.96 ** 2)) and wilson_interval(1.0, 32)[0] < 0.9
    assert wilson_interval(1.0, 32)[1] == 1.0
    low, high = wilson_interval(0.5, 100)  # the textbook case
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0.0, 0) == (0.0, 1.0)
