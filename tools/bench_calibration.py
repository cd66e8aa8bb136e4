"""Accuracy of the calibration-aware criteria (wanda, flap) against the data-free l1 and energy, no
fine-tuning: top-1 on the test split of the bundled digits and shapes CNNs at fixed ratios.

Every model comes from ``onnxprune.prune(path, ratio=r, criterion=c, data=calib, allocation=a,
validate=False)``: rows "default" leave allocation, merge and compensation to the library (global LAMP;
merging for l1/energy/wanda; flap folds removed means into biases instead), rows "local" use local
allocation without merging. Calibration: ``models/digits_calib.npz`` and 256 generated shapes images
(``tools/shapes_models.make_split("calib")``), the same the other benchmarks use. Accuracy in onnxruntime
on ``models/digits_test.npz`` (450 samples) and the shapes test split (2000).

Usage::

    python tools/bench_calibration.py [--ratios 0.3 0.5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

# sibling tools: tools/ is on sys.path when a script in it runs
import digits_models as dm
import numpy as np
import onnx_ir as ir
import shapes_models as sm

import onnxprune
import onnxprune.criteria

MODELS = Path(__file__).resolve().parents[1] / "models"
CRITERIA = ("l1", "energy", "wanda", "flap")


def datasets(tmp: Path) -> dict[str, tuple[Path, np.ndarray, np.ndarray, Path]]:
    """name -> (model, test x, test y, calibration .npz)."""
    test = np.load(MODELS / "digits_test.npz")
    calib = tmp / "shapes_calib.npz"
    cx, cy = sm.make_split("calib")
    np.savez(calib, input=cx, labels=cy)
    x, y = sm.make_split("test")
    return {"digits_cnn": (MODELS / "digits_cnn.onnx", np.asarray(test["input"], np.float32),
                           np.asarray(test["labels"]), MODELS / "digits_calib.npz"),
            "shapes_cnn": (MODELS / "shapes_cnn.onnx", x, y, calib)}


def cell(path: Path, x, y, calib: Path, criterion: str, ratio: float, local: bool) -> dict:
    options = {"allocation": "local", "merge": False} if local else {}
    if onnxprune.criteria.REGISTRY[criterion].needs_data:  # the data-free ones read no data (refused)
        options["data"] = calib
    start = time.perf_counter()
    pruned, report = onnxprune.prune(path, ratio=ratio, criterion=criterion, validate=False, **options)
    seconds = time.perf_counter() - start
    acc = dm.onnx_accuracy(ir.to_proto(pruned), x, y)
    return {"accuracy": acc, "macs_removed": 1 - report["flops_after"] / report["flops_before"],
            "params_removed": 1 - report["params_after"] / report["params_before"], "seconds": seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ratios", nargs="*", type=float, default=[0.3, 0.5])
    p.add_argument("--json")
    args = p.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (path, x, y, calib) in datasets(Path(tmp)).items():
            base = dm.onnx_accuracy(str(path), x, y)
            print(f"\n## {name} (unpruned top-1 {base:.3f})\n")
            print("| criterion | rows | " + " | ".join(f"r={r}: top-1 / MACs removed" for r in args.ratios) + " |")
            print("|---|---|" + "---|" * len(args.ratios))
            results[name] = {"unpruned": base}
            for local in (False, True):
                for crit in CRITERIA:
                    cells = [cell(path, x, y, calib, crit, r, local) for r in args.ratios]
                    results[name][f"{crit} {'local' if local else 'default'}"] = cells
                    print(f"| {crit} | {'local' if local else 'default'} | " + " | ".join(
                        f"{c['accuracy']:.3f} / {c['macs_removed']:.1%}" for c in cells) + " |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
