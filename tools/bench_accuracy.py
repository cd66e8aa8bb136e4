"""Accuracy versus FLOPs removed: onnxprune's data-free criteria against Torch-Pruning's L1 pruner.

Models: the bundled trained digits models (``models/digits_cnn.onnx``, ``models/digits_resnet.onnx``,
torch weights ``models/<name>.pt``), top-1 accuracy on ``models/digits_test.npz`` (450 samples, so
one sample is 0.22 percentage points). No fine-tuning anywhere: pure data-free pruning.

Methods (rows):

Every onnxprune model comes from the public API, ``onnxprune.prune(path, ratio=r, criterion=c,
allocation=..., merge=..., validate=False)``, with the row's options always explicit (the library's
own default for a ratio is global LAMP with merging).

* ``onnxprune <c>`` for every data-free criterion c in l1, l2, fpgm, bn, gaussian, energy, lumping
  (relaxed: nearest-to-proportional channels fold first, i.e. it always merges), ``allocation="local"``,
  ``merge=False``; accuracy of the serialised result in onnxruntime (``tools/digits_models.onnx_accuracy``).
* ``onnxprune <c> global/<norm>``: the same with ``allocation="global"``, ``normalize`` "mean" or
  "lamp", for l1 and fpgm.
* ``onnxprune <c> +merge`` / ``global/lamp +merge``: ``merge=True``, every removed channel folded into
  the kept channel it is most nearly proportional to (relaxed lumping), for l1, fpgm, energy (and
  lumping under global LAMP).
* ``onnxprune <c> (data)`` for the gradient criteria taylor, singularity, dirichlet on
  ``models/digits_calib.npz`` (256 training samples with labels), local allocation, no merge; the
  scores are computed once per model and registered for this process as a data-free criterion
  (``tools/bench_common.precomputed_criterion``), which every probe then names in ``onnxprune.prune``;
  singularity shares the ratio in proportion to its rank caps, so it cannot go past the estimated
  maximum redundancy (n/a beyond it). ``... +finetune N``: the same plans, then ``finetune=N``
  (distillation to the original's outputs on the same data).
* ``Torch-Pruning Taylor (data)``: ``tp.importance.TaylorImportance`` with the gradients of the
  cross-entropy on the same calibration data and labels, otherwise as the L1 row.
* ``Torch-Pruning L1``: ``tp.pruner.MetaPruner`` with ``tp.importance.MagnitudeImportance(p=1)``
  (Torch-Pruning's defaults otherwise: group_reduction "mean", normalizer "mean"),
  ``global_pruning=False``, the final classifier ignored, one step, applied to the same trained torch
  model rebuilt with ``tools/digits_models.py``; accuracy evaluated in torch, and cross-checked on
  the ONNX export of the pruned model in onnxruntime.

FLOPs are MACs. onnxprune's come from its report (Conv/ConvTranspose/Gemm/MatMul at batch 1);
Torch-Pruning's from ``tp.utils.count_ops_and_params`` (which also counts BatchNorm and pooling),
each relative to its own unpruned count. For the TP rows the reduction that onnxprune's counter
gives on the ONNX export of the pruned model is recorded as well (``flops_reduction_onnx``).

Each target (default 0.2 ... 0.7 FLOPs removed) is hit by bisection on the method's ratio in
[0, 0.95) (``--steps`` evaluations at most, early stop within 0.0025); the closest achieved
reduction is kept if it is within ``--tol`` (default 0.03) of the target, else the cell is n/a.

Gradient claim (issue 4): at 50% MACs removed the best gradient row without fine-tuning beats
Torch-Pruning's Taylor, and the best fine-tuned row is within 1 point of the unpruned accuracy.

Output: per model a Markdown table of accuracy (best in bold) and one of achieved FLOPs reduction,
the unpruned accuracy, the best method at each target, and the verdict on the claim "our best
data-free criterion at least matches Torch-Pruning's L1 at every point and beats it at 50% FLOPs
removed". The claim is judged two ways: *strict* (one onnxprune row satisfies it at every target:
the headline PASS/FAIL) and *pointwise* (the best onnxprune row at each target, which may differ from
target to target). ``--json FILE`` writes all raw numbers including every bisection probe.

Usage::

    python tools/bench_accuracy.py --json /tmp/bench_accuracy.json
    # smoke run (about 80 s on 2 cores): one model, two targets, 8 bisection steps, short fine-tuning
    python tools/bench_accuracy.py --models digits_cnn --targets 0.3 0.5 --steps 8 --finetune-steps 20
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

# sibling tools: tools/ is on sys.path when a script in it runs
import bench_common as bc
import digits_models as dm
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = ROOT / "models"
MODEL_NAMES = ("digits_cnn", "digits_resnet")
TARGETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
CRITERIA = ("l1", "l2", "fpgm", "bn", "gaussian", "energy", "lumping")
GLOBAL_CRITERIA = ("l1", "fpgm")
GLOBAL_NORMS = ("mean", "lamp")
MERGE_CRITERIA = ("l1", "fpgm", "energy")  # with merge=True (removed channels folded), local and global/lamp
RATIO_HI = 0.95
EARLY_STOP = 0.0025
TP_NAME = "Torch-Pruning L1"
TP_TAYLOR = "Torch-Pruning Taylor (data)"
GRADIENT_CRITERIA = ("taylor", "singularity", "dirichlet")
FINETUNE_STEPS = 300
CLAIM_TARGET = 0.5
# The final classifier layer of each model (ignored by Torch-Pruning; onnxprune freezes it because its
# output is the graph output).
CLASSIFIER = {"digits_cnn": "fc2", "digits_resnet": "fc"}




# ----------------------------------------------------------------------------------------------
# bisection
# ----------------------------------------------------------------------------------------------
def bisect_target(evaluate, target: float, steps: int, tol: float, cache: dict) -> dict:
    """Bisection on ratio in [0, RATIO_HI) for FLOPs reduction ``target``.

    ``evaluate(ratio) -> dict`` with at least ``reduction`` (or ``error``); results are cached per
    ratio in ``cache`` (shared between the targets of one method). Returns the closest probe, plus
    the trace and whether it is within ``tol``."""
    lo, hi = 0.0, RATIO_HI
    trace, best = [], None
    for _ in range(steps):
        mid = round((lo + hi) / 2, 10)
        if mid not in cache:
            cache[mid] = evaluate(mid)
        res = cache[mid]
        trace.append({"ratio": mid, **{k: v for k, v in res.items() if k not in ("payload", "removed")}})
        if "error" in res:  # treat a failure as "too much pruning"
            hi = mid
            continue
        if best is None or abs(res["reduction"] - target) < abs(best[1]["reduction"] - target):
            best = (mid, res)
        if abs(res["reduction"] - target) <= EARLY_STOP:
            break
        if res["reduction"] < target:
            lo = mid
        else:
            hi = mid
    out = {"target": target, "trace": trace, "ok": False}
    if best is not None:
        ratio, res = best
        out.update(ratio=ratio, reduction=res["reduction"], ok=abs(res["reduction"] - target) <= tol + 1e-12)
        out["_payload"] = res.get("payload")
        for k, v in res.items():
            if k not in ("payload", "reduction"):
                out[k] = v
    return out


# ----------------------------------------------------------------------------------------------
# onnxprune
# ----------------------------------------------------------------------------------------------
def onnxprune_probe(path: Path, ratio: float, criterion: str, **options) -> dict:
    """One pruned model from the public API (``onnxprune.prune``), measured; a failure is a result."""
    import onnx_ir as ir

    import onnxprune

    try:
        model, report = onnxprune.prune(str(path), ratio=ratio, criterion=criterion, validate=False, **options)
    except Exception as exc:  # noqa: BLE001  # a failure is a result, not a crash of the benchmark
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"reduction": 1.0 - report["flops_after"] / report["flops_before"],
            "flops_before": report["flops_before"], "flops_after": report["flops_after"],
            "params_before": report["params_before"], "params_after": report["params_after"],
            "channels_removed": report["channels_removed"],
            "payload": lambda: ir.to_proto(model).SerializeToString()}


def allocation_options(criterion: str, allocation: str = "local", normalize: str = "mean",
                       merge: bool = False) -> dict:
    """The options a row measures, all explicit (the library's defaults are global LAMP with merging).
    A criterion that merges by nature (lumping with a ratio) keeps merging; one whose own counts share
    the ratio (singularity) takes no allocation, which the pipeline would refuse."""
    from onnxprune.criteria import criterion as registered

    crit = registered(criterion)
    options: dict = {"merge": merge or crit.merges}
    if not crit.shares_ratio_by_counts:
        options["allocation"] = allocation
        if allocation == "global":
            options["normalize"] = normalize
    return options


def onnxprune_method(path: Path, criterion: str, allocation: str = "local", normalize: str = "mean",
                     merge: bool = False):
    options = allocation_options(criterion, allocation, normalize, merge)
    return lambda ratio: onnxprune_probe(path, ratio, criterion, **options)


def cached_criterion(path: Path, criterion: str, calib: Path) -> str:
    """The gradient criterion's scores of this model, computed once per process (they do not depend on the
    ratio) and registered as a data-free criterion for ``onnxprune.prune``."""
    from onnxprune.criteria import REGISTRY

    name = f"{criterion}-cached-{path.stem}"
    return name if name in REGISTRY else bc.precomputed_criterion(name, path, criterion, calib)


def onnxprune_gradient_method(path: Path, criterion: str, calib: Path):
    """Gradient criterion, local allocation, no merge (singularity: the ratio shared by its rank caps);
    the scores are computed on the first probe."""
    options = allocation_options(criterion)
    return lambda ratio: onnxprune_probe(path, ratio, cached_criterion(path, criterion, calib), **options)


def finetuned_cells(base_cells: list[dict], path: Path, criterion: str, calib: Path, steps: int, x, y) -> list[dict]:
    """The same plans as ``base_cells`` (same ratios, same cached scores), each fine-tuned ``steps`` by
    onnxprune's distillation."""
    import onnx_ir as ir

    import onnxprune

    out = []
    for cell in base_cells:
        new = {k: v for k, v in cell.items() if k not in ("accuracy", "trace")}
        if cell.get("ok") and "ratio" in cell:
            pruned, report = onnxprune.prune(str(path), ratio=cell["ratio"], criterion=cached_criterion(
                path, criterion, calib), data=str(calib), finetune=steps, validate=False,
                **allocation_options(criterion))
            new["accuracy"] = dm.onnx_accuracy(ir.to_proto(pruned).SerializeToString(), x, y)
            new["reduction_finetuned_run"] = 1.0 - report["flops_after"] / report["flops_before"]
        out.append(new)
    return out


def onnxprune_accuracy(cell: dict, x, y) -> None:
    data = cell.pop("_payload")()
    cell["accuracy"] = dm.onnx_accuracy(data, x, y)


# ----------------------------------------------------------------------------------------------
# Torch-Pruning
# ----------------------------------------------------------------------------------------------
def tp_method(name: str, models_dir: Path, taylor: bool = False):
    import onnx
    import torch
    import torch.nn.functional as F
    import torch_pruning as tp

    base = dm.load_torch_model(name, models_dir)
    example = torch.zeros(1, 1, dm.IMAGE_SIZE, dm.IMAGE_SIZE)
    macs0, params0 = tp.utils.count_ops_and_params(base, example)

    # ONNX node of each torch layer, through the weight initialiser's name (the export keeps
    # state_dict names), to replay TP's removals with ``onnxprune.prune(remove=...)``.
    onnx_path = models_dir / f"{name}.onnx"
    graph = onnx.load(str(onnx_path)).graph
    node_of = {n.input[1]: n.name for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}

    def evaluate(ratio: float) -> dict:
        model = copy.deepcopy(base).eval()
        names = {m: n for n, m in model.named_modules()}
        removals = []
        try:
            importance = tp.importance.TaylorImportance() if taylor else tp.importance.MagnitudeImportance(p=1)
            pruner = tp.pruner.MetaPruner(
                model, example, importance=importance,
                pruning_ratio=ratio, global_pruning=False,
                ignored_layers=[getattr(model, CLASSIFIER[name])])
            if taylor:  # Taylor importance reads the weights' gradients of the loss on the calibration data
                calib = np.load(models_dir / "digits_calib.npz")
                model.zero_grad()
                F.cross_entropy(model(torch.from_numpy(calib["input"])), torch.from_numpy(calib["labels"])).backward()
            for group in pruner.step(interactive=True):
                dep, idxs = group[0]
                layer = names.get(dep.target.module, "?")
                removals.append((layer, sorted(int(i) for i in idxs)))
                group.prune()
            macs, params = tp.utils.count_ops_and_params(model, example)
        except Exception as exc:  # noqa: BLE001  # recorded as a result
            return {"error": f"{type(exc).__name__}: {exc}"}
        specs = [f"{node_of.get(layer + '.weight', layer)}:{','.join(map(str, idxs))}" for layer, idxs in removals]
        return {"reduction": 1.0 - float(macs) / float(macs0), "flops_before": float(macs0),
                "flops_after": float(macs), "params_before": int(params0), "params_after": int(params),
                "removed": {layer: len(idxs) for layer, idxs in removals},
                "payload": lambda: {"model": model, "remove": specs, "onnx_path": onnx_path}}

    return evaluate


def tp_accuracy(cell: dict, x, y) -> None:
    """Accuracy in torch; ONNX export cross-check (onnxruntime accuracy, max |diff| of the logits,
    and onnxprune's own MAC count of the export)."""
    import onnx_ir as ir
    import torch

    from onnxprune.metrics import count_macs

    payload = cell.pop("_payload")()
    model = payload["model"].eval()
    ref = dm.torch_logits(model, x)
    cell["accuracy"] = float(np.mean(ref.argmax(1) == y))
    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 1, dm.IMAGE_SIZE, dm.IMAGE_SIZE),), buf, dynamo=False,
                          opset_version=dm.OPSET, do_constant_folding=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    data = buf.getvalue()
    got = dm.onnx_logits(data, x)
    cell["onnx_accuracy"] = float(np.mean(got.argmax(1) == y))
    cell["onnx_max_abs_diff"] = float(np.max(np.abs(got - ref)))
    cell["flops_after_onnx"] = int(count_macs(ir.from_proto(__import__("onnx").load_from_string(data))))
    cell["channels"] = {n: int(m.out_channels if hasattr(m, "out_channels") else m.out_features)
                        for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    # Surgery cross-check: onnxprune removing exactly TP's channels from the original ONNX model.
    import onnxprune
    try:
        pruned, report = onnxprune.prune(str(payload["onnx_path"]), remove=payload["remove"], validate=False)
        cell["replay_accuracy"] = dm.onnx_accuracy(ir.to_proto(pruned).SerializeToString(), x, y)
        cell["replay_flops_reduction"] = 1.0 - report["flops_after"] / report["flops_before"]
    except Exception as exc:  # noqa: BLE001  # recorded as a result
        cell["replay_error"] = f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------
def methods_for(name: str, models_dir: Path, gradient: bool = True):
    path = models_dir / f"{name}.onnx"
    rows = [(f"onnxprune {c}", "onnxprune", onnxprune_method(path, c)) for c in CRITERIA]
    rows += [(f"onnxprune {c} global/{n}", "onnxprune", onnxprune_method(path, c, "global", n))
             for c in GLOBAL_CRITERIA for n in GLOBAL_NORMS]
    rows += [(f"onnxprune {c} +merge", "onnxprune", onnxprune_method(path, c, merge=True)) for c in MERGE_CRITERIA]
    rows += [(f"onnxprune {c} global/lamp +merge", "onnxprune", onnxprune_method(path, c, "global", "lamp", True))
             for c in (*MERGE_CRITERIA, "lumping")]
    rows.append((TP_NAME, "tp", tp_method(name, models_dir)))
    if gradient:
        calib = models_dir / "digits_calib.npz"
        rows += [(f"onnxprune {c} (data)", "onnxprune-grad", onnxprune_gradient_method(path, c, calib))
                 for c in GRADIENT_CRITERIA]
        rows.append((TP_TAYLOR, "tp", tp_method(name, models_dir, taylor=True)))
    return rows


def run_model(name: str, models_dir: Path, targets, steps: int, tol: float, x, y, log, gradient: bool = True,
              finetune_steps: int = FINETUNE_STEPS) -> dict:
    from onnxprune import io as opio
    from onnxprune.metrics import count_macs

    t0 = time.perf_counter()
    onnx_path = models_dir / f"{name}.onnx"
    base_torch = dm.load_torch_model(name, models_dir)
    result = {
        "model": name,
        "unpruned_accuracy_onnx": dm.onnx_accuracy(str(onnx_path), x, y),
        "unpruned_accuracy_torch": float(np.mean(dm.torch_logits(base_torch, x).argmax(1) == y)),
        "flops_onnxprune": int(count_macs(opio.load_model(onnx_path))),
        "methods": {},
    }
    for label, kind, evaluate in methods_for(name, models_dir, gradient):
        tm = time.perf_counter()
        if kind == "tp":
            import torch
            import torch_pruning as tp
            result["flops_tp"] = float(tp.utils.count_ops_and_params(
                base_torch, torch.zeros(1, 1, dm.IMAGE_SIZE, dm.IMAGE_SIZE))[0])
        cache: dict = {}
        cells = []
        for t in targets:
            cell = bisect_target(evaluate, t, steps, tol, cache)
            if "_payload" in cell:
                if cell["ok"]:
                    (tp_accuracy if kind == "tp" else onnxprune_accuracy)(cell, x, y)
                    if kind == "tp":
                        cell["flops_reduction_onnx"] = 1.0 - cell["flops_after_onnx"] / result["flops_onnxprune"]
                cell.pop("_payload", None)
            cells.append(cell)
        result["methods"][label] = {"kind": kind, "cells": cells, "probes": len(cache),
                                    "seconds": time.perf_counter() - tm}
        log(f"  {name}: {label:28s} {len(cache):3d} probes {time.perf_counter() - tm:6.1f}s  " +
            " ".join(f"{c['accuracy'] * 100:5.1f}" if "accuracy" in c else "  n/a" for c in cells))
        if kind == "onnxprune-grad" and finetune_steps:
            tm = time.perf_counter()
            criterion = label.split()[1]
            ft = finetuned_cells(cells, onnx_path, criterion, models_dir / "digits_calib.npz", finetune_steps, x, y)
            result["methods"][f"{label} +finetune {finetune_steps}"] = {
                "kind": "onnxprune-grad-ft", "cells": ft, "probes": 0, "seconds": time.perf_counter() - tm}
            log(f"  {name}: {label + ' +finetune':28s}     {time.perf_counter() - tm:6.1f}s  " +
                " ".join(f"{c['accuracy'] * 100:5.1f}" if "accuracy" in c else "  n/a" for c in ft))
    result["seconds"] = time.perf_counter() - t0
    return result


# ----------------------------------------------------------------------------------------------
# analysis / rendering
# ----------------------------------------------------------------------------------------------
def _acc(cell):
    return cell.get("accuracy") if cell.get("ok") else None


def analyse(res: dict, targets) -> dict:
    methods = res["methods"]
    ours = [m for m, v in methods.items() if v["kind"] == "onnxprune"]
    tp_cells = methods[TP_NAME]["cells"]
    best = []
    for i, t in enumerate(targets):
        accs = {m: _acc(v["cells"][i]) for m, v in methods.items()}
        accs = {m: a for m, a in accs.items() if a is not None}
        top = max(accs.values()) if accs else None
        best.append({"target": t, "accuracy": top, "methods": sorted(m for m, a in accs.items() if a == top)})

    def holds(row_accs, tp_accs):
        """(verdict, reasons) for 'matches TP at every point and beats it at 50%'."""
        reasons = []
        for t, a, b in zip(targets, row_accs, tp_accs):
            if b is None:
                reasons.append(f"{t:.0%}: Torch-Pruning has no point within tolerance (not compared)")
                continue
            if a is None:
                reasons.append(f"{t:.0%}: no point within tolerance")
            elif a < b:
                reasons.append(f"{t:.0%}: {a * 100:.2f} < TP {b * 100:.2f}")
            elif abs(t - CLAIM_TARGET) < 1e-9 and not a > b:
                reasons.append(f"{t:.0%}: {a * 100:.2f} does not beat TP {b * 100:.2f}")
        if CLAIM_TARGET not in [round(t, 6) for t in targets]:
            reasons.append(f"{CLAIM_TARGET:.0%} is not among the targets")
        fatal = [r for r in reasons if "not compared" not in r]
        return not fatal, reasons

    tp_accs = [_acc(c) for c in tp_cells]
    strict = {}
    for m in ours:
        ok, why = holds([_acc(c) for c in methods[m]["cells"]], tp_accs)
        strict[m] = {"pass": ok, "reasons": why}
    pointwise_accs, pointwise_rows = [], []
    for i in range(len(targets)):
        cand = {m: _acc(methods[m]["cells"][i]) for m in ours}
        cand = {m: a for m, a in cand.items() if a is not None}
        top = max(cand.values()) if cand else None
        pointwise_accs.append(top)
        pointwise_rows.append(sorted(m for m, a in cand.items() if a == top) if cand else [])
    pw_ok, pw_why = holds(pointwise_accs, tp_accs)
    grad = None
    if TP_TAYLOR in methods and CLAIM_TARGET in [round(t, 6) for t in targets]:
        i = [round(t, 6) for t in targets].index(CLAIM_TARGET)
        raw = {m: _acc(v["cells"][i]) for m, v in methods.items() if v["kind"] == "onnxprune-grad"}
        tuned = {m: _acc(v["cells"][i]) for m, v in methods.items() if v["kind"] == "onnxprune-grad-ft"}
        raw = {m: a for m, a in raw.items() if a is not None}
        tuned = {m: a for m, a in tuned.items() if a is not None}
        tp_t = _acc(methods[TP_TAYLOR]["cells"][i])
        best_raw = max(raw.items(), key=lambda kv: kv[1]) if raw else None
        best_ft = max(tuned.items(), key=lambda kv: kv[1]) if tuned else None
        unpruned = res["unpruned_accuracy_onnx"]
        grad = {"tp_taylor": tp_t, "best_raw": best_raw, "best_finetuned": best_ft, "unpruned": unpruned,
                "beats_tp": bool(best_raw and tp_t is not None and best_raw[1] > tp_t),
                "finetune_within_1pt": bool(best_ft and best_ft[1] >= unpruned - 0.01)}
    return {"best": best, "gradient": grad, "strict": {"pass": any(v["pass"] for v in strict.values()),
                                     "rows_passing": [m for m, v in strict.items() if v["pass"]],
                                     "per_row": strict},
            "pointwise": {"pass": pw_ok, "reasons": pw_why, "accuracy": pointwise_accs, "rows": pointwise_rows}}


def render(res: dict, an: dict, targets, tol: float) -> str:
    methods = res["methods"]
    head = "| method | " + " | ".join(f"{t:.0%}" for t in targets) + " |"
    sep = "|---|" + "---:|" * len(targets)
    lines = [f"### {res['model']}", "",
             (f"Unpruned top-1: {res['unpruned_accuracy_onnx'] * 100:.2f}% (onnxruntime), "
              f"{res['unpruned_accuracy_torch'] * 100:.2f}% (torch). MACs: {res['flops_onnxprune']:,} "
              f"(onnxprune, Conv/Gemm only), {res.get('flops_tp', float('nan')):,.0f} (Torch-Pruning counter)."),
             "", (f"Top-1 accuracy (%) by FLOPs removed (bold = best in column; n/a = no probe within "
                  f"±{tol:g} of the target)"), "", head, sep]
    for m, v in methods.items():
        cells = []
        for i, c in enumerate(v["cells"]):
            a = _acc(c)
            if a is None:
                cells.append("n/a")
            else:
                s = f"{a * 100:.2f}"
                cells.append(f"**{s}**" if m in an["best"][i]["methods"] else s)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", ("Achieved FLOPs reduction (ratio parameter); TP rows: TP counter / onnxprune counter on "
                   "the ONNX export"), "", head, sep]
    for m, v in methods.items():
        cells = []
        for c in v["cells"]:
            if "reduction" not in c:
                cells.append("—")
                continue
            s = f"{c['reduction'] * 100:.1f}%"
            if "flops_reduction_onnx" in c:
                s += f" / {c['flops_reduction_onnx'] * 100:.1f}%"
            s += f" (r={c['ratio']:.3f})"
            if not c["ok"]:
                s = f"~~{s}~~"
            cells.append(s)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Best at each point:"]
    for b in an["best"]:
        if b["accuracy"] is None:
            lines.append(f"- {b['target']:.0%}: none within tolerance")
        else:
            lines.append(f"- {b['target']:.0%}: {b['accuracy'] * 100:.2f}% — {', '.join(b['methods'])}")
    st, pw = an["strict"], an["pointwise"]
    lines += ["", f"Claim (strict, one onnxprune row at every point): **{'PASS' if st['pass'] else 'FAIL'}**"
              + (f" — rows passing: {', '.join(st['rows_passing'])}" if st["pass"] else "")]
    if not st["pass"]:
        for m, v in st["per_row"].items():
            lines.append(f"  - {m}: " + "; ".join(r for r in v["reasons"] if "not compared" not in r))
    lines.append(f"Claim (pointwise best onnxprune row): **{'PASS' if pw['pass'] else 'FAIL'}**"
                 + ("" if pw["pass"] else " — " + "; ".join(pw["reasons"])))
    notes = [r for r in pw["reasons"] if "not compared" in r]
    if notes:
        lines.append("Note: " + "; ".join(notes))
    g = an.get("gradient")
    if g:
        raw = f"{g['best_raw'][0]} {g['best_raw'][1] * 100:.2f}%" if g["best_raw"] else "none"
        ft = f"{g['best_finetuned'][0]} {g['best_finetuned'][1] * 100:.2f}%" if g["best_finetuned"] else "none"
        tp_t = f"{g['tp_taylor'] * 100:.2f}%" if g["tp_taylor"] is not None else "n/a"
        lines.append(f"Gradient claim at {CLAIM_TARGET:.0%} MACs removed: best without fine-tuning {raw} vs Torch-Pruning "
                     f"Taylor {tp_t}: **{'PASS' if g['beats_tp'] else 'FAIL'}**; best fine-tuned {ft} vs unpruned "
                     f"{g['unpruned'] * 100:.2f}% within 1 point: **{'PASS' if g['finetune_within_1pt'] else 'FAIL'}**.")
    tpc = [c for c in methods[TP_NAME]["cells"] if "onnx_max_abs_diff" in c]
    if tpc:
        lines.append(f"TP cross-check: ONNX export accuracy equal to torch at "
                     f"{sum(c['onnx_accuracy'] == c['accuracy'] for c in tpc)}/{len(tpc)} points, max |logit diff| "
                     f"{max(c['onnx_max_abs_diff'] for c in tpc):.1e}.")
        rep = [c for c in tpc if "replay_accuracy" in c]
        lines.append(f"Surgery cross-check: onnxprune removing exactly TP's channels (remove=) gives TP's accuracy at "
                     f"{sum(c['replay_accuracy'] == c['accuracy'] for c in rep)}/{len(tpc)} points"
                     + "".join(f"; {c['target']:.0%}: {c['replay_accuracy'] * 100:.2f} vs {c['accuracy'] * 100:.2f}"
                               for c in rep if c["replay_accuracy"] != c["accuracy"])
                     + "".join(f"; {c['target']:.0%}: {c['replay_error']}" for c in tpc if "replay_error" in c)
                     + (" (FLOPs removed by onnxprune's counter: "
                        + ", ".join("{:.1f}%".format(c["replay_flops_reduction"] * 100) for c in rep) + ")"
                        if rep else "") + ".")
    return "\n".join(lines)


def _git_state() -> str:
    """HEAD of the repo this file is in, with '+dirty' when onnxprune/ has uncommitted changes."""
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "onnxprune"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    p.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR))
    p.add_argument("--targets", type=float, nargs="+", default=list(TARGETS))
    p.add_argument("--steps", type=int, default=14, help="bisection probes per target (default %(default)s)")
    p.add_argument("--tol", type=float, default=0.03, help="accepted |achieved - target| (default %(default)s)")
    p.add_argument("--json", metavar="FILE", help="write raw numbers to FILE")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-gradient", action="store_true", help="skip the gradient criteria and Torch-Pruning Taylor")
    p.add_argument("--finetune-steps", type=int, default=FINETUNE_STEPS,
                   help="fine-tuning steps for the gradient rows' +finetune variants (default %(default)s)")
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    models_dir = Path(args.models_dir)
    t0 = time.perf_counter()
    test = np.load(models_dir / "digits_test.npz")
    x, y = np.asarray(test["input"], dtype=np.float32), np.asarray(test["labels"], dtype=np.int64)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    results, analyses, out = {}, {}, []
    for name in args.models:
        log(f"{name}: bisection over {len(args.targets)} targets ...")
        res = run_model(name, models_dir, args.targets, args.steps, args.tol, x, y, log,
                        gradient=not args.no_gradient, finetune_steps=args.finetune_steps)
        an = analyse(res, args.targets)
        results[name], analyses[name] = res, an
        out.append(render(res, an, args.targets, args.tol))
    overall = all(a["strict"]["pass"] for a in analyses.values())
    overall_pw = all(a["pointwise"]["pass"] for a in analyses.values())
    elapsed = time.perf_counter() - t0
    out.append(f"## Verdict: \"our best data-free criterion at least matches Torch-Pruning's L1 at every point and "
               f"beats it at 50% FLOPs removed\": **{'PASS' if overall else 'FAIL'}** (strict: one onnxprune row, "
               f"every model); pointwise-best variant: **{'PASS' if overall_pw else 'FAIL'}**.")
    import torch_pruning as tp
    out.append(f"Run time {elapsed:.1f}s on {os.cpu_count()} CPU(s), torch threads {args.threads}; onnxprune at "
               f"{_git_state()}, torch {torch.__version__}, torch-pruning {getattr(tp, '__version__', '?')}.")
    print("\n\n".join(out[:-1]) + "\n" + out[-1])

    if args.json:
        import torch_pruning as tp

        import onnxprune
        payload = {"targets": args.targets, "tol": args.tol, "steps": args.steps, "seconds": elapsed,
                   "verdict_strict": overall, "verdict_pointwise": overall_pw,
                   "git": _git_state(), "versions": {"python": platform.python_version(), "torch": torch.__version__,
                                "torch_pruning": getattr(tp, "__version__", "?"),
                                "onnxprune": getattr(onnxprune, "__version__", "?")},
                   "models": {n: {**results[n], "analysis": analyses[n]} for n in results}}
        Path(args.json).write_text(json.dumps(payload, indent=1, default=str))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
