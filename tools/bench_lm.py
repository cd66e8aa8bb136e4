"""Language-model benchmark: byte-level perplexity against the fraction of parameters removed.

Model: ``tools/lm_model.py``'s LLaMA-style decoder (RMSNorm, rotary embeddings, grouped-query
attention, SwiGLU, untied embedding and head), trained here on Python's standard-library docstrings
(cached under ``~/.cache/onnxprune-bench/`` by a hash of the config, so reruns skip training) and
exported with torch's TorchScript exporter (opset 17, input ``input_ids`` [batch, seq] int64 ->
``logits``). The text is split by module: calibration and evaluation sequences come from modules the
model never trained on, and from different modules each.

Sweep (one cell per criterion x refit x finetune x fraction): ``onnxprune.prune(model,
criterion=c, target_params=1 - f, [data=calib.npz], [refit=True], [finetune=N], validate=False)``,
i.e. ``--target-params`` with f the fraction of the WHOLE model's parameters removed (embeddings and
head included); the library's default allocation for a size target is used (global LAMP, with
merging: recorded per cell), unless ``--allocation`` says otherwise. Calibration: ``--calib``
(default 64) sequences of 128 bytes from the calibration split, written as an .npz keyed by the input
name, given as ``data`` to every cell that reads data (data-needing criteria, refit, finetune) and to
no other (onnxprune refuses data nothing reads). Gradient criteria (taylor) are scored once per model
on that data (``bench_common.precomputed_criterion``) and every fraction reuses the scores.
Perplexity: exp(mean next-byte NLL) in onnxruntime over ``--eval-seqs`` (default 128) held-out
sequences of 128 bytes, evenly spaced over the evaluation split, each read from its own start.

Criteria or options this onnxprune does not have (``wanda``, ``flap``, ``refit`` while they are being
built) are reported as "not available" cells; a refused or failed cell is reported with its message;
nothing stops the sweep. Wall time per cell: the prune call (scoring, planning, surgery, finetune).

Acceptance (issue 12), calibration only (<= 64 sequences, no gradients): at 20% of parameters removed
perplexity <= 1.05x dense, at 40% <= 1.35x dense; the verdict uses the best cell without gradients
(neither a gradient criterion such as taylor nor finetune).

Training the default model took 43 minutes on a loaded shared 2-core machine (once: it is cached);
``--train-steps 450`` gives a 13-minute model that is too under-trained to tell methods apart (l1 alone
loses only 1.16x perplexity at 40% removed there, 1.67x on the default model).

Usage::

    python tools/bench_lm.py                 # full sweep -> tools/bench_lm_results.{md,json}
    python tools/bench_lm.py --quick         # ~2-minute smoke run on a tiny model (writes to /tmp)
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

# sibling tools: tools/ is on sys.path when a script in it runs
import bench_common as bc
import lm_model as lm
import numpy as np

HERE = Path(__file__).resolve().parent
CRITERIA = ("l1", "wanda", "flap", "taylor")
FRACTIONS = (0.1, 0.2, 0.3, 0.4)
ACCEPT = {0.2: 1.05, 0.4: 1.35}
QUICK_CONFIG = lm.LMConfig(dim=96, layers=2, heads=8, kv_heads=2, ffn=256, steps=80, warmup=10)


@dataclass(frozen=True)
class Method:
    criterion: str
    refit: bool
    finetune: int

    @property
    def label(self) -> str:
        return self.criterion + (" +refit" if self.refit else "") + (f" +finetune {self.finetune}" if self.finetune
                                                                       else "")


def missing(method: Method) -> str | None:
    """Why this onnxprune cannot run the method (None: it can)."""
    from onnxprune.config import from_keywords
    from onnxprune.criteria import REGISTRY

    if method.criterion not in REGISTRY:
        return f"criterion '{method.criterion}' is not in this onnxprune"
    if method.refit and "refit" not in inspect.signature(from_keywords).parameters:
        return "option refit is not in this onnxprune"
    return None


def prunable_params(path: Path) -> tuple[int, int]:
    """(all float parameters, those some prunable channel group slices) of the model at ``path``: the
    parameters a plan removing every prunable channel would remove."""
    from onnxprune.api import load_normalized
    from onnxprune.graph import analyze_groups
    from onnxprune.metrics import params_per_initializer
    from onnxprune.plan import Plan
    from onnxprune.targets import kept_fractions

    model = load_normalized(str(path))
    sizes = params_per_initializer(model)
    analysis = analyze_groups(model)
    everything = Plan(removed={g.id: np.arange(g.size) for g in analysis.prunable_groups})
    reach = sum(sizes[v] * (1 - k) for v, k in kept_fractions(analysis, everything).items() if v in sizes)
    return sum(sizes.values()), round(reach)


def run_cell(path: Path, method: Method, name: str, fraction: float, calib: Path, eval_tokens: np.ndarray,
             dense_ppl: float, prunable: int, allocation: str | None, lr: float | None) -> dict:
    """One prune + evaluation; never raises (a failure is the cell's status)."""
    import onnx_ir as ir

    import onnxprune
    from onnxprune.criteria import REGISTRY
    from onnxprune.errors import OptionError

    cell = {"method": method.label, "criterion": method.criterion, "refit": method.refit,
            "finetune": method.finetune, "fraction": fraction}
    why = missing(method)
    if why:
        return {**cell, "status": "not available", "why": why}
    kw: dict = {"criterion": name, "target_params": round(1 - fraction, 6), "validate": False}
    if allocation:
        kw["allocation"] = allocation
    if method.refit:
        kw["refit"] = True
    if method.finetune:
        kw["finetune"] = method.finetune
        if lr is not None:
            kw["gradient_options"] = {"lr": lr}
    if REGISTRY[name].needs_data or method.refit or method.finetune:  # onnxprune refuses data nothing reads
        kw["data"] = str(calib)
    cell["gradients"] = REGISTRY[method.criterion].needs_torch or bool(method.finetune)
    start = time.perf_counter()
    try:
        model, report = onnxprune.prune(str(path), **kw)
        seconds = time.perf_counter() - start
        ppl = lm.perplexity(ir.to_proto(model).SerializeToString(), eval_tokens)
    except OptionError as exc:
        return {**cell, "status": "refused", "why": str(exc)}
    except Exception as exc:  # a benchmark reports, it does not stop: the message and where it came from
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return {**cell, "status": "error", "why": f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:"
                f"{where.lineno})"}
    removed = report["params_before"] - report["params_after"]
    return {**cell, "status": "ok", "ppl": ppl, "ppl_ratio": ppl / dense_ppl, "seconds": seconds,
            "removed_total": removed / report["params_before"], "removed_prunable": removed / prunable,
            "params_after": report["params_after"], "ratio": report.get("ratio"),
            "allocation": (report.get("allocation") or {}).get("mode") if isinstance(report.get("allocation"), dict)
            else report.get("allocation"), "merge": report["transforms"]["merge"],
            "finetune_loss": (report.get("finetune") or {}).get("loss_last")}


def markdown(result: dict) -> str:
    m, cells, fractions = result["model"], result["cells"], result["fractions"]
    methods = list(dict.fromkeys(c["method"] for c in cells))
    by = {(c["method"], c["fraction"]): c for c in cells}
    c = m["config"]
    dynamo = result.get("exporter") == "dynamo"
    used = sorted({f"{x['allocation']} allocation, merge {'on' if x['merge'] else 'off'}" for x in cells
                   if x["status"] == "ok"})
    lines = [
        "# Language-model benchmark (tools/bench_lm.py)" + (" - QUICK SMOKE RUN" if result["quick"] else ""), "",
        *(["Smoke run (--quick): a tiny, under-trained model; its figures say nothing about pruning quality.", ""]
          if result["quick"] else []),
        f"Model: LLaMA-style byte-level decoder, dim {c['dim']}, {c['layers']} layers, {c['heads']} heads / "
        f"{c['kv_heads']} KV heads (GQA), SwiGLU {c['ffn']}, context {c['context']}, untied embedding and head: "
        f"**{m['params']:,} parameters** ({m['prunable_params']:,} in prunable groups today, "
        f"{m['prunable_params'] / m['params']:.1%}). Trained {c['steps']} steps x {c['batch']} x {c['context']} "
        f"bytes on {m['corpus_bytes']['train'] / 1e6:.2f} MB of stdlib docstrings in **{m['train_seconds']:.0f} s** "
        f"(1 torch thread; cached). Exported with torch.onnx.export(" + ("dynamo=True, opset 18" if dynamo else
                                                                      "dynamo=False, opset 17")
        + f"); onnxruntime vs torch max |logit diff| {m['onnx_vs_torch_max_abs' + ('_dynamo' if dynamo else '')]:.1e}.",
        f"Dense perplexity (bytes, {result['eval_seqs']} held-out sequences of {c['context']}): "
        f"**{result['dense_ppl']:.3f}**. Calibration: {result['calib']} sequences from modules unseen in training "
        f"and evaluation. onnxprune {result['onnxprune_version']}; allocation: {result['allocation'] or 'library default'} "
        f"({'; '.join(used) or 'no cell ran'}). Finetune rows: {result['finetune_steps']} Adam steps, lr "
        f"{result['lr'] or 'onnxprune default'}, distillation to the dense model's logits on the calibration set.",
        "", "Perplexity (ratio to dense) by fraction of ALL parameters removed (`--target-params 1-f`):", "",
        "| method | " + " | ".join(f"{f:.0%}" for f in fractions) + " |",
        "|---|" + "---|" * len(fractions)]
    for meth in methods:
        row = []
        for f in fractions:
            cell = by.get((meth, f))
            if cell is None:
                row.append("")
            elif cell["status"] == "ok":
                row.append(f"{cell['ppl']:.3f} ({cell['ppl_ratio']:.3f}x)")
            else:
                row.append(cell["status"])
        lines.append(f"| {meth} | " + " | ".join(row) + " |")
    lines += ["", "Achieved removal (of all parameters / of prunable-group parameters) and wall time of the prune "
              "call:", "", "| method | " + " | ".join(f"{f:.0%}" for f in fractions) + " |",
              "|---|" + "---|" * len(fractions)]
    for meth in methods:
        row = []
        for f in fractions:
            cell = by.get((meth, f))
            row.append("" if cell is None or cell["status"] != "ok" else
                       f"{cell['removed_total']:.1%} / {cell['removed_prunable']:.1%}, {cell['seconds']:.1f} s")
        lines.append(f"| {meth} | " + " | ".join(row) + " |")
    if result["scoring_seconds"]:
        lines += ["", "Gradient criteria are scored once per model on the calibration set (not in the times above): "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in result["scoring_seconds"].items()) + "."]
    notes = sorted({f"{c['method']}: {c['status']} - {c['why']}" for c in cells if c["status"] != "ok"})
    if notes:
        lines += ["", "Cells that did not run:", ""] + [f"- {n}" for n in notes]
    lines += ["", "Acceptance (issue 12, calibration only: best cell without gradients, i.e. no taylor, no finetune):", ""]
    for f, limit in ACCEPT.items():
        v = result["acceptance"].get(str(f))
        lines.append(f"- {f:.0%} removed: " + ("no calibration-only cell ran" if v is None else
                     f"best {v['ppl_ratio']:.3f}x ({v['method']}), limit {limit}x: "
                     f"{'PASS' if v['ppl_ratio'] <= limit else 'FAIL'}"))
    return "\n".join(lines) + "\n"


def acceptance(cells: list[dict]) -> dict:
    """Per accepted fraction: the best calibration-only cell that ran (no gradients: neither a gradient
    criterion such as taylor nor finetune)."""
    out = {}
    for f in ACCEPT:
        ok = [c for c in cells if c["status"] == "ok" and not c["gradients"] and math.isclose(c["fraction"], f)]
        if ok:
            best = min(ok, key=lambda c: c["ppl_ratio"])
            out[str(f)] = {"method": best["method"], "ppl_ratio": best["ppl_ratio"]}
    return out


def render(path: Path) -> dict:
    """Rewrite ``path``'s acceptance and its .md beside it (cells from older runs gain their gradients flag)."""
    from onnxprune.criteria import REGISTRY

    result = {"quick": False, "exporter": "torchscript", "scoring_seconds": {}, **json.loads(path.read_text())}
    for c in result["cells"]:
        if c["status"] == "ok" and "gradients" not in c:
            c["gradients"] = REGISTRY[c["criterion"]].needs_torch or bool(c["finetune"])
    result["acceptance"] = acceptance(result["cells"])
    path.write_text(json.dumps(result, indent=1))
    path.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {path.with_suffix('.md')}")
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny model, 2 fractions, few sequences")
    ap.add_argument("--criteria", nargs="+", default=list(CRITERIA))
    ap.add_argument("--fractions", nargs="+", type=float, default=None)
    ap.add_argument("--finetune-steps", type=int, default=None, help="steps of the +finetune rows (default 16)")
    ap.add_argument("--lr", type=float, default=None, help="finetune learning rate (default: onnxprune's)")
    ap.add_argument("--calib", type=int, default=64, help="calibration sequences (<= 64 for the acceptance)")
    ap.add_argument("--eval-seqs", type=int, default=None, help="held-out sequences (default 128)")
    ap.add_argument("--allocation", choices=("local", "global"), default=None,
                    help="override the library's default allocation for a size target")
    ap.add_argument("--train-steps", type=int, default=None,
                    help="train the model for this many steps instead of the config's (a separate cache entry)")
    ap.add_argument("--exporter", choices=lm.EXPORTERS, default="torchscript",
                    help="torch exporter of the model (default torchscript: dynamo=False, opset 17)")
    ap.add_argument("--out", default=None, help="output stem (default tools/bench_lm_results; --quick: /tmp)")
    ap.add_argument("--render", metavar="JSON", help="only rewrite the .md (and acceptance) of an earlier run's .json")
    args = ap.parse_args(argv)
    if args.render:
        return render(Path(args.render))

    import torch

    torch.set_num_threads(1)  # the twin (taylor, finetune) on a shared 2-core machine: two threads thrash
    config = QUICK_CONFIG if args.quick else lm.LMConfig()
    if args.train_steps:
        config = replace(config, steps=args.train_steps)
    fractions = args.fractions or ([0.2, 0.4] if args.quick else list(FRACTIONS))
    ft_steps = args.finetune_steps if args.finetune_steps is not None else (4 if args.quick else 16)
    eval_seqs = args.eval_seqs or (32 if args.quick else 128)
    out = Path(args.out) if args.out else (Path(tempfile.gettempdir()) / "bench_lm_quick" if args.quick
                                           else HERE / "bench_lm_results")

    corpus = lm.cached_corpus()
    trained = lm.trained_model(config, corpus, exporter=args.exporter)
    path = trained.onnx_path
    eval_tokens = lm.sequences(corpus["eval"], eval_seqs, config.context)
    dense_ppl = lm.perplexity(path, eval_tokens)
    total, prunable = prunable_params(path)
    print(f"model {trained.meta['params']:,} params ({total:,} float initializer elements, {prunable:,} prunable); "
          f"dense ppl {dense_ppl:.4f}")

    import onnxprune
    from onnxprune.criteria import REGISTRY

    methods = [Method(c, refit, ft) for c in args.criteria for refit in (False, True)
               for ft in dict.fromkeys((0, ft_steps))]  # --finetune-steps 0: no finetune rows
    cells: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-lm-") as tmp:
        calib = Path(tmp) / "calib.npz"
        np.savez(calib, input_ids=lm.sequences(corpus["calib"], args.calib, config.context))
        names: dict[str, str] = {}
        scoring: dict[str, float] = {}  # seconds of the once-per-model gradient scoring (not in the cells' times)
        for method in methods:
            if missing(method) is None and method.criterion not in names:
                crit = REGISTRY[method.criterion]
                names[method.criterion] = crit.name
                if crit.needs_torch:
                    start = time.perf_counter()
                    names[crit.name] = bc.precomputed_criterion(f"{crit.name}-precomputed", path, crit.name, calib)
                    scoring[crit.name] = time.perf_counter() - start
            for f in fractions:
                cell = run_cell(path, method, names.get(method.criterion, method.criterion), f, calib, eval_tokens,
                                dense_ppl, prunable, args.allocation, args.lr)
                cells.append(cell)
                shown = (f"ppl {cell['ppl']:.4f} ({cell['ppl_ratio']:.3f}x), removed {cell['removed_total']:.1%} "
                         f"total / {cell['removed_prunable']:.1%} prunable, {cell['seconds']:.1f} s"
                         if cell["status"] == "ok" else f"{cell['status']}: {cell['why']}")
                print(f"{method.label:<28} {f:.0%}  {shown}", flush=True)
    result = {"model": {**trained.meta, "prunable_params": prunable, "float_params": total,
                        "cache": str(trained.directory)},
              "quick": args.quick, "exporter": args.exporter, "config": asdict(config), "dense_ppl": dense_ppl, "eval_seqs": eval_seqs, "calib": args.calib,
              "fractions": fractions, "scoring_seconds": scoring, "finetune_steps": ft_steps, "lr": args.lr, "allocation": args.allocation,
              "onnxprune_version": getattr(onnxprune, "__version__", "?"), "cells": cells,
              "acceptance": acceptance(cells)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {out.with_suffix('.md')} and .json")
    return result


if __name__ == "__main__":
    main()
