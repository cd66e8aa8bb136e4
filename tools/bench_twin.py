"""Forward+backward time per batch: the torch twin of the bundled ONNX models vs the original torch
modules they were exported from (``tools/digits_models.py``).

    python tools/bench_twin.py [--batch 64 256] [--reps 30] [--threads 2]

Both run in eval mode (BatchNorm uses running statistics) with gradients w.r.t. every weight; the
twin also differentiates w.r.t. BN running mean/var (they are initializers, hence Parameters), and a
second twin row freezes those to show what that costs. Medians over interleaved repetitions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx_ir as ir
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
from digits_models import load_torch_model  # noqa: E402  (after the sys.path lines above)

from onnxprune.twin import Twin  # noqa: E402


def _step(fn, x: torch.Tensor, y: torch.Tensor, params: list[torch.nn.Parameter]) -> None:
    for p in params:
        p.grad = None
    loss = F.cross_entropy(fn(x), y)
    loss.backward()


def bench(name: str, batch: int, reps: int) -> dict[str, float]:
    torch_model = load_torch_model(name, ROOT / "models")
    twin = Twin(ir.load(ROOT / "models" / f"{name}.onnx"))
    twin_frozen_stats = Twin(ir.load(ROOT / "models" / f"{name}.onnx"))
    for onnx_name, p in twin_frozen_stats.named_onnx_parameters():
        if onnx_name.endswith(("running_mean", "running_var")):
            p.requires_grad_(False)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((batch, 1, 16, 16)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, batch))
    runners = {
        "torch": (torch_model, list(torch_model.parameters())),
        "twin": (lambda t: twin(t)[0], list(twin.parameters())),
        "twin (BN stats frozen)": (lambda t: twin_frozen_stats(t)[0],
                                   [p for p in twin_frozen_stats.parameters() if p.requires_grad]),
    }
    with torch.no_grad():  # same function before timing anything
        ref = torch_model(x)
        assert torch.allclose(twin(x)[0], ref, rtol=1e-4, atol=1e-4), name
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(3):
        for fn, params in runners.values():
            _step(fn, x, y, params)
    for _ in range(reps):
        for key, (fn, params) in runners.items():
            t0 = time.perf_counter()
            _step(fn, x, y, params)
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"forward+backward per batch, median of {args.reps}, {args.threads} threads, torch {torch.__version__}")
    print(f"{'model':<14} {'batch':>5} {'torch ms':>9} {'twin ms':>8} {'ratio':>6} {'twin, BN stats frozen':>22} {'ratio':>6}")
    for name in ("digits_cnn", "digits_resnet"):
        for batch in args.batch:
            r = bench(name, batch, args.reps)
            base = r["torch"]
            print(f"{name:<14} {batch:>5} {base:>9.2f} {r['twin']:>8.2f} {r['twin'] / base:>5.2f}x "
                  f"{r['twin (BN stats frozen)']:>21.2f} {r['twin (BN stats frozen)'] / base:>5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
