"""Latency measurement: structure and arithmetic only (timings belong in tools/bench_latency.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxprune.validate.fidelity import session, validation_feeds
from onnxprune.validate.latency import all_threads, latency_report, spread_ms
from onnxprune.validate.suite import first_batch

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "models" / "digits_cnn.onnx"
RESNET = ROOT / "models" / "digits_resnet.onnx"


def test_spread_in_milliseconds():
    s = spread_ms([0.001 * i for i in range(1, 102)])  # 1..101 ms
    assert s["median"] == pytest.approx(51.0)
    assert s["p10"] == pytest.approx(11.0) and s["p90"] == pytest.approx(91.0)
    assert s["p25"] == pytest.approx(26.0) and s["p75"] == pytest.approx(76.0)


def test_latency_report_structure():
    feeds = first_batch(session(CNN), validation_feeds(session(CNN))[0])
    assert feeds["input"].shape == (1, 1, 16, 16)
    rep = latency_report(CNN, RESNET, feeds, macs=(300, 100), runs=3)
    assert [s["threads"] for s in rep["settings"]] == sorted({1, all_threads()})
    assert rep["flops_speedup"] == pytest.approx(3.0)
    for s in rep["settings"]:
        assert s["runs"] == 3
        assert s["speedup_vs_flops"] == pytest.approx(s["speedup"] / 3.0)
        assert all(np.isfinite(v) and v > 0 for v in s["original_ms"].values())
    # no MACs reduction, nothing to fall short of: no notes, whatever the timings
    same = latency_report(CNN, CNN, feeds, macs=(100, 100), runs=2, threads=[1])
    assert same["notes"] == [] and same["flops_speedup"] == 1.0 and len(same["settings"]) == 1
