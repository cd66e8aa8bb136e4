"""Train two small CNNs on scikit-learn's ``load_digits`` and export them to ONNX.

These are the "real" (trained, not random) models used by the onnxprune
benchmarks and accuracy tests.  Run as a script to regenerate ``models/``::

    python tools/digits_models.py [--out models]

or import it (``tools/`` is not a package; put it on ``sys.path`` or use
``importlib``) to reuse the architectures and data helpers.

Data
----
* ``sklearn.datasets.load_digits()``: 1797 grey 8x8 images, pixel values 0..16.
* Pixels are scaled to [0, 1] (divide by 16), upsampled to 16x16 with
  ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``,
  then normalised with mean 0.5 / std 0.5, i.e. ``x = (x01 - 0.5) / 0.5``
  (values in [-1, 1]).  Model input layout is float32 ``[N, 1, 16, 16]``.
* Fixed split: ``train_test_split(test_size=0.25, stratify=y, random_state=0)``
  -> 1347 train / 450 test samples.  Labels are int64 class ids 0..9.

Models (input name ``"input"`` [N,1,16,16], dynamic batch axis ``"N"``,
output name ``"logits"`` [N,10])
-------------------------------------------------------------------------
* ``digits_cnn`` (:class:`DigitsCNN`): Conv(1->32)-BN-ReLU, Conv(32->64)-BN-ReLU,
  MaxPool2, Conv(64->64)-BN-ReLU, MaxPool2, Flatten, Linear(1024->64)-ReLU,
  Linear(64->10).  All convs 3x3, pad 1.  The Flatten -> Gemm head is
  deliberate (pruning the last conv must shrink the Gemm input in blocks of 16).
* ``digits_resnet`` (:class:`DigitsResNet`): stem Conv(1->32)-BN-ReLU, two basic
  residual blocks at 32 channels, one stride-2 block to 64 channels with a 1x1
  conv + BN projection shortcut, one basic block at 64, GlobalAveragePool,
  Linear(64->10).

Training: Adam (lr 1e-3 CNN / 2e-3 ResNet), batch 64, a few epochs,
``torch.manual_seed(0)``, ``torch.use_deterministic_algorithms(True)``, 2 torch
threads, shuffling from a seeded ``torch.Generator``.

Export: TorchScript exporter (``dynamo=False``), opset 13,
``do_constant_folding=False`` so the BatchNormalization nodes stay in the graph.
Each export is checked with ``onnx.checker`` and against torch on the test
split (max abs diff <= 1e-4 and identical top-1 accuracy).

Files written to ``--out`` (default ``models/`` next to ``tools/``)
-------------------------------------------------------------------
* ``digits_cnn.onnx``, ``digits_resnet.onnx``
* ``digits_cnn.pt``, ``digits_resnet.pt``: ``state_dict`` s; rebuild with
  ``m = build(name); m.load_state_dict(torch.load(path)); m.eval()``
* ``digits_calib.npz``: first 256 training samples (``"input"`` float32
  [256,1,16,16], ``"labels"`` int64 [256])
* ``digits_test.npz``: the whole test split, same keys.

The .npz files are written with fixed zip timestamps (``np.savez`` stamps the
current time) so that reruns produce byte-identical files.

Public helpers
--------------
``load_split()`` -> ``(x_train, y_train, x_test, y_test)`` numpy float32/int64.
``onnx_accuracy(model_path_or_bytes, x, y)`` -> top-1 accuracy via onnxruntime.
``build(name)`` -> untrained ``nn.Module`` (``"digits_cnn"`` / ``"digits_resnet"``).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

MODEL_NAMES = ("digits_cnn", "digits_resnet")
NORM_MEAN = 0.5
NORM_STD = 0.5
IMAGE_SIZE = 16
SPLIT_SEED = 0
TEST_SIZE = 0.25
N_CALIB = 256
OPSET = 13
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "models"

# Per-model training hyper-parameters: (epochs, learning rate).
TRAIN_CONFIG = {
    "digits_cnn": (8, 1e-3),
    "digits_resnet": (8, 2e-3),
}
BATCH_SIZE = 64

try:  # torch is only needed for the architectures / training, not onnx_accuracy.
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # pragma: no cover - torch is an optional dependency
    torch = None
    nn = None


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------
def _preprocess(images8: np.ndarray) -> np.ndarray:
    """uint 0..16 [N,8,8] -> normalised float32 [N,1,16,16]."""
    x = torch.from_numpy(np.asarray(images8, dtype=np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    x = (x - NORM_MEAN) / NORM_STD
    return np.ascontiguousarray(x.numpy(), dtype=np.float32)


def load_split():
    """Return ``(x_train, y_train, x_test, y_test)``.

    x arrays are float32 ``[N,1,16,16]`` (normalised model input), y arrays are
    int64 ``[N]``.  The split is fixed (stratified, 25% test, seed 0).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32)
    labels = digits.target.astype(np.int64)
    im_tr, im_te, y_tr, y_te = train_test_split(
        images, labels, test_size=TEST_SIZE, stratify=labels, random_state=SPLIT_SEED
    )
    return (
        _preprocess(im_tr),
        np.ascontiguousarray(y_tr, dtype=np.int64),
        _preprocess(im_te),
        np.ascontiguousarray(y_te, dtype=np.int64),
    )


def onnx_accuracy(model_path_or_bytes, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    """Top-1 accuracy of an ONNX model (path, bytes or ``onnx.ModelProto``) with onnxruntime."""
    logits = onnx_logits(model_path_or_bytes, x, batch_size=batch_size)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(y)))


def onnx_logits(model_path_or_bytes, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Run an ONNX model (path, bytes or ``onnx.ModelProto``) on ``x`` with onnxruntime (CPU)."""
    import onnxruntime as ort

    src = model_path_or_bytes
    if hasattr(src, "SerializeToString"):
        src = src.SerializeToString()
    elif isinstance(src, os.PathLike):
        src = os.fspath(src)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    x = np.asarray(x, dtype=np.float32)
    outs = [sess.run(None, {in_name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(outs, axis=0)


# --------------------------------------------------------------------------
# architectures
# --------------------------------------------------------------------------
if torch is not None:

    def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
        )

    class DigitsCNN(nn.Module):
        """Plain VGG-style CNN with a Flatten -> Gemm head."""

        def __init__(self, c1: int = 32, c2: int = 64, c3: int = 64, hidden: int = 64, num_classes: int = 10):
            super().__init__()
            self.features = nn.Sequential(
                _conv_bn_relu(1, c1),
                _conv_bn_relu(c1, c2),
                nn.MaxPool2d(2),
                _conv_bn_relu(c2, c3),
                nn.MaxPool2d(2),
            )
            self.flatten = nn.Flatten()
            self.fc1 = nn.Linear(c3 * 4 * 4, hidden)
            self.relu = nn.ReLU()
            self.fc2 = nn.Linear(hidden, num_classes)

        def forward(self, x):
            x = self.flatten(self.features(x))
            return self.fc2(self.relu(self.fc1(x)))

    class BasicBlock(nn.Module):
        """conv-bn-relu-conv-bn + shortcut, relu.  1x1 conv+BN projection when shape changes."""

        def __init__(self, cin: int, cout: int, stride: int = 1):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu2 = nn.ReLU()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
                )
            else:
                self.shortcut = nn.Identity()

        def forward(self, x):
            out = self.relu1(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu2(out + self.shortcut(x))

    class DigitsResNet(nn.Module):
        """Tiny ResNet: stem, 2 blocks @c1, stride-2 block -> c2, 1 block @c2, GAP, Linear."""

        def __init__(self, c1: int = 32, c2: int = 64, num_classes: int = 10):
            super().__init__()
            self.stem = _conv_bn_relu(1, c1)
            self.layer1 = nn.Sequential(BasicBlock(c1, c1), BasicBlock(c1, c1))
            self.layer2 = nn.Sequential(BasicBlock(c1, c2, stride=2), BasicBlock(c2, c2))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(c2, num_classes)

        def forward(self, x):
            x = self.layer2(self.layer1(self.stem(x)))
            return self.fc(self.flatten(self.pool(x)))

    _BUILDERS = {"digits_cnn": DigitsCNN, "digits_resnet": DigitsResNet}


def build(name: str):
    """Return a freshly initialised (untrained, train-mode) model by name."""
    if torch is None:
        raise ImportError("torch is required to build the digits models")
    try:
        return _BUILDERS[name]()
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}") from None


def load_torch_model(name: str, directory=DEFAULT_OUT):
    """Rebuild the trained torch model from ``<directory>/<name>.pt`` (eval mode)."""
    model = build(name)
    state = torch.load(Path(directory) / f"{name}.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


# --------------------------------------------------------------------------
# training / export
# --------------------------------------------------------------------------
def _setup_determinism(threads: int = 2) -> None:
    torch.set_num_threads(threads)
    try:
        torch.use_deterministic_algorithms(True)
    except Exception:  # pragma: no cover
        pass


def train(name: str, x_train: np.ndarray, y_train: np.ndarray, seed: int = 0):
    """Train model ``name`` deterministically; return the eval-mode model."""
    epochs, lr = TRAIN_CONFIG[name]
    torch.manual_seed(seed)
    model = build(name)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x_train)
    yt = torch.from_numpy(y_train)
    n = len(xt)
    steps = epochs * ((n + BATCH_SIZE - 1) // BATCH_SIZE)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, BATCH_SIZE):
            idx = perm[i : i + BATCH_SIZE]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad() if torch is not None else (lambda f: f)
def torch_logits(model, x: np.ndarray) -> np.ndarray:
    return model.eval()(torch.from_numpy(x)).numpy()


def export_onnx(model, path) -> bytes:
    """Export ``model`` (eval) with the TorchScript exporter; write to ``path``; return the bytes."""
    import onnx

    dummy = torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    buf = io.BytesIO()
    torch.onnx.export(
        model.eval(),
        (dummy,),
        buf,
        dynamo=False,
        opset_version=OPSET,
        do_constant_folding=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )
    data = buf.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    Path(path).write_bytes(data)
    return data


def save_npz_deterministic(path, **arrays) -> None:
    """Like ``np.savez_compressed`` but with fixed zip timestamps -> reproducible bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            bio = io.BytesIO()
            np.lib.format.write_array(bio, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(info, bio.getvalue())


def generate(out=DEFAULT_OUT, verbose: bool = True) -> dict:
    """Train, export and verify both models; write every artefact into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _setup_determinism()
    log = print if verbose else (lambda *a, **k: None)

    x_tr, y_tr, x_te, y_te = load_split()
    log(f"data: train {x_tr.shape} test {x_te.shape}")
    save_npz_deterministic(out / "digits_calib.npz", input=x_tr[:N_CALIB], labels=y_tr[:N_CALIB])
    save_npz_deterministic(out / "digits_test.npz", input=x_te, labels=y_te)

    results = {}
    for name in MODEL_NAMES:
        t0 = time.perf_counter()
        model = train(name, x_tr, y_tr)
        train_s = time.perf_counter() - t0
        ref = torch_logits(model, x_te)
        torch_acc = float(np.mean(ref.argmax(1) == y_te))

        torch.save(model.state_dict(), out / f"{name}.pt")
        data = export_onnx(model, out / f"{name}.onnx")
        got = onnx_logits(data, x_te)
        max_diff = float(np.max(np.abs(got - ref)))
        onnx_acc = float(np.mean(got.argmax(1) == y_te))
        if max_diff > 1e-4:
            raise AssertionError(f"{name}: onnxruntime vs torch max abs diff {max_diff:.3g} > 1e-4")
        if onnx_acc != torch_acc:
            raise AssertionError(f"{name}: ONNX accuracy {onnx_acc} != torch accuracy {torch_acc}")
        n_params = sum(p.numel() for p in model.parameters())
        results[name] = dict(train_s=train_s, torch_acc=torch_acc, onnx_acc=onnx_acc,
                             max_diff=max_diff, params=n_params, onnx_bytes=len(data))
        log(f"{name}: params {n_params}, train {train_s:.1f}s, test acc torch {torch_acc:.4f} "
            f"onnx {onnx_acc:.4f}, max|diff| {max_diff:.2e}, onnx {len(data) / 1024:.0f} KiB")
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output directory (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    generate(args.out, verbose=not args.quiet)
    if not args.quiet:
        print(f"total {time.perf_counter() - t0:.1f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
