"""``--ratio auto``: everything lossless first, then the fastest model that stays within a fidelity budget,
every candidate measured in onnxruntime after the recovery the user will get.

Objective: the latency of a batch-1 run in onnxruntime at ``--latency-threads`` (CPU; the median of
timed runs), or the MACs with ``--auto-objective macs`` (deterministic). Constraint: the budget, which
compares the pruned model's outputs with the original's on the same inputs, output by output with the
check ``validate.tasks.TaskBudget`` chooses from its shape (top-1 agreement of classifiers, decoded
detections, CTC strings, text regions of probability maps, row-wise cosine of embeddings, else cosine;
``--budget-metric`` overrides). Without data the inputs are seeded noise whose mean and spread per input
channel are read off the first BatchNormalization's statistics where a Conv + BN reads the input (else
N(0, 1)); decoded answers mean little on noise, so every output is budgeted by cosine instead.

Recovery inside the search: every candidate is a fresh copy of the lossless model pruned with the
config's transforms (merging by default) and, with ``--data``, refit by least squares (``--refit`` is
the default there; ``--compensate`` or ``--no-refit`` choose otherwise), so the budget sees the model
the user gets.

What grows (allocation "sensitivity", the default): each prunable group is pruned alone by PROBE_STEP of
its channels (at the rounding), refit on a few calibration samples and measured once: the budget's loss
on PROBE_SAMPLES samples, and the latency it saves, read from onnxruntime's per-kernel profile of the
model (one group's share of the time is a few percent, below the noise of timing whole models on a busy
machine) or the MACs it saves. The loss of a group is taken to grow with the square of its pruned share
and the saving linearly, so the steps of LEVEL of every group are ordered by loss per millisecond gained
(cheap groups first, each at most GROUP_MAX); the longest prefix of that schedule within the budget is
found by bisection over full candidates (all search samples, full recovery, timed). Where one group's step
crosses the budget, that group is held at its level (its probe, on a few samples, underestimated it) and the
search goes on over the rest of the schedule: up from the last prefix within the budget by 1, 2, 4 ... steps,
then bisection, until the step right after a held group crosses the budget too.
With --data and refit, a candidate within the budget on the held-out samples is confirmed with the halves
swapped (refit on the held-out samples, measured on the others): within the budget means both. With ``--allocation
local|global`` one ratio, raised in steps of RATIO_STEP, is searched instead; with a threshold criterion
(gaussian) the interval k by bisection.

Time: ``--auto-time`` (TargetConfig.auto_time) bounds the search. The probes run in order of the time
they would save and stop at PROBE_SHARE of it (the groups left out are not scheduled); no full candidate
starts after SEARCH_SHARE; the report states where time ran out.

Never slower: the chosen candidate is timed interleaved against the input model. If it is not at least
MIN_SPEEDUP times as fast, the next candidate within the budget is tried (latency: those that remove most
first, as single timings are noisy; MACs: fewest first), and in the end the lossless model (which
computes what the input computes) is returned; the report says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import onnx_ir as ir

from onnxprune.graph import Analysis, analyze_groups
from onnxprune.graph.optable import traits
from onnxprune.graph.traits import attr as traits_attr
from onnxprune.objectives import MIN_SPEEDUP, Latency, Macs
from onnxprune.passes.normalize import normalize
from onnxprune.passes.preserve import restored_bytes
from onnxprune.surgery import apply_plan

K_RANGE = (0.02, 3.0)
STEPS = 8
RATIO_STEP = 0.05
RATIO_MAX = 0.9
PROBE_STEP = 0.25  # the share of one group's channels a sensitivity probe removes
LEVEL = 0.125  # the schedule's step within a group
GROUP_MAX = 0.75  # the most of one group the schedule removes
PROBE_SAMPLES = 8  # calibration samples a probe is refit and measured on
HELD_OUT = 2  # with --data and refit: 1 / HELD_OUT of the samples (at least MIN_SAMPLES) measure the budget
MIN_SAMPLES = 4
SEARCH_ELEMENTS = 8_000_000  # input elements the budget's samples (and the refit's) hold at most
MAX_TRIALS = 12  # full candidates of the schedule's bisection (and of its continuation past a held group)
FINAL_TRIES = 3  # candidates timed against the input before falling back to the lossless model
PROBE_SHARE = 0.5  # of --auto-time: the sensitivity probes stop here (the most promising groups go first)
SEARCH_SHARE = 0.8  # of --auto-time: no new full candidate after this (the final check takes the rest)


@dataclass
class Budget:
    """The thresholds of the default budget (``onnxprune.prune(budget=...)``); the checks themselves are
    ``onnxprune.validate.tasks.TaskBudget``'s."""

    cosine: float = 0.99
    top1: float = 0.99
    # Without data. Calibrated on the bundled digits CNN, where test accuracy stayed within 1 point
    # while the cosine on noise stayed >= 0.94 (tools/bench_accuracy.py measures it).
    synthetic_cosine: float = 0.94


def worst_cosine(reference: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """The smallest cosine between an output and its reference (a continuous loss for ranking probes)."""
    from onnxprune.validate.measures import row_cosine

    return min((row_cosine(r, o) for r, o in zip(reference, outputs)), default=1.0)


@dataclass
class Deadline:
    """--auto-time: whether a share of the search's time is left, and what stopped for lack of it."""

    seconds: float
    start: float = field(default_factory=time.monotonic)
    hit: str = ""

    def before(self, share: float, what: str) -> bool:
        """True while less than ``share`` of the time is spent; else records that ``what`` stopped there."""
        if time.monotonic() - self.start < share * self.seconds:
            return True
        self.hit = self.hit or f"{what} at {share:.0%} of --auto-time {self.seconds:g} s"
        return False


def _always() -> bool:
    return True


def search_k(measure: Callable[[float], dict], go_on: Callable[[], bool] = _always) -> tuple[float, list[dict]]:
    """Largest k in K_RANGE (bisection) whose pruned model is within the budget; 0 if none is.
    ``measure(k)`` prunes a fresh copy at k and returns its trace row (with ``within_budget``)."""
    lo, hi = 0.0, K_RANGE[1]
    trace = []
    for step in range(STEPS):
        if step and not go_on():
            break
        k = K_RANGE[0] if step == 0 else (lo + hi) / 2
        trace.append(measure(k))
        if step == 0 and not trace[-1]["within_budget"]:
            return 0.0, trace
        lo, hi = (k, hi) if trace[-1]["within_budget"] else (lo, k)
    return lo, trace


def search_ratio(measure: Callable[[float], dict], go_on: Callable[[], bool] = _always) -> tuple[float, list[dict]]:
    """Largest ratio on the RATIO_STEP grid (then one half step) whose pruned model is within the budget,
    raised until the first failure; 0 if the first step fails."""
    trace, ratio = [], 0.0

    def attempt(r: float) -> bool:
        if trace and not go_on():
            return False
        trace.append(measure(r))
        return trace[-1]["within_budget"]

    while ratio + RATIO_STEP <= RATIO_MAX + 1e-9 and attempt(round(ratio + RATIO_STEP, 6)):
        ratio = round(ratio + RATIO_STEP, 6)
    if len(trace) > 0 and not trace[-1]["within_budget"] and attempt(round(ratio + RATIO_STEP / 2, 6)):
        ratio = round(ratio + RATIO_STEP / 2, 6)
    return ratio, trace


def search_schedule(steps: list[tuple[str, float]], measure: Callable[[tuple, int], dict], trials: int = MAX_TRIALS,
                    go_on: Callable[[], bool] = _always) -> tuple[list[dict], str, dict | None]:
    """The longest prefix of the schedule ``steps`` whose candidate is within the budget, by bisection (prefix 0,
    the lossless model, is within it by definition). ``measure(fractions, n)`` measures the candidate of the
    first n steps and returns its trace row (with ``within_budget``). Once the bisection has found the step
    that crosses the budget, and trials remain, that step's group is held where it is (its probe underestimated
    what it costs: its later steps are dropped) and the search goes on over the rest of the schedule, up from the
    last prefix within the budget by 1, 2, 4 ... steps and then by bisection; it ends when the step right after
    a held group crosses the budget too (the budget is spent, not one group's share). At
    most ``trials`` measurements, the second and later ones while ``go_on()``. Returns the trace, why it
    stopped, and the row of the step that crossed the budget (None if none was measured)."""
    steps, lo, held, trace, over = list(steps), 0, [], [], None
    hi, gallop, spent = len(steps) + 1, 0, False
    while len(trace) < trials and (not trace or go_on()):
        if not gallop and hi - lo <= 1:  # step ``hi`` crosses the budget: hold its group, go on over the rest
            if hi > len(steps) or spent:
                break
            held.append(steps[hi - 1][0])
            steps = steps[:hi - 1] + [st for st in steps[hi - 1:] if st[0] != held[-1]]
            # the boundary is likely near: up from the last prefix within the budget by 1, 2, 4 ... steps; if
            # the very next step crosses it too, the budget is spent, not one group's share
            hi, over, gallop = len(steps) + 1, None, 1
            if lo >= len(steps):
                break
        mid = min(lo + gallop, len(steps)) if gallop else (lo + hi) // 2
        trace.append(measure(fractions_at(steps, mid), mid))
        if held:
            trace[-1]["held"] = list(held)
        if trace[-1]["within_budget"]:
            lo, gallop = mid, (2 * gallop if gallop and mid < len(steps) else 0)
        else:
            hi, over, spent, gallop = mid, trace[-1], gallop == 1, 0
    done = hi - lo <= 1
    # every step (left after holding) is within the budget; none left, or none to begin with
    whole = ((f"the {lo} schedule steps left are all within the budget" if lo else
              "no schedule step is within the budget") if held else
             f"the whole schedule ({lo} steps) is within the budget" if lo else
             "the schedule is empty: no group saves anything")
    why = (whole if done and lo == len(steps) else
           f"{lo} of {len(steps)} schedule steps are within the budget and {hi} are not" if done and lo else
           f"even the first {hi} schedule step(s) are over the budget" if done else
           f"{len(trace)} full candidates measured: {lo} of {len(steps)} steps within the budget"
           + (f", {hi} over it" if hi <= len(steps) else ""))
    if held:
        why += (f" (after holding {', '.join(held)} where a step of it crossed the budget"
                + ("; the step after the last one crossed it too" if spent else "") + ")")
    return trace, why, over


@dataclass
class Probe:
    """One group pruned alone by one step: what it costs in fidelity and what it saves."""

    group: str
    size: int
    removed: int
    loss: float  # fall of the budget's margin plus (1 - worst cosine), on PROBE_SAMPLES samples
    gain: float  # ms (or MACs) saved
    headline: str
    measured: bool = True  # False: left out by --auto-time (not scheduled)

    def row(self) -> dict:
        return {"group": self.group, "channels": self.size, "removed": self.removed, "loss": round(self.loss, 6),
                "gain": round(self.gain, 6), "figures": self.headline}


def schedule(probes: list[Probe], cap: float | None) -> list[tuple[str, float]]:
    """(group, its pruned share after this step) in the order the budget is spent: each step's estimated
    loss per unit gained, cheapest first (loss ~ share squared, gain ~ share, from the probe)."""
    top = min(GROUP_MAX, cap if cap is not None else 1.0)
    levels = int(np.floor(top / LEVEL + 1e-9))
    steps = []
    for p in probes:
        if not p.measured or p.gain <= 0 or p.removed == 0:
            continue
        for k in range(1, levels + 1):
            marginal = (p.loss + 1e-6) * (2 * k - 1) * LEVEL / PROBE_STEP / p.gain
            steps.append((marginal, -p.gain, p.group, k))
    steps.sort()
    return [(group, k * LEVEL) for _, _, group, k in steps]


def fractions_at(steps: list[tuple[str, float]], n: int) -> tuple[tuple[str, float], ...]:
    """Each group's pruned share after the first ``n`` steps of the schedule."""
    share: dict[str, float] = {}
    for group, f in steps[:n]:
        share[group] = max(share.get(group, 0.0), f)
    return tuple(sorted(share.items()))


class BudgetPlanner:
    """``--ratio auto``: lossless lumping first (``prepare``), then the fastest candidate within the fidelity
    budget (measured sensitivity per group; or one ratio; or gaussian's k), never slower than the input."""

    needs_original = True

    def __init__(self, config) -> None:
        from onnxprune.criteria import criterion

        self.round_why = ""
        if config.target.auto_objective == "latency" and not config.allocation.round_to:
            # Kept counts in the channel block onnxruntime's CPU convolutions pad to (16 with AVX-512, 8
            # with AVX2), measured on this machine: exact counts such as 29 or 46 made every candidate of
            # the digits CNN slower than its input at batch 1, and 8 of 64 channels removed saves nothing
            # where the kernels run 56 channels as 64.
            from onnxprune.validate.latency import channel_block

            block, self.round_why = channel_block(config.target.latency_threads)
            config = replace(config, allocation=replace(config.allocation, round_to=block))
        self.config = config
        self.threshold = criterion(config.score.criterion).at_zero_ratio == "threshold"
        self.sensitivity = not self.threshold and config.allocation.mode == "sensitivity"
        self.fold_bn = self.threshold
        self.lossless = 0

    def prepare(self, model: ir.Model, analysis: Analysis) -> tuple[Analysis, dict]:
        from onnxprune.transforms import lossless_plan

        plan = lossless_plan(analysis, self.config.allocation.ignore)
        apply_plan(analysis, plan)
        self.lossless = plan.count()
        return analyze_groups(normalize(model), self.config.allocation.attention_unit), {}

    def amount(self, value: float):
        from onnxprune.criteria import criterion
        from onnxprune.planners import Amount

        if not self.threshold or value == 0:  # k = 0: nothing beyond the lossless step
            return Amount(ratio=value)
        t, why = criterion(self.config.score.criterion).threshold(self.config.score, value)
        return Amount(ratio=0.0, threshold=t, why="auto: " + why)

    def run(self, trial) -> tuple[object, dict]:
        from onnxprune.planners import Amount

        started = time.monotonic()
        trial.config = self.config  # the rounding chosen for the objective applies to every candidate
        deadline = Deadline(self.config.target.auto_time, started)
        search = _Search(trial, self.config, deadline)

        def go_on() -> bool:  # a further full candidate, while the search's share of --auto-time lasts
            return deadline.before(SEARCH_SHARE, "the search")

        key = "k" if self.threshold else "schedule" if self.sensitivity else "ratio"
        section: dict = {}
        if self.sensitivity:
            probes = search.probes()
            steps = schedule(probes, self.config.allocation.max_group_ratio)
            trace, stopped, over = search_schedule(steps, lambda fractions, n: search.full(
                Amount(ratio=0.0, fractions=fractions, why="auto: measured sensitivity"), {"schedule": n}),
                go_on=go_on)
            stopped += f"; {over['schedule']} steps gave {over['figures']}" if over else ""
            section.update(sensitivity=[p.row() for p in probes], schedule_steps=len(steps))
        else:
            value, trace = (search_k if self.threshold else search_ratio)(
                lambda v: search.full(self.amount(v), {key: v}), go_on)
            how = "bisection over k" if self.threshold else f"ratio raised in steps of {RATIO_STEP:g}"
            over = next((t for t in trace if not t["within_budget"]), None)
            stopped = (f"{how}: {key} = {value:.3g} is the largest tried within the budget" + (
                f"; {key} = {over[key]:.3g} gave {over['figures']}" if over else "")
                if value > 0 else f"no {key} >= {trace[0][key]:g} stays within the budget")
        final, verdict = search.final(trace, lambda: trial.final(Amount(ratio=0.0)))
        chosen = verdict.get("row")
        section.update({
            "objective": search.objective.describe(), "budget": search.budget.describe(), "inputs": search.source,
            "samples": search.samples,
            "evidence": search.evidence(),
            "checks": [{"output": c.output, "kind": c.kind, "threshold": c.threshold, "why": c.why}
                       for c in search.budget.checks],
            "recovery": _recovery(self.config), "lossless_channels_removed": self.lossless, "searched": key,
            key: chosen[key] if chosen else 0, "channel_share": chosen["channel_share"] if chosen else 0.0,
            "fidelity": chosen["measured"] if chosen else None,
            "input_cost": search.objective.input_cost, "unit": search.objective.unit,
            "search": [{**{k: v for k, v in t.items() if k != "measured"}, "chosen": t is chosen} for t in trace],
            "final": {k: v for k, v in verdict.items() if k != "row"},
            "stopped": stopped + ("; " + verdict["fallback"] if verdict.get("fallback") else "")
            + (f"; time ran out: {deadline.hit}" if deadline.hit else ""),
            "time_limit": {"seconds": deadline.seconds, "ran_out": deadline.hit or None},
            "allocation": self._allocation(), "seconds": round(time.monotonic() - started, 1),
            "remove_applies_to": "the model after lossless lumping" + (" (BatchNormalization folded)"
                                                                         if self.fold_bn else "")})
        return final, {"auto": section, "ratio": "auto", "lossless_channels": self.lossless}

    def _allocation(self) -> str | None:
        if self.threshold:
            return None
        a, tr = self.config.allocation, self.config.transforms
        mode = ("measured sensitivity per group" if self.sensitivity
                else f"{a.mode}{' ' + a.normalize.upper() if a.mode == 'global' else ''}")
        return (mode + ("; removed channels folded into nearly proportional kept ones" if tr.merge else "")
                + ("; mean-compensated" if tr.compensate else "") + ("; every candidate refit" if tr.refit else "")
                + f"; round-to {a.round_to or 'automatic'}" + (f" ({self.round_why})" if self.round_why else ""))


def _recovery(config) -> str:
    """What every candidate went through after surgery, for the report."""
    tr = config.transforms
    parts = (["removed channels folded into nearly proportional kept ones"] if tr.merge else []) + (
        ["mean compensation of the consumers' biases"] if tr.compensate else []) + (
        ["least-squares refit of every pruned consumer on the calibration inputs"] if tr.refit else [])
    note = f"; --finetune {tr.finetune} steps run on the chosen model only" if tr.finetune else ""
    return (", ".join(parts) or "none (--no-merge, --no-refit)") + note


class _Search:
    """What the planner measures: the search inputs and the original's outputs on them, the budget, and
    the objective; full candidates (with the config's recovery) and quick per-group probes."""

    def __init__(self, trial, config, deadline: Deadline) -> None:
        from onnxprune.runtime import fixed_batch, run_outputs, session
        from onnxprune.validate.fidelity import validation_feeds
        from onnxprune.validate.tasks import TaskBudget  # onnxruntime: only when searching

        self.trial, self.config, self.deadline = trial, config, deadline
        data = config.data
        ref = session(trial.context.original, role="original model")
        feeds, source = validation_feeds(ref, data.source, data.seed, data.input_shapes or None, samples=32)
        if data.source is None:
            moments = input_moments(trial.model)
            for name, (mu, sigma) in moments.items():
                shape = (1, -1) + (1,) * (feeds[name].ndim - 2)
                feeds[name] = (feeds[name] * sigma.reshape(shape) + mu.reshape(shape)).astype(feeds[name].dtype)
            source += (": N(0, 1)" + (
                f"; {', '.join(moments)} scaled to the mean and spread its first BatchNormalization saw"
                if moments else ""))
        n = self.data_samples = len(next(iter(feeds.values())))
        batch = fixed_batch(ref) or 1
        # Large inputs (a detector at 736x544): fewer samples, so a candidate costs about the same.
        per_sample = sum(int(np.prod(v.shape[1:])) for v in feeds.values()) or 1
        cap = self.cap = max(MIN_SAMPLES, SEARCH_ELEMENTS // per_sample)
        whole = lambda count: max(batch, count // batch * batch)  # noqa: E731  # whole fixed batches
        # The refit sees the first samples only and the budget the last ones, so a refit that fits the
        # calibration samples without generalising shows as a loss.
        # The budget must also hold on the refit's own samples (cheap: no refit) and, refit on the held-out
        # samples instead, on the others (``confirm``): a few held-out samples alone pass by luck.
        self.fit, self.fit_check, self.held_window = None, None, None
        if config.transforms.refit and data.source is not None and n >= 2 * MIN_SAMPLES:
            held = whole(min(max(MIN_SAMPLES, n // HELD_OUT), cap))
            self.fit = whole(min(n - held, cap))
            trial.context.fit_window = (0, self.fit)  # the refit and its channel selection learn from these only
            self.held_window = (n - held, n)  # the confirmation's refit learns from these (see ``confirm``)
            fit_feeds = {k: v[:self.fit] for k, v in feeds.items()}
            self.fit_check = (fit_feeds, run_outputs(ref, fit_feeds))
            feeds = {k: v[n - held:] for k, v in feeds.items()}
            source += (f"; refit on its first {self.fit} samples; the budget measured on its last {held}, met on "
                       "the refit's samples too, and confirmed: refit on the last samples, met on the first")
        elif n > cap:
            feeds = {k: v[:whole(cap)] for k, v in feeds.items()}
            source += f"; the first {whole(cap)} samples"
        self.feeds, self.source = feeds, source
        self.reference = run_outputs(ref, feeds)
        n = len(next(iter(feeds.values())))
        self.probe_n = min(n, whole(min(PROBE_SAMPLES, max(2, cap // 4))))
        self.probe_feeds = {k: v[:self.probe_n] for k, v in feeds.items()}
        self.probe_reference = run_outputs(ref, self.probe_feeds)
        names = [o.name for o in ref.get_outputs()]
        self.budget = TaskBudget.choose(names, self.reference, config.target, data.source is None, batch=n)
        timing = {k: v[:batch] for k, v in feeds.items()}
        self.objective = (Latency(trial, config, timing) if config.target.auto_objective == "latency"
                          else Macs(trial, config))
        self.trace: list[dict] = []
        self.amounts: list = []

    @property
    def samples(self) -> dict:
        """Which --data samples the search read, as numbers for the report: the refit's range and the budget's."""
        budget = self.held_window or (0, len(next(iter(self.feeds.values()))))
        return {"total": self.data_samples, "refit": [0, self.fit] if self.held_window else None,
                "budget": list(budget)}

    def _outputs(self, model: ir.Model, feeds: dict) -> tuple[object, list[np.ndarray]]:
        """The pruned model's onnxruntime session and its outputs on ``feeds``."""
        from onnxprune.runtime import run_outputs, session

        sess = session(ir.to_proto(model).SerializeToString(), role="pruned model")
        return sess, run_outputs(sess, feeds)

    def probes(self) -> list[Probe]:
        """Each prunable group (not ignored, not overridden) pruned alone by PROBE_STEP and measured."""
        from onnxprune.allocation import ignored
        from onnxprune.planners import Amount

        a = self.config.allocation
        fixed = list(a.ignore) + [p for p, _ in a.overrides]
        groups = [g for g in self.trial.analysis.prunable_groups if not ignored(g, fixed)]
        amounts = {g.name: Amount(ratio=0.0, fractions=((g.name, PROBE_STEP),), why="auto: sensitivity probe")
                   for g in groups}
        plans = {name: self.trial.plan(amount) for name, amount in amounts.items()}
        gains = self.objective.gains(plans)
        best = self.budget.measure(self.probe_reference, self.probe_reference)["margin"]
        out = {}
        # the groups that save most first: when --auto-time runs short, the probes left out save least
        for i, g in enumerate(sorted(groups, key=lambda g: -gains[g.name])):
            removed = plans[g.name].count()
            if removed == 0 or gains[g.name] <= 0:
                out[g.name] = Probe(g.name, g.size, removed, 0.0, gains[g.name], "not probed: nothing to gain")
                continue
            if not self.deadline.before(PROBE_SHARE, "the sensitivity probes"):
                out[g.name] = Probe(g.name, g.size, removed, 0.0, gains[g.name], "not probed: --auto-time",
                                    measured=False)
                continue
            cand = self.trial.copy(amounts[g.name], samples=min(self.probe_n, self.fit or self.probe_n))
            _, outputs = self._outputs(cand.model, self.probe_feeds)
            measured = self.budget.measure(self.probe_reference, outputs)
            loss = max(0.0, best - measured["margin"]) + 1.0 - worst_cosine(self.probe_reference, outputs)
            head = self.budget.headline(measured)
            out[g.name] = Probe(g.name, g.size, removed, loss, gains[g.name], head)
            self.trial.status(f"auto: probe {i + 1}/{len(groups)} {g.name[:40]} -{removed}/{g.size}: {head}, "
                              f"saves {self.objective.show(gains[g.name])}")
        return [out[g.name] for g in groups]

    def full(self, amount, key: dict) -> dict:
        """A full candidate: a fresh copy with the config's recovery, measured on every search sample and
        for the objective; its trace row."""
        t0 = time.monotonic()
        cand = self.trial.copy(amount, samples=self.fit)
        sess, outputs = self._outputs(cand.model, self.feeds)
        measured = self.budget.measure(self.reference, outputs)
        ok = bool(self.budget.met(measured))
        extra, missed = {}, []  # missed: the figures of the other checks that failed, for the report
        if self.fit_check is not None:  # the same session on the refit's own samples
            from onnxprune.runtime import run_outputs

            on_fit = self.budget.measure(self.fit_check[1], run_outputs(sess, self.fit_check[0]))
            extra["on_refit_samples"] = self.budget.headline(on_fit)
            if not self.budget.met(on_fit):
                ok, missed = False, [f"on the refit's own samples: {extra['on_refit_samples']}"]
        if ok and self.held_window is not None:
            extra["confirmation"] = self.confirm(amount)
            if not extra["confirmation"]["met"]:
                ok, missed = False, [f"refit on those samples instead: {extra['confirmation']['figures']}"]
        cost = self.objective.cost(restored_bytes(cand.model), cand)
        sizes = {g.name: g.size for g in cand.analysis.groups}
        prunable = sum(g.size for g in self.trial.analysis.prunable_groups) or 1
        row = {**key, "channel_share": round(cand.plan.count() / prunable, 4), "channels_removed": cand.plan.count(),
               "allocation": {cand.analysis.groups[gid].name: round(len(c) / sizes[cand.analysis.groups[gid].name], 4)
                              for gid, c in sorted(cand.plan.removed.items())},
               "cost": cost, "speedup_estimate": round(self.objective.input_cost / cost, 4) if cost else None,
               **measured, "figures": ", ".join([self.budget.headline(measured), *missed]), **extra,
               "within_budget": ok, "measured": measured, "seconds": round(time.monotonic() - t0, 2)}
        what = ", ".join(f"{k}={v:.3g}" for k, v in key.items())
        fit = f" (refit samples: {extra['on_refit_samples']})" if "on_refit_samples" in extra else ""
        self.trial.status(f"auto: {what} removes {cand.plan.count()} channels: {self.objective.show(cost)} "
                          f"({row['speedup_estimate']:.2f}x), {row['figures']}{fit}: {'ok' if ok else 'over budget'}")
        self.amounts.append((row, amount))
        return row

    def evidence(self) -> str | None:
        """What the number of samples measured can tell about new inputs, where the budget counts samples
        (top-1, CTC strings): the report's caveat."""
        from onnxprune.validate.fidelity import MAX_DATA_SAMPLES
        from onnxprune.validate.measures import METRICS, SHARE_KINDS, wilson_interval

        shares = [c for c in self.budget.checks if c.kind in SHARE_KINDS]
        if not shares or self.budget.synthetic:
            return None
        held = len(next(iter(self.feeds.values())))
        n = held + (self.fit if self.held_window is not None else 0)
        how = (f" no fit saw (the budget's {held} and, through the confirmation, the refit's {self.fit})"
               if self.held_window is not None else "")
        low = wilson_interval(1.0, n)[0]
        more = (f"; the search measured {n} of the {self.data_samples} samples in --data (at these input sizes "
                f"at most {self.cap} per check)" if n < self.data_samples else
                f"; more samples in --data (up to {MAX_DATA_SAMPLES}) narrow it" if self.data_samples < MAX_DATA_SAMPLES
                else "")
        return (f"{', '.join(METRICS[c.kind].says for c in shares)} measured on {n} samples{how}: all of them "
                f"agreeing still allows as little as {low:.3f} on new inputs (95% Wilson interval){more}")

    def confirm(self, amount) -> dict:
        """The candidate's recovery fit to the budget's samples instead, and the budget measured on the
        samples the search fit to: the budget then holds on every search sample without one fit to it (a
        few held-out samples alone let a borderline candidate through by luck, and the search keeps the
        largest candidate they let through)."""
        context, kept = self.trial.context, self.trial.context.fit_window
        context.fit_window = self.held_window
        try:
            cand = self.trial.copy(amount)
        finally:
            context.fit_window = kept
        _, outputs = self._outputs(cand.model, self.fit_check[0])
        measured = self.budget.measure(self.fit_check[1], outputs)
        return {"refit_on": f"calibration samples {self.held_window[0]} to {self.held_window[1]}",
                "measured_on": f"calibration samples 0 to {self.fit}", "figures": self.budget.headline(measured),
                "met": bool(self.budget.met(measured))}

    def final(self, trace: list[dict], lossless: Callable) -> tuple[object, dict]:
        """The first candidate within the budget, in the objective's ``rank`` order, that is measurably faster
        than the input (timed interleaved against it), rebuilt with full recovery; else the lossless model."""
        # latest tried first among equals: rounding makes neighbouring ratios alike, and the stop reason
        # names the largest one within the budget
        ok = sorted((r for r in reversed(trace) if r["within_budget"] and r["channels_removed"]),
                    key=self.objective.rank)
        tried = []
        for row in ok[:FINAL_TRIES]:
            if tried and not self.deadline.before(1.0, "the checks against the input"):
                break
            amount = next(a for r, a in self.amounts if r is row)
            cand = self.trial.copy(amount, samples=self.fit)
            verdict = self.objective.verdict(restored_bytes(cand.model), cand)
            verdict["row"] = row
            self.trial.status(f"auto: against the input: {verdict['speedup']:.2f}x")
            if verdict["faster"]:
                from onnxprune.passes.normalize import reinfer_shapes

                reinfer_shapes(cand.model)  # written: its dims named as a fixed prune names them
                if "confirmation" in row:
                    verdict["confirmation"] = row["confirmation"]
                if tried:
                    verdict["fallback"] = (f"{len(tried)} other candidate(s) within the budget were not "
                                           f"faster than the input when timed against it ({', '.join(tried)})")
                return cand, verdict
            tried.append(f"{verdict['speedup']:.2f}x")
        why = ("no candidate beyond the lossless step was within the budget" if not ok else
               f"no candidate within the budget was at least {MIN_SPEEDUP:g}x as fast as the input when timed "
               f"against it ({', '.join(tried)})")
        return lossless(), {"speedup": None, "faster": False,
                            "fallback": f"{why}: the output is the lossless model (it computes what the input does)"}


def input_moments(model: ir.Model) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per float graph input read by a Conv whose output goes to a BatchNormalization alone: the mean
    and standard deviation per input channel that make the Conv's output match the BN's running
    statistics (least squares; inputs taken as independent over positions)."""
    out = {}
    opset = model.opset_imports.get("", 1)
    for inp in model.graph.inputs:
        for use in inp.uses():
            conv = use.node
            affine = traits(conv, opset).affine()
            w_in = conv.inputs[affine.weight] if affine is not None else None
            # a spatial ungrouped weight [O, C, *kernel] read by input 0
            if (w_in is None or use.idx != 0 or w_in.const_value is None or affine.weight_out_axis != 0
                    or len(w_in.const_value.shape) < 3 or traits_attr(conv, "group", 1) != 1):
                continue
            uses = conv.outputs[0].uses()
            bn = uses[0].node if len(uses) == 1 else None
            norm = traits(bn, opset).norm() if bn is not None else None
            if norm is None or norm.mean is None or any(
                    v is None or v.const_value is None for v in (bn.inputs[norm.mean], bn.inputs[norm.var])):
                continue
            w = w_in.const_value.numpy().astype(np.float64)
            bias = conv.inputs[affine.bias] if affine.bias is not None and len(conv.inputs) > affine.bias else None
            b = (bias.const_value.numpy().astype(np.float64)
                 if bias is not None and bias.const_value is not None else np.zeros(w.shape[0]))
            mean, var = (bn.inputs[i].const_value.numpy().astype(np.float64) for i in (norm.mean, norm.var))
            sums = w.reshape(w.shape[0], w.shape[1], -1).sum(axis=2)  # [O, C]
            squares = np.square(w).reshape(w.shape[0], w.shape[1], -1).sum(axis=2)
            mu = np.linalg.lstsq(sums, mean - b, rcond=None)[0]
            sigma2 = np.clip(np.linalg.lstsq(squares, var, rcond=None)[0], 1e-6, None)
            out[inp.name] = (mu.astype(np.float32), np.sqrt(sigma2).astype(np.float32))
            break
    return out
