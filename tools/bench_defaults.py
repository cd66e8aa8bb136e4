"""Which default configuration beats Torch-Pruning at equal or fewer parameters? (side by side)

Models: the bundled digits models (``models/digits_cnn.onnx``, ``models/digits_resnet.onnx``; test set
``models/digits_test.npz``, calibration ``models/digits_calib.npz``) and the coloured-shapes models of
``tools/shapes_models.py`` (``models/shapes_cnn.onnx``, ``models/shapes_resnet.onnx``; test and
calibration sets regenerated from their seeds; trained without sparsity regularisation). No
fine-tuning anywhere.

Cells: for each model and each Torch-Pruning ratio r in 0.1 ... 0.7, Torch-Pruning prunes the trained
torch model (``MagnitudePruner`` with ``MagnitudeImportance(p=1)``, its defaults otherwise: local,
group reduction "mean", normaliser "mean", the classifier ignored; and the same with
``TaylorImportance`` on the calibration data's cross-entropy). Its result is exported to ONNX and its
parameters counted by onnxprune's counter (``onnxprune.metrics.count_params``, the same counter as
onnxprune's report), so both sides are counted the same way. Every onnxprune candidate is then run
with the smallest ``ratio`` (found by bisection) whose result has **at most** Torch-Pruning's
parameter count: the comparison is at equal or fewer parameters. Accuracy is top-1 on the test set,
onnxprune results in onnxruntime, Torch-Pruning's in torch.

Candidates (``onnxprune.prune(path, criterion=..., ratio=..., allocation=..., normalize=..., merge=...)``):
l1, group, energy (local, and global LAMP), each without and with ``merge``, and lumping global LAMP
(lumping with a ratio always folds removed channels, i.e. merges). Gradient: ``taylor`` (scores
computed once per model from the calibration data, then allocated like a data-free criterion) local
and global LAMP, with and without merge, against Torch-Pruning Taylor.

Output: a Markdown file with one table per model (accuracy %, and the parameters kept), the rows that
beat Torch-Pruning L1 / Taylor at every ratio on every model, and for the others where they lose.

Usage::

    python tools/bench_defaults.py --out tools/bench_defaults_results.md --json /tmp/bench_defaults.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# sibling tools: tools/ is on sys.path when a script in it runs
import bench_common as bc
import digits_models as dm
import numpy as np
import shapes_models as sm

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"
RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
RATIO_HI = 0.95
BISECT_STEPS = 9
TP_L1 = "Torch-Pruning L1"
TP_TAYLOR = "Torch-Pruning Taylor (data)"
DIGITS_CLASSIFIER = {"digits_cnn": "fc2", "digits_resnet": "fc"}  # ignored by Torch-Pruning (a graph output here)




@dataclass
class Candidate:
    label: str
    criterion: str
    allocation: str = "local"
    normalize: str = "mean"
    merge: bool = False
    gradient: bool = False  # scores from the calibration data (computed once per model)

    def kwargs(self) -> dict:
        """Every option explicit; ``normalize`` only with global allocation (the pipeline refuses it otherwise)."""
        out = {"allocation": self.allocation, "merge": self.merge}
        return out | ({"normalize": self.normalize} if self.allocation == "global" else {})


def _candidates() -> list[Candidate]:
    out = []
    for crit in ("l1", "group", "energy"):
        for alloc, norm in (("local", "mean"), ("global", "lamp")):
            for merge in (False, True):
                out.append(Candidate(_label(crit, alloc, norm, merge), crit, alloc, norm, merge))
    out.append(Candidate(_label("lumping", "global", "lamp", True), "lumping", "global", "lamp", True))
    for alloc, norm in (("local", "mean"), ("global", "lamp")):
        for merge in (False, True):
            out.append(Candidate(_label("taylor", alloc, norm, merge), "taylor", alloc, norm, merge, gradient=True))
    return out


def _label(crit: str, alloc: str, norm: str, merge: bool) -> str:
    return f"{crit} {'local' if alloc == 'local' else 'global ' + norm}{' +merge' if merge else ''}"


@dataclass
class Bench:
    """One model: its files, test and calibration data, and its torch twin for Torch-Pruning."""

    name: str
    onnx_path: Path
    build: Callable  # () -> trained torch model (eval)
    classifier: str
    x: np.ndarray
    y: np.ndarray
    calib_path: Path
    input_shape: tuple
    results: dict = field(default_factory=dict)


def _benches(names: list[str], tmp: Path) -> list[Bench]:
    out = []
    for name in names:
        if name.startswith("digits"):
            test = np.load(MODELS_DIR / "digits_test.npz")
            x, y = np.asarray(test["input"], np.float32), np.asarray(test["labels"], np.int64)
            out.append(Bench(name, MODELS_DIR / f"{name}.onnx", lambda n=name: dm.load_torch_model(n, MODELS_DIR),
                             DIGITS_CLASSIFIER[name], x, y, MODELS_DIR / "digits_calib.npz",
                             (1, dm.IMAGE_SIZE, dm.IMAGE_SIZE)))
        else:
            x, y = sm.make_split("test")
            calib = tmp / "shapes_calib.npz"
            if not calib.exists():
                cx, cy = sm.make_split("calib")
                np.savez(calib, input=cx, labels=cy)
            out.append(Bench(name, MODELS_DIR / f"{name}.onnx", lambda n=name: sm.load_torch_model(n, MODELS_DIR),
                             sm.CLASSIFIER[name], x, y, calib, (3, sm.IMAGE_SIZE, sm.IMAGE_SIZE)))
    return out


# ----------------------------------------------------------------------------------------------
# Torch-Pruning
# ----------------------------------------------------------------------------------------------
def tp_cell(b: Bench, ratio: float, taylor: bool) -> dict:
    import torch
    import torch.nn.functional as F
    import torch_pruning as tp

    model = b.build()
    example = torch.zeros(1, *b.input_shape)
    importance = tp.importance.TaylorImportance() if taylor else tp.importance.MagnitudeImportance(p=1)
    pruner_cls = getattr(tp.pruner, "MagnitudePruner", tp.pruner.MetaPruner)
    pruner = pruner_cls(model, example, importance=importance, pruning_ratio=ratio, global_pruning=False,
                        ignored_layers=[getattr(model, b.classifier)])
    if taylor:
        calib = np.load(b.calib_path)
        model.zero_grad()
        F.cross_entropy(model(torch.from_numpy(calib["input"])), torch.from_numpy(calib["labels"])).backward()
    pruner.step()
    model.eval()
    with torch.no_grad():
        acc = float(np.mean(model(torch.from_numpy(b.x)).argmax(1).numpy() == b.y))
    return {"accuracy": acc, **_onnx_counts(_export(model, b.input_shape))}


def _export(model, input_shape) -> bytes:
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, *input_shape),), buf, dynamo=False, opset_version=dm.OPSET,
                          do_constant_folding=False, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    return buf.getvalue()


def _onnx_counts(data: bytes) -> dict:
    from onnxprune.api import load_normalized
    from onnxprune.metrics import count_macs, count_params

    with tempfile.NamedTemporaryFile(suffix=".onnx") as f:
        f.write(data)
        f.flush()
        m = load_normalized(f.name)
        return {"params": count_params(m), "macs": count_macs(m)}


# ----------------------------------------------------------------------------------------------
# onnxprune
# ----------------------------------------------------------------------------------------------
def onnxprune_probe(b: Bench, c: Candidate, criterion, ratio: float) -> dict:
    import onnx_ir as ir

    import onnxprune

    try:
        model, report = onnxprune.prune(str(b.onnx_path), ratio=ratio, criterion=criterion, validate=False,
                                        **c.kwargs())
    except Exception as exc:  # noqa: BLE001  # a failure is a result of the candidate, not of the benchmark
        return {"error": f"{type(exc).__name__}: {exc}", "params": None}
    return {"params": report["params_after"], "macs": report["flops_after"],
            "payload": lambda: ir.to_proto(model).SerializeToString()}


def matched_cell(b: Bench, c: Candidate, criterion, budget: int, cache: dict) -> dict:
    """The smallest ratio whose result has at most ``budget`` parameters (bisection, probes cached)."""
    def probe(r: float) -> dict:
        r = round(r, 6)
        if r not in cache:
            cache[r] = onnxprune_probe(b, c, criterion, r)
        return cache[r]

    def fits(res):
        return res["params"] is not None and res["params"] <= budget
    lo = max([r for r, res in cache.items() if res["params"] is not None and res["params"] > budget], default=0.0)
    hi = min([r for r, res in cache.items() if fits(res)], default=None)
    if hi is None:
        hi = RATIO_HI
        if not fits(probe(hi)):
            return {"error": cache[round(hi, 6)].get("error", f"no ratio <= {RATIO_HI} reaches the parameter count")}
    for _ in range(BISECT_STEPS):
        if hi - lo < 0.002:
            break
        mid = (lo + hi) / 2
        if fits(probe(mid)):
            hi = mid
        else:
            lo = mid
    res = cache[round(hi, 6)]
    if "accuracy" not in res:
        res["accuracy"] = dm.onnx_accuracy(res["payload"](), b.x, b.y)
    return {"ratio": hi, "params": res["params"], "macs": res["macs"], "accuracy": res["accuracy"]}


# ----------------------------------------------------------------------------------------------
# run / render
# ----------------------------------------------------------------------------------------------
def run_bench(b: Bench, candidates: list[Candidate], ratios, log) -> None:
    from onnxprune.api import load_normalized
    from onnxprune.metrics import count_macs, count_params

    m = load_normalized(b.onnx_path)
    b.results = {"params": count_params(m), "macs": count_macs(m),
                 "unpruned": dm.onnx_accuracy(str(b.onnx_path), b.x, b.y), "rows": {}}
    for label, taylor in ((TP_L1, False), (TP_TAYLOR, True)):
        t = time.perf_counter()
        b.results["rows"][label] = [tp_cell(b, r, taylor) for r in ratios]
        log(b, label, t)
    taylor = None
    for c in candidates:
        t = time.perf_counter()
        if c.gradient:
            taylor = taylor or bc.precomputed_criterion(f"taylor-cached-{b.name}", b.onnx_path, "taylor", b.calib_path)
        criterion = taylor if c.gradient else c.criterion
        ref = b.results["rows"][TP_TAYLOR if c.gradient else TP_L1]
        cache: dict = {}
        b.results["rows"][c.label] = [matched_cell(b, c, criterion, cell["params"], cache) for cell in ref]
        log(b, c.label, t)


def _acc(cell: dict) -> float | None:
    return cell.get("accuracy")


def tally(models: dict, label: str, ref: str, ratios) -> dict:
    """Wins (strictly higher accuracy than ``ref``), ties and losses of a row over every model and
    ratio, its mean accuracy and mean margin, and the figures of every cell it does not win."""
    wins, ties, lost, accs, margins = 0, [], [], [], []
    for name, res in models.items():
        for r, cell, tpc in zip(ratios, res["rows"][label], res["rows"][ref]):
            a, t = _acc(cell), tpc["accuracy"]
            if a is None:
                lost.append(f"{name} {r:.1f}: no result ({cell.get('error', '?')})")
                continue
            accs.append(a)
            margins.append(a - t)
            if a > t:
                wins += 1
            elif a == t:
                ties.append(f"{name} {r:.1f}: {a * 100:.2f} = {t * 100:.2f}")
            else:
                lost.append(f"{name} {r:.1f}: {a * 100:.2f} vs {t * 100:.2f}")
    return {"wins": wins, "ties": ties, "losses": lost, "mean": float(np.mean(accs)) if accs else 0.0,
            "margin": float(np.mean(margins)) if margins else 0.0}


def render(models: dict, labels: dict[str, bool], ratios, seconds: float) -> str:
    """Markdown: one table per model, then the verdict. ``models``: name -> results; ``labels``:
    onnxprune row -> whether it is a gradient row."""
    lines = ["## Accuracy at equal or fewer parameters: onnxprune vs Torch-Pruning", "",
             ("Generated by `tools/bench_defaults.py` (no fine-tuning). Each column is a Torch-Pruning ratio r "
              "(fraction of channels removed per layer); every onnxprune row is run at the smallest ratio whose "
              "result has at most Torch-Pruning's parameter count there (same counter on both sides: onnxprune's, "
              "on Torch-Pruning's ONNX export). Top-1 accuracy in %; **bold**: best onnxprune row of the column; "
              "a row at or below its Torch-Pruning reference (L1 for data-free rows, Taylor for taylor rows) is "
              "marked with a trailing `-`."), ""]
    head = "| method | " + " | ".join(f"{r:.1f}" for r in ratios) + " |"
    sep = "|---|" + "---:|" * len(ratios)
    for name, res in models.items():
        lines += [f"### {name}", "", (f"Unpruned: {res['unpruned'] * 100:.2f}%, {res['params']:,} parameters, "
                                      f"{res['macs']:,} MACs; test set {res['n_test']} images."), "", head, sep]
        lines.append("| parameters kept (Torch-Pruning L1) | " + " | ".join(
            f"{c['params'] / res['params'] * 100:.0f}%" for c in res["rows"][TP_L1]) + " |")
        best = [max((_acc(res["rows"][m][i]) or -1) for m in labels) for i in range(len(ratios))]
        for label in [TP_L1, TP_TAYLOR, *labels]:
            cells = res["rows"][label]
            ref = None if label not in labels else res["rows"][TP_TAYLOR if labels[label] else TP_L1]
            row = []
            for i, cell in enumerate(cells):
                a = _acc(cell)
                if a is None:
                    row.append("n/a")
                    continue
                s = f"{a * 100:.2f}"
                if ref is not None and a == best[i]:
                    s = f"**{s}**"
                if ref is not None and a <= ref[i]["accuracy"]:
                    s += " -"
                row.append(s)
            lines.append(f"| {label} | " + " | ".join(row) + " |")
        lines.append("")
    n_cells = len(models) * len(ratios)
    lines += ["### Verdict", ""]
    for ref, gradient in ((TP_L1, False), (TP_TAYLOR, True)):
        # Against Taylor every row competes: a data-free row that beats it needs no data at all.
        rows = [m for m, g in labels.items() if gradient or not g]
        t = {m: tally(models, m, ref, ratios) for m in rows}
        order = sorted(rows, key=lambda m: (len(t[m]["losses"]), len(t[m]["ties"]), -t[m]["mean"]))
        winners = [m for m in order if t[m]["wins"] == n_cells]
        lines += [f"Against {ref} ({n_cells} cells: {len(models)} models x {len(ratios)} ratios); rows beating it "
                  f"in every cell: " + (", ".join(f"**{w}**" for w in winners) if winners else "**none**") + ".", "",
                  "| onnxprune row | wins | ties | losses | mean accuracy | mean margin (points) |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {m} | {t[m]['wins']} | {len(t[m]['ties'])} | {len(t[m]['losses'])} | {t[m]['mean'] * 100:.2f} "
                  f"| {t[m]['margin'] * 100:+.2f} |" for m in order]
        lines += ["", f"Best row (fewest losses, then fewest ties, then highest mean): **{order[0]}**."]
        for m in order[:3]:
            if t[m]["ties"] or t[m]["losses"]:
                lines.append(f"- {m}: ties {'; '.join(t[m]['ties']) or 'none'}; losses "
                             f"{'; '.join(t[m]['losses']) or 'none'}.")
        lines.append("")
    import torch
    import torch_pruning as tp
    lines.append(f"Run time {seconds / 60:.1f} min on {os.cpu_count()} shared CPU(s); torch {torch.__version__}, "
                 f"torch-pruning {getattr(tp, '__version__', '?')}.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", default=["digits_cnn", "digits_resnet", "shapes_cnn", "shapes_resnet"])
    p.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    p.add_argument("--only", nargs="*", help="candidate labels to run (default: all)")
    p.add_argument("--out", help="write the Markdown tables here")
    p.add_argument("--json", help="write the raw numbers here")
    p.add_argument("--merge-json", nargs="*", help="results of earlier runs (--json) to render with this one")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    candidates = [c for c in _candidates() if not args.only or c.label in args.only]
    t0 = time.perf_counter()

    def log(b, label, t):
        cells = b.results["rows"][label]
        print(f"{b.name:14s} {label:28s} {time.perf_counter() - t:6.1f}s  "
              + " ".join(f"{c['accuracy'] * 100:5.1f}" if "accuracy" in c else "  n/a" for c in cells),
              file=sys.stderr, flush=True)

    models, seconds = {}, 0.0
    for path in args.merge_json or []:  # earlier runs (other models), rendered together
        saved = json.loads(Path(path).read_text())
        models.update(saved["models"])
        seconds += saved["seconds"]
    if args.models:
        with tempfile.TemporaryDirectory() as tmp:
            for b in _benches(args.models, Path(tmp)):
                run_bench(b, candidates, args.ratios, log)
                models[b.name] = {**b.results, "n_test": len(b.y)}
    seconds += time.perf_counter() - t0
    labels = {c.label: c.gradient for c in candidates}
    text = render(models, labels, args.ratios, seconds)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"ratios": args.ratios, "seconds": seconds, "models": models},
                                              indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
