"""The one place the stages are ordered: load -> normalise -> analyse -> score -> plan -> transform ->
apply -> validate -> save + report. Each stage is a plain function over plain types; the planner
chosen from the config decides only how much goes (``onnxprune.planners``)."""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import onnx
import onnx_ir as ir

from onnxprune import io
from onnxprune.config import PruneConfig
from onnxprune.criteria import criterion
from onnxprune.criteria.base import DataFree, ScoreContext, Scores
from onnxprune.graph import Analysis, analyze_groups
from onnxprune.metrics import count_macs, count_params
from onnxprune.passes.normalize import normalize
from onnxprune.passes.preserve import output_model
from onnxprune.plan import replay_specs
from onnxprune.planners import Candidate, Trial, choose_planner
from onnxprune.progress import Stages
from onnxprune.report import build_report
from onnxprune.shapes import measured_at_deploy_shapes

ModelLike = str | os.PathLike | onnx.ModelProto | ir.Model
STAGES = ["load", "analyse", "score", "plan", "finetune", "save", "validate"]


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


def run(model: ModelLike, config: PruneConfig) -> tuple[ir.Model, dict]:
    """Prune ``model`` as ``config`` says: (pruned onnx-ir model, report dict)."""
    config = config.validate()
    if config.output.path is not None:
        io.check_output_path(Path(model) if isinstance(model, (str, os.PathLike)) else None, config.output.path)
    planner = choose_planner(config)
    with Stages(STAGES, enabled=config.output.progress) as stages:
        stages.next("loading")
        original = _reference_model(model) if config.validation.enabled or planner.needs_original else None
        m = load_normalized(model, fold_bn=planner.fold_bn)
        # every measurement (MACs, latency, validation, targets) at the shapes the model will run at
        config, deploy = measured_at_deploy_shapes(config, m)
        planner = choose_planner(config)
        before = (count_params(m), count_macs(m, config.data.input_shapes or None))
        stages.next("analysing channel groups")
        analysis, _ = planner.prepare(m, analyze_groups(m, config.allocation.attention_unit))
        context = ScoreContext(m, config, original)
        stages.next(f"scoring ({config.score.criterion})")
        scores = score(analysis, context)
        if config.transforms.finetune:
            context.reference_outputs()  # the unpruned model's outputs: before any surgery
        stages.next("planning and applying")
        candidate, section = planner.run(Trial(m, analysis, scores, config, context, stages.bar.set_description_str))
        stages.next("fine-tuning")
        extra = {**scores.report, **candidate.sections, **finetune(candidate, context)}
        report = make_report(candidate, config, before, {**section, **extra, "shapes": deploy.section()})
        # IN itself when nothing changed; else IN's spelling kept where the plan did not reach (speed)
        changed = report["channels_removed"] > 0 or bool(extra.get("finetune"))
        m = output_model(model, candidate.model, changed=changed)
        stages.next("saving" if config.output.path is not None else "serialising")
        same = Path(model) if not changed and isinstance(model, (str, os.PathLike)) else None
        return finish(m, report, original if config.validation.enabled else None, config, stages, same)


def score(analysis: Analysis, context: ScoreContext) -> Scores:
    """The criterion's scores; none when the plan does not come from scores (removals, lossless)."""
    config = context.config
    if config.target.remove or config.lossless:
        return Scores({})
    crit = criterion(config.score.criterion)
    if isinstance(crit, DataFree) and config.allocation.ignore:
        # a data-free criterion scores each group on its own weights: an ignored group's are never read
        analysis = without_ignored(analysis, config.allocation.ignore)
    return crit.score(analysis, context)


def without_ignored(analysis: Analysis, ignore: tuple[str, ...]) -> Analysis:
    """A shallow copy of ``analysis`` in which the groups ``ignore`` matches are not prunable."""
    from onnxprune.allocation import ignored

    view = copy.copy(analysis)
    view.groups = [replace(g, frozen=["left whole by --ignore"]) if g.prunable and ignored(g, ignore) else g
                   for g in analysis.groups]
    return view


def finetune(candidate: Candidate, context: ScoreContext) -> dict:
    """--finetune: distil the pruned model towards the original's outputs; its report section."""
    steps, lr = context.config.transforms.finetune, context.config.transforms.lr
    if not steps:
        return {}
    from onnxprune.criteria.gradient import finetune as distil

    calib = context.calibration()
    losses = distil(candidate.model, calib, context.reference_outputs(), steps, lr=lr, progress=context.progress)
    return {"finetune": {"steps": steps, "lr": lr, "samples": calib.samples,
                         "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                         "target": "the original model's outputs (distillation)"}}


def make_report(candidate: Candidate, config: PruneConfig, before: tuple[int, int], sections: dict) -> dict:
    """The report of the final candidate, with the planner's and the criterion's sections."""
    t = config.target
    remove = bool(t.remove)
    shapes = config.data.input_shapes or None
    report = build_report(candidate.analysis, candidate.plan, replay_specs(candidate.analysis, candidate.plan),
                          criterion=None if remove else config.score.criterion,
                          ratio=None if remove else sections.pop("ratio", "auto" if t.auto else t.ratio),
                          allocation=None if remove or config.lossless or config.thresholded else config.allocation,
                          params=(before[0], count_params(candidate.model)),
                          macs=(before[1], count_macs(candidate.model, shapes)))
    report["channels_removed"] += sections.pop("lossless_channels", 0)
    report["transforms"] = {"merge": bool(config.transforms.merge), "compensate": config.transforms.compensate}
    report.update(sections)
    return report


def finish(m: ir.Model, report: dict, original, config: PruneConfig, stages: Stages,
           same: Path | None = None) -> tuple[ir.Model, dict]:
    """Save (if asked) and validate; with an output file, fidelity runs before it replaces OUT, and the
    checks that need the final file (latency, edge readiness, --quantize) after. ``same``: IN's file, when
    ``m`` is IN unchanged (OUT then gets IN's bytes where its weights are inside it)."""
    output = config.output.path
    if original is None:  # --no-validate: onnxruntime stays unloaded
        if output is not None:
            io.save_model(m, output, copy_of=same)
        return m, report
    from onnxprune.validate import suite  # onnxruntime loads only when validating

    checks = config.validation.checks or suite.ValidationOptions(
        data=config.data.source, seed=config.data.seed, input_shapes=config.data.input_shapes or None)

    def _validate(pruned_file: Path | None) -> None:
        stages.next("validating in onnxruntime")
        pruned = pruned_file if pruned_file is not None else ir.to_proto(m).SerializeToString()
        report["validation"] = suite.fidelity_report(original, pruned, checks, target=config.target)
        report["layers"] = suite.layer_channels(original, pruned)

    macs = (report["flops_before"], report["flops_after"])
    if output is not None:
        io.save_model(m, output, before_replace=_validate, copy_of=same)
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


def _reference_model(model: ModelLike):
    """What onnxruntime loads as the reference: the file itself, or serialized bytes."""
    if isinstance(model, (str, os.PathLike)):
        return Path(model)
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    return ir.to_proto(model).SerializeToString()
