"""Accuracy of the calibration-aware criteria (wanda, flap) against the data-free l1 and energy at equal
MACs removed, no fine-tuning: top-1 on the test split of the bundled digits and shapes CNNs.

Every model comes from ``onnxprune.prune(path, ratio=r, criterion=c, validate=False, ...)`` with the row's
options; "default" rows leave allocation, merging and compensation to the library (global LAMP; merging
for l1, energy and wanda; flap folds the removed channels' means into biases instead). Each target
(MACs removed, default 0.3 and 0.5) is hit by bisection on the ratio (``bench_accuracy.bisect_target``).
Calibration: ``models/digits_calib.npz`` and 256 generated shapes images
(``tools/shapes_models.make_split("calib")``), as the other benchmarks; accuracy in onnxruntime on
``models/digits_test.npz`` (450 samples: one is 0.22 points) and the shapes test split (2000).

Usage::

    python tools/bench_calibration.py [--targets 0.3 0.5] [--steps 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

# sibling tools: tools/ is on sys.path when a script in it runs
import bench_accuracy as ba
import digits_models as dm
import numpy as np
import shapes_models as sm

MODELS = Path(__file__).resolve().parents[1] / "models"
# label -> (criterion, options); "data" is filled in for the criteria that read it
ROWS = {
    "l1 (default)": ("l1", {}),
    "energy (default)": ("energy", {}),
    "wanda (default)": ("wanda", {}),
    "flap (default: +compensate)": ("flap", {}),
    "flap global/mean +compensate": ("flap", {"normalize": "mean"}),
    "flap --no-compensate +merge": ("flap", {"compensate": False, "merge": True}),
    "wanda +compensate": ("wanda", {"compensate": True, "merge": False}),
    "l1 local": ("l1", {"allocation": "local", "merge": False}),
    "wanda local": ("wanda", {"allocation": "local", "merge": False}),
    "flap local +compensate": ("flap", {"allocation": "local"}),
    "wanda local +compensate": ("wanda", {"allocation": "local", "compensate": True}),
    "energy local": ("energy", {"allocation": "local", "merge": False}),
    # the same measured compensation for the data-free criteria (--compensate --data)
    "l1 local +compensate": ("l1", {"allocation": "local", "compensate": True}),
    "energy local +compensate": ("energy", {"allocation": "local", "compensate": True}),
}


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


def main(argv=None) -> int:
    from onnxprune.criteria import REGISTRY

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", nargs="*", type=float, default=[0.3, 0.5])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--tol", type=float, default=0.03)
    p.add_argument("--json")
    args = p.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (path, x, y, calib) in datasets(Path(tmp)).items():
            base = dm.onnx_accuracy(str(path), x, y)
            print(f"\n## {name} (unpruned top-1 {base:.3f})\n")
            print("| row | " + " | ".join(f"{t:.0%} MACs removed: top-1 (achieved)" for t in args.targets) + " |")
            print("|---|" + "---|" * len(args.targets), flush=True)
            results[name] = {"unpruned": base}
            for label, (crit, options) in ROWS.items():
                reads_data = REGISTRY[crit].needs_data or options.get("compensate")
                opts = {**options, **({"data": calib} if reads_data else {})}
                cache: dict = {}
                cells = []
                for t in args.targets:
                    c = ba.bisect_target(lambda r, c=crit, o=opts, m=path: ba.onnxprune_probe(m, r, c, **o), t, args.steps,
                                         args.tol, cache)
                    payload = c.pop("_payload", None)
                    c["accuracy"] = dm.onnx_accuracy(payload(), x, y) if c["ok"] and payload else None
                    cells.append(c)
                results[name][label] = cells
                print(f"| {label} | " + " | ".join(
                    f"{c['accuracy']:.3f} ({c['reduction']:.1%})" if c["accuracy"] is not None else "n/a"
                    for c in cells) + " |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
