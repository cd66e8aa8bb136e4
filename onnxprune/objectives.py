"""What ``--ratio auto`` makes smallest within its budget: the MACs of a candidate (deterministic), or its
batch-1 latency in onnxruntime at ``--latency-threads``. Each objective gives the input's cost, a
candidate's cost, the gain of each probe's plan, the order candidates are checked against the input in,
and the verdict of that check."""

from __future__ import annotations

import onnx_ir as ir

MIN_SPEEDUP = 1.02  # interleaved speedup over the input that counts as faster (timing noise is ~1%)
CANDIDATE_TIMING_S = 0.6  # seconds of timed runs per full candidate (after warm-up)
FINAL_TIMING_S = 2.0  # seconds of interleaved runs of the final candidate against the input


class Macs:
    """MACs as the objective: deterministic, from the plan (gains) or the pruned model (cost)."""

    unit = "MACs"

    def __init__(self, trial, config) -> None:
        self.trial, self.shapes = trial, config.data.input_shapes or None
        self.input_cost = float(trial.base_size()["flops"])

    def describe(self) -> str:
        return "MACs (--auto-objective macs; counted at the search inputs' shapes, after lossless lumping)"

    def show(self, cost: float) -> str:
        return f"{cost / 1e6:.4g} MMACs"

    def gains(self, plans: dict) -> dict[str, float]:
        return {name: self.input_cost - self.trial.predicted_size(plan)[1] for name, plan in plans.items()}

    def cost(self, data: bytes, candidate) -> float:
        from onnxprune.metrics import count_macs

        return float(count_macs(candidate.model, self.shapes))

    @staticmethod
    def rank(row: dict) -> float:
        """Order of the candidates tried against the input: fewest MACs first."""
        return row["cost"]

    def verdict(self, data: bytes, candidate) -> dict:
        cost = self.cost(data, candidate)
        speedup = self.input_cost / cost if cost else float("inf")
        return {"speedup": speedup, "faster": speedup > 1.0, "method": "MACs ratio against the input (no timing)"}


class Latency:
    """Batch-1 latency in onnxruntime at --latency-threads as the objective."""

    unit = "ms"

    def __init__(self, trial, config, feeds: dict) -> None:
        from onnxprune.validate.latency import median_latency_ms

        self.trial, self.feeds, self.threads = trial, feeds, config.target.latency_threads
        self.original = trial.context.original
        self.input_cost = median_latency_ms(self.original, feeds, self.threads, budget_s=CANDIDATE_TIMING_S)
        trial.status(f"auto: the input runs in {self.input_cost:.3g} ms at {self.threads} thread(s)")

    def describe(self) -> str:
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in self.feeds.items())
        return (f"latency in onnxruntime (CPUExecutionProvider) at {self.threads} thread(s), one run on {shapes}; "
                "median of timed runs per candidate, the chosen one timed interleaved against the input")

    def show(self, cost: float) -> str:
        return f"{cost:.3g} ms"

    def gains(self, plans: dict) -> dict[str, float]:
        """Per plan: the profiled time of each weighted node, times the share of its weight the plan removes
        (the MACs share of the input's latency where the profile names no weighted node)."""
        from onnxprune.metrics import macs_per_node
        from onnxprune.runtime import kernel_times_ms
        from onnxprune.targets import kept_fractions

        model, analysis = self.trial.model, self.trial.analysis
        macs = macs_per_node(model, self.trial.config.data.input_shapes or None)
        runs = int(min(20, max(3, 1.5 * CANDIDATE_TIMING_S * 1e3 / max(self.input_cost, 1e-3))))
        times = kernel_times_ms(self.trial.base_bytes(), self.feeds, self.threads, runs)
        node_ms = weighted_node_ms(model, times, set(macs))
        total = sum(times.values()) or 1.0
        use_profile = sum(node_ms.values()) >= 0.3 * total
        out = {}
        macs_total = sum(macs.values()) or 1
        for name, plan in plans.items():
            kept = kept_fractions(analysis, plan)
            saved = 0.0
            for node, m in macs.items():
                weight = next((v for v in node.inputs[:2] if v is not None and v in kept), None)
                share = 1.0 - kept.get(weight, 1.0)
                saved += share * (node_ms.get(node, 0.0) if use_profile else self.input_cost * m / macs_total)
            out[name] = saved
        return out

    def cost(self, data: bytes, candidate) -> float:
        from onnxprune.validate.latency import median_latency_ms

        return median_latency_ms(data, self.feeds, self.threads, budget_s=CANDIDATE_TIMING_S)

    @staticmethod
    def rank(row: dict) -> float:
        """Order of the candidates tried against the input: most channels removed first. One candidate's
        timing moves by a third on a busy machine (the YOLOv8 detector: 16-40 ms for near-identical
        candidates), while each search removes more the further it goes; the interleaved check decides."""
        return -row["channels_removed"]

    def verdict(self, data: bytes, candidate) -> dict:
        from onnxprune.validate.latency import paired_latency

        p = paired_latency(self.original, data, self.feeds, self.threads, budget_s=FINAL_TIMING_S)
        return {"speedup": p["speedup"], "faster": p["speedup"] >= MIN_SPEEDUP,
                "input_ms": p["original_ms"]["median"], "ms": p["pruned_ms"]["median"], "runs": p["runs"],
                "speedup_p10": p["speedup_p10"], "speedup_p90": p["speedup_p90"],
                "method": f"interleaved blocks against the input at {self.threads} thread(s)"}


def weighted_node_ms(model: ir.Model, times: dict[str, float], weighted: set) -> dict[ir.Node, float]:
    """Each profiled kernel's time on the weighted node (Conv/Gemm/MatMul) it computes. A kernel is named
    after its node, or (fused, re-laid-out) after the last node or tensor of the chain it replaced, so the
    chain is walked back through first inputs (activation, normalisation, pooling) to the weighted node."""
    by_name = {n.name: n for n in model.graph}
    by_output = {v.name: n for n in model.graph for v in n.outputs}
    out: dict[ir.Node, float] = {}
    for key, ms in times.items():
        node = by_name.get(key) or by_output.get(key)
        for _ in range(4):
            if node is None or node in weighted:
                break
            first = node.inputs[0] if node.inputs else None
            node = first.producer() if first is not None else None
        if node is not None and node in weighted:
            out[node] = out.get(node, 0.0) + ms
    return out
