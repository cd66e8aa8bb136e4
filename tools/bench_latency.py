"""Latency speedup of pruned models next to their MACs speedup, in onnxruntime on this CPU.

    python tools/bench_latency.py [--runs N] [--json OUT.json] [--models cnn,resnet,resnet50]

Prunes the bundled digits models and onnx's ``light_resnet50`` (random weights, tests/zoo.py) at 30%,
50% and 70% of channels (local l1) and times each pruned model against its original with the same
code ``onnxprune validate`` uses (``onnxprune.validate.latency``: warm-up, interleaved blocks, medians
and p10/p90), at 1 thread and at all threads. Issue 5's target: measured speedup >= 0.8x the MACs
speedup at 50%.

Then, for light_resnet50, which ``--round-to`` (1, 4, 8, 16) gives the fastest model here, at 50% and
30% of channels: the original and every variant are timed in one rotation of interleaved blocks, so
they share the machine's conditions. (At 50% every ResNet-50 channel count is already a multiple of 16,
so the variants are the same model there, which measures the noise floor.)

Prints Markdown tables (the README's). Latency is noisy on a shared 2-core machine: run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

RATIOS = (0.3, 0.5, 0.7)
ROUND_TO = (1, 4, 8, 16)
TARGET = 0.8  # speedup / MACs speedup at 50%


def _models(tmp: Path, names: list[str]) -> dict[str, Path]:
    import onnx
    from zoo import light_model  # tests/zoo.py

    paths = {"cnn": ROOT / "models" / "digits_cnn.onnx", "resnet": ROOT / "models" / "digits_resnet.onnx"}
    if "resnet50" in names:
        paths["resnet50"] = tmp / "light_resnet50.onnx"
        onnx.save(light_model("resnet50"), paths["resnet50"])
    return {n: paths[n] for n in names}


def _prune_and_time(src: Path, out: Path, ratio: float, round_to: int, runs: int | None, batch: int = 1) -> dict:
    import onnxprune
    from onnxprune.validate.fidelity import session, validation_feeds
    from onnxprune.validate.latency import latency_report
    from onnxprune.validate.suite import first_batch

    _, report = onnxprune.prune(src, ratio=ratio, criterion="l1", round_to=round_to, output=out, validate=False)
    macs = (report["flops_before"], report["flops_after"])
    sess = session(src)
    feeds = validation_feeds(sess, samples=batch)[0]
    feeds = {k: v[:batch] for k, v in feeds.items()} if batch > 1 else first_batch(sess, feeds)
    lat = latency_report(src, out, feeds, macs, runs=runs)
    return {"ratio": ratio, "round_to": round_to, "batch": batch, "macs_before": macs[0], "macs_after": macs[1],
            "flops_speedup": lat["flops_speedup"],
            "settings": [{k: s[k] for k in ("threads", "runs", "speedup", "speedup_p10", "speedup_p90",
                                           "speedup_vs_flops")} | {"original_ms": s["original_ms"]["median"],
                                                                   "pruned_ms": s["pruned_ms"]["median"]}
                         for s in lat["settings"]]}


def _round_to_sweep(src: Path, tmp: Path, ratio: float, runs: int) -> dict:
    """Original and one pruned model per ROUND_TO value, timed in rotating blocks at each thread count."""
    import numpy as np

    import onnxprune
    from onnxprune.validate.fidelity import session, validation_feeds
    from onnxprune.validate.latency import BLOCK, WARMUP_RUNS, _timed, all_threads, spread_ms
    from onnxprune.validate.suite import first_batch

    variants = {"original": src}
    macs = {}
    for rt in ROUND_TO:
        out = tmp / f"rt{rt}_{ratio}.onnx"
        _, rep = onnxprune.prune(src, ratio=ratio, criterion="l1", round_to=rt, output=out, validate=False)
        variants[rt], macs[rt] = out, (rep["flops_before"], rep["flops_after"])
    sess = session(src)
    feeds = first_batch(sess, validation_feeds(sess)[0])
    result = {"ratio": ratio, "macs_after": {str(rt): m[1] for rt, m in macs.items()},
              "macs_before": macs[ROUND_TO[0]][0], "settings": []}
    for threads in sorted({1, all_threads()}):
        sessions = {k: session(v, threads=threads) for k, v in variants.items()}
        for s in sessions.values():
            for _ in range(WARMUP_RUNS):
                _timed(s, feeds)
        times = {k: [] for k in sessions}
        ratios = {rt: [] for rt in ROUND_TO}
        order = list(sessions)
        for block in range(max(1, runs // BLOCK)):
            rotated = order[block % len(order):] + order[:block % len(order)]
            block_median = {}
            for k in rotated:
                _timed(sessions[k], feeds)  # untimed: the previous session's threads may still spin
                t = [_timed(sessions[k], feeds) for _ in range(BLOCK)]
                times[k].extend(t)
                block_median[k] = float(np.median(t))
            for rt in ROUND_TO:  # per rotation, as validate's speedup: drift cancels in the ratio
                ratios[rt].append(block_median["original"] / block_median[rt])
        med = {k: spread_ms(t) for k, t in times.items()}
        result["settings"].append({"threads": threads, "ms": {str(k): v for k, v in med.items()},
                                   "speedup": {str(rt): float(np.median(r)) for rt, r in ratios.items()}})
    return result


NAMES = {"cnn": "digits_cnn", "resnet": "digits_resnet", "resnet50": "light_resnet50"}


def _row(name: str, r: dict) -> str:
    cells = [NAMES.get(name, name), f"{r['ratio']:.0%}" if "round_to" not in r or r["round_to"] == 1 else f"{r['ratio']:.0%}, round-to {r['round_to']}",
             f"{r['flops_speedup']:.2f}x"]
    for s in r["settings"]:
        cells.append(f"{s['original_ms']:.2f} -> {s['pruned_ms']:.2f} ms")
        cells.append(f"{s['speedup']:.2f}x [{s['speedup_p10']:.2f}-{s['speedup_p90']:.2f}]")
        cells.append(f"{s['speedup_vs_flops']:.2f}")
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=None, help="timed runs per model and setting (default: 2 s budget)")
    ap.add_argument("--models", default="cnn,resnet,resnet50")
    ap.add_argument("--no-round-to", action="store_true", help="skip the --round-to sweep")
    ap.add_argument("--json", help="write all figures here")
    ap.add_argument("--batch", type=int, default=1,
                    help="samples per run (default 1: edge-like; where a model's batch is fixed, that)")
    args = ap.parse_args()
    from onnxprune.validate.latency import all_threads

    names = args.models.split(",")
    # other processes skew latency (the 2-thread figures most): record the load around the run
    results = {"machine": f"{platform.machine()}, {all_threads()} cores, {platform.python_version()}",
               "load_average_before": os.getloadavg(), "ratios": [], "round_to": []}
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        tmp = Path(tmp)
        models = _models(tmp, names)
        for name, src in models.items():
            for ratio in RATIOS:
                r = _prune_and_time(src, tmp / f"{name}_{ratio}.onnx", ratio, 1, args.runs, args.batch)
                results["ratios"].append({"model": name, **r})
                print(_row(name, r), flush=True)
        if "resnet50" in models and not args.no_round_to:
            for ratio in (0.5, 0.3):
                results["round_to"].append(_round_to_sweep(models["resnet50"], tmp, ratio, args.runs or 20))

    results["load_average_after"] = os.getloadavg()
    threads = [s["threads"] for s in results["ratios"][0]["settings"]]
    head = ["model", "channels removed", "MACs speedup"]
    for t in threads:
        head += [f"{t} thr: median latency", f"{t} thr: speedup [p10-p90]", f"{t} thr: speedup / MACs speedup"]
    print(f"\nmachine: {results['machine']}; load average (1, 5, 15 min) before "
          f"{', '.join(f'{x:.1f}' for x in results['load_average_before'])}, after "
          f"{', '.join(f'{x:.1f}' for x in results['load_average_after'])}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results["ratios"]:
        print(_row(r["model"], r))
    at50 = [(r["model"], s["threads"], s["speedup_vs_flops"]) for r in results["ratios"] if r["ratio"] == 0.5
            for s in r["settings"]]
    print(f"\ntarget (speedup >= {TARGET}x MACs speedup at 50%): "
          + ", ".join(f"{m} {t} thr {v:.2f} {'met' if v >= TARGET else 'MISSED'}" for m, t, v in at50))
    for sweep in results["round_to"]:
        print(f"\nresnet50 at {sweep['ratio']:.0%} of channels: --round-to, MACs after, median ms [p10-p90] and "
              "speedup over the original, per thread count (one rotation of interleaved blocks)")
        print("| round-to | MACs speedup | " + " | ".join(f"{s['threads']} thr: ms | {s['threads']} thr: speedup"
                                                        for s in sweep["settings"]) + " |")
        print("|---|---|" + "---|---|" * len(sweep["settings"]))
        for rt in ROUND_TO:
            cells = [str(rt), f"{sweep['macs_before'] / sweep['macs_after'][str(rt)]:.2f}x"]
            for s in sweep["settings"]:
                m = s["ms"][str(rt)]
                cells += [f"{m['median']:.1f} [{m['p10']:.1f}-{m['p90']:.1f}]", f"{s['speedup'][str(rt)]:.2f}x"]
            print("| " + " | ".join(cells) + " |")
        for s in sweep["settings"]:
            best = max(ROUND_TO, key=lambda rt: s["speedup"][str(rt)])
            print(f"fastest --round-to at {s['threads']} thread(s), {sweep['ratio']:.0%}: {best}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
