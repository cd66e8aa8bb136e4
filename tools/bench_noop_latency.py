"""A prune that removes nothing must not make the model slower: latency(OUT) / latency(IN) for
``onnxprune IN OUT --ratio 0`` on every model the tests know, at one thread.

Models (built in a work directory, default a fresh temp dir):

* onnx's light zoo architectures with seeded random weights (``tests/zoo.py``);
* the PaddleOCR det/rec/cls models shipped in the rapidocr-onnxruntime wheel;
* the bundled ``models/*.onnx``;
* every ``tests/torch_archs.py`` architecture with each exporter (TorchScript opset 13/17, dynamo 18);
* a CREPE-like pitch tracker (``tests/conv1d_arch.py``): 1-D convs whose ``F.pad`` amounts are
  computed from ``x.shape``, TorchScript-exported at opset 11/13/17, with a free and a fixed batch.

Each model is pruned through the real CLI (``onnxprune.cli.main``, ``--ratio 0 --no-validate``), then
both files are timed in onnxruntime (CPU, one intra-op thread, sequential) on the same seeded batch-1
input, warmed up, single runs interleaved (see ``time_pair``): the ratio is the median over adjacent
pairs of OUT's time over IN's, so load from other processes hits both.

Usage::

    python tools/bench_noop_latency.py                      # everything, ~1.5 s of timing per model
    python tools/bench_noop_latency.py --only pitch --budget 4 --json noop.json
    python tools/bench_noop_latency.py --normalized   # also: the normalised model as it used to be written

Prints a Markdown table and the maximum ratio; exit status 1 if it exceeds ``--target`` (1.05).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def collect_models(workdir: Path, only: str | None) -> dict[str, Path]:
    """name -> model file, built or copied into ``workdir``; ``only`` filters names by regex first."""
    wanted = (lambda name: re.search(only, name) is not None) if only else (lambda name: True)
    models: dict[str, Path] = {}

    import onnx
    from zoo import LIGHT_MODELS, light_model, paddleocr_models

    for name in LIGHT_MODELS:
        if wanted(f"zoo_{name}"):
            path = workdir / f"zoo_{name}.onnx"
            onnx.save(light_model(name), path)
            models[f"zoo_{name}"] = path
    try:
        for kind, src in paddleocr_models().items():
            if wanted(f"paddleocr_{kind}"):
                models[f"paddleocr_{kind}"] = Path(shutil.copy(src, workdir / f"paddleocr_{kind}.onnx"))
    except RuntimeError as exc:  # the wheel is a test dependency; say so rather than skip silently
        print(f"note: PaddleOCR models not included: {exc}", file=sys.stderr)
    for src in sorted((ROOT / "models").glob("*.onnx")):
        if wanted(src.stem):
            models[src.stem] = Path(shutil.copy(src, workdir / src.name))

    import logging

    from conv1d_arch import export_pitch_tracker
    from torch_archs import ARCHS, EXPORTERS, export_arch

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" per export

    for arch in ARCHS:
        for exporter in EXPORTERS:
            if wanted(f"{arch}_{exporter}"):
                models[f"{arch}_{exporter}"] = export_arch(arch, exporter, workdir)
    for opset in (11, 13, 17):
        for dynamic in (True, False):
            path = workdir / f"pitch_ts{opset}{'' if dynamic else '_static'}.onnx"
            if wanted(path.stem):
                models[path.stem] = export_pitch_tracker(workdir, opset, dynamic)
    return models


def noop_prune(model: Path, out: Path) -> float:
    """``onnxprune IN OUT --ratio 0 --no-validate --quiet`` in this process; its wall time in seconds."""
    from onnxprune import cli

    start = time.perf_counter()
    code = cli.main([str(model), str(out), "--ratio", "0", "--no-validate", "--quiet"])
    if code != 0:
        raise SystemExit(f"onnxprune failed on {model} (exit {code})")
    return time.perf_counter() - start


def normalized_copy(model: Path, out: Path) -> None:
    """What a no-op prune wrote before OUT kept IN's structure: the normalised model, saved as it is."""
    from onnxprune import io
    from onnxprune.api import load_normalized

    io.save_model(load_normalized(model), out)


def time_pair(model: Path, out: Path, budget_s: float, min_pairs: int = 15, seed: int = 0) -> dict:
    """One-thread latency of IN and OUT on the same batch-1 input, single runs alternating (IN, OUT),
    (OUT, IN), ... after warm-up: the ratio is the median over adjacent pairs of OUT / IN, so load from
    other processes that lasts longer than two runs hits both alike. At one thread there are no pool
    threads left spinning to slow the next session down, so runs need not be blocked."""
    import numpy as np

    from onnxprune.runtime import session, synthetic_inputs

    a, b = session(model, threads=1, role="original model"), session(out, threads=1, role="pruned model")
    feeds = synthetic_inputs(a, seed, batch=1)

    def timed(sess) -> float:
        start = time.perf_counter()
        sess.run(None, feeds)
        return time.perf_counter() - start

    warm = [timed(s) for _ in range(3) for s in (a, b)]
    pairs = int(min(500, max(min_pairs, budget_s / max(sum(warm[-2:]), 1e-6))))
    ta, tb = [], []
    for i in range(pairs):
        for sess, times in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            times.append(timed(sess))
    ratios = np.asarray(tb) / np.asarray(ta)
    return {"in_ms": float(np.median(ta) * 1e3), "out_ms": float(np.median(tb) * 1e3),
            "ratio": float(np.median(ratios)), "ratio_p10": float(np.percentile(ratios, 10)),
            "ratio_p90": float(np.percentile(ratios, 90)), "runs": pairs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", metavar="REGEX", help="models whose name matches REGEX")
    p.add_argument("--budget", type=float, default=2.0, metavar="SECONDS",
                   help="seconds of timed runs per model (default 2; at least 15 pairs of runs)")
    p.add_argument("--target", type=float, default=1.05, help="maximum allowed ratio (default 1.05)")
    p.add_argument("--workdir", type=Path, help="build models here (default: a temp dir, removed after)")
    p.add_argument("--json", type=Path, help="write the rows here")
    p.add_argument("--normalized", action="store_true",
                   help="also time the normalised model saved as it is (what a no-op prune wrote before it "
                        "kept IN's structure), to show what the structure costs")
    args = p.parse_args(argv)

    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="onnxprune-noop-")
    workdir = args.workdir or Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        models = collect_models(workdir, args.only)
        rows = []
        for name, model in models.items():
            out = workdir / f"{name}.noop.onnx"
            prune_s = noop_prune(model, out)
            row = {"model": name, "prune_s": round(prune_s, 2), **time_pair(model, out, args.budget)}
            if args.normalized:
                normalized = workdir / f"{name}.normalized.onnx"
                normalized_copy(model, normalized)
                row["normalized_ratio"] = time_pair(model, normalized, args.budget)["ratio"]
            rows.append(row)
            print(f"{name:34s} in {row['in_ms']:8.3f} ms  out {row['out_ms']:8.3f} ms  ratio {row['ratio']:.3f}"
                  + (f"  normalized {row['normalized_ratio']:.3f}" if args.normalized else ""),
                  file=sys.stderr, flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    extra = " normalised/IN |" if args.normalized else ""
    print(f"| model | IN ms | OUT ms | OUT/IN | p10-p90 | runs |{extra}")
    print("|---|---:|---:|---:|---:|---:|" + ("---:|" if args.normalized else ""))
    for r in rows:
        print(f"| {r['model']} | {r['in_ms']:.3f} | {r['out_ms']:.3f} | {r['ratio']:.3f} | "
              f"{r['ratio_p10']:.3f}-{r['ratio_p90']:.3f} | {r['runs']} |"
              + (f" {r['normalized_ratio']:.3f} |" if args.normalized else ""))
    worst = max(rows, key=lambda r: r["ratio"]) if rows else None
    if worst:
        print(f"\nmax OUT/IN = {worst['ratio']:.3f} ({worst['model']}); target <= {args.target:g}: "
              f"{'PASS' if worst['ratio'] <= args.target else 'FAIL'} ({len(rows)} models, one thread, interleaved)")
    if args.json:
        args.json.write_text(json.dumps({"target": args.target, "rows": rows}, indent=2) + "\n")
    return 0 if worst is None or worst["ratio"] <= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
