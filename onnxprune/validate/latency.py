"""Latency of both models in onnxruntime on CPU, measured so the comparison is fair on a busy machine.

Both sessions are warmed up, then run interleaved in short blocks (A x5, B x5, B x5, A x5, ...) so that
load from other processes and frequency changes hit both alike; medians and spread are reported, and the speedup
sits next to the MACs reduction so a smaller model that is not faster shows."""

from __future__ import annotations

import functools
import os
import time

import numpy as np

from onnxprune.runtime import session

WARMUP_RUNS = 3
BLOCK = 5  # timed runs of one model before switching to the other
MIN_RUNS, MAX_RUNS = 5, 500
# interleaved: at least 4 block pairs. The speedup is a median of block ratios, and for a model of 200 ms the
# time budget alone gave one block, whose ratio on a busy machine ranged 0.83-1.30 (auto took a 0.91x model
# as faster than its input)
PAIRED_MIN_RUNS = 4 * BLOCK
# Seconds of timed runs per thread setting when no run count is given: quick by default.
DEFAULT_BUDGET_S = 2.0


def all_threads() -> int:
    """The thread count ORT should use for 'all threads': every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def spread_ms(times: list[float]) -> dict[str, float]:
    """Median and spread (p10, p25, p75, p90) in milliseconds."""
    p10, p25, p50, p75, p90 = np.percentile(np.asarray(times) * 1e3, [10, 25, 50, 75, 90])
    return {"median": float(p50), "p10": float(p10), "p25": float(p25), "p75": float(p75), "p90": float(p90)}


def _timed(sess, feeds) -> float:
    t = time.perf_counter()
    sess.run(None, feeds)
    return time.perf_counter() - t


def median_latency_ms(model, feeds: dict, threads: int, budget_s: float = 1.0) -> float:
    """One model's median wall time per run in ms (after warm-up; as many runs as fit ``budget_s``,
    MIN_RUNS..MAX_RUNS): what --target-latency compares with its target."""
    sess = session(model, threads=threads, role="pruned model")
    warm = [_timed(sess, feeds) for _ in range(WARMUP_RUNS)]
    runs = int(min(MAX_RUNS, max(MIN_RUNS, budget_s / max(warm[-1], 1e-6))))
    return float(np.median([_timed(sess, feeds) for _ in range(runs)]) * 1e3)


def paired_latency(original, pruned, feeds: dict, threads: int, runs: int | None = None,
                   budget_s: float = DEFAULT_BUDGET_S) -> dict:
    """One thread setting: warm-up, then ``runs`` timed runs of each model in interleaved blocks
    (default: as many as fit the budget, PAIRED_MIN_RUNS..MAX_RUNS). The speedup is the median over blocks of
    the ratio of the two models' block medians: each pair of blocks ran back to back, so slow drift and
    other processes' bursts cancel in the ratio where they would not between overall medians."""
    a = session(original, threads=threads, role="original model")
    b = session(pruned, threads=threads, role="pruned model")
    warm = [_timed(s, feeds) for _ in range(WARMUP_RUNS) for s in (a, b)]
    if runs is None:
        per_pair = max(sum(warm[-2:]), 1e-6)
        runs = int(min(MAX_RUNS, max(PAIRED_MIN_RUNS, budget_s / per_pair)))
    ta, tb, ratios = [], [], []
    done = 0
    while done < runs:
        n = min(BLOCK, runs - done)
        # Blocks, not single alternating runs: ORT's pool threads spin for a while after a run and
        # would steal the cores from the other session's next run. Each block's first run (the one
        # that pays for the other session's spinning threads) is not timed.
        block = []
        for sess, times in ((a, ta), (b, tb)) if (done // BLOCK) % 2 == 0 else ((b, tb), (a, ta)):
            _timed(sess, feeds)
            t = [_timed(sess, feeds) for _ in range(n)]
            times.extend(t)
            block.append((sess, float(np.median(t))))
        med = dict((id(s), m) for s, m in block)
        ratios.append(med[id(a)] / max(med[id(b)], 1e-12))
        done += n
    orig, new = spread_ms(ta), spread_ms(tb)
    return {
        "threads": threads,
        "runs": runs,
        "original_ms": orig,
        "pruned_ms": new,
        "speedup": float(np.median(ratios)),
        "speedup_p10": float(np.percentile(ratios, 10)),
        "speedup_p90": float(np.percentile(ratios, 90)),
    }


BLOCKS = (16, 8)  # channel blocks of onnxruntime's CPU convolutions: 16 with AVX-512, 8 with AVX2
FLAT = 1.15  # a block is in use when 3/4 of it costs more than 1 / FLAT of the whole block


def _conv_chain(channels: int, width: int) -> bytes:
    """A 3x3 Conv from 64 channels to ``channels`` and back (both sides of a pruned group), at width x width."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.standard_normal(s) * 0.05).astype(np.float32), f"w{i}")
               for i, s in enumerate([(channels, 64, 3, 3), (64, channels, 3, 3)])]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["h", "w1"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, width, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, width, width])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@functools.cache
def channel_block(threads: int) -> tuple[int, str]:
    """The channel multiple onnxruntime's CPU convolutions run in on this machine, measured, and how:
    a Conv pair through 3/4 of a block's channels against one through the whole block (interleaved).
    Where the kernels pad channels to the block, both take the same time and removing fewer than a
    block's channels saves nothing. The largest block that measures flat; the smallest otherwise."""
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 64, 40, 40)).astype(np.float32)}
    for block in BLOCKS:
        whole, part = _conv_chain(2 * block, 40), _conv_chain(2 * block - block // 2, 40)
        speedup = paired_latency(whole, part, feeds, threads, budget_s=0.4)["speedup"]
        if speedup < FLAT:
            return block, (f"measured: a Conv pair through {2 * block - block // 2} channels ran {speedup:.2f}x as "
                           f"fast as through {2 * block} at {threads} thread(s)")
    return BLOCKS[-1], f"measured: no block of {', '.join(map(str, BLOCKS))} channels runs flat here"


def latency_report(original, pruned, feeds: dict, macs: tuple[int, int] | None = None, runs: int | None = None,
                   budget_s: float = DEFAULT_BUDGET_S, threads: list[int] | None = None) -> dict:
    """Latency at 1 thread (edge-like) and at all threads, with the MACs speedup next to it and a note
    wherever the measured speedup falls short of it."""
    settings = threads or sorted({1, all_threads()})
    flops_speedup = macs[0] / macs[1] if macs and macs[0] and macs[1] else None  # 0: not counted
    rows = []
    for t in settings:
        row = paired_latency(original, pruned, feeds, t, runs, budget_s)
        if flops_speedup and row["speedup"]:
            row["speedup_vs_flops"] = row["speedup"] / flops_speedup
        rows.append(row)
    notes = []
    for row in rows:
        if flops_speedup and flops_speedup > 1.05 and row["speedup"] and row["speedup"] < 0.8 * flops_speedup:
            notes.append(f"at {row['threads']} thread(s) the pruned model is {row['speedup']:.2f}x as fast for "
                         f"{flops_speedup:.2f}x fewer MACs: ops whose cost did not shrink (memory-bound, fixed "
                         "per-run costs) or channel counts the kernels handle poorly (try --round-to 8) take the rest")
    return {
        "settings": rows,
        "flops_speedup": flops_speedup,
        "batch": {k: list(v.shape) for k, v in feeds.items()},
        "warmup_runs": WARMUP_RUNS,
        "method": f"onnxruntime CPUExecutionProvider, wall time per run, interleaved blocks of {BLOCK} runs per model",
        "notes": notes,
    }
