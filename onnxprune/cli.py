"""Command line: ``onnxprune IN OUT [options]``, ``onnxprune analyze IN`` and ``onnxprune validate A B``."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from onnxprune import __version__
from onnxprune.config import DEFAULT_AUTO_CRITERION, DEFAULT_CRITERION
from onnxprune.errors import OnnxPruneError, OptionError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as for every user error
        raise OptionError(f"{message} (see '{self.prog} --help')")


def _prune_parser() -> argparse.ArgumentParser:
    """One argument group per PruneConfig section (onnxprune.config), in the same order."""
    p = _Parser(prog="onnxprune", description="Structured pruning of ONNX models: removes whole channels "
                "by rewriting weights and shape constants, then checks the result in onnxruntime. "
                "Also: 'onnxprune analyze IN' lists channel groups and why some are frozen; 'onnxprune validate "
                "A B' compares two models (fidelity, latency, size, edge readiness).")
    p.add_argument("input", metavar="IN", help="model to prune (.onnx; external data next to it)")
    p.add_argument("output", metavar="OUT", help="where to write the pruned model (never IN)")
    _score_options(p.add_argument_group("score", "what ranks the channels (lowest go first)"))
    _allocation_options(p.add_argument_group("allocation", "how scores become channel counts per group"))
    _target_options(p.add_argument_group("target", "how much goes: one of --ratio, --ratio auto, --target-*, "
                                          "--remove"))
    _transform_options(p.add_argument_group("transforms", "what happens to the plan and the pruned model"))
    _data_options(p.add_argument_group("data", "calibration data and input shapes"))
    v = p.add_argument_group("validation", "the onnxruntime comparison of IN and OUT")
    v.add_argument("--no-validate", action="store_true", help="skip the onnxruntime comparison of outputs")
    v.add_argument("--quantize", choices=["dynamic", "static"], default=None,
                   help="also write an int8 model of the pruned one next to OUT (OUT with .int8.onnx), quantized "
                        "by onnxruntime (static: calibrated on --data or synthetic inputs), and check it agrees")
    _add_check_options(v, latency_default=False)
    o = p.add_argument_group("output")
    o.add_argument("--report", metavar="REPORT.json", help="write the JSON report here")
    o.add_argument("--quiet", action="store_true", help="print nothing but errors")
    o.add_argument("--debug", action="store_true", help="show tracebacks")
    o.add_argument("--version", action="version", version=f"onnxprune {__version__}")
    return p


def _score_options(g) -> None:
    from onnxprune.criteria import REGISTRY

    names = ", ".join(f"{n}{' (needs --data and torch)' if c.needs_data else ''}" for n, c in REGISTRY.items())
    g.add_argument("--criterion", default=None, help=f"channel score: {names}. Default {DEFAULT_CRITERION} "
                   f"(with --ratio auto: {DEFAULT_AUTO_CRITERION}), with global LAMP allocation and merging: the "
                   "best measured against Torch-Pruning L1 (README; tools/bench_defaults.py: 24 of 28 cells won, "
                   "3 tied, 1 lost, over 4 trained models at ratios 0.1-0.7). "
                   + " ".join(f"{n}: {c.summary}." for n, c in REGISTRY.items()))
    g.add_argument("--gaussian-k", type=float, default=1.0, metavar="K",
                   help="criterion gaussian without --ratio: prune channels whose feature lies within K "
                        "standard deviations of the layer mean (default 1.0, ~68%% of a Gaussian layer)")
    g.add_argument("--gaussian-feature", choices=["l1", "l2", "mean", "sum"], default="l1",
                   help="criterion gaussian: the per-filter feature fitted (default l1)")
    g.add_argument("--gaussian-outside", action="store_true",
                   help="criterion gaussian: prune outside the interval instead (the tails)")
    g.add_argument("--singularity-tau", type=float, default=1e-2, metavar="T",
                   help="singularity: numerical rank counts singular values above T x the largest (default 0.01)")
    g.add_argument("--singularity-energy", type=float, default=None, metavar="E",
                   help="singularity: rank = smallest r whose cumulative energy reaches E (instead of T)")
    g.add_argument("--dirichlet-sampling", action="store_true", help="dirichlet: the sampling variant (Gamma "
                   "reparameterised gates, --dirichlet-samples per step) instead of the point variant")
    g.add_argument("--dirichlet-samples", type=int, default=4, metavar="S",
                   help="dirichlet --dirichlet-sampling: gate samples per step (default 4)")
    g.add_argument("--dirichlet-beta", type=float, default=1.0, metavar="B",
                   help="dirichlet: weight of KL(Dir(phi) || Dir(alpha0)) per batch (default 1)")
    g.add_argument("--dirichlet-alpha0", type=float, default=1.0, metavar="A",
                   help="dirichlet: prior concentration (default 1)")
    g.add_argument("--dirichlet-steps", type=int, default=None, metavar="N",
                   help="dirichlet: gate training steps (default: one pass over --data, at least 50)")
    g.add_argument("--dirichlet-mass", type=float, default=0.95, metavar="M",
                   help="dirichlet with --ratio auto: keep the channels holding this share of the posterior "
                        "(default 0.95)")


def _allocation_options(g) -> None:
    g.add_argument("--allocation", choices=["local", "global"], default=None,
                   help="local: RATIO of every group; global: RATIO of all channels, under one threshold over "
                        "scores normalised per group (default: global wherever pooled scores decide the counts, the "
                        "best measured; local where a criterion counts per group)")
    g.add_argument("--normalize", choices=["mean", "lamp"], default=None,
                   help="global allocation: divide scores by the group's mean, or LAMP (default: lamp)")
    g.add_argument("--round-to", type=int, default=0, metavar="N",
                   help="keep channel counts at multiples of N (default 0, automatic: multiples of 16 in groups "
                        "of 256 or more channels, the fastest measured at one thread on CPU with onnxruntime "
                        "(tools/bench_latency.py); smaller groups unrounded; under --ratio auto's latency objective "
                        "multiples of 8 in every group; 1: never round)")
    _attention_unit_option(g)
    g.add_argument("--max-group-ratio", type=float, default=None, metavar="R",
                   help="never remove more than this fraction of any group (default: keep at least one)")
    g.add_argument("--override", action="append", default=[], metavar="REGEX=RATIO",
                   help="groups whose name or producer node name matches REGEX use RATIO; repeatable, "
                        "first match wins")
    g.add_argument("--ignore", action="append", default=[], metavar="REGEX",
                   help="leave groups whose name or producer node name matches REGEX whole (also in --ratio "
                        "auto's lossless step); repeatable")


def _target_options(g) -> None:
    g.add_argument("--ratio", default="0", help="fraction of channels removed, in [0, 1) (default 0: nothing, "
                   "except --criterion gaussian, which then uses --gaussian-k, and lumping, which then removes "
                   "what is lossless); or 'auto': everything lossless, then the largest ratio (global LAMP, "
                   "removed channels folded as with --merge, unless --allocation/--normalize/--no-merge say "
                   "otherwise) whose model stays within the budget; with --criterion gaussian the largest k; with "
                   "singularity and dirichlet the criterion's own count")
    g.add_argument("--target-flops", metavar="F", help="choose the smallest ratio (for --criterion and "
                   "--allocation) whose model has at most F MACs: a fraction of the original (0.5) or a count "
                   "(3.5M, 2G); predicted exactly from the plan, no trial runs")
    g.add_argument("--target-params", metavar="P", help="the same for parameters (0.4, or a count such as 1.2M)")
    g.add_argument("--target-latency", metavar="MS|Fx", help="choose the smallest ratio whose model runs in at most "
                   "MS milliseconds per batch-1 run (or F times the original's, e.g. 0.6x) in onnxruntime on CPU at "
                   "--latency-threads; each candidate is pruned and timed (median after warm-up)")
    g.add_argument("--latency-threads", type=int, default=1, metavar="N",
                   help="threads for --target-latency and --ratio auto timing (default 1: edge-like)")
    g.add_argument("--auto-objective", choices=("latency", "macs"), default="latency",
                   help="what --ratio auto makes smallest within its budget: latency measured in onnxruntime at "
                        "--latency-threads (default) or MACs (deterministic, no timing)")
    g.add_argument("--auto-time", type=float, default=900.0, metavar="SECONDS",
                   help="how long --ratio auto's search may take (default 900): the sensitivity probes stop at "
                        "half of it (most promising groups first), the bisection at 80%%, and the report says "
                        "where time ran out; the best candidate within the budget found by then is used")
    g.add_argument("--remove", action="append", default=[], metavar="NAME:I,J,...",
                   help="remove exactly these output channels of the Conv/Gemm/MatMul NAME (node or output "
                        "tensor name) and everything coupled to them; repeatable; the report lists a plan in "
                        "this form")
    g.add_argument("--budget-cosine", type=float, default=0.99, metavar="C",
                   help="--ratio auto with --data: minimum cosine where an output is compared by cosine "
                        "(embeddings, hidden states, outputs of no known task; default 0.99)")
    g.add_argument("--budget-top1", type=float, default=0.99, metavar="A",
                   help="--ratio auto with --data: minimum top-1 (top-k) agreement on classifier outputs "
                        "[N, classes] (default 0.99)")
    g.add_argument("--budget-synthetic-cosine", type=float, default=0.94, metavar="C",
                   help="--ratio auto without --data: minimum cosine of every output on seeded noise inputs "
                        "(scaled to the first BatchNormalization's statistics; default 0.94)")
    _budget_metric_option(g, "--ratio auto: how an output is compared with the original's, instead of the kind "
                          "chosen from its shape (the report states each choice and why). ")


def _transform_options(g) -> None:
    g.add_argument("--merge", action=argparse.BooleanOptionalAction, default=None,
                   help="fold each removed channel into the kept channel it is most nearly proportional to "
                        "(c > 0; relaxed lumping): consumers read c x that channel instead of nothing; the report "
                        "states the error bound (default: on wherever pooled scores decide the counts - a ratio, "
                        "a size target, auto - unless --compensate or --remove is given; off where channels are "
                        "counted per group)")
    g.add_argument("--compensate", action=argparse.BooleanOptionalAction, default=None,
                   help="fold removed channels' mean contributions (measured on --data, else from "
                        "BatchNormalization statistics) into the consumers' biases where every position reads "
                        "them alike (default: on for --criterion flap, off otherwise)")
    g.add_argument("--lumping-tolerance", type=float, default=0.0, metavar="EPS",
                   help="criterion lumping without --ratio: also fold channels whose filters have cosine >= "
                        "1 - EPS with a kept channel (default 0: lossless only); the report states the error bound")
    g.add_argument("--finetune", type=int, default=0, metavar="STEPS",
                   help="after pruning, distil the pruned model towards the original's outputs on --data for "
                        "STEPS Adam steps (torch twin; no labels needed) and write the weights into OUT")
    g.add_argument("--lr", type=float, default=1e-4, help="--finetune learning rate (default 1e-4)")
    g.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                   help="after pruning, re-solve every Conv/Gemm/MatMul that lost input channels by ridge least "
                        "squares so it reproduces the original model's output of that layer on --data (else on "
                        "seeded synthetic inputs); no labels; the report gives each layer's error before and after. "
                        "Without --criterion it also chooses which channels go: in each group (the allocation still "
                        "decides how many) those the kept ones predict best, where the group's consumers are such "
                        "layers; a named --criterion keeps its own choice. "
                        "Runs before --finetune; --ratio auto refits every candidate it measures (one refit per trial), and "
                        "with --data does so by default (--no-refit or --compensate turn it off)")


def _data_options(g) -> None:
    g.add_argument("--data", metavar="FILE.npz|DIR", help="calibration data: an .npz (arrays keyed by input name, "
                   "samples on the first axis even when the model's batch is fixed; optional int 'labels') or a "
                   "folder of images (see --input-size/--mean/--std); used by --ratio auto's budget, --compensate, "
                   "the gradient criteria, --finetune, --refit and validation. Default: seeded synthetic inputs")
    g.add_argument("--input-size", metavar="H,W", help="--data DIR: resize images to H x W (default: the model's size)")
    g.add_argument("--mean", default=None, metavar="M[,M,M]", help="--data DIR: per-channel mean subtracted after "
                   "scaling pixels to [0, 1] (default 0)")
    g.add_argument("--std", default=None, metavar="S[,S,S]", help="--data DIR: per-channel std divided by (default 1)")
    g.add_argument("--input-shape", action="append", default=[], metavar="NAME:D,D,...",
                   help="shape of an input whose declared shape has free dims: where MACs, latency, targets and "
                        "synthetic validation run (default: the --data shapes, else what the graph implies, else "
                        "batch 1 and other free dims 64; the report states which)")
    g.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs (default 0)")


def _add_check_options(p: argparse.ArgumentParser, latency_default: bool) -> None:
    """Latency, edge readiness and the plot: the same options on prune and validate."""
    p.add_argument("--latency", action=argparse.BooleanOptionalAction, default=latency_default,
                   help="time both models in onnxruntime at 1 thread and at all threads "
                        f"(default: {'on' if latency_default else 'off'})")
    p.add_argument("--latency-runs", type=int, default=None, metavar="N",
                   help="timed runs per model and thread setting (default: as many as fit --latency-budget)")
    p.add_argument("--latency-budget", type=float, default=2.0, metavar="SECONDS",
                   help="seconds of timed runs per thread setting when --latency-runs is not given (default 2)")
    p.add_argument("--edge", action="store_true",
                   help="edge readiness of the pruned model: ORT-format conversion, mobile usability check, int8 "
                        "dynamic and static quantization still running and agreeing")
    p.add_argument("--plot", metavar="FILE.png", help="chart of kept channels per layer and latency before/after "
                   "(needs matplotlib: pip install 'onnxprune[plot]')")


def _budget_metric_option(g, lead: str) -> None:
    from onnxprune.validate.measures import DEFAULT_AGREEMENT, DEFAULT_SNR_DB, DEFAULT_TOPK

    g.add_argument("--budget-metric", action="append", default=[], metavar="KIND[=T][:OUTPUT]",
                   help=lead + "KIND: top1, topk (top-5; topK for another k), detection (decoded boxes matched by "
                   "IoU >= 0.5 and class: F1), ctc (share of sequences decoded to the same string), regions (boxes of a "
                   "probability map's regions above 0.3 matched by IoU >= 0.5: F1), mask (pixel IoU of the map above "
                   "0.3), equal (share of identical values: integer labels, indices, ids), cosine, snr (dB), or auto (auto:OUTPUT: that output's chosen kind; bare auto in validate: "
                   "the chosen kinds, made binding). T: the minimum "
                   f"(default: --budget-top1 for top-k, --budget-cosine for cosine, {DEFAULT_SNR_DB:g} dB for snr, "
                   f"{DEFAULT_AGREEMENT:g} otherwise); OUTPUT: one graph output (BOXES+SCORES for a pair of "
                   "detection outputs), else every output the kind fits. Repeatable or comma-separated, e.g. "
                   f"detection=0.98:output0,cosine:emb (topk: k={DEFAULT_TOPK})")


def _validate_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="onnxprune validate", description="Compare a model with its pruned version in onnxruntime: "
                "per-output fidelity (abs/rel error, cosine, SNR, top-k agreement, and the task agreement chosen from each "
                "output's shape: decoded detections, CTC strings, text-map regions, ...), params, MACs and file size, "
                "latency at 1 thread and all threads, and (--edge) edge readiness. Exit 1 when a stated tolerance "
                "or an edge check fails.")
    p.add_argument("original", metavar="A", help="the original model (.onnx)")
    p.add_argument("pruned", metavar="B", help="the pruned model (.onnx)")
    p.add_argument("--data", metavar="FILE.npz", help="inputs (arrays keyed by input name, samples on the first "
                   "axis; at most 256 used); also static quantization's calibration data. Default: seeded "
                   "synthetic inputs (8 samples on a free batch dim)")
    p.add_argument("--load-inputs", metavar="FILE.npz", help="exactly these inputs (as written by --save-inputs)")
    p.add_argument("--save-inputs", metavar="FILE.npz", help="write the inputs used, to replay them")
    p.add_argument("--atol", action="append", default=[], metavar="[OUTPUT:]V",
                   help="absolute tolerance: an element fails when |a-b| > atol and |a-b| > rtol*|a| (Polygraphy's "
                        "rule); a bare value is the default, OUTPUT:V one output's; repeatable")
    p.add_argument("--rtol", action="append", default=[], metavar="[OUTPUT:]V", help="relative tolerance, as --atol")
    p.add_argument("--min-cosine", action="append", default=[], metavar="[OUTPUT:]C",
                   help="minimum cosine between the outputs, as --atol")
    p.add_argument("--min-top1", action="append", default=[], metavar="[OUTPUT:]A",
                   help="minimum top-1 agreement on classifier-shaped outputs ([N, classes] or [N, classes, 1, 1])")
    _budget_metric_option(p, "task agreement checked per output (exit 1 below its threshold); without it the kind "
                          "chosen from each output's shape is reported, not enforced. ")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME:D,D,...",
                   help="shape of an input whose declared shape has free dims (default: the --data shapes, else "
                        "what the graph implies, else batch 8 and other free dims 64; the report states which)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs (default 0)")
    _add_check_options(p, latency_default=True)
    p.add_argument("--json", metavar="FILE", help="write the report (keys in docs/report.md) here; '-' for stdout")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _attention_unit_option(g) -> None:
    from onnxprune.graph.rules.heads import ATTENTION_UNITS

    g.add_argument("--attention-unit", choices=ATTENTION_UNITS, default="head",
                   help="decomposed attention (Reshape to heads, MatMul, Softmax): remove whole heads (their q, k, v "
                        "rows and output-projection columns; with grouped-query attention a key/value head with its "
                        "query heads), or 'dim': the same head dimensions from every head (default: head)")


def _analyze_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="onnxprune analyze", description="List channel groups, their members, and frozen groups "
                "with the reason they cannot be pruned.")
    p.add_argument("input", metavar="IN")
    p.add_argument("--verbose", "-v", action="store_true", help="every member of every group")
    _attention_unit_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _parse_shapes(items: list[str]) -> dict[str, tuple]:
    shapes = {}
    for item in items:
        name, sep, dims = item.rpartition(":")
        try:
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            sep = ""
        if not sep or not name or any(d <= 0 for d in shapes.get(name, (1,))):
            raise OptionError(f"--input-shape '{item}': expected NAME:D,D,... with positive integers")
    return shapes


def _parse_overrides(items: list[str]) -> list[tuple[str, float]]:
    out = []
    for item in items:
        pattern, sep, ratio = item.rpartition("=")
        try:
            out.append((pattern, float(ratio)))
        except ValueError:
            sep = ""
        if not sep or not pattern:
            raise OptionError(f"--override '{item}': expected REGEX=RATIO")
    return out


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError:
        raise OptionError(f"{option} '{text}': expected numbers separated by commas") from None


def _data_source(args):
    from onnxprune.data import DataSource

    image_options = [o for o, v in (("--input-size", args.input_size), ("--mean", args.mean), ("--std", args.std))
                     if v is not None]
    if image_options and (args.data is None or not Path(args.data).is_dir()):
        raise OptionError(f"{', '.join(image_options)} prepare(s) images of a --data folder; "
                          + ("give --data DIR" if args.data is None else f"{args.data} is not a folder"))
    if args.data is None:
        return None
    size = None
    if args.input_size:
        size = tuple(int(v) for v in _floats(args.input_size, "--input-size"))
        if len(size) != 2 or min(size) <= 0:
            raise OptionError(f"--input-size '{args.input_size}': expected H,W")
    return DataSource(args.data, size, _floats(args.mean or "0", "--mean"), _floats(args.std or "1", "--std"))


def config_from_args(args):
    """The PruneConfig the parsed options describe: one section per argument group."""
    from onnxprune import config as c
    from onnxprune.plan import check_ratio
    from onnxprune.targets import parse_latency, parse_target

    auto = args.ratio.strip().lower() == "auto"
    data = _data_source(args)
    validating = not args.no_validate or args.latency or args.edge or args.quantize
    return c.PruneConfig(
        score=c.ScoreConfig(
            criterion=args.criterion, gaussian_k=args.gaussian_k, gaussian_feature=args.gaussian_feature,
            gaussian_outside=args.gaussian_outside, singularity_tau=args.singularity_tau,
            singularity_energy=args.singularity_energy, dirichlet_sampling=args.dirichlet_sampling,
            dirichlet_beta=args.dirichlet_beta, dirichlet_alpha0=args.dirichlet_alpha0,
            dirichlet_steps=args.dirichlet_steps, dirichlet_samples=args.dirichlet_samples,
            dirichlet_mass=args.dirichlet_mass),
        allocation=c.AllocationConfig(
            mode=args.allocation, normalize=args.normalize, round_to=args.round_to,
            max_group_ratio=args.max_group_ratio, overrides=tuple(_parse_overrides(args.override)),
            ignore=tuple(args.ignore), attention_unit=args.attention_unit),
        target=c.TargetConfig(
            ratio=0.0 if auto else check_ratio(args.ratio), auto=auto,
            flops=None if args.target_flops is None else parse_target(args.target_flops, "--target-flops"),
            params=None if args.target_params is None else parse_target(args.target_params, "--target-params"),
            latency=None if args.target_latency is None else parse_latency(args.target_latency),
            latency_threads=args.latency_threads, auto_objective=args.auto_objective, auto_time=args.auto_time,
            remove=tuple(args.remove),
            budget_cosine=args.budget_cosine, budget_top1=args.budget_top1,
            budget_synthetic_cosine=args.budget_synthetic_cosine, budget_metrics=tuple(args.budget_metric)),
        transforms=c.TransformConfig(merge=args.merge, compensate=args.compensate,
                                     lumping_tolerance=args.lumping_tolerance, finetune=args.finetune, lr=args.lr,
                                     refit=args.refit),
        data=c.DataConfig(source=data, seed=args.seed, input_shapes=_parse_shapes(args.input_shape)),
        validation=c.ValidationConfig(enabled=not args.no_validate, checks=_check_options(
            args, data, quantize=args.quantize) if validating else None),
        output=c.OutputConfig(path=args.output, progress=not args.quiet))


def _check_options(args, data, **extra):
    """ValidationOptions from the parsed options both subcommands share (``data``: a path or DataSource)."""
    from onnxprune.validate.suite import ValidationOptions

    if args.plot and not args.plot.lower().endswith(".png"):
        raise OptionError(f"--plot {args.plot}: expected a .png file name")
    return ValidationOptions(data=data, seed=args.seed, input_shapes=_parse_shapes(args.input_shape),
                             latency=args.latency, latency_runs=args.latency_runs, latency_budget=args.latency_budget,
                             edge=args.edge, **extra).check()


def _run_validate(args) -> int:
    from onnxprune.api import validate_models
    from onnxprune.report import format_validate_summary, write_plot
    from onnxprune.validate.fidelity import Tolerances
    from onnxprune.validate.tasks import needs_real_inputs, parse_metric_requests

    tolerances = Tolerances(atol=args.atol, rtol=args.rtol, cosine=args.min_cosine, top1=args.min_top1)
    task_only = needs_real_inputs(parse_metric_requests(args.budget_metric))
    if task_only and args.data is None and args.load_inputs is None:
        raise OptionError(f"--budget-metric {', '.join(task_only)} reads the task's answers, which mean nothing on "
                          "synthetic noise: give --data or --load-inputs (cosine/snr may be checked on noise)")
    checks = _check_options(args, args.data, tolerances=tolerances, load_inputs=args.load_inputs,
                            save_inputs=args.save_inputs, budget_metrics=tuple(args.budget_metric))
    report = validate_models(args.original, args.pruned, checks)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        write_plot(report, args.plot)
    if not args.quiet and args.json != "-":
        print(format_validate_summary(report))
    return 1 if report["passed"] is False else 0


def _check_side_outputs(args) -> None:
    """--report and --plot: refused before any work if they would overwrite IN, a file IN references,
    OUT or OUT's data file, or if their folder does not exist."""
    from onnxprune import io

    out = Path(args.output)
    targets = [(Path(value), flag) for flag, value in (("--report", args.report), ("--plot", args.plot)) if value]
    for path, flag in targets:
        if not (path.parent if str(path.parent) else Path(".")).is_dir():
            raise OptionError(f"cannot write {flag} {path}: folder {path.parent} does not exist")
    io.refuse_input_files(args.input, [(path, f"{flag} file") for path, flag in targets])
    for path, flag in targets:
        if path.resolve() in (out.resolve(), io.external_data_path(out).resolve()):
            raise OptionError(f"{flag} {path} is the output model or its data file; choose another path")
    if args.report and args.plot and Path(args.report).resolve() == Path(args.plot).resolve():
        raise OptionError("--report and --plot name the same file; choose two paths")


def _run_prune(args) -> int:
    from onnxprune.pipeline import run
    from onnxprune.report import format_summary, write_plot

    _check_side_outputs(args)
    if args.plot and args.no_validate:
        raise OptionError("--plot compares the models after validation: drop --no-validate")
    _, report = run(args.input, config_from_args(args))
    report["input"], report["output"] = str(args.input), str(args.output)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        if "layers" not in report:
            raise OptionError("--plot compares the models after validation: drop --no-validate")
        write_plot(report, args.plot)
    if not args.quiet:
        print(format_summary(report))
        extra = (report.get("quantized", {}).get("path"), args.report, args.plot)
        written = [str(args.output)] + [p for p in extra if p]
        print(f"\nwrote {', '.join(written)}")
    return 1 if report.get("passed") is False else 0


def _run_analyze(args) -> int:
    from onnxprune.api import analyze
    from onnxprune.criteria.distribution import format_statistics, weight_statistics
    from onnxprune.report import analysis_dict, format_analysis

    an = analyze(args.input, args.attention_unit)
    layers = weight_statistics(an)
    if args.json:
        print(json.dumps({**analysis_dict(an), "layers": layers}, indent=2))
    else:
        print(format_analysis(an, verbose=args.verbose))
        if layers:
            print()
            print(format_statistics(layers))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        if argv and argv[0] == "analyze":
            args = _analyze_parser().parse_args(argv[1:])
            return _run_analyze(args)
        if argv and argv[0] == "validate":
            return _run_validate(_validate_parser().parse_args(argv[1:]))
        args = _prune_parser().parse_args(argv)
        return _run_prune(args)
    except OnnxPruneError as exc:
        if debug:
            traceback.print_exc()
        print(f"onnxprune: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("onnxprune: error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("onnxprune: error: out of memory", file=sys.stderr)
        return 2
