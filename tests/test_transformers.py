"""Transformers from both torch exporters: whole attention heads (and grouped-query KV groups) as channel
groups, the exactness oracle on planted dead heads and FFN channels, and a valid model at --ratio 0.3."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import transformer_archs
from oracle import assert_removed_exactly, plant_dead_channels

import onnxprune
from onnxprune.api import analyze
from onnxprune.errors import OptionError

CASES = [pytest.param(a, e, id=f"{a}_{e}") for a in transformer_archs.ARCHS for e in transformer_archs.EXPORTERS]
TOL = 1e-5


def _head_groups(an, arch: str) -> list:
    """Prunable groups that are attention heads: one channel per (KV) head (no other width is that small)."""
    return [g for g in an.prunable_groups if g.size == transformer_archs.ARCHS[arch].kv_heads]


@pytest.mark.parametrize(("arch", "exporter"), CASES)
def test_heads_are_channel_groups(arch, exporter, transformer_export):
    path, _ = transformer_export(arch, exporter)
    an = analyze(path)
    heads = _head_groups(an, arch)
    assert len(heads) == transformer_archs.LAYERS, [g.details() for g in an.groups]
    hidden = transformer_archs.HIDDEN
    for g in heads:
        # Each head owns head_dim rows of every q, k, v producer: the producers' positions cover the
        # whole projection width (q: all query heads, k/v: the KV heads).
        widths = sorted(len(p.atoms) for p in g.producers)
        assert widths[-1] in (hidden, 3 * hidden), widths  # q (or GPT-2's packed q|k|v)
    ffn = [g for g in an.prunable_groups if g.size == transformer_archs.FFN]
    assert len(ffn) == transformer_archs.LAYERS
    # The residual width stays whole, and the analysis says why.
    frozen = [r for g in an.groups if g.size == hidden for r in g.frozen]
    assert any("residual stream" in r for r in frozen), frozen


@pytest.mark.parametrize(("arch", "exporter"), CASES)
def test_planted_dead_heads_and_ffn_channels_are_removed_exactly(arch, exporter, transformer_export, tmp_path):
    path, data = transformer_export(arch, exporter)
    # LLaMA has 2 KV groups per layer: half of the channels goes, so one KV group (with its query heads) dies.
    ratio = 0.5 if transformer_archs.ARCHS[arch].kv_heads == 2 else 0.3
    planted_path = tmp_path / "planted.onnx"
    planted, _ = plant_dead_channels(path, planted_path, ratio)
    an = analyze(path)
    head_names = {g.name for g in _head_groups(an, arch)}
    assert head_names and all(planted.get(n) for n in head_names), (planted, head_names)
    assert any(n not in head_names for n in planted), planted  # FFN channels too
    _, report = onnxprune.prune(planted_path, ratio=ratio, criterion="l1", allocation="local", merge=False,
                                data=data)
    assert_removed_exactly(report, planted, TOL, f"{arch}_{exporter}")


@pytest.mark.parametrize(("arch", "exporter"), [c for c in CASES if c.values[0] in ("bert", "llama")])
def test_planted_dead_head_dims_are_removed_exactly(arch, exporter, transformer_export, tmp_path):
    """--attention-unit dim: the same dimensions of every head (v/o always; q/k where no RoPE mixes them)."""
    path, data = transformer_export(arch, exporter)
    planted_path = tmp_path / "planted.onnx"
    planted, _ = plant_dead_channels(path, planted_path, 0.3, attention_unit="dim")
    head_dim = transformer_archs.HIDDEN // transformer_archs.HEADS
    an = analyze(path, "dim")
    dims = [g for g in an.prunable_groups if g.size == head_dim]
    assert len(dims) >= transformer_archs.LAYERS and all(planted.get(g.name) for g in dims), (planted, dims)
    if arch == "llama":
        # RoPE's rotate-half pairs dims i and i + D/2 of q and k (every layer: they share cos/sin), and its
        # inverse frequencies are sliced with them.
        (pairs,) = [g for g in an.prunable_groups if g.size == head_dim // 2]
        assert len(pairs.producers) == 2 * transformer_archs.LAYERS and planted.get(pairs.name)
        assert any(p.value.const_value.shape == (head_dim // 2,) for p in pairs.params)
    _, report = onnxprune.prune(planted_path, ratio=0.3, criterion="l1", allocation="local", merge=False, data=data,
                                attention_unit="dim")
    assert_removed_exactly(report, planted, TOL, f"{arch}_{exporter}")


@pytest.mark.parametrize(("arch", "exporter"), CASES)
def test_ratio_prune_gives_a_valid_smaller_model(arch, exporter, transformer_export, tmp_path):
    path, data = transformer_export(arch, exporter)
    out = tmp_path / "pruned.onnx"
    _, report = onnxprune.prune(path, ratio=0.3, output=out, data=data)
    onnx.checker.check_model(onnx.load(out), full_check=True)
    assert report["params_after"] < report["params_before"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = transformer_archs.inputs(arch)
    (y,) = sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})
    assert y.shape == (2, *y.shape[1:-1], transformer_archs.HIDDEN) and np.isfinite(y).all()


def test_attention_unit_option_on_the_cli(cli, transformer_export, tmp_path):
    path, data = transformer_export("bert", "torchscript17")
    heads, dims = cli("analyze", path, "--json"), cli("analyze", path, "--json", "--attention-unit", "dim")
    assert heads.code == dims.code == 0, (heads.err, dims.err)
    sizes = [sorted(g["channels"] for g in json.loads(r.out)["groups"] if not g["frozen"]) for r in (heads, dims)]
    head_dim = transformer_archs.HIDDEN // transformer_archs.HEADS
    assert sizes[0].count(transformer_archs.HEADS) == transformer_archs.LAYERS and head_dim not in sizes[0]
    assert sizes[1].count(head_dim) == 2 * transformer_archs.LAYERS  # q/k dims and v/o dims per layer
    out = tmp_path / "dim.onnx"
    res = cli(path, out, "--ratio", "0.3", "--attention-unit", "dim", "--allocation", "local", "--data", data)
    assert res.code == 0, res.err
    cli(path, tmp_path / "x.onnx", "--attention-unit", "heads").assert_refused("--attention-unit")
    with pytest.raises(OptionError, match="attention-unit"):
        onnxprune.prune(path, ratio=0.3, attention_unit="heads", validate=False)
