"""A harder procedural benchmark: coloured shapes, and a small CNN and ResNet trained on it.

Data (deterministic from a seed, nothing downloaded): 32x32 RGB images, 10 classes = 5 shapes
(circle, square, triangle, star, cross) x 2 colour families (warm: hue in red..yellow, cool: hue in
cyan..blue). Each image has a random dark background colour with a brightness gradient, the shape at a
random position, size and rotation in a random hue of its family, one smaller distractor shape of a
random other kind and a neutral grey, and Gaussian pixel noise. Inputs are normalised to mean 0.5 /
std 0.5 ([-1, 1]), float32 ``[N, 3, 32, 32]``.

Models (input ``"input"`` [N,3,32,32], output ``"logits"`` [N,10]); trained with Adam + one-cycle, no
sparsity regularisation (a few CPU-minutes each; 8 epochs for the CNN, 3 for the ResNet):

* ``shapes_cnn``: Conv(3->32)-BN-ReLU, MaxPool, Conv(32->64)-BN-ReLU, MaxPool, Conv(64->64)-BN-ReLU,
  Conv(64->64)-BN-ReLU, MaxPool, Flatten (64x4x4), Linear(1024->64)-ReLU, Linear(64->10).
* ``shapes_resnet``: stem Conv(3->16)-BN-ReLU, MaxPool, a basic block 16->32 (1x1 projection) and one at
  32, a stride-2 block to 64 (projection) and one at 64, GlobalAveragePool, Linear(64->10).

The datasets are regenerated from their seeds (``make_split``), so only the models (``.onnx`` and
``.pt``) are stored in ``models/``::

    python tools/shapes_models.py [--out models]
"""

from __future__ import annotations

import argparse
import colorsys
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAMES = ("shapes_cnn", "shapes_resnet")
IMAGE_SIZE = 32
N_CLASSES = 10
SHAPES = ("circle", "square", "triangle", "star", "cross")
SEEDS = {"train": 1, "test": 2, "calib": 3}
SIZES = {"train": 6000, "test": 2000, "calib": 256}
TRAIN_CONFIG = {"shapes_cnn": (8, 3e-3), "shapes_resnet": (3, 3e-3)}  # epochs, max lr
BATCH_SIZE = 64


def _load_digits_models():
    spec = importlib.util.spec_from_file_location("digits_models", ROOT / "tools" / "digits_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


dm = _load_digits_models()
torch, nn = dm.torch, dm.nn


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------
def _mask(kind: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of a shape of radius ``r`` in rotated, centred coordinates (u, v)."""
    if kind == "circle":
        return u * u + v * v <= r * r
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= r * 0.8
    if kind == "triangle":  # equilateral, three half-planes
        angles = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.all([u * np.cos(a) + v * np.sin(a) <= r * 0.5 for a in angles], axis=0)
    if kind == "star":
        rho, theta = np.hypot(u, v), np.arctan2(v, u)
        return rho <= r * (0.55 + 0.45 * np.cos(5 * theta))
    if kind == "cross":
        a, b = np.abs(u), np.abs(v)
        return ((a <= r * 0.3) & (b <= r)) | ((b <= r * 0.3) & (a <= r))
    raise ValueError(kind)


def _hue_rgb(hue: float, sat: float, val: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, sat, val), dtype=np.float32)


def make_split(split: str, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x float32 [N,3,32,32] normalised, y int64 [N])`` of a split, identical on every call."""
    n = SIZES[split] if n is None else n
    rng = np.random.default_rng(SEEDS[split])
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5
    x = np.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, n).astype(np.int64)
    for i in range(n):
        shape, warm = SHAPES[y[i] % 5], y[i] < 5
        bg = rng.uniform(0.0, 0.35, 3).astype(np.float32)
        grad = rng.uniform(-0.15, 0.15, 2)
        img = bg[:, None, None] + (grad[0] * (xx - 16) / 16 + grad[1] * (yy - 16) / 16)[None]
        # distractor first (the class shape may cover it)
        kind = SHAPES[(y[i] % 5 + rng.integers(1, 5)) % 5]
        img = _paint(img, kind, rng, xx, yy, rng.uniform(3, 5), np.full(3, rng.uniform(0.4, 0.7), np.float32))
        hue = rng.uniform(-0.03, 0.15) if warm else rng.uniform(0.48, 0.68)
        img = _paint(img, shape, rng, xx, yy, rng.uniform(6, 11), _hue_rgb(hue, rng.uniform(0.55, 1.0),
                                                                           rng.uniform(0.6, 1.0)))
        img += rng.normal(0, 0.08, img.shape).astype(np.float32)
        x[i] = (np.clip(img, 0, 1) - 0.5) / 0.5
    return x, y


def _paint(img, kind, rng, xx, yy, r, colour):
    cx, cy = rng.uniform(r, IMAGE_SIZE - r, 2)
    a = rng.uniform(0, 2 * np.pi)
    u = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
    v = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
    m = _mask(kind, u, v, r)
    return np.where(m[None], colour[:, None, None], img)


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------
def _conv_bn_relu(cin: int, cout: int):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ShapesCNN(nn.Module):
    def __init__(self, num_classes: int = N_CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(3, 32), nn.MaxPool2d(2),
            _conv_bn_relu(32, 64), nn.MaxPool2d(2),
            _conv_bn_relu(64, 64), _conv_bn_relu(64, 64), nn.MaxPool2d(2))
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 4 * 4, 64)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(self.flatten(self.features(x)))))


class ShapesResNet(nn.Module):
    def __init__(self, num_classes: int = N_CLASSES):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn_relu(3, 16), nn.MaxPool2d(2))
        self.layer1 = nn.Sequential(dm.BasicBlock(16, 32), dm.BasicBlock(32, 32))
        self.layer2 = nn.Sequential(dm.BasicBlock(32, 64, stride=2), dm.BasicBlock(64, 64))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.layer2(self.layer1(self.stem(x))))))


_BUILDERS = {"shapes_cnn": ShapesCNN, "shapes_resnet": ShapesResNet}
CLASSIFIER = {"shapes_cnn": "fc2", "shapes_resnet": "fc"}


def build(name: str):
    return _BUILDERS[name]()


def load_torch_model(name: str, directory=ROOT / "models"):
    model = build(name)
    model.load_state_dict(torch.load(Path(directory) / f"{name}.pt", map_location="cpu", weights_only=True))
    return model.eval()


def train(name: str, x: np.ndarray, y: np.ndarray, seed: int = 0, log=print):
    epochs, lr = TRAIN_CONFIG[name]
    torch.manual_seed(seed)
    model = build(name)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    n = len(xt)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * ((n + BATCH_SIZE - 1) // BATCH_SIZE))
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, BATCH_SIZE):
            idx = perm[i:i + BATCH_SIZE]
            xb = xt[idx]
            if torch.rand(1, generator=gen).item() < 0.5:  # horizontal flip: shapes keep their class
                xb = xb.flip(3)
            loss = torch.nn.functional.cross_entropy(model(xb), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        log(f"  {name} epoch {ep + 1}/{epochs} loss {loss.item():.3f}")
    return model.eval()


def export_onnx(model, path) -> None:
    import io

    import onnx
    buf = io.BytesIO()
    torch.onnx.export(model.eval(), (torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE),), buf, dynamo=False,
                      opset_version=dm.OPSET, do_constant_folding=False, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    onnx.checker.check_model(onnx.load_from_string(buf.getvalue()), full_check=True)
    Path(path).write_bytes(buf.getvalue())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "models"))
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    x_tr, y_tr = make_split("train")
    x_te, y_te = make_split("test")
    print(f"data {time.perf_counter() - t0:.1f}s", flush=True)
    for name in args.models:
        t = time.perf_counter()
        model = train(name, x_tr, y_tr, log=lambda m: print(m, flush=True))
        torch.save(model.state_dict(), out / f"{name}.pt")
        export_onnx(model, out / f"{name}.onnx")
        acc_t = float(np.mean(dm.torch_logits(model, x_te).argmax(1) == y_te))
        acc_o = dm.onnx_accuracy(out / f"{name}.onnx", x_te, y_te)
        print(f"{name}: test top-1 {acc_t * 100:.2f}% (torch) {acc_o * 100:.2f}% (onnxruntime), "
              f"{time.perf_counter() - t:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
