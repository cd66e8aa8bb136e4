"""What a prune is asked to do: one frozen ``PruneConfig`` in sections, checked once by ``validate()``.

The sections are the CLI's argument groups: score (criterion and its options), allocation, target
(ratio | auto budget | flops | params | latency | explicit removals), transforms (merge, compensate,
near copies, fine-tuning), data, validation, output. ``validate()`` refuses every combination in which
an option would be accepted and then not used, and fills the defaults that depend on the mode
(where pooled scores decide the counts - a ratio, a size target, auto - the default is global LAMP
allocation with merging, the best measured configuration; per-group modes allocate locally).
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from onnxprune.errors import OptionError

# The criterion used when none is named (a single place, so the default can be changed by evidence).
DEFAULT_CRITERION = "energy"
# --ratio auto without --criterion: l1 measured best inside the data-free budget search (digits CNN: 38.8%
# of MACs removed within a point of accuracy; energy stopped at 23.8%).
DEFAULT_AUTO_CRITERION = "l1"

@dataclass(frozen=True)
class ScoreConfig:
    """Which criterion scores the channels, and its own options (each read by one criterion only)."""

    criterion: str | None = None  # None: DEFAULT_CRITERION, or DEFAULT_AUTO_CRITERION under --ratio auto
    gaussian_k: float = 1.0
    gaussian_feature: str = "l1"
    gaussian_outside: bool = False
    singularity_tau: float = 1e-2
    singularity_energy: float | None = None
    dirichlet_sampling: bool = False
    dirichlet_beta: float = 1.0
    dirichlet_alpha0: float = 1.0
    dirichlet_steps: int | None = None
    dirichlet_samples: int = 4
    dirichlet_mass: float = 0.95


@dataclass(frozen=True)
class AllocationConfig:
    """How scores become counts per group. ``mode``/``normalize`` None: the target's default (local and
    mean for a fixed ratio or a size/latency target; global LAMP for --ratio auto)."""

    mode: str | None = None
    normalize: str | None = None
    round_to: int = 0
    max_group_ratio: float | None = None
    overrides: tuple[tuple[str, float], ...] = ()
    ignore: tuple[str, ...] = ()
    attention_unit: str = "head"  # decomposed attention: remove whole heads, or "dim" (the same dims of every head)


@dataclass(frozen=True)
class TargetConfig:
    """How much goes: a ratio, ``auto`` (a fidelity budget), size or latency targets, or explicit removals."""

    ratio: float = 0.0
    auto: bool = False
    flops: float | None = None  # <= 1: a fraction of the original; else a count
    params: float | None = None
    latency: tuple[float, bool] | None = None  # (value, relative): ms, or a share of the original's
    latency_threads: int = 1
    auto_objective: str = "latency"  # what --ratio auto maximises within its budget: "latency" or "macs"
    auto_time: float = 900.0  # seconds --ratio auto's search aims to stay within (onnxprune.auto)
    remove: tuple[str, ...] = ()
    budget_cosine: float = 0.99
    budget_top1: float = 0.99
    budget_synthetic_cosine: float = 0.94
    budget_metrics: tuple[str, ...] = ()  # --budget-metric KIND[=THRESHOLD][:OUTPUT] (onnxprune.validate.tasks)

    @property
    def sized(self) -> bool:
        """A size or latency target chooses the ratio."""
        return self.flops is not None or self.params is not None or self.latency is not None


@dataclass(frozen=True)
class TransformConfig:
    """What happens to a plan after allocation. ``merge`` None: on for --ratio auto and for criteria that
    merge (lumping), off otherwise; ``compensate`` None: on for criteria that compensate (flap)."""

    merge: bool | None = None
    compensate: bool | None = None
    lumping_tolerance: float = 0.0
    finetune: int = 0
    lr: float = 1e-4
    # re-solve pruned consumers by least squares on calibration inputs (onnxprune.refit); None: on for
    # --ratio auto with --data (its recovery: every candidate it measures is refit) unless --compensate
    refit: bool | None = None
    # under --refit, choose the removed channels by what the refit cannot put back (onnxprune.refit_select);
    # None: when no --criterion is named (a named criterion's choice is kept, and refit)
    refit_selects: bool | None = None


@dataclass(frozen=True)
class DataConfig:
    """Calibration data (a path or ``onnxprune.data.DataSource``), the synthetic-input seed, input shapes."""

    source: Any = None
    seed: int = 0
    input_shapes: dict[str, tuple] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidationConfig:
    """``enabled``: compare outputs in onnxruntime; ``checks``: an ``onnxprune.validate.ValidationOptions``
    (latency, edge readiness, tolerances, --quantize); None: fidelity on the data section's inputs."""

    enabled: bool = True
    checks: Any = None


@dataclass(frozen=True)
class OutputConfig:
    path: str | os.PathLike | None = None
    progress: bool = False


@dataclass(frozen=True)
class PruneConfig:
    score: ScoreConfig = field(default_factory=ScoreConfig)
    allocation: AllocationConfig = field(default_factory=AllocationConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    transforms: TransformConfig = field(default_factory=TransformConfig)
    data: DataConfig = field(default_factory=DataConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    @property
    def lossless(self) -> bool:
        """Lossless lumping: a criterion whose no-ratio mode is lossless, with nothing else asking for more."""
        t = self.target
        return (_criterion(self).at_zero_ratio == "lossless" and t.ratio == 0 and not t.auto and not t.sized
                and not t.remove)

    @property
    def thresholded(self) -> bool:
        """A threshold criterion (gaussian) without a ratio: its own threshold (k) decides."""
        t = self.target
        return (_criterion(self).at_zero_ratio == "threshold" and t.ratio == 0 and not t.auto and not t.sized
                and not t.remove)

    @property
    def own_counts(self) -> bool:
        """The criterion's own counts decide per group (singularity's caps, dirichlet's posterior mass)."""
        crit, t = _criterion(self), self.target
        return bool(crit.sizes_itself and t.auto or crit.shares_ratio_by_counts and not t.auto and not t.remove)

    @property
    def pooled(self) -> bool:
        """Scores pooled over groups decide how many channels each group loses (the default allocation is
        then global LAMP, with merging): not for explicit removals or modes that count per group."""
        crit = _criterion(self)
        return not (self.target.remove or self.lossless or self.thresholded or self.own_counts
                    or (self.target.auto and crit.at_zero_ratio == "threshold"))

    @property
    def default_mode(self) -> str:
        """The allocation used when --allocation is not given: measured best (README, bench_defaults); under
        --ratio auto with --data each group's share comes from its measured sensitivity (onnxprune.auto;
        without data, sensitivity measured on noise misleads: the digits CNN lost 7 points of accuracy
        within the noise budget that global LAMP meets within 1)."""
        sensitivity = self.target.auto and self.data.source is not None
        return ("sensitivity" if sensitivity else "global") if self.pooled else "local"

    @property
    def refits_by_default(self) -> bool:
        """--ratio auto with --data searches refit candidates, unless the user asked for --compensate or the
        criterion compensates or sizes itself (no search)."""
        crit = _criterion(self)
        return bool(self.target.auto and self.data.source is not None and not self.transforms.compensate
                    and not crit.compensates and not crit.sizes_itself)

    def validate(self) -> PruneConfig:
        """This config with the mode's defaults filled in; OptionError for anything impossible or unused."""
        _check_values(self)
        if self.transforms.refit is False and not self.refits_by_default:
            _refuse("--no-refit", "turns off the refit --ratio auto does by default with --data; nothing refits here")
        if self.transforms.refit is None:
            self = replace(self, transforms=replace(self.transforms, refit=self.refits_by_default))
        if self.transforms.refit_selects and (not self.transforms.refit or self.target.remove or self.lossless):
            _refuse("refit_selects", "chooses the channels --refit re-solves from a ratio's counts; it needs --refit "
                    "and a ratio, auto or a target (not --remove or lossless mode)")
        if self.transforms.refit_selects is None:
            self = replace(self, transforms=replace(self.transforms, refit_selects=bool(
                self.transforms.refit) and self.score.criterion is None))
        if self.transforms.compensate is None:  # the criterion's own default (flap folds removed means),
            # off under --refit, which re-solves the bias the compensation would correct
            compensates = _criterion(self).compensates and not self.transforms.refit
            self = replace(self, transforms=replace(self.transforms, compensate=compensates))
        _check_target(self)
        _check_criterion(self)
        _check_allocation(self)
        _check_transforms(self)
        _check_data(self)
        auto = self.target.auto
        a, tr, crit = self.allocation, self.transforms, _criterion(self)
        # merging by default where pooled scores decide, unless --compensate asks for the other recovery
        merges = crit.merges and not self.lossless or (auto and not crit.sizes_itself or self.pooled) \
            and not self.target.remove and not tr.compensate
        from onnxprune.data import as_source

        return replace(self, score=replace(self.score, criterion=crit.name),
                       data=replace(self.data, source=as_source(self.data.source)),
                       allocation=replace(a, mode=a.mode or self.default_mode,
                                                normalize=a.normalize or ("lamp" if (a.mode or self.default_mode)
                                                                          == "global" else "mean")),
                       transforms=replace(tr, merge=merges if tr.merge is None else tr.merge))


def _criterion(config: PruneConfig):
    from onnxprune.criteria import criterion

    return criterion(config.score.criterion or default_criterion(config.target.auto))


def default_criterion(auto: bool) -> str:
    """The criterion used when none is named: the best measured for the mode (see the constants)."""
    return DEFAULT_AUTO_CRITERION if auto else DEFAULT_CRITERION


def _given(section, name: str) -> bool:
    """The field differs from its default (the user asked for something)."""
    f = next(f for f in fields(section) if f.name == name)
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    return getattr(section, name) != default


def _refuse(what: str, why: str) -> None:
    raise OptionError(f"{what} {why}")


def _check_values(c: PruneConfig) -> None:
    """Ranges of single values (before combinations)."""
    from onnxprune.plan import check_ratio

    check_ratio(c.target.ratio)
    t, tr = c.target, c.transforms
    from onnxprune.graph.rules.heads import ATTENTION_UNITS

    if c.allocation.attention_unit not in ATTENTION_UNITS:
        _refuse("--attention-unit", f"must be one of {', '.join(ATTENTION_UNITS)}, got {c.allocation.attention_unit!r}")
    if not isinstance(t.latency_threads, int) or t.latency_threads < 1:
        _refuse("--latency-threads", f"must be >= 1, got {t.latency_threads}")
    if not isinstance(tr.finetune, int) or tr.finetune < 0:
        _refuse("--finetune", f"takes a number of steps >= 0, got {tr.finetune}")
    if not 0.0 <= tr.lumping_tolerance < 1.0:
        _refuse("--lumping-tolerance", f"must be in [0, 1), got {tr.lumping_tolerance}")
    if not tr.lr > 0:
        _refuse("--lr", f"must be > 0, got {tr.lr}")
    s = c.score
    if not s.gaussian_k > 0:
        _refuse("--gaussian-k", f"must be > 0, got {s.gaussian_k}")
    from onnxprune.criteria.gaussian import FEATURES

    if s.gaussian_feature not in FEATURES:
        _refuse("--gaussian-feature", f"must be one of {', '.join(FEATURES)}, got '{s.gaussian_feature}'")
    if not 0 < s.dirichlet_mass <= 1:
        _refuse("--dirichlet-mass", f"must be in (0, 1], got {s.dirichlet_mass}")
    if s.dirichlet_steps is not None and s.dirichlet_steps < 1:
        _refuse("--dirichlet-steps", f"must be >= 1, got {s.dirichlet_steps}")
    for name in ("budget_cosine", "budget_top1", "budget_synthetic_cosine"):
        if not 0.0 <= getattr(t, name) <= 1.0:
            _refuse(f"--{name.replace('_', '-')}", f"must be in [0, 1], got {getattr(t, name)}")


def _check_target(c: PruneConfig) -> None:
    """One way of saying how much goes, and the target's own options only with it."""
    t = c.target
    if t.auto and (t.remove or t.sized):
        _refuse("--ratio auto", "searches the ratio itself: it takes no --remove and no --target-*")
    if t.sized and (t.ratio > 0 or t.remove):
        _refuse("--target-flops/--target-params/--target-latency", "choose the ratio themselves: give no --ratio "
                "and no --remove")
    if t.remove and t.ratio > 0:
        _refuse("--remove", "names the channels itself: give no --ratio")
    if _given(t, "latency_threads") and t.latency is None and not t.auto:
        _refuse("--latency-threads", "sets the timing of --target-latency and --ratio auto: give one of them")
    if t.auto_objective not in ("latency", "macs"):
        _refuse("--auto-objective", f"must be latency or macs, got {t.auto_objective!r}")
    if _given(t, "auto_objective") and not t.auto:
        _refuse("--auto-objective", "is what --ratio auto maximises: give --ratio auto")
    if not isinstance(t.auto_time, (int, float)) or not t.auto_time > 0:
        _refuse("--auto-time", f"must be a number of seconds > 0, got {t.auto_time!r}")
    if _given(t, "auto_time") and not t.auto:
        _refuse("--auto-time", "limits the search of --ratio auto: give --ratio auto")
    budget = [f"--{n.replace('_', '-')}" for n in ("budget_cosine", "budget_top1", "budget_synthetic_cosine")
              if _given(t, n)]
    if budget and not t.auto:
        _refuse(", ".join(budget), "set the budget of --ratio auto: give --ratio auto")
    _check_budget_metrics(c)
    with_data = c.data.source is not None
    wrong = [b for b in budget if (b == "--budget-synthetic-cosine") == with_data]
    if wrong:
        _refuse(", ".join(wrong), "applies " + ("without --data (synthetic inputs)" if with_data else "with --data")
                + "; the other budget is in force here")


def _check_budget_metrics(c: PruneConfig) -> None:
    """--budget-metric: well formed, under --ratio auto only, task kinds only with real inputs (output names are
    checked against the model when the budget is chosen)."""
    t = c.target
    if not t.budget_metrics:
        return
    from onnxprune.validate.tasks import needs_real_inputs, parse_metric_requests  # loads onnxruntime

    requests = parse_metric_requests(t.budget_metrics)
    if not t.auto:
        _refuse("--budget-metric", "sets the budget of --ratio auto: give --ratio auto (onnxprune validate A B "
                "--budget-metric ... checks a pruned model)")
    if any(r.kind == "auto" and r.output is None for r in requests):
        _refuse("--budget-metric auto", "is what --ratio auto budgets anyway (it makes the chosen kinds binding in "
                "onnxprune validate); give KIND[=T][:OUTPUT], or auto:OUTPUT to keep one output's chosen kind")
    wrong = needs_real_inputs(requests)
    if wrong and c.data.source is None:
        _refuse(f"--budget-metric {', '.join(wrong)}", "reads the task's answers, which mean nothing on synthetic "
                "noise: give --data (without it every output is compared by cosine; cosine/snr may be set per output)")


def _check_criterion(c: PruneConfig) -> None:
    """The criterion's needs (data, torch) and its own options only with it."""
    crit, t = _criterion(c), c.target
    if crit.needs_data and c.data.source is None:
        _refuse(f"--criterion {crit.name}", "needs calibration data: --data FILE.npz (arrays keyed by input name, "
                "samples on the first axis; labels optional)")
    if c.transforms.finetune and c.data.source is None:
        _refuse("--finetune", "needs calibration data: --data FILE.npz")
    if crit.at_zero_ratio == "lossless" and c.target.auto:
        _refuse("--ratio auto", "removes what is lossless itself, then searches how far --criterion can go within "
                "the budget; it takes no --criterion lumping")
    foreign = [n for n in (f.name for f in fields(ScoreConfig)) if n != "criterion" and _given(c.score, n)
               and n not in crit.options]
    if foreign:
        _refuse(", ".join(f"--{n.replace('_', '-')}" for n in foreign), f"does not apply to --criterion {crit.name}")
    if _given(c.score, "gaussian_k") and not c.thresholded:
        _refuse("--gaussian-k", "is the threshold of --criterion gaussian without --ratio, --ratio auto or a target")
    if _given(c.score, "dirichlet_mass") and not (t.auto and crit.sizes_itself):
        _refuse("--dirichlet-mass", "is dirichlet's own count under --ratio auto: give --ratio auto")
    if _given(c.score, "dirichlet_samples") and not c.score.dirichlet_sampling:
        _refuse("--dirichlet-samples", "is the number of gate samples of --dirichlet-sampling: give it too")
    if t.auto and c.score.gaussian_outside:
        _refuse("--gaussian-outside", "cannot go with --ratio auto: the search widens the interval until the budget "
                "fails, and the tails it would prune shrink as it widens; give --ratio or --gaussian-k")
    if crit.sizes_itself and t.auto and any(_given(t, n) for n in ("budget_cosine", "budget_top1",
                                                                   "budget_synthetic_cosine", "budget_metrics")):
        _refuse("--budget-*", f"set the fidelity budget; --criterion {crit.name} with --ratio auto uses its own count")
    if crit.sizes_itself and t.auto and any(_given(t, n) for n in ("auto_objective", "latency_threads", "auto_time")):
        _refuse("--auto-objective/--latency-threads/--auto-time", f"steer --ratio auto's search; --criterion {crit.name} with "
                "--ratio auto uses its own count")
    if c.target.remove and (_given(c.score, "criterion") or any(_given(c.score, n) for n in crit.options)):
        _refuse("--remove", "names the channels itself: give no --criterion or criterion options")
    if crit.needs_torch or c.transforms.finetune:
        import onnxprune.twin  # noqa: F401  # without torch: an error naming the extra, before any work


def _check_allocation(c: PruneConfig) -> None:
    """Allocation options only where an allocation runs, and each in range."""
    from onnxprune.allocation import AllocationOptions

    a, crit, t = c.allocation, _criterion(c), c.target
    AllocationOptions(mode=a.mode or "local", normalize=a.normalize or "mean", round_to=a.round_to,
                      max_group_ratio=a.max_group_ratio, overrides=list(a.overrides), ignore=list(a.ignore)).check()
    given = [n for n in ("mode", "normalize", "round_to", "max_group_ratio", "overrides", "ignore") if _given(a, n)]
    flag = {"mode": "--allocation", "normalize": "--normalize", "round_to": "--round-to",
            "max_group_ratio": "--max-group-ratio", "overrides": "--override", "ignore": "--ignore"}
    if t.remove and given:
        _refuse(", ".join(flag[n] for n in given), "allocate scores; --remove names the channels itself")
    # Lossless lumping, a threshold and a criterion's own counts decide per group: only the per-group
    # options (ignore, override, cap, rounding) apply there, not the pooling ones.
    per_group = c.lossless or c.thresholded or c.own_counts or (t.auto and crit.at_zero_ratio == "threshold")
    pooling = [n for n in ("mode", "normalize") if n in given]
    if per_group and pooling:
        _refuse(", ".join(flag[n] for n in pooling), f"do(es) not apply to {_mode_name(c)}: channels are counted per "
                "group there")
    if c.lossless and [n for n in given if n not in ("ignore",)]:
        _refuse(", ".join(flag[n] for n in given if n != "ignore"), "do(es) not apply to lossless lumping (without "
                "--ratio): it removes exactly what is lossless; --ignore is the only allocation option it takes")
    if a.normalize is not None and (a.mode or c.default_mode) != "global":
        _refuse("--normalize", "applies to --allocation global")


def _mode_name(c: PruneConfig) -> str:
    crit = _criterion(c)
    if c.lossless:
        return "lossless lumping"
    if c.thresholded or c.target.auto and crit.at_zero_ratio == "threshold":
        return f"--criterion {crit.name} " + ("with --ratio auto" if c.target.auto else "without --ratio") + \
            " (its threshold decides per group)"
    return f"--criterion {crit.name}" + (" with --ratio auto (its own count)" if c.target.auto else
                                         " (a ratio is shared by its own counts)")


def _check_transforms(c: PruneConfig) -> None:
    tr = c.transforms
    if tr.lumping_tolerance and not c.lossless:
        _refuse("--lumping-tolerance", "goes with --criterion lumping without --ratio (lossless lumping)")
    if _given(tr, "lr") and not tr.finetune:
        _refuse("--lr", "is the learning rate of --finetune: give --finetune STEPS")
    if tr.refit and tr.compensate:
        _refuse("--compensate", "cannot go with --refit: the refit re-solves every pruned consumer's weights and "
                "bias, which includes the mean correction --compensate would make; give one of them")
    checks = c.validation.checks
    if not c.validation.enabled and checks is not None and (checks.latency or checks.edge or checks.quantize):
        _refuse("latency, edge checks and --quantize", "run as part of validation: drop --no-validate")


def _check_data(c: PruneConfig) -> None:
    """Data and the seed only where something reads them."""
    crit, t, tr, v = _criterion(c), c.target, c.transforms, c.validation
    budget = t.auto and not crit.sizes_itself
    if c.data.source is not None and not (crit.needs_data or budget or tr.compensate or tr.finetune or tr.refit
                                          or v.enabled):
        _refuse("--data", "is read by validation, --ratio auto's budget, --compensate, --finetune, --refit and the "
                "gradient criteria; none of them runs here (drop --no-validate or --data)")
    synthetic = c.data.source is None and (v.enabled or budget or tr.refit) or t.latency is not None
    if _given(c.data, "seed") and not synthetic:
        _refuse("--seed", "seeds synthetic inputs (validation, --ratio auto or --refit without --data, "
                "--target-latency); none are used here")


def from_keywords(ratio: float | str = 0.0, criterion: str | None = None, *, remove=None, validate: bool = True,
                  output=None, seed: int = 0, input_shapes=None, progress: bool = False, allocation: str | None = None,
                  normalize: str | None = None, round_to: int = 0, max_group_ratio: float | None = None,
                  overrides=None, ignore=None, gaussian_k: float = 1.0, gaussian_feature: str = "l1",
                  gaussian_outside: bool = False, data=None, budget=None, compensate: bool | None = None,
                  merge: bool | None = None, lumping_tolerance: float = 0.0, target_flops=None, target_params=None,
                  target_latency=None, latency_threads: int = 1, finetune: int = 0, refit: bool | None = None,
                  refit_selects: bool | None = None, gradient_options: dict | None = None, checks=None, attention_unit: str = "head",
                  budget_metrics=None, auto_objective: str = "latency", auto_time: float = 900.0) -> PruneConfig:
    """A PruneConfig from ``onnxprune.prune``'s keyword arguments (their names predate the sections)."""
    from onnxprune.data import as_source
    from onnxprune.targets import parse_latency, parse_target

    auto = isinstance(ratio, str) and ratio.strip().lower() == "auto"
    g = dict(gradient_options or {})
    unknown = set(g) - {"tau", "energy", "sampling", "beta", "alpha0", "steps", "samples", "mass", "lr"}
    if unknown:
        raise OptionError(f"unknown gradient option(s): {', '.join(sorted(unknown))}")
    gd = ScoreConfig()
    score = ScoreConfig(criterion=criterion, gaussian_k=gaussian_k, gaussian_feature=gaussian_feature,
                        gaussian_outside=gaussian_outside, singularity_tau=g.get("tau", gd.singularity_tau),
                        singularity_energy=g.get("energy"), dirichlet_sampling=g.get("sampling", False),
                        dirichlet_beta=g.get("beta", gd.dirichlet_beta),
                        dirichlet_alpha0=g.get("alpha0", gd.dirichlet_alpha0),
                        dirichlet_steps=g.get("steps"), dirichlet_samples=g.get("samples", gd.dirichlet_samples),
                        dirichlet_mass=g.get("mass", gd.dirichlet_mass))
    budget_fields = {} if budget is None else {"budget_cosine": budget.cosine, "budget_top1": budget.top1,
                                               "budget_synthetic_cosine": budget.synthetic_cosine}
    from onnxprune.plan import check_ratio

    target = TargetConfig(
        ratio=0.0 if auto else check_ratio(ratio), auto=auto,
        flops=None if target_flops is None else parse_target(str(target_flops), "--target-flops"),
        params=None if target_params is None else parse_target(str(target_params), "--target-params"),
        latency=None if target_latency is None else parse_latency(str(target_latency)),
        latency_threads=latency_threads, auto_objective=auto_objective, auto_time=auto_time, remove=tuple(remove or ()), **budget_fields,
        budget_metrics=(budget_metrics,) if isinstance(budget_metrics, str) else tuple(budget_metrics or ()))
    return PruneConfig(
        score=score,
        allocation=AllocationConfig(mode=allocation, normalize=normalize, round_to=round_to,
                                    max_group_ratio=max_group_ratio, overrides=tuple(tuple(o) for o in overrides or ()),
                                    ignore=tuple(ignore or ()), attention_unit=attention_unit),
        target=target,
        transforms=TransformConfig(merge=merge, compensate=compensate, lumping_tolerance=lumping_tolerance,
                                   finetune=finetune, lr=g.get("lr", 1e-4), refit=refit,
                                   refit_selects=refit_selects),
        data=DataConfig(source=as_source(data), seed=seed, input_shapes=dict(input_shapes or {})),
        validation=ValidationConfig(enabled=validate, checks=checks),
        output=OutputConfig(path=output, progress=progress))
