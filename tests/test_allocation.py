"""Allocation: local, global (mean / LAMP normalised), overrides, ignores, caps and rounding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnxprune
from onnxprune.allocation import AllocationOptions, _normalised, allocate
from onnxprune.criteria import get_criterion
from onnxprune.errors import OptionError

CNN = Path(__file__).resolve().parents[1] / "models" / "digits_cnn.onnx"


@pytest.fixture(scope="module")
def analysis():
    return onnxprune.analyze(CNN)


def _removed(analysis, scores, **kw):
    plan = allocate(analysis, scores, AllocationOptions(**kw))
    return {analysis.groups[g].name: len(c) for g, c in plan.removed.items()}, plan


def test_local_removes_the_same_ratio_everywhere(analysis):
    removed, _ = _removed(analysis, get_criterion("l1")(analysis), ratio=0.5)
    assert removed == {g.name: g.size // 2 for g in analysis.prunable_groups}


def test_global_normalisation_is_blind_to_a_group_scale(analysis):
    """One group's scores 1000x larger (as raw norms of larger filters are): a raw threshold would take
    everything from the other groups; normalised per group the allocation does not change at all."""
    rng = np.random.default_rng(0)
    scores = {g.id: rng.uniform(1, 2, g.size) for g in analysis.prunable_groups}
    first = analysis.prunable_groups[0]
    scaled = {**scores, first.id: scores[first.id] * 1000}
    total = sum(g.size for g in analysis.prunable_groups)
    for how in ("mean", "lamp"):
        removed, plan = _removed(analysis, scores, ratio=0.4, mode="global", normalize=how)
        assert _removed(analysis, scaled, ratio=0.4, mode="global", normalize=how)[0] == removed
        assert abs(sum(removed.values()) - int(0.4 * total)) <= len(removed)
        assert all(0 < removed.get(g.name, 0) < g.size for g in analysis.prunable_groups), (how, removed)
        assert all("global" in r for r in plan.reasons.values())


def test_lamp_scores():
    np.testing.assert_allclose(_normalised(np.array([2.0, 1.0, 3.0]), "lamp"), [4 / 13, 1 / 14, 1.0])


def test_overrides_ignores_caps_and_rounding(analysis):
    scores = get_criterion("l1")(analysis)
    g0, g1 = analysis.prunable_groups[0], analysis.prunable_groups[1]
    removed, plan = _removed(analysis, scores, ratio=0.3, overrides=[(f"^{g0.name}$", 0.5)], ignore=[g1.name])
    assert removed[g0.name] == g0.size // 2 and "override" in plan.reasons[g0.id]
    assert g1.name not in removed and "ignore" in plan.skipped[g1.id]
    removed, plan = _removed(analysis, scores, ratio=0.8, max_group_ratio=0.25)
    assert all(n == int(0.25 * g.size) for g in analysis.prunable_groups for name, n in removed.items()
               if name == g.name)
    removed, _ = _removed(analysis, scores, ratio=0.3, round_to=8)
    for g in analysis.prunable_groups:
        kept = g.size - removed.get(g.name, 0)
        assert kept % 8 == 0 or kept == g.size, (g.name, kept)


def test_automatic_rounding_touches_only_wide_groups():
    """round_to 0 (the default): multiples of 16 in groups of 256+ channels, smaller groups exact."""
    from zoo import light_model

    from onnxprune.allocation import AUTO_ROUND_MIN_CHANNELS

    analysis = onnxprune.analyze(light_model("resnet50"))
    scores = get_criterion("l1")(analysis)
    removed, _ = _removed(analysis, scores, ratio=0.3)
    sizes = {g.name: g.size for g in analysis.prunable_groups}
    assert min(sizes.values()) < AUTO_ROUND_MIN_CHANNELS <= max(sizes.values())
    for name, size in sizes.items():
        kept = size - removed.get(name, 0)
        if size >= AUTO_ROUND_MIN_CHANNELS:
            assert kept % 16 == 0 and abs(kept / size - 0.7) <= 1 / 32 + 1e-9, (name, size, kept)
        else:
            assert kept == size - int(0.3 * size + 1e-9), (name, size, kept)


@pytest.mark.parametrize("bad", [dict(mode="both"), dict(normalize="z"), dict(round_to=-1),
                                 dict(max_group_ratio=1.5), dict(overrides=[("(", 0.2)]),
                                 dict(overrides=[("x", 2.0)]), dict(ignore=["["])])
def test_impossible_options_are_user_errors(bad):
    with pytest.raises(OptionError):
        AllocationOptions(**bad).check()


def test_cli_allocation_options(tmp_path):
    import json
    import subprocess
    import sys
    rep = tmp_path / "r.json"
    res = subprocess.run([sys.executable, "-m", "onnxprune", str(CNN), str(tmp_path / "o.onnx"), "--ratio", "0.5",
                          "--allocation", "global", "--normalize", "lamp", "--round-to", "8",
                          "--override", "fc1=0.25", "--report", str(rep), "--quiet"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    report = json.loads(rep.read_text())
    assert report["allocation"]["mode"] == "global" and report["allocation"]["overrides"] == [["fc1", 0.25]]
    fc1 = next(g for g in report["groups"] if "fc1" in g["name"])
    assert fc1["kept"] == 48 and "override" in fc1["why"]
    bad = subprocess.run([sys.executable, "-m", "onnxprune", str(CNN), str(tmp_path / "o2.onnx"),
                          "--override", "fc1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "REGEX=RATIO" in bad.stderr and "Traceback" not in bad.stderr
