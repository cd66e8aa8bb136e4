"""--ratio auto as a planner: measured per-group sensitivity, the budget on held-out data, recovery inside the
search, and never a slower model than the input. MACs are the objective where a test reads the result
(deterministic); where latency is the objective the timer is replaced, so no test depends on timings."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from conftest import run_subprocess
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune import auto
from onnxprune.runtime import run_outputs, session

DEAD = 8  # of conv_a's 16 channels, planted nearly dead: pruning them costs nothing


def planted_cnn() -> onnx.ModelProto:
    """x[N,3,8,8] -> conv_a(16) -> Relu -> conv_b(16) -> Relu -> 1x1 conv_c(4) -> y[N,4,8,8]. conv_a's first
    DEAD channels have weights 1e-3 of the others (harmless to prune); every channel of conv_b carries part
    of the output map (critical)."""
    rng = np.random.default_rng(0)

    def arr(name, *shape, scale=1.0):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    wa = rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.5
    wa[:DEAD] *= 1e-3
    inits = [numpy_helper.from_array(wa, "wa"), arr("ba", 16, scale=0.05), arr("wb", 16, 16, 3, 3, scale=0.3),
             arr("bb", 16, scale=0.05), arr("wc", 4, 16, 1, 1), arr("bc", 4, scale=0.1)]
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["ra"], name="relu_a"),
             helper.make_node("Conv", ["ra", "wb", "bb"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["b"], ["rb"], name="relu_b"),
             helper.make_node("Conv", ["rb", "wc", "bc"], ["y"], name="conv_c")]
    graph = helper.make_graph(nodes, "planted", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """(model file, 64 calibration samples, 256 held-out samples disjoint from them)."""
    d = tmp_path_factory.mktemp("planted")
    model, calib, held = d / "planted.onnx", d / "calib.npz", d / "held.npz"
    onnx.save(planted_cnn(), model)
    rng = np.random.default_rng(7)
    np.savez(calib, x=rng.standard_normal((64, 3, 8, 8)).astype(np.float32))
    np.savez(held, x=rng.standard_normal((256, 3, 8, 8)).astype(np.float32))
    return model, calib, held


def _group(report: dict, name: str) -> dict:
    return next(g for g in report["groups"] if g["name"] == name)


@pytest.fixture(scope="module")
def macs_run(planted):
    model, calib, _ = planted
    return onnxprune.prune(model, ratio="auto", data=calib, auto_objective="macs", validate=False)


def test_sensitivity_spends_the_budget_on_the_harmless_group(macs_run):
    _, report = macs_run
    probes = {p["group"]: p for p in report["auto"]["sensitivity"]}
    assert probes["conv_a"]["loss"] < probes["conv_b"]["loss"]
    a, b = _group(report, "conv_a"), _group(report, "conv_b")
    # the near-dead channels go (and only as many of the live ones as the budget allows); conv_b keeps more
    assert a["removed"] >= DEAD // 2 and a["removed"] > b["removed"]
    assert report["allocation"]["mode"] == "sensitivity"


def test_the_budget_holds_on_held_out_data(planted, macs_run):
    model, _, held = planted
    pruned, report = macs_run
    assert report["channels_removed"] > 0
    x = np.load(held)["x"]
    before = run_outputs(session(str(model)), {"x": x})[0]
    after = run_outputs(session(ir.to_proto(pruned).SerializeToString()), {"x": x})[0]
    cosine = float(np.sum(before * after) / np.linalg.norm(before) / np.linalg.norm(after))
    # the budget is cosine 0.99 on the 32 search samples the refit did not see: 256 unseen ones agree
    assert cosine >= 0.985, cosine


def test_the_report_says_what_each_step_measured(macs_run):
    _, report = macs_run
    a = report["auto"]
    assert a["searched"] == "schedule" and a["unit"] == "MACs" and "MACs" in a["objective"]
    assert "refit" in a["recovery"] and "held" not in a["recovery"]
    assert "budget measured on its last 32, met on the refit" in a["inputs"] and "confirmed" in a["inputs"] and "cosine >= 0.99" in a["budget"]
    assert a["search"] and a["stopped"] and a["seconds"] >= 0
    for row in a["search"]:
        assert {"schedule", "channel_share", "allocation", "cost", "speedup_estimate", "figures", "within_budget"} <= set(row)
        assert row["cost"] < a["input_cost"] or row["channels_removed"] == 0
    assert a["final"]["faster"] and a["final"]["speedup"] > 1
    (chosen,) = [r for r in a["search"] if r["chosen"]]
    assert chosen["schedule"] == a["schedule"] and chosen["within_budget"] and chosen["allocation"] == {
        g["name"]: round(g["removed"] / (g["kept"] + g["removed"]), 4) for g in report["groups"] if g["removed"]}


def test_the_schedule_orders_steps_by_loss_per_gain():
    probes = [auto.Probe("costly", 16, 4, loss=0.5, gain=1.0, headline=""),
              auto.Probe("cheap", 16, 4, loss=0.01, gain=1.0, headline=""),
              auto.Probe("useless", 16, 4, loss=0.0, gain=0.0, headline="")]
    steps = auto.schedule(probes, cap=None)
    assert [g for g, _ in steps[:6]] == ["cheap"] * 6 and "useless" not in {g for g, _ in steps}
    assert auto.fractions_at(steps, 3) == (("cheap", 3 * auto.LEVEL),)
    assert max(f for _, f in auto.schedule(probes, cap=0.25)) == 0.25


def test_the_schedule_search_bisects_to_the_longest_prefix_within_budget():
    steps = [(f"g{i}", auto.LEVEL) for i in range(100)]
    trace, why, over = auto.search_schedule(steps, lambda fractions, n: {"n": n, "within_budget": n <= 37})
    best = max(r["n"] for r in trace if r["within_budget"])
    assert best == 37 and over["n"] == 38 and len(trace) <= auto.MAX_TRIALS and "37 of 99" in why
    # g37's step crossed the budget; held, the next step crossed it too: the budget is spent, the search ends
    assert trace[-1]["held"] == ["g37"] and not trace[-1]["within_budget"] and "crossed it too" in why


def test_a_group_whose_step_crosses_the_budget_is_held_and_the_search_goes_on():
    """The probe underestimated one group: its step alone crosses the budget. The search holds that group and
    goes on over the rest of the schedule instead of stopping at the step before it."""
    steps = [(f"g{i}", auto.LEVEL) for i in range(100)]
    steps.insert(37, ("bad", auto.LEVEL))

    def measure(fractions, n):
        groups = dict(fractions)
        return {"n": n, "groups": groups, "within_budget": "bad" not in groups and len(groups) <= 80}

    trace, why, over = auto.search_schedule(steps, measure, trials=30)
    best = max((r for r in trace if r["within_budget"]), key=lambda r: len(r["groups"]))
    assert len(best["groups"]) == 80 and "bad" not in best["groups"] and best["held"] == ["bad"]
    assert "holding bad" in why and over["n"] == 81
    assert len(auto.search_schedule(steps, measure, trials=5)[0]) == 5


def test_the_stop_reason_at_the_edges_of_the_schedule():
    """One group whose first step crosses the budget leaves no step: the reason says none was within it (it
    said "the whole schedule (0 steps) is within the budget")."""
    one = [("h", auto.LEVEL), ("h", 2 * auto.LEVEL)]
    trace, why, _ = auto.search_schedule(one, lambda fractions, n: {"n": n, "within_budget": n == 0})
    assert why.startswith("no schedule step is within the budget") and "holding h" in why and len(trace) == 1
    assert auto.search_schedule([], lambda f, n: {"within_budget": True})[1].startswith("the schedule is empty")
    steps = [(f"g{i}", auto.LEVEL) for i in range(5)]
    assert auto.search_schedule(steps, lambda f, n: {"n": n, "within_budget": True})[1] == (
        "the whole schedule (5 steps) is within the budget")


class _Timer:
    """Replaces onnxruntime timing: every model runs in 1 ms, and interleaved comparisons return the
    speedups given, in order."""

    def __init__(self, speedups: list[float]) -> None:
        self.speedups, self.calls = list(speedups), 0

    def median(self, model, feeds, threads, budget_s=1.0) -> float:
        return 1.0

    def paired(self, original, pruned, feeds, threads, runs=None, budget_s=2.0) -> dict:
        self.calls += 1
        s = self.speedups.pop(0)
        ms = {"median": 1.0 / s}
        return {"speedup": s, "speedup_p10": s, "speedup_p90": s, "runs": 5, "original_ms": {"median": 1.0},
                "pruned_ms": ms}


def _with_timer(monkeypatch, speedups: list[float]) -> _Timer:
    from onnxprune.validate import latency

    timer = _Timer(speedups)
    monkeypatch.setattr(latency, "median_latency_ms", timer.median)
    monkeypatch.setattr(latency, "paired_latency", timer.paired)
    return timer


# The planted model's groups are a few channels wide: --round-to 1 keeps the latency objective's rounding
# to multiples of 8 from leaving nothing to remove, so these tests reach the timing they are about.
def test_a_slower_candidate_is_never_the_output(planted, monkeypatch):
    model, calib, _ = planted
    timer = _with_timer(monkeypatch, [0.9] * auto.FINAL_TRIES)
    _, report = onnxprune.prune(model, ratio="auto", data=calib, validate=False, round_to=1)
    assert timer.calls >= 1
    assert report["channels_removed"] == report["auto"]["lossless_channels_removed"]
    assert report["flops_after"] == report["flops_before"]
    assert "lossless model" in report["auto"]["final"]["fallback"] and "0.90x" in report["auto"]["stopped"]


def test_the_next_candidate_is_taken_when_the_first_is_not_faster(planted, monkeypatch):
    model, calib, _ = planted
    _with_timer(monkeypatch, [0.95, 1.4, 1.4])
    _, report = onnxprune.prune(model, ratio="auto", data=calib, validate=False, round_to=1)
    final = report["auto"]["final"]
    assert final["faster"] and final["speedup"] == 1.4 and "0.95x" in final["fallback"]
    assert report["flops_after"] < report["flops_before"]


def test_the_candidate_that_removes_most_is_timed_first(planted, monkeypatch):
    """Single timings are noise on a busy machine: here every smaller candidate times slower, and still the
    candidate within the budget that removes most is the one timed against the input first."""
    model, calib, _ = planted
    from onnxprune.validate import latency

    timer = _with_timer(monkeypatch, [1.3])
    monkeypatch.setattr(latency, "median_latency_ms",
                        lambda model, *a, **k: 1e6 / len(model) if isinstance(model, bytes) else 1.0)
    _, report = onnxprune.prune(model, ratio="auto", data=calib, validate=False, round_to=1)
    within = [r for r in report["auto"]["search"] if r["within_budget"] and r["channels_removed"]]
    assert len({r["channels_removed"] for r in within}) > 1, "the search found one candidate size only"
    assert timer.calls == 1 and report["auto"]["final"]["speedup"] == 1.3
    assert report["channels_removed"] - report["auto"]["lossless_channels_removed"] == max(
        r["channels_removed"] for r in within)


def test_cli_runs_auto_end_to_end(planted, tmp_path):
    model, calib, _ = planted
    out, rep = tmp_path / "o.onnx", tmp_path / "r.json"
    res = run_subprocess(model, out, "--ratio", "auto", "--data", calib, "--report", rep, "--round-to", "1")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    assert out.is_file() and "auto    schedule" in res.out
    report = json.loads(rep.read_text())
    final = report["auto"]["final"]  # timed for real: faster (how it was timed), or the lossless fallback (why)
    assert report["auto"]["unit"] == "ms" and (final.get("method") if final["faster"] else final.get("fallback"))


@pytest.mark.parametrize("extra, fragment", [
    (["--ratio", "0.3", "--auto-objective", "macs"], "--auto-objective"),
    (["--ratio", "auto", "--refit", "--compensate"], "--compensate"),
    (["--ratio", "auto", "--criterion", "singularity", "--auto-objective", "macs"], "--auto-objective"),
    (["--ratio", "0.3", "--no-refit"], "--no-refit"),
    (["--ratio", "auto", "--compensate", "--no-refit"], "--no-refit"),
    (["--ratio", "0.3", "--auto-time", "60"], "--auto-time"),
    (["--ratio", "auto", "--auto-time", "0"], "--auto-time"),
    (["--ratio", "auto", "--criterion", "singularity", "--auto-time", "60"], "--auto-time"),
])
def test_auto_options_refused_where_unused(cli, tmp_path, planted, extra, fragment):
    model, calib, _ = planted
    cli(model, tmp_path / "o.onnx", "--data", calib, *extra).assert_refused(fragment)


def test_recovery_follows_the_user(planted):
    model, calib, _ = planted
    _, report = onnxprune.prune(model, ratio="auto", data=calib, auto_objective="macs", validate=False, refit=False,
                                latency_threads=2)
    assert "refit" not in report["auto"]["recovery"] and "refit" not in report
    _, report = onnxprune.prune(model, ratio="auto", data=calib, auto_objective="macs", validate=False,
                                compensate=True, merge=False)
    assert report["auto"]["recovery"].startswith("mean compensation")


def test_latency_objective_rounds_kept_counts_to_the_measured_channel_block(monkeypatch):
    """With --round-to automatic, the latency objective keeps counts in the channel block the CPU kernels
    measure flat in; an explicit --round-to wins; the MACs objective keeps exact counts."""
    from onnxprune.auto import BudgetPlanner
    from onnxprune.config import from_keywords
    from onnxprune.validate import latency

    monkeypatch.setattr(latency, "channel_block", lambda threads: (16, "measured: flat"))
    planner = BudgetPlanner(from_keywords(ratio="auto").validate())
    assert planner.config.allocation.round_to == 16 and "measured: flat" in planner._allocation()
    assert BudgetPlanner(from_keywords(ratio="auto", round_to=1).validate()).config.allocation.round_to == 1
    assert BudgetPlanner(from_keywords(ratio="auto", auto_objective="macs").validate()).config.allocation.round_to == 0


@pytest.mark.parametrize("speedups, block", [([1.02], 16), ([1.33, 1.01], 8), ([1.33, 1.3], 8)])
def test_channel_block_is_the_largest_block_that_runs_flat(monkeypatch, speedups, block):
    """3/4 of a block's channels as slow as the whole block: the kernels pad to that block."""
    from onnxprune.validate import latency

    timings = iter(speedups)
    monkeypatch.setattr(latency, "paired_latency", lambda *a, **k: {"speedup": next(timings)})
    latency.channel_block.cache_clear()
    try:
        assert latency.channel_block(1)[0] == block
    finally:
        latency.channel_block.cache_clear()


@pytest.mark.parametrize("share, stage", [(0.0, "the sensitivity probes"), (0.5, "the search")])
def test_the_search_stops_where_auto_time_runs_out(planted, monkeypatch, share, stage):
    """Out of time before any probe: nothing to schedule, the lossless model; out of time after the probes:
    one full candidate (the bisection's first), and the report says which stage time stopped."""
    model, calib, _ = planted
    monkeypatch.setattr(auto, "PROBE_SHARE", share)
    monkeypatch.setattr(auto, "SEARCH_SHARE", 0.0)
    _, report = onnxprune.prune(model, ratio="auto", data=calib, auto_objective="macs", validate=False, auto_time=1e3
                                if share else 1e-9)
    a = report["auto"]
    assert a["time_limit"]["ran_out"].startswith(stage) and "time ran out: " + stage in a["stopped"]
    if share:
        assert len(a["search"]) == 1 and a["sensitivity"] and all(
            not p["figures"].startswith("not probed: --auto-time") for p in a["sensitivity"])
    else:
        assert a["search"] == [] and report["channels_removed"] == a["lossless_channels_removed"]
        assert any(p["figures"] == "not probed: --auto-time" for p in a["sensitivity"])


def test_no_fit_sees_the_samples_it_is_measured_on(planted, monkeypatch):
    """The refit and its channel selection learn from the first samples and the budget is measured on the
    last ones; the confirmation swaps the two. A fit that read both would make the budget optimistic."""
    import onnxprune.refit as refit

    model, calib, _ = planted
    x = np.load(calib)["x"]
    reads = []  # per read of the calibration data: the indices of the samples read
    real = refit.calibration_batches

    def spy(context, original, samples=None):
        batches, what = real(context, original, samples)

        def recorded():
            for feeds in batches():
                reads.append({int(np.flatnonzero((x == row).all(axis=(1, 2, 3)))[0]) for row in feeds["x"]})
                yield feeds
        return recorded, what

    monkeypatch.setattr(refit, "calibration_batches", spy)
    _, report = onnxprune.prune(model, ratio="auto", data=calib, auto_objective="macs", validate=False)
    samples = report["auto"]["samples"]
    fit, held = samples["refit"][1], samples["budget"][1] - samples["budget"][0]
    assert samples["refit"][0] == 0 and samples["budget"][1] == samples["total"]
    assert fit + held <= len(x)
    confirmed = [r for r in report["auto"]["search"] if "confirmation" in r]
    assert confirmed and report["auto"]["final"]["confirmation"]["met"]
    assert reads and all(r <= set(range(fit)) or r <= set(range(len(x) - held, len(x))) for r in reads)
    assert any(r <= set(range(len(x) - held, len(x))) for r in reads)  # the confirmation's refit


def test_a_candidate_the_confirmation_rejects_is_over_the_budget(planted, monkeypatch):
    """A candidate that meets the budget on the held-out samples is refit on them instead and measured on the
    refit's samples; if it misses there, it is over the budget: the search goes on below it and the report
    shows both figures."""
    model, calib, _ = planted
    real, checked = auto._Search.confirm, []

    def confirm(self, amount):
        check = real(self, amount)
        checked.append(amount)
        return {**check, "met": False, "figures": "planted miss"} if len(checked) == 1 else check

    monkeypatch.setattr(auto._Search, "confirm", confirm)
    _, report = onnxprune.prune(model, ratio="auto", data=calib, auto_objective="macs", validate=False)
    a = report["auto"]
    rejected = next(r for r in a["search"] if "planted miss" in r["figures"])
    assert not rejected["within_budget"] and rejected["confirmation"]["figures"] == "planted miss"
    assert len(checked) >= 2 and all(r["confirmation"]["met"] for r in a["search"] if r["within_budget"])
    (chosen,) = [r for r in a["search"] if r["chosen"]]
    assert chosen is not rejected and chosen["within_budget"] and report["channels_removed"] > a["lossless_channels_removed"]


def test_the_evidence_says_when_the_search_measured_fewer_samples_than_given(tiny_files, monkeypatch):
    """Large inputs cap the samples each check runs on (SEARCH_ELEMENTS): the report then says how many of the
    given samples were measured, instead of suggesting more samples."""
    model, calib = tiny_files  # a 4-class classifier: a top-1 budget, which counts samples; 32 samples of 2x6x6
    _, full = onnxprune.prune(model, ratio="auto", data=calib, auto_objective="macs", validate=False)
    assert "top-1 agreement measured on 32 samples no fit saw" in full["auto"]["evidence"]
    assert "more samples in --data (up to 256) narrow it" in full["auto"]["evidence"]
    monkeypatch.setattr(auto, "SEARCH_ELEMENTS", 72 * 8)  # 8 samples per check
    _, capped = onnxprune.prune(model, ratio="auto", data=calib, auto_objective="macs", validate=False)
    assert "measured on 16 samples no fit saw" in capped["auto"]["evidence"]
    assert "the search measured 16 of the 32 samples in --data (at these input sizes at most 8 per check)" in (
        capped["auto"]["evidence"])
