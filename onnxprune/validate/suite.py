"""The validation that ``onnxprune validate`` runs and that runs after every prune: fidelity, size,
latency, edge readiness. One function per section, so prune and validate share every line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune import __version__, io
from onnxprune.data import DataSource
from onnxprune.errors import OptionError
from onnxprune.graph.optable import traits
from onnxprune.metrics import count_macs, count_params
from onnxprune.passes.normalize import normalize
from onnxprune.runtime import fixed_batch, run_outputs, session
from onnxprune.validate.edge import QUANT_MODES, calibration_samples, edge_report, int8_path, quantization_check
from onnxprune.validate.fidelity import DEFAULT_SAMPLES, Tolerances, compare_models, validation_feeds
from onnxprune.validate.latency import DEFAULT_BUDGET_S, latency_report


@dataclass
class ValidationOptions:
    """What to validate and on which inputs (the CLI's validate options, shared by prune and validate).

    ``data``: calibration data, a path or ``onnxprune.data.DataSource`` (fidelity inputs and
    static-quantization calibration); ``load_inputs``:
    exact inputs saved by ``save_inputs`` (takes precedence over ``data`` for fidelity)."""
    data: str | os.PathLike | DataSource | None = None
    load_inputs: str | os.PathLike | None = None
    save_inputs: str | os.PathLike | None = None
    seed: int = 0
    input_shapes: dict[str, tuple] | None = None
    samples: int = DEFAULT_SAMPLES
    tolerances: Tolerances = field(default_factory=Tolerances)
    latency: bool = False
    latency_runs: int | None = None
    latency_budget: float = DEFAULT_BUDGET_S
    threads: list[int] | None = None
    edge: bool = False
    quantize: str | None = None
    budget_metrics: tuple[str, ...] = ()  # --budget-metric: task agreement kinds and thresholds (validate.tasks)

    def check(self) -> ValidationOptions:
        if self.quantize is not None and self.quantize not in QUANT_MODES:
            raise OptionError(f"--quantize must be one of {', '.join(QUANT_MODES)}, got '{self.quantize}'")
        if self.latency_runs is not None and self.latency_runs < 1:
            raise OptionError(f"--latency-runs must be >= 1, got {self.latency_runs}")
        if not self.latency_budget > 0:
            raise OptionError(f"--latency-budget must be > 0 seconds, got {self.latency_budget}")
        return self


def model_file_bytes(path) -> int:
    """Bytes on disk: the .onnx file plus the external data files it references."""
    path = Path(path)
    total = path.stat().st_size
    proto = onnx.load(path, load_external_data=False)
    locations = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    return total + sum((path.parent / loc).stat().st_size for loc in locations if (path.parent / loc).is_file())


def _proto(model) -> onnx.ModelProto:
    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    return onnx.load(os.fspath(model), load_external_data=False)


def layer_channels(original, pruned) -> list[dict]:
    """Output channels of every Conv/ConvTranspose/Gemm/MatMul with a constant weight, before and after,
    matched by node name (or first output name): what the plot's bars show."""

    def per_layer(model) -> dict[str, tuple[str, int]]:
        m = ir.from_proto(_proto(model))  # weights stay on disk: only their dims are read
        opset = m.opset_imports.get("", 1)
        layers = {}
        for node in m.graph:
            affine = traits(node, opset).affine()
            w = node.inputs[affine.weight] if affine is not None and len(node.inputs) > affine.weight else None
            if w is None or w.const_value is None or len(w.const_value.shape) < 2:
                continue
            layers[node.name or node.outputs[0].name] = (node.op_type, affine.output_channels(node, w.const_value.shape))
        return layers

    before, after = per_layer(original), per_layer(pruned)
    return [{"name": name, "op": op, "channels_before": ch, "channels_after": after[name][1]}
            for name, (op, ch) in before.items() if name in after]


def size_report(original, pruned, input_shapes=None) -> dict:
    """params, MACs (metrics.py) and file bytes of two model files: the keys prune's report has too,
    counted as prune counts them (after normalize: shapes inferred, Constant nodes are weights)."""
    a, b = normalize(io.load_model(original)), normalize(io.load_model(pruned))
    return {
        "params_before": count_params(a), "params_after": count_params(b),
        "flops_before": count_macs(a, input_shapes), "flops_after": count_macs(b, input_shapes),
        "flops_unit": "multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul at batch 1 of the deploy shapes "
                      "(see shapes)",
        "file_bytes_before": model_file_bytes(original), "file_bytes_after": model_file_bytes(pruned),
    }


def first_batch(sess, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One batch of the fidelity inputs (the declared fixed batch, else 1 sample): what latency times."""
    n = fixed_batch(sess) or 1
    return {k: v[:n] if v.ndim else v for k, v in feeds.items()}  # scalar inputs have no batch


def fidelity_inputs(original, opts: ValidationOptions) -> tuple[dict, str, list | None]:
    """The inputs every section uses (--load-inputs, else --data, else seeded synthetic), their source,
    and the original's outputs on them where computing them was part of choosing the inputs.

    Synthetic inputs take ``opts.samples`` on a free batch dim; a model that declares a free batch but
    fixes it inside (a Reshape to a literal 1, say) gets batch 1 instead, as before batches were used."""
    sess = session(original, role="original model")
    if opts.load_inputs is not None:
        feeds, _ = validation_feeds(sess, opts.load_inputs)
        return feeds, f"saved inputs {opts.load_inputs}", None
    feeds, source = validation_feeds(sess, opts.data, opts.seed, opts.input_shapes, opts.samples)
    if opts.data is not None or opts.samples == 1 or fixed_batch(sess) is not None:
        return feeds, source, None
    try:
        return feeds, source, run_outputs(sess, feeds)
    except Exception:
        feeds, source = validation_feeds(sess, None, opts.seed, opts.input_shapes, samples=1)
        return feeds, f"{source}, batch 1 (the model fails at batch {opts.samples})", None


def fidelity_report(original, pruned, opts: ValidationOptions, target=None) -> dict:
    """The fidelity section. ``target``: prune's TargetConfig; its budget metrics and thresholds are reported
    (the search already enforced them), else ``opts.budget_metrics`` are validate's binding checks."""
    feeds, source, reference = fidelity_inputs(original, opts)
    synthetic = opts.data is None and opts.load_inputs is None
    metrics = opts.budget_metrics if target is None else target.budget_metrics
    return compare_models(original, pruned, feeds, tolerances=opts.tolerances, save_inputs=opts.save_inputs,
                          source=source, reference=reference, budget_metrics=metrics, target=target,
                          binding=target is None, synthetic=synthetic)


def deployment_report(original, pruned_path, opts: ValidationOptions, macs: tuple[int, int],
                      output=None) -> dict:
    """Latency (if asked), edge checks (if asked) and the --quantize model (written next to ``output``)."""
    if not (opts.latency or opts.edge or opts.quantize):
        return {}
    if opts.quantize and output is not None and not isinstance(original, bytes):  # before any timing
        io.refuse_input_files(original, [(int8_path(output), "--quantize output")])
    feeds, _, _ = fidelity_inputs(original, opts)
    calibration = None
    if opts.edge or opts.quantize == "static":
        # calibration data when given, even if fidelity replays --load-inputs
        calib_feeds = feeds if opts.data is None or opts.load_inputs is None else \
            validation_feeds(session(original), opts.data)[0]
        calibration = calibration_samples(calib_feeds)
    section = {}
    if opts.latency:
        one = first_batch(session(original, role="original model"), feeds)
        section["latency"] = latency_report(original, pruned_path, one, macs, opts.latency_runs, opts.latency_budget,
                                            opts.threads)
    if opts.edge:
        section["edge"] = edge_report(pruned_path, feeds, calibration)
    if opts.quantize:
        if output is None:
            raise OptionError("--quantize writes OUT.int8.onnx next to the pruned model: give an output path")
        section["quantized"] = {"mode": opts.quantize,
                                **quantization_check(pruned_path, opts.quantize, feeds, calibration, int8_path(output))}
    return section


def validate_models(original, pruned, opts: ValidationOptions | None = None) -> dict:
    """``onnxprune validate A B``: the whole report (docs/report.md): sizes, fidelity, latency, edge."""
    opts = (opts or ValidationOptions(latency=True)).check()
    report = {"onnxprune_version": __version__, "original": str(original), "pruned": str(pruned)}
    if opts.load_inputs is None:  # sizes and latency at the shapes the original will run at
        from dataclasses import replace

        from onnxprune.shapes import deploy_shapes

        deploy = deploy_shapes(io.load_model(original), opts.data, opts.input_shapes)
        opts = replace(opts, input_shapes=deploy.shapes)
        report["shapes"] = deploy.section()
    sizes = size_report(original, pruned, opts.input_shapes)
    report.update(sizes)
    report["validation"] = fidelity_report(original, pruned, opts)
    report["layers"] = layer_channels(original, pruned)
    report.update(deployment_report(original, pruned, opts, (sizes["flops_before"], sizes["flops_after"])))
    report["passed"] = report_passed(report)
    return report


def report_passed(report: dict) -> bool | None:
    """False when a stated tolerance or an edge check failed; True when something was checked and all
    passed; None when nothing was checked (metrics only)."""
    verdicts = [v for v in (report.get("validation", {}).get("passed"), report.get("edge", {}).get("passed"),
                            report.get("quantized", {}).get("passed")) if v is not None]
    return all(verdicts) if verdicts else None
