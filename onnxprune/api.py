"""The Python API: prune a model end to end, or analyse its channel groups."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune import io
from onnxprune.allocation import AllocationOptions, allocate
from onnxprune.auto import RATIO_STEP, Budget, prune_gaussian, prune_merged, search_k
from onnxprune.criteria import GRADIENT, get_criterion
from onnxprune.criteria.compensate import add_compensation
from onnxprune.criteria.gaussian import gaussian_scores
from onnxprune.criteria.gradient import gradient_plan
from onnxprune.criteria.gradient import reference_outputs as gradient_reference_outputs
from onnxprune.criteria.lumping import lumping_plan
from onnxprune.criteria.merging import add_near_copies, fold_removed, merge_scores
from onnxprune.data import DataSource, as_source
from onnxprune.errors import OptionError
from onnxprune.graph import Analysis, analyze_groups
from onnxprune.metrics import count_macs, count_params, macs_per_node, params_per_initializer
from onnxprune.passes.normalize import normalize
from onnxprune.passes.preserve import output_model
from onnxprune.plan import Plan, check_ratio, plan_from_removals, replay_specs
from onnxprune.progress import Stages
from onnxprune.report import build_report
from onnxprune.surgery import apply_plan
from onnxprune.targets import parse_latency, parse_target

if TYPE_CHECKING:
    from onnxprune.validate.suite import ValidationOptions

ModelLike = str | os.PathLike | onnx.ModelProto | ir.Model


def load_normalized(model: ModelLike, fold_bn: bool = False) -> ir.Model:
    """An onnx-ir model ready for analysis. A path is loaded; a ModelProto is converted (not changed);
    an ir.Model is normalised in place. ``fold_bn`` folds BatchNormalization into the Conv before it."""
    if isinstance(model, (str, os.PathLike)):
        m = io.load_model(model)
    elif isinstance(model, onnx.ModelProto):
        m = ir.from_proto(model)
    elif isinstance(model, ir.Model):
        m = model
    else:
        raise TypeError(f"expected a path, onnx.ModelProto or onnx_ir.Model, got {type(model).__name__}")
    return normalize(m, fold_bn=fold_bn)


def analyze(model: ModelLike) -> Analysis:
    """Channel groups of a model, with members and freeze reasons (``group.details()``)."""
    return analyze_groups(load_normalized(model))


def make_plan(analysis: Analysis, ratio: float = 0.0, criterion: str | Callable = "l1",
              remove: list[str] | None = None, allocation: AllocationOptions | None = None) -> Plan:
    """Explicit removals if given, else the criterion's lowest-scored channels, allocated by
    ``allocation`` (default: ``ratio`` in every group). ``criterion`` is a name or a scorer
    ``(analysis) -> {group id: scores}``."""
    if remove:
        return plan_from_removals(analysis, remove)
    opts = allocation or AllocationOptions()
    opts.ratio = check_ratio(ratio)
    opts.check()
    scorer = get_criterion(criterion) if isinstance(criterion, str) else criterion
    return allocate(analysis, scorer(analysis), opts)


def prune(model: ModelLike, ratio: float = 0.0, criterion: str = "l1", *, remove: list[str] | None = None,
          validate: bool = True, output: str | os.PathLike | None = None, seed: int = 0,
          input_shapes: dict[str, tuple] | None = None, progress: bool = False,
          allocation: str = "local", normalize: str = "mean", round_to: int = 0,
          max_group_ratio: float | None = None, overrides: list[tuple[str, float]] | None = None,
          ignore: list[str] | None = None, gaussian_k: float = 1.0, gaussian_feature: str = "l1",
          gaussian_outside: bool = False, data: str | os.PathLike | DataSource | None = None,
          budget: Budget | None = None, compensate: bool = False, merge: bool = False,
          lumping_tolerance: float = 0.0, target_flops: str | float | None = None,
          target_params: str | float | None = None, target_latency: str | float | None = None,
          latency_threads: int = 1, finetune: int = 0, gradient_options: dict | None = None,
          checks: ValidationOptions | None = None) -> tuple[ir.Model, dict]:
    """Prune ``model`` and return ``(pruned onnx-ir model, report dict)``.

    Allocation (see ``onnxprune.allocation``): ``allocation`` "local" (``ratio`` in every group) or
    "global" (one threshold over scores normalised per group by ``normalize``: "mean" or "lamp");
    ``overrides`` [(regex, ratio)] and ``ignore`` [regex] match group or producer names;
    ``max_group_ratio`` caps any group; ``round_to`` keeps channel counts at multiples of N (0, the default: 16 in groups of 256 or more
    channels, the fastest measured on CPU; smaller groups unrounded).
    ``criterion="gaussian"`` with ``ratio=0`` prunes every channel whose feature lies within
    ``gaussian_k`` standard deviations of its layer's mean (outside, with ``gaussian_outside``).

    ``merge`` folds each removed channel into the kept channel it is most nearly proportional to
    (relaxed lumping, ``onnxprune.criteria.merging``); ``criterion="lumping"`` with a ratio does so
    with the channels that fold best going first; without a ratio it removes what is lossless and,
    with ``lumping_tolerance`` eps > 0, folds channels whose filters have cosine >= 1 - eps with a kept
    channel too.
    ``compensate`` adds removed channels' mean contributions (from BatchNormalization statistics, else
    measured on ``data``) to their consumers' biases where that is well defined
    (``onnxprune.criteria.compensate``).
    ``ratio="auto"`` (``onnxprune.auto``): everything lossless, then the largest ratio (global LAMP,
    removals folded as with ``merge``; with ``criterion="gaussian"`` the largest k) whose model stays
    within ``budget`` on ``data`` or on synthetic inputs scaled to the first BatchNormalization.

    ``target_flops`` / ``target_params`` (a fraction of the original such as 0.5, or a count such as
    "2.5G") choose the smallest ratio whose plan meets them, for the criterion and allocation given
    (``onnxprune.targets``).

    Gradient criteria (``taylor``, ``singularity``, ``dirichlet``; ``onnxprune.criteria.gradient``)
    and ``finetune`` (distillation steps after pruning) need ``data`` and torch. ``ratio="auto"`` with
    ``singularity`` removes each group's estimated maximum, with ``dirichlet`` all but the channels
    holding 95% of the posterior mass. ``gradient_options``: ``tau``, ``energy`` (singularity),
    ``beta``, ``alpha0``, ``sampling``, ``samples``, ``steps``, ``mass`` (dirichlet), ``lr`` (finetune).

    With ``output`` the model is written atomically (and validated from the written file before it
    replaces anything). ``validate`` compares original and pruned outputs in onnxruntime.
    ``checks`` (``onnxprune.validate.ValidationOptions``) adds what ``onnxprune validate`` measures:
    tolerances, latency, edge readiness, and ``quantize`` ("dynamic"/"static": writes OUT.int8.onnx);
    without it, validation uses ``data``, ``seed`` and ``input_shapes``.
    """
    checks = _checks(checks, validate, data, seed, input_shapes)
    auto = isinstance(ratio, str) and ratio.strip().lower() == "auto"
    gradient = criterion in GRADIENT
    data = as_source(data)
    if (gradient or finetune) and data is None:
        what = f"--criterion {criterion}" if gradient else "--finetune"
        raise OptionError(f"{what} needs calibration data: --data FILE.npz (arrays keyed by input name, samples "
                          "on the first axis; labels optional)")
    if finetune < 0:
        raise OptionError(f"--finetune takes a number of steps >= 0, got {finetune}")
    if gradient or finetune:
        import onnxprune.twin  # noqa: F401  # without torch: an error naming the extra, before any work
    if auto and criterion not in ("singularity", "dirichlet"):
        if remove or criterion == "lumping":
            raise OptionError("--ratio auto removes what is lossless, then searches how far --criterion can go "
                              "within the budget; it takes no --remove and no --criterion lumping")
        get_criterion(criterion)
        AllocationOptions(round_to=round_to).check()
        return _prune_auto(model, criterion, output, seed, input_shapes, progress, data, budget or Budget(), round_to,
                           finetune, dict(gradient_options or {}), checks)
    if auto:
        ratio = 0.0
    check_ratio(ratio)
    get_criterion(criterion)
    opts = AllocationOptions(mode=allocation, normalize=normalize, round_to=round_to, max_group_ratio=max_group_ratio,
                             overrides=list(overrides or []), ignore=list(ignore or [])).check()
    scorer = criterion
    targets = {k: parse_target(str(v), f"--target-{k}") for k, v in (("flops", target_flops),
                                                                      ("params", target_params)) if v is not None}
    if target_latency is not None:
        targets["latency"] = parse_latency(str(target_latency))
        if not isinstance(latency_threads, int) or latency_threads < 1:
            raise OptionError(f"--latency-threads must be >= 1, got {latency_threads}")
    if targets and gradient:
        raise OptionError("--target-flops/--target-params/--target-latency work with the data-free criteria; with "
                          f"--criterion {criterion} give --ratio (or --ratio auto)")
    if targets and (check_ratio(ratio) > 0 or remove or (criterion == "gaussian" and not gaussian_k)):
        raise OptionError("--target-flops/--target-params/--target-latency choose the ratio themselves: give no "
                          "--ratio and no --remove")
    lumping = criterion == "lumping" and check_ratio(ratio) == 0 and not remove and not targets
    if not 0.0 <= lumping_tolerance < 1.0 or (lumping_tolerance and criterion != "lumping"):
        raise OptionError(f"--lumping-tolerance must be in [0, 1) and goes with --criterion lumping, got {lumping_tolerance}")
    if criterion == "lumping" and not lumping:  # relaxed: nearly proportional channels fold first
        scorer, merge = merge_scores, True
    if criterion == "gaussian":
        scorer = gaussian_scores(gaussian_feature, gaussian_outside)
        if check_ratio(ratio) == 0 and not targets:
            if not gaussian_k > 0:
                raise OptionError(f"gaussian k must be > 0, got {gaussian_k}")
            opts.threshold = -gaussian_k if gaussian_outside else gaussian_k
            opts.threshold_why = (f"{gaussian_feature} {'beyond' if gaussian_outside else 'within'} {gaussian_k:g} sigma "
                                  "of the layer mean")
    _check_output(model, output)
    with Stages(["load", "analyse", "score", "apply", "save", "validate"], enabled=progress) as stages:
        stages.next("loading")
        original = _original_for_validation(model) if validate else None
        m = load_normalized(model, fold_bn=lumping)
        params_before, macs_before = count_params(m), count_macs(m, input_shapes)
        stages.next("analysing channel groups")
        analysis = analyze_groups(m)
        stages.next(f"scoring ({criterion})" if not remove else "planning removals")
        target_report, extra, calib, reference = None, {}, None, None
        if gradient or finetune:
            from onnxprune.criteria.gradient import load_calibration
            calib = load_calibration(m, data)
            if criterion == "dirichlet" or finetune:
                reference = gradient_reference_outputs(m, calib)
        if gradient and not remove:
            plan, extra = gradient_plan(m, analysis, criterion, None if auto else ratio, opts, calib, reference,
                                         dict(gradient_options or {}), progress, input_shapes)
        elif targets:
            plan, target_report = _plan_for_targets(m, analysis, scorer, opts, targets, input_shapes, latency_threads,
                                                    seed, progress)
        else:
            plan = lumping_plan(analysis) if lumping else make_plan(analysis, ratio, scorer, remove, opts)
        if lumping and lumping_tolerance > 0:
            add_near_copies(analysis, plan, lumping_tolerance)
        if merge:
            fold_removed(analysis, plan)
        if compensate:
            add_compensation(analysis, plan, _activation_means(m, data) if data is not None else None)
        specs = replay_specs(analysis, plan)
        stages.next("applying the plan")
        apply_plan(analysis, plan)
        if finetune:
            extra["finetune"] = _finetune(m, calib, reference, finetune, dict(gradient_options or {}), progress)
        report = build_report(analysis, plan, specs, criterion=None if remove else criterion,
                              ratio=None if remove else ("auto" if auto else ratio),
                              allocation=None if remove or gradient else opts,
                              params=(params_before, count_params(m)),
                              macs=(macs_before, count_macs(m, input_shapes)))
        report.update(extra)
        m = output_model(model, m, changed=plan.count() > 0 or bool(finetune))  # IN itself when nothing changed
        if target_report is not None:
            report["ratio"] = target_report["ratio"]
            report["target"] = target_report
        stages.next("saving" if output is not None else "serialising")
        return _finish(m, report, original, output, checks, stages)


def validate_models(original: str | os.PathLike, pruned: str | os.PathLike, checks=None) -> dict:
    """``onnxprune validate``: sizes, fidelity, latency and (with ``checks.edge``) edge readiness of two
    model files; ``checks`` is an ``onnxprune.validate.ValidationOptions`` (default: latency on).
    The keys are documented in docs/report.md."""
    from onnxprune.validate import suite  # onnxruntime loads only when validating

    return suite.validate_models(original, pruned, checks)


def _prune_auto(model: ModelLike, criterion: str, output, seed: int, input_shapes, progress: bool, data,
                budget: Budget, round_to: int, finetune: int = 0, options: dict | None = None, checks=None):
    from onnxprune.auto import input_moments, search_ratio
    from onnxprune.validate.fidelity import run_outputs, session, validation_feeds

    checks = checks or _default_checks(data, seed, input_shapes)
    _check_output(model, output)
    gaussian = criterion == "gaussian"
    with Stages(["load", "lossless", "reference", "search", "final", "save", "validate"], enabled=progress) as stages:
        stages.next("loading")
        original = _original_for_validation(model)
        m = load_normalized(model, fold_bn=gaussian)
        params_before, macs_before = count_params(m), count_macs(m, input_shapes)
        stages.next("lumping what is lossless")
        an = analyze_groups(m)
        lossless = lumping_plan(an)
        apply_plan(an, lossless)
        base = ir.to_proto(m).SerializeToString()
        stages.next("reference outputs")
        ref = session(original, role="original model")
        budget.synthetic = data is None
        feeds, source = validation_feeds(ref, data, seed, input_shapes, samples=32)
        if data is None:
            moments = input_moments(m)
            for name, (mu, sigma) in moments.items():
                shape = (1, -1) + (1,) * (feeds[name].ndim - 2)
                feeds[name] = (feeds[name] * sigma.reshape(shape) + mu.reshape(shape)).astype(feeds[name].dtype)
            source += (": N(0, 1)" + (
                f"; {', '.join(moments)} scaled to the mean and spread its first BatchNormalization saw"
                if moments else ""))
        reference = run_outputs(ref, feeds)
        run = lambda b: run_outputs(session(b, role="pruned model"), feeds)
        stages.next("searching k" if gaussian else "searching the ratio")
        if gaussian:
            value, trace = search_k(base, run, reference, budget, progress=stages.bar.set_description_str)
            key, how = "k", "bisection over k"
        else:
            scorer = get_criterion(criterion)
            if criterion == "taylor":  # gradients once, on the lossless model every trial starts from
                from onnxprune.criteria.gradient import (
                    gate_gradients,
                    load_calibration,
                    taylor_scores,
                )
                fixed = taylor_scores(gate_gradients(m, an_base := analyze_groups(m), load_calibration(m, data),
                                                     progress))
                names = {g.id: g.name for g in an_base.groups}
                scorer = lambda an: {g.id: fixed[g.id] for g in an.prunable_groups
                                     if names.get(g.id) == g.name}
            value, trace = search_ratio(base, scorer, run, reference, budget, progress=stages.bar.set_description_str,
                                        round_to=round_to)
            key, how = "ratio", f"ratio raised in steps of {RATIO_STEP:g}"
        stages.next("final model")
        if value > 0:
            final, an2, plan = prune_gaussian(base, value) if gaussian else prune_merged(base, value, scorer, round_to)
        else:
            final, an2, plan = m, an, Plan()
        extra = {}
        if finetune:
            from onnxprune.criteria.gradient import load_calibration
            calib = load_calibration(final, data)
            extra["finetune"] = _finetune(final, calib, gradient_reference_outputs(m, calib), finetune, options or {},
                                          progress)
        report = build_report(an2, plan, replay_specs(an2, plan), criterion=criterion, ratio="auto",
                              params=(params_before, count_params(final)),
                              macs=(macs_before, count_macs(final, input_shapes)))
        best = next((t for t in reversed(trace) if t[key] == value), None)
        over = next((t for t in trace if not t["within_budget"]), None)
        report["channels_removed"] += lossless.count()
        report.update(extra)
        final = output_model(model, final, changed=value > 0 or lossless.count() > 0 or bool(finetune))
        report["auto"] = {
            "budget": budget.describe(), "inputs": source, "lossless_channels_removed": lossless.count(),
            "searched": key, key: value,
            "fidelity": {f: best[f] for f in ("top1", "cosine_other", "cosine")} if best else None,
            "search": trace,
            "stopped": (f"{how}: {key} = {value:.3g} is the largest tried within the budget" + (
                f"; {key} = {over[key]:.3g} gave cosine {over['cosine']:.4f}, top-1 agreement {over['top1']:.3f}"
                if over else "") if value > 0 else f"no {key} >= {trace[0][key]:g} stays within the budget"),
            "allocation": None if gaussian else ("global LAMP; removed channels folded into nearly proportional kept "
                                                 f"ones; round-to {round_to or 'automatic'}"),
            "remove_applies_to": "the model after lossless lumping" + (" (BatchNormalization folded)" if gaussian else ""),
        }
        stages.next("saving" if output is not None else "serialising")
        return _finish(final, report, original, output, checks, stages)


def _plan_for_targets(m: ir.Model, analysis: Analysis, scorer, opts: AllocationOptions, targets: dict,
                      input_shapes, threads: int = 1, seed: int = 0, progress: bool = False) -> tuple[Plan, dict]:
    """The smallest-ratio plan meeting every target; what was asked, chosen, predicted and measured."""
    from dataclasses import replace

    from onnxprune.progress import steps
    from onnxprune.targets import predicted_size, smallest_ratio

    macs0 = macs_per_node(m, input_shapes)
    params0 = params_per_initializer(m)
    before = {"flops": sum(macs0.values()), "params": sum(params0.values())}
    limit = {k: v * before[k] if v <= 1 else v for k, v in targets.items() if k != "latency"}
    scores = (get_criterion(scorer) if isinstance(scorer, str) else scorer)(analysis)
    make = lambda r: allocate(analysis, scores, replace(opts, ratio=r))  # noqa: E731
    report: dict = {}
    if "latency" in targets:
        from onnxprune.validate.fidelity import session, synthetic_inputs
        from onnxprune.validate.latency import median_latency_ms

        base = ir.to_proto(m).SerializeToString()
        feeds = synthetic_inputs(session(base), seed, batch=1, overrides=input_shapes)
        original_ms = median_latency_ms(base, feeds, threads)
        value, relative = targets["latency"]
        limit["latency"] = value * original_ms if relative else value
        report["latency"] = {"threads": threads, "original_ms": round(original_ms, 4), "batch": 1}
        bar = steps(16, "timing candidate ratios", progress)

        def latency_of(plan: Plan) -> float:
            fresh = normalize(ir.from_proto(onnx.load_from_string(base)))
            an = analyze_groups(fresh)
            apply_plan(an, Plan(removed={gid: c for gid, c in plan.removed.items()}))
            ms = median_latency_ms(ir.to_proto(fresh).SerializeToString(), feeds, threads)
            bar.update(1)
            return ms

    def worst(plan: Plan) -> float:  # <= 1 when every target holds
        params, macs = predicted_size(analysis, plan, macs0, params0)
        sizes = {"flops": macs, "params": params}
        ratio = max((sizes[k] / limit[k] for k in limit if k != "latency"), default=0.0)
        if "latency" in limit and ratio <= 1:  # time only what meets the size targets
            plan.latency_ms = latency_of(plan)
            ratio = max(ratio, plan.latency_ms / limit["latency"])
        return ratio

    ratio, plan, _ = smallest_ratio(make, worst, 1.0, resolution=0.01 if "latency" in limit else 1e-4)
    params, macs = predicted_size(analysis, plan, macs0, params0)
    report.update({"asked": {k: (round(v, 4) if k == "latency" else int(v)) for k, v in limit.items()},
                   "ratio": round(ratio, 4), "predicted": {"flops": macs, "params": params}})
    if "latency" in limit:
        bar.close()
        report["latency"]["pruned_ms"] = round(getattr(plan, "latency_ms", None) or latency_of(plan), 4)
    return plan, report


def _finetune(m: ir.Model, calib, reference, steps: int, options: dict, progress: bool) -> dict:
    from onnxprune.criteria.gradient import finetune

    losses = finetune(m, calib, reference, steps, lr=options.get("lr", 1e-4), progress=progress)
    return {"steps": steps, "lr": options.get("lr", 1e-4), "samples": calib.samples,
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "target": "the original model's outputs (distillation)"}


def _activation_means(m: ir.Model, data) -> Callable:
    """``means([(value, axis)])`` -> {name: mean per position of axis} of ``m``'s activations on the
    calibration data, measured in onnxruntime (``m`` as it is now: call before the surgery)."""
    from onnxprune.validate.fidelity import ORT_TO_NUMPY, run_outputs, session

    def means(pairs: list) -> dict[str, np.ndarray]:
        proto = ir.to_proto(m)
        known = {o.name for o in proto.graph.output}
        proto.graph.output.extend(onnx.helper.make_tensor_value_info(v.name, int(v.dtype), None)
                                  for v, _ in pairs if v.name not in known)
        sess = session(proto.SerializeToString(), role="model with its activations as outputs")
        inputs = {i.name: (i.shape, ORT_TO_NUMPY.get(i.type, np.float32)) for i in sess.get_inputs()}
        outs = run_outputs(sess, data.arrays(inputs, limit=256), [v.name for v, _ in pairs])
        return {v.name: np.moveaxis(o.astype(np.float64), axis, 0).reshape(o.shape[axis], -1).mean(axis=1)
                for (v, axis), o in zip(pairs, outs)}

    return means


def _checks(checks, validate: bool, data, seed: int, input_shapes):
    """The validation options: the caller's, else the prune options' data, seed and shapes."""
    if checks is None:
        return None if not validate else _default_checks(data, seed, input_shapes)
    if not validate and (checks.latency or checks.edge or checks.quantize):
        raise OptionError("latency, edge checks and --quantize run as part of validation: drop --no-validate")
    return checks.check()


def _default_checks(data, seed: int, input_shapes):
    from onnxprune.validate.suite import (
        ValidationOptions,  # onnxruntime loads only when validating
    )

    return ValidationOptions(data=data, seed=seed, input_shapes=input_shapes)


def _finish(m: ir.Model, report: dict, original, output, checks, stages: Stages):
    """Save (if asked) and validate; with an output file, fidelity runs before it replaces OUT, and the
    checks that need the final file (latency, edge readiness, --quantize) after."""
    if original is None:  # --no-validate: onnxruntime stays unloaded
        if output is not None:
            io.save_model(m, output)
        return m, report
    from onnxprune.validate import suite  # onnxruntime loads only when validating

    def _validate(pruned_file: Path | None) -> None:
        stages.next("validating in onnxruntime")
        pruned = pruned_file if pruned_file is not None else ir.to_proto(m).SerializeToString()
        report["validation"] = suite.fidelity_report(original, pruned, checks)
        report["layers"] = suite.layer_channels(original, pruned)

    macs = (report["flops_before"], report["flops_after"])
    if output is not None:
        io.save_model(m, output, before_replace=_validate)
        if isinstance(original, Path):
            report["file_bytes_before"] = suite.model_file_bytes(original)
        report["file_bytes_after"] = suite.model_file_bytes(output)
        report.update(suite.deployment_report(original, Path(output), checks, macs, output))
    else:
        _validate(None)
        if checks.latency or checks.edge or checks.quantize:
            with tempfile.TemporaryDirectory(prefix="onnxprune-") as tmp:
                ir.save(m, Path(tmp) / "pruned.onnx")
                report.update(suite.deployment_report(original, Path(tmp) / "pruned.onnx", checks, macs))
    report["passed"] = suite.report_passed(report)
    return m, report


def _check_output(model: ModelLike, output) -> None:
    """Refuse OUT == IN and an unwritable OUT before any work is done."""
    if output is not None:
        io.check_output_path(Path(model) if isinstance(model, (str, os.PathLike)) else None, output)


def _original_for_validation(model: ModelLike):
    """What onnxruntime loads as the reference: the file itself, or serialized bytes."""
    if isinstance(model, (str, os.PathLike)):
        return Path(model)
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    return ir.to_proto(model).SerializeToString()
