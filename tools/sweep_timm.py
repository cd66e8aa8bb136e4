"""Sweep timm architectures through both torch exporters, ``onnxprune --ratio 0.3`` and the exactness oracle.

Run from the repository root (writes ``docs/timm_sweep.md`` and ``tools/timm_sweep_results.json``)::

    python tools/sweep_timm.py [--only REGEX] [--jobs 2] [--timeout 600]

For each architecture of ``MODELS`` (random weights: ``timm.create_model(name, pretrained=False)``, never a
download; the smallest variant of each family, at a small input where the model allows one) and each exporter
(TorchScript ``dynamo=False`` opset 17, and ``dynamo=True`` opset 18; static shapes, batch 1, the exporters'
default constant folding and optimisation, as a vendor would export):

* **groups**: channel groups prunable / total (``onnxprune.analyze``), the share of the model's MACs in
  layers that read or write a prunable group, and every freeze reason with the number of groups it freezes;
* **valid**: ``python -m onnxprune IN OUT --ratio 0.3`` exits 0, OUT passes ``onnx.checker`` (full check),
  onnxruntime runs it, and the pruner's own validation compared the outputs;
* **exact**: the oracle of ``tests/oracle.py`` plants dead channels in the prunable groups (ratio 0.3); pruning
  the planted model at that ratio must remove exactly them (``--criterion l1``, local allocation, no merging),
  and lossless mode (``--criterion lumping``, no ratio) must remove at least as many; both outputs must equal
  the planted model's within 1e-5 relative.

Each export runs in its own process with a timeout, one thread (OMP and torch); exports are cached in
``~/.cache/onnxprune-sweep`` (``--cache``), so a rerun after a fix only prunes. A failure of one model is
recorded and the sweep goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path.home() / ".cache" / "onnxprune-sweep"
EXPORTERS = ("torchscript", "dynamo")
RATIO = 0.3
TOL = 1e-5
WEIGHTS_RECIPE = 2  # bump when randomize_constant_parameters changes: the cached exports are redone


@dataclass(frozen=True)
class Spec:
    name: str  # timm model name
    family: str
    size: int = 64  # input height and width
    kwargs: dict = field(default_factory=dict)  # create_model arguments (img_size, reduced depth/width)
    note: str = ""


# The smallest variant of each family; ``kwargs`` shrink a model only where the family has no small variant,
# and ``note`` says so. Input sizes are the smallest the architecture accepts near 64 px.
MODELS: tuple[Spec, ...] = (
    Spec("resnet18", "ResNet"),
    Spec("resnet10t", "ResNet (deep stem)"),
    Spec("resnext26ts", "ResNeXt"),
    Spec("seresnet18", "SE-ResNet"),
    Spec("skresnet18", "SKNet"),
    Spec("resnest14d", "ResNeSt"),
    Spec("res2net50_26w_4s", "Res2Net"),
    Spec("regnetx_002", "RegNetX"),
    Spec("regnety_002", "RegNetY"),
    Spec("efficientnet_b0", "EfficientNet"),
    Spec("tf_efficientnet_lite0", "EfficientNet-Lite (TF padding)"),
    Spec("mobilenetv2_035", "MobileNetV2"),
    Spec("mobilenetv3_small_050", "MobileNetV3"),
    Spec("mobilenetv4_conv_small", "MobileNetV4"),
    Spec("lcnet_050", "PP-LCNet"),
    Spec("ghostnet_050", "GhostNet"),
    Spec("ghostnetv2_100", "GhostNetV2"),
    Spec("mnasnet_small", "MNASNet"),
    Spec("rexnet_100", "ReXNet"),
    Spec("densenet121", "DenseNet"),
    Spec("dpn48b", "DPN"),
    Spec("inception_v3", "Inception", size=96),
    Spec("vgg11_bn", "VGG", kwargs={"mlp_ratio": 0.125}, note="head MLP hidden width 512 instead of 4096 (mlp_ratio 0.125)"),
    Spec("convnext_atto", "ConvNeXt"),
    Spec("inception_next_atto", "InceptionNeXt"),
    Spec("convmixer_768_32", "ConvMixer"),
    Spec("repvgg_a0", "RepVGG"),
    Spec("mobileone_s0", "MobileOne"),
    Spec("dla46_c", "DLA"),
    Spec("hrnet_w18_small", "HRNet"),
    Spec("cspresnet50", "CSPNet"),
    Spec("cs3darknet_focus_s", "CSPDarkNet (CS3)"),
    Spec("darknet17", "DarkNet"),
    Spec("ese_vovnet19b_dw", "VoVNet"),
    Spec("selecsls42b", "SelecSLS"),
    Spec("gernet_s", "GENet"),
    Spec("hgnetv2_b0", "PP-HGNetV2"),
    Spec("nf_resnet26", "NF-ResNet"),
    Spec("nf_regnet_b0", "NF-RegNet"),
    Spec("vit_tiny_patch16_224", "ViT", kwargs={"img_size": 64}),
    Spec("deit_tiny_distilled_patch16_224", "DeiT (distilled)", kwargs={"img_size": 64}),
    Spec("cait_xxs24_224", "CaiT", kwargs={"img_size": 64}),
    Spec("xcit_nano_12_p16_224", "XCiT", kwargs={"img_size": 64}),
    Spec("convit_tiny", "ConViT", kwargs={"img_size": 64}),
    Spec("beit_base_patch16_224", "BEiT", kwargs={"img_size": 64, "embed_dim": 192, "num_heads": 3, "depth": 6},
         note="BEiT has no small variant: base reduced to width 192, depth 6"),
    Spec("swin_tiny_patch4_window7_224", "Swin", size=128, kwargs={"img_size": 128, "window_size": 4}),
    Spec("pit_ti_224", "PiT", kwargs={"img_size": 64}),
    Spec("levit_128s", "LeViT", kwargs={"img_size": 64}),
    Spec("coat_lite_tiny", "CoaT", kwargs={"img_size": 64}),
    Spec("maxvit_pico_rw_256", "MaxViT", size=128, kwargs={"img_size": 128}),
    Spec("efficientformer_l1", "EfficientFormer", size=224, note="attention resolution fixed at 7x7: 224 px input"),
    Spec("efficientformerv2_s0", "EfficientFormerV2", kwargs={"img_size": 64}),
    Spec("mobilevit_xxs", "MobileViT"),
    Spec("mobilevitv2_050", "MobileViTV2"),
    Spec("edgenext_xx_small", "EdgeNeXt"),
    Spec("fastvit_t8", "FastViT"),
    Spec("tiny_vit_5m_224", "TinyViT"),
    Spec("pvt_v2_b0", "PVTv2"),
    Spec("efficientvit_b0", "EfficientViT (MIT)"),
    Spec("efficientvit_m0", "EfficientViT (MSRA)", kwargs={"img_size": 64}),
    Spec("poolformer_s12", "PoolFormer"),
    Spec("resmlp_12_224", "ResMLP", kwargs={"img_size": 64}),
    Spec("mixer_s16_224", "MLP-Mixer", kwargs={"img_size": 64}),
    Spec("sequencer2d_s", "Sequencer (BiLSTM)"),
)


# What each freeze reason means and what it would take to lift it (first matching pattern wins).
REASON_NOTES: tuple[tuple[str, str], ...] = (
    (r"is a graph output", "by design: the model's output (the 1000 class logits) keeps its width"),
    (r"weight '…' is computed by",
     "weight standardisation (NF-ResNet/NF-RegNet: each Conv weight is standardised at run time from its "
     "parameters, Mean/Sub/Div then Reshape); lifted by constant folding of that weight subgraph (the "
     "constant-folding pass, not in this sweep)"),
    (r"computed at run time|read at run time|data-dependent shape",
     "shape arithmetic from static shapes (TorchScript keeps `Shape`→`Gather`→... chains: TF-style same "
     "padding, `F.interpolate(size=x.shape)`, the attention scale from the head width) and weights computed "
     "from parameters (weight standardisation); lifted by constant folding (the constant-folding pass, "
     "not in this sweep)"),
    (r"carries channels that cannot be removed|has channels that cannot be removed",
     "follows another freeze: the other operand comes from a frozen or computed tensor (often one of the "
     "rows above); lifted with it"),
    (r"LayerNormalization normalises over the channel axis",
     "by design: the residual stream of a transformer (every block would lose the same channels and the "
     "norm's statistics change); prune heads and MLP width instead"),
    (r"has channels on a batch axis|activation without tracked channels",
     "a MatMul of two activations the attention rules do not follow: CoaT's factorised attention "
     "(softmax(K)ᵀ·V, channels on both sides of the product) and LeViT's attention-downsample (queries from a "
     "subsampled grid, heads on a batch axis); needs a rule coupling K's and Q's channels through Kᵀ·V"),
    (r"inputs carry channels on different axes|A carries channels on its rows while B makes new ones",
     "token mixing (MLP-Mixer, ResMLP): a Linear over the token axis adds into the channel stream; the "
     "residual stream is frozen by design, token-mixing widths would need a rule for MatMuls on the token axis"),
    (r"InstanceNormalization: channels tracked on axis 2",
     "PoolFormer's GroupNorm(1) exported as InstanceNormalization over a reshaped tensor: normalises over all "
     "channels at once, so removing one changes the statistics (like LayerNorm): by design"),
    (r"reshapes the channel axis in a way no rule covers",
     "MobileViT's unfold of feature maps into patches (a Reshape that moves channels next to pixels); needs a "
     "Reshape rule for that layout"),
    (r"GatherND: op not in the op table|gathers along the channel axis|concatenated without tracked channels",
     "one group each: an op or an index pattern on the channel axis with no rule (GatherND in VGG's dynamo "
     "head, a channel Gather in ConvNeXt's dynamo export, a Concat of an untracked tensor in PP-HGNetV2)"),
    (r"a channel spans several of its chunks",
     "MaxViT, TorchScript: the qkv projection is viewed as [heads, 3·head width] and chunked into q, k, v "
     "along that axis, so each head's q, k and v are interleaved; needs the chunk rule to balance per head "
     "(the same groups also read the head width at run time for the attention scale)"),
)


def reason_note(category: str) -> str:
    return next((note for pattern, note in REASON_NOTES if re.search(pattern, category)),
                "not yet looked into (found in the last part of the sweep)")


# ---------------------------------------------------------------------------------------------
# worker: one (model, exporter) in this process
# ---------------------------------------------------------------------------------------------


def _import_timm():
    """timm needs torchvision; on a machine whose torchvision wheel was built for another torch (its C
    extension does not load), torchvision's fake-kernel registrations for its own ops fail at import.
    timm uses none of those ops, so the registrations are skipped there."""
    try:
        import timm
    except (RuntimeError, OSError):
        import types
        for name in [n for n in sys.modules if n.startswith(("torchvision", "timm"))]:
            del sys.modules[name]
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules[name] = types.ModuleType(name)
        import timm
    return timm


def randomize_constant_parameters(model) -> None:
    """Random values where timm's init leaves a parameter constant: zero-initialised last BatchNorm scales
    of residual blocks, zero heads, unit norm scales and zero biases would make whole branches read nothing,
    so dead-channel planting and ratio pruning would prove little. BatchNorm statistics are randomised too,
    so that BatchNorm is not an identity."""
    import torch
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and p.numel() > 1 and bool((p == p.flatten()[0]).all()):
                base = p.flatten()[0].item()
                spread = 0.5 * abs(base) if base else 0.1
                p.copy_(base + spread * (2 * torch.rand(p.shape, generator=gen) - 1))
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and mod.running_mean is not None:
                mod.running_mean.copy_(torch.rand(mod.running_mean.shape, generator=gen) - 0.5)
                mod.running_var.copy_(0.5 + 1.5 * torch.rand(mod.running_var.shape, generator=gen))


def cache_path(spec: Spec, exporter: str, cache: Path) -> Path:
    """Where the export of ``spec`` is cached; the key changes with the spec and the weight recipe."""
    key = zlib.crc32(repr((spec.size, sorted(spec.kwargs.items()), WEIGHTS_RECIPE)).encode())
    return cache / f"{spec.name}_{exporter}_{key:08x}.onnx"


def export(spec: Spec, exporter: str, cache: Path) -> Path:
    """The cached ONNX export of ``spec`` (written on first use)."""
    path = cache_path(spec, exporter, cache)
    if path.exists():
        return path
    import torch
    timm = _import_timm()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = timm.create_model(spec.name, pretrained=False, **spec.kwargs).eval()
    randomize_constant_parameters(model)
    x = torch.randn(1, 3, spec.size, spec.size)
    tmp = path.with_suffix(".tmp.onnx")
    import warnings
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(model, (x,), str(tmp), dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["output"])
        else:
            torch.onnx.export(model, (x,), str(tmp), dynamo=True, opset_version=18, external_data=False,
                              input_names=["input"], output_names=["output"], verbose=False)
    tmp.replace(path)
    return path


def _message(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:400]


def _groups_record(path: Path) -> dict:
    """Groups prunable/total, MACs share of the layers in prunable groups, freeze reasons with counts."""
    sys.path.insert(0, str(ROOT / "tools"))
    from arch_table import reason_category

    from onnxprune.graph import analyze_groups
    from onnxprune.metrics import macs_per_node
    from onnxprune.pipeline import load_normalized

    m = load_normalized(path)
    an = analyze_groups(m)
    macs = macs_per_node(m)
    touched = {p.node for g in an.prunable_groups for p in g.producers + g.params}
    reasons: dict[str, int] = {}
    for g in an.groups:
        for cat in sorted({reason_category(r)[0] for r in g.frozen}):
            reasons[cat] = reasons.get(cat, 0) + 1
    total = sum(macs.values())
    return {"groups": len(an.groups), "prunable": len(an.prunable_groups),
            "macs": total, "macs_prunable_share": (sum(v for n, v in macs.items() if n in touched) / total
                                                   if total else 0.0),
            "reasons": reasons}


def _check_valid(path: Path, work: Path, timeout: float) -> dict:
    import numpy as np
    import onnx
    import onnxruntime as ort

    out, rep = work / "pruned.onnx", work / "report.json"
    cmd = [sys.executable, "-m", "onnxprune", str(path), str(out), "--ratio", str(RATIO), "--report", str(rep),
           "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    res: dict = {"exit": proc.returncode}
    if proc.returncode != 0:
        res["error"] = " ".join(proc.stderr.strip().splitlines()[-1:])[:400]
        return res
    report = json.loads(rep.read_text())
    res["macs_removed"] = 1 - report["flops_after"] / report["flops_before"] if report["flops_before"] else 0.0
    res["params_removed"] = 1 - report["params_after"] / report["params_before"]
    try:
        onnx.checker.check_model(onnx.load(out), full_check=True)
    except Exception as exc:
        res["error"] = "onnx.checker: " + _message(exc)
        return res
    try:
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        feeds = {i.name: np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in i.shape])
                 .astype(np.float32) for i in sess.get_inputs()}
        outs = sess.run(None, feeds)
        if not all(np.isfinite(o).all() for o in outs):
            res["error"] = "onnxruntime: non-finite output"
            return res
    except Exception as exc:
        res["error"] = "onnxruntime: " + _message(exc)
        return res
    if not (report.get("validation") or {}).get("outputs"):
        res["error"] = "validation compared no output"
        return res
    res["valid"] = True
    return res


def _check_exact(path: Path, work: Path) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from oracle import plant_dead_channels

    import onnxprune

    planted_path = work / "planted.onnx"
    planted, n_prunable = plant_dead_channels(path, planted_path, RATIO)
    if not planted:
        return {"error": "no prunable group: nothing to plant" if not n_prunable else "nothing planted"}
    res: dict = {"planted": sum(planted.values())}
    _, report = onnxprune.prune(planted_path, ratio=RATIO, criterion="l1", allocation="local", merge=False,
                                progress=False)
    removed = {g["name"]: g["removed"] for g in report["groups"] if g["removed"]}
    worst = max((o["max_rel"] for o in report["validation"]["outputs"].values()), default=float("inf"))
    res["ratio_max_rel"] = worst
    if removed != planted:
        res["error"] = f"ratio prune removed {sum(removed.values())} channels, planted {sum(planted.values())}"
        return res
    if not worst <= TOL:
        res["error"] = f"ratio prune of planted channels: outputs differ, max rel {worst:.3g}"
        return res
    _, report = onnxprune.prune(planted_path, criterion="lumping", progress=False)
    lossless = sum(g["removed"] for g in report["groups"])
    worst = max((o["max_rel"] for o in report["validation"]["outputs"].values()), default=float("inf"))
    res.update(lossless_removed=lossless, lossless_max_rel=worst)
    if not worst <= TOL:
        res["error"] = f"lossless mode: outputs differ, max rel {worst:.3g}"
    else:  # finding fewer dead channels than planted is conservative, not wrong: reported, not a failure
        res["exact"] = True
    return res


def is_exact(ex: dict) -> bool:
    """Both oracle checks passed: the planted channels went exactly, outputs equal within TOL."""
    return (ex.get("ratio_max_rel", float("inf")) <= TOL and ex.get("lossless_max_rel", float("inf")) <= TOL
            and not ex.get("error", "").startswith(("ratio", "crash")))


def worker(name: str, exporter: str, cache: Path, timeout: float) -> dict:
    spec = next(s for s in MODELS if s.name == name)
    rec: dict = {"model": name, "exporter": exporter}
    t0 = time.perf_counter()
    try:
        path = export(spec, exporter, cache)
    except Exception as exc:
        rec["export_error"] = _message(exc)
        return rec
    rec["export_s"] = round(time.perf_counter() - t0, 1)
    with tempfile.TemporaryDirectory(prefix="sweep_") as tmp:
        work = Path(tmp)
        for key, step in (("analysis", lambda: _groups_record(path)), ("valid", lambda: _check_valid(path, work, timeout)),
                          ("exact", lambda: _check_exact(path, work))):
            t = time.perf_counter()
            try:
                rec[key] = step()
            except Exception as exc:
                rec[key] = {"error": "crash: " + _message(exc)}
                traceback.print_exc()
            rec[key]["s"] = round(time.perf_counter() - t, 1)
    return rec


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------


def _run_one(spec: Spec, exporter: str, cache: Path, timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    cmd = [sys.executable, __file__, "--worker", spec.name, exporter, "--cache", str(cache), "--timeout", str(timeout)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"model": spec.name, "exporter": exporter, "timeout": timeout}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " ".join(proc.stderr.strip().splitlines()[-1:])[:400]
        return {"model": spec.name, "exporter": exporter, "worker_error": f"exit {proc.returncode}: {tail}"}
    rec = json.loads(lines[-1])
    rec["wall_s"] = round(time.perf_counter() - t0, 1)
    return rec


def status(rec: dict) -> tuple[bool | None, bool | None]:
    """(valid, exact) of one export; None where the export itself failed (not onnxprune's doing)."""
    if "export_error" in rec:
        return None, None
    valid = bool((rec.get("valid") or {}).get("valid"))
    exact = is_exact(rec.get("exact") or {})
    return valid, exact


def _failure(rec: dict) -> str:
    if "timeout" in rec:
        return f"timeout after {rec['timeout']:.0f} s"
    if "worker_error" in rec:
        return rec["worker_error"]
    if "export_error" in rec:
        return "export failed: " + rec["export_error"]
    parts = []
    for key in ("analysis", "valid", "exact"):
        err = (rec.get(key) or {}).get("error")
        if err and not (key == "exact" and is_exact(rec[key])):
            parts.append(f"{key}: {err}")
    return "; ".join(parts)


def _lossless(rec: dict) -> str:
    ex = rec.get("exact") or {}
    return f"{ex['lossless_removed']}/{ex['planted']}" if "lossless_removed" in ex else "—"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(results: list[dict], elapsed: float | None) -> str:
    specs = {s.name: s for s in MODELS}
    rows, n_ok, n_exports, n_valid, n_exact = [], 0, 0, 0, 0
    all_reasons: dict[str, list] = {}
    for rec in results:
        spec = specs[rec["model"]]
        valid, exact = status(rec)
        if valid is not None:
            n_exports += 1
            n_valid += valid
            n_exact += exact
            n_ok += valid and exact
        an = rec.get("analysis") or {}
        reasons = an.get("reasons", {})
        for cat, n in reasons.items():
            all_reasons.setdefault(cat, []).append((f"{rec['model']} ({rec['exporter']})", n))
        groups = f"{an['prunable']}/{an['groups']}" if "groups" in an else "—"
        share = f"{100 * an['macs_prunable_share']:.0f}%" if "groups" in an else "—"
        removed = (rec.get("valid") or {}).get("macs_removed")
        mark = {None: "—", True: "yes", False: "**no**"}
        rows.append("| " + " | ".join([
            f"`{rec['model']}`", spec.family, rec["exporter"], f"{spec.size}", groups, share,
            f"{100 * removed:.0f}%" if removed is not None else "—", mark[valid], mark[exact], _lossless(rec),
            _cell("; ".join(f"{c} (×{n})" for c, n in sorted(reasons.items(), key=lambda kv: -kv[1])) or "—"),
            _cell(_failure(rec) or "—")]) + " |")
    share = f"{100 * n_ok / n_exports:.1f}%" if n_exports else "n/a"
    lines = [
        "# timm sweep: both torch exporters, `--ratio 0.3` and the exactness oracle",
        "",
        "Generated by `python tools/sweep_timm.py` (the table and the tallies; the analysis below the tallies is "
        "written by hand from them). timm architectures with random weights (`pretrained=False`), exported by "
        "TorchScript (`dynamo=False`, opset 17) and by `dynamo=True` (opset 18), static shapes, batch 1.",
        "",
        f"**Valid and exact: {n_ok} of {n_exports} exports ({share})**; valid {n_valid}, exact {n_exact}"
        + (f"; {len(results) - n_exports} exports failed in torch" if len(results) > n_exports else "")
        + (f". Sweep wall time {elapsed / 60:.1f} min." if elapsed else "."),
        "",
        "- **groups**: prunable / all channel groups; **MACs in prunable**: share of the model's MACs in layers "
        "(Conv, Gemm, MatMul) that read or write a prunable group; **MACs −**: removed at `--ratio 0.3`.",
        "- **valid**: `python -m onnxprune IN OUT --ratio 0.3` exits 0, `onnx.checker` (full check) passes, "
        "onnxruntime runs OUT with finite outputs, and the built-in validation compared the outputs.",
        "- **exact**: dead channels planted in the prunable groups (`tests/oracle.py`) are removed exactly at "
        "ratio 0.3 and by lossless mode, outputs within 1e-5 relative of the planted model. An export with no "
        "prunable group counts as not exact. **lossless found**: planted channels lossless mode removed / planted "
        "(fewer is conservative, not wrong: it removes only what it can prove dead).",
        "",
        "| model | family | exporter | input | groups | MACs in prunable | MACs − | valid | exact | lossless found "
        "| freeze reasons (groups) | failure |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | :---: | :---: | ---: | --- | --- |",
        *rows,
        "",
        "## Freeze reasons over the sweep",
        "",
        "Every reason `onnxprune.analyze` gives over all exports (tensor and node names elided), with the groups "
        "it freezes (a group frozen for two reasons counts under both), the exports it occurs in, and what lifting "
        "it would take.",
        "",
        "| reason | groups | exports | what it would take |",
        "| --- | ---: | ---: | --- |",
    ]
    for cat, where in sorted(all_reasons.items(), key=lambda kv: -sum(n for _, n in kv[1])):
        lines.append(f"| {_cell(cat)} | {sum(n for _, n in where)} | {len(where)} | {_cell(reason_note(cat))} |")
    done = {(r["model"], r["exporter"]) for r in results}
    missing = [f"`{s.name}` ({e})" for s in MODELS for e in EXPORTERS if (s.name, e) not in done]
    if missing:
        lines += ["", f"## Not run ({len(missing)} exports)", "", ", ".join(missing) + "."]
    notes = [f"- `{s.name}`: {s.note}" for s in MODELS if s.note]
    if notes:
        lines += ["", "## Reduced variants", "", *notes]
    return "\n".join(lines) + "\n"


HAND_WRITTEN = "<!-- generated above; written by hand below (kept when the sweep rewrites the file) -->"


def write_doc(path: Path, text: str) -> None:
    """``text`` plus the hand-written part of the existing file (after ``HAND_WRITTEN``)."""
    tail = ""
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if HAND_WRITTEN in old:
            tail = old[old.index(HAND_WRITTEN) + len(HAND_WRITTEN):]
    path.write_text(text + "\n" + HAND_WRITTEN + tail, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="regex on model names: run those, keep the other results from --json")
    parser.add_argument("--exporter", choices=EXPORTERS, action="append", help="default: both")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per export (export + checks)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, default=ROOT / "tools" / "timm_sweep_results.json")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "timm_sweep.md")
    parser.add_argument("--resume", action="store_true", help="skip the exports --json already has results for")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="only render: merge these results files (later ones win) into --json and --output")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "EXPORTER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.cache, args.timeout)))
        return 0

    from concurrent.futures import ThreadPoolExecutor, as_completed

    if args.merge:
        merged = {}
        for path in args.merge:
            merged.update({(r["model"], r["exporter"]): r for r in json.loads(path.read_text())["results"]})
        order = {(s.name, e): i for i, (s, e) in enumerate((s, e) for s in MODELS for e in EXPORTERS)}
        results = sorted(merged.values(), key=lambda r: order.get((r["model"], r["exporter"]), 1 << 30))
        args.json.write_text(json.dumps({"results": results, "elapsed_s": None}, indent=1) + "\n")
        write_doc(args.output, render(results, None))
        return 0

    exporters = args.exporter or list(EXPORTERS)
    pick = re.compile(args.only) if args.only else None
    todo = [(s, e) for s in MODELS for e in exporters if pick is None or pick.search(s.name)]
    previous = {}
    if args.json.exists() and (pick or args.exporter or args.resume):
        previous = {(r["model"], r["exporter"]): r for r in json.loads(args.json.read_text())["results"]}
    if args.resume:
        todo = [(s, e) for s, e in todo if (s.name, e) not in previous]
    order = {(s.name, e): i for i, (s, e) in enumerate((s, e) for s in MODELS for e in EXPORTERS)}

    def write(elapsed: float | None) -> None:  # after every export, so an interrupted sweep keeps its results
        results = sorted(previous.values(), key=lambda r: order.get((r["model"], r["exporter"]), 1 << 30))
        args.json.write_text(json.dumps({"results": results, "elapsed_s": elapsed and round(elapsed)}, indent=1) + "\n")
        write_doc(args.output, render(results, elapsed))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(_run_one, s, e, args.cache, args.timeout) for s, e in todo]
        for fut in as_completed(futures):
            rec = fut.result()
            previous[(rec["model"], rec["exporter"])] = rec
            valid, exact = status(rec)
            print(f"{rec['model']:34s} {rec['exporter']:11s} valid={valid} exact={exact} "
                  f"{rec.get('wall_s', '')}s {_failure(rec)[:150]}", file=sys.stderr, flush=True)
            write(None)
    elapsed = time.perf_counter() - t0
    write(None if pick or args.exporter or args.resume else elapsed)
    print(f"wrote {args.output} and {args.json} in {elapsed / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
