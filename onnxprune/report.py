"""The report: one JSON-able dict with stable keys, and its terminal rendering."""

from __future__ import annotations

import numpy as np

from onnxprune import __version__
from onnxprune.errors import OptionError
from onnxprune.graph import Analysis
from onnxprune.plan import Plan


def build_report(analysis: Analysis, plan: Plan, specs: dict[int, list[str]], *, criterion: str | None,
                 ratio: float | None, params: tuple[int, int], macs: tuple[int, int], allocation=None) -> dict:
    groups = []
    for g in analysis.groups:
        removed = plan.removed.get(g.id)
        n_removed = 0 if removed is None else len(removed)
        groups.append({
            "id": g.id,
            "name": g.name,
            "channels": g.size,
            "kept": g.size - n_removed,
            "removed": n_removed,
            "why": plan.reasons.get(g.id, "") if n_removed else plan.skipped.get(g.id, ""),
            "remove": specs.get(g.id, []),
            "frozen": list(g.frozen),
        })
    return {
        "onnxprune_version": __version__,
        "criterion": criterion,
        "ratio": ratio,
        "allocation": None if allocation is None else {
            "mode": allocation.mode, "normalize": allocation.normalize, "round_to": allocation.round_to,
            "max_group_ratio": allocation.max_group_ratio,
            "overrides": [list(o) for o in allocation.overrides], "ignore": list(allocation.ignore)},
        "params_before": params[0],
        "params_after": params[1],
        "flops_before": macs[0],
        "flops_after": macs[1],
        "flops_unit": "multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul at batch 1 of the deploy shapes "
                      "(see shapes)",
        "channels_removed": plan.count(),
        "groups_total": len(analysis.groups),
        "groups_prunable": len(analysis.prunable_groups),
        "groups_frozen": sum(1 for g in analysis.groups if g.frozen),
        "groups": groups,
        "remove": [s for g in groups for s in g["remove"]],
        "folds": sum(len(v) for v in plan.merges.values()) + sum(len(v) for v in plan.bias_folds.values()),
        **({"remove_note": "this plan also folds removed channels into their consumers' weights or biases; "
                           "--remove replays the removals only"}
           if any(plan.merges.values()) or any(plan.bias_folds.values()) else {}),
    }


def _pct(before: int, after: int) -> str:
    """The signed change: -50.1% for a halving."""
    return f"{100.0 * (after - before) / before:+.1f}%" if before else "n/a"


def _size_lines(report: dict) -> list[str]:
    rows = [("params", "params"), ("MACs", "flops")]
    rows += [("bytes", "file_bytes")] if "file_bytes_before" in report else []
    return [f"{label:<7} {report[key + '_before']:>14,} -> {report[key + '_after']:>14,}  "
            f"({_pct(report[key + '_before'], report[key + '_after'])})" for label, key in rows]


def format_summary(report: dict) -> str:
    """A short terminal table: what was removed, sizes, and the validation figures."""
    lines = _size_lines(report) + [
        f"groups  {report['groups_prunable']} prunable, {report['groups_frozen']} frozen, "
        f"{report['channels_removed']} channels removed",
    ] + _shape_lines(report.get("shapes"))
    target = report.get("target")
    if target:
        asked = ", ".join(f"{k} <= {v:,} ms" if k == "latency" else f"{k} <= {v:,}" for k, v in target["asked"].items())
        lines.append(f"target  {asked}: ratio {target['ratio']:g} is the smallest that meets it")
        if "latency" in target:
            lat = target["latency"]
            lines.append(f"        latency at {lat['threads']} thread(s), batch 1: {lat['original_ms']:.3g} ms -> "
                         f"{lat['pruned_ms']:.3g} ms (median)")
    sing = report.get("singularity")
    if sing:
        red = sing["max_redundancy"]
        lines.append(f"redundancy  {red['channels']} channels, {red['params']:,} params, {red['flops']:,} MACs "
                     "removable "
                     f"by the gradient-matrix rank ({sing['samples']} samples)")
        if "warning" in sing:
            lines.append(f"        warning: {sing['warning']}")
    lines += _refit_lines(report.get("refit"))  # before fine-tuning, as they run
    ft = report.get("finetune")
    if ft:
        lines.append(f"finetune {ft['steps']} steps on {ft['samples']} samples: distillation loss "
                     f"{ft['loss_first']:.4g} -> {ft['loss_last']:.4g}")
    auto = report.get("auto")
    if auto:
        lines.append(f"auto    {auto['searched']} {auto[auto['searched']]:.3g} ({auto['channel_share']:.1%} of the "
                     f"prunable channels): {auto['budget']}; "
                     f"inputs: {auto['inputs']}")
        lines.append(f"        stopped: {auto['stopped']}")
        final = auto.get("final") or {}
        if final.get("confirmation"):
            c = final["confirmation"]
            lines.append(f"        confirmed: refit on {c['refit_on']} and measured on {c['measured_on']}: {c['figures']}")
        if auto.get("evidence"):
            lines.append(f"        evidence: {auto['evidence']}")
        if final.get("speedup") is not None:
            lines.append(f"        {final['speedup']:.2f}x as fast as the input ({final['method']}); "
                         f"recovery: {auto['recovery']}; search took {auto['seconds']:.0f} s")
    touched = [g for g in report["groups"] if g["removed"]]
    if touched:
        lines.append("")
        lines.append(f"{'group':<40} {'kept':>11}  why")
        for g in touched[:40]:
            lines.append(f"{g['name'][:40]:<40} {g['kept']:>4}/{g['channels']:<6}  {g['why']}")
        if len(touched) > 40:
            lines.append(f"... and {len(touched) - 40} more groups (see the JSON report)")
    lines += format_validation(report)
    return "\n".join(lines)


def _shape_lines(shapes: dict | None) -> list[str]:
    """Which input shapes MACs, latency and validation used, where each came from, and how to change them."""
    if not shapes:
        return []
    lines = [f"shapes  {name} {s['shape']} from {s['source']}; values: {s['values']}"
             for name, s in shapes["inputs"].items()]
    return lines + [f"        used by {shapes['used_by']}; {shapes['note']}"]


def _refit_lines(refit: dict | None) -> list[str]:
    """--refit: one line of what it solved on, then each layer's relative calibration error before -> after."""
    if not refit:
        return []
    rows = refit["layers"]
    lines = [f"refit   {sum(r['refit'] for r in rows)} of {len(rows)} layers re-solved on {refit['inputs']}"]
    for r in rows[:20]:
        lines.append(f"        {r['layer'][:48]:<48} error {r['error_before']:.4f} -> {r['error_after']:.4f}"
                     + ("" if r["refit"] else f" (kept: {r['why']})"))
    if len(rows) > 20:
        lines.append(f"        ... and {len(rows) - 20} more layers (see the JSON report)")
    lines += [f"        not refit: {s['layer'][:48]} ({s['why']})" for s in refit["skipped"][:10]]
    return lines


def format_validate_summary(report: dict) -> str:
    """``onnxprune validate``'s terminal output: sizes, then every validation section and the verdict."""
    lines = [f"original {report['original']}", f"pruned   {report['pruned']}", ""] + _size_lines(report)
    lines += _shape_lines(report.get("shapes"))
    lines += format_validation(report)
    verdict = report.get("passed")
    lines.append("")
    lines.append("result: " + ("no tolerance stated (metrics only)" if verdict is None else "PASS" if verdict
                               else "FAIL (a stated tolerance or an edge check failed)"))
    return "\n".join(lines)


def _num(v, fmt: str) -> str:
    return "-" if v is None else ("inf" if v == float("inf") else format(v, fmt))


def _check_text(c: dict) -> str:
    if c["check"] == "atol/rtol":
        return (f"atol {c['atol']:g}, rtol {c['rtol']:g}: {c['mismatched']}/{c['elements']} elements "
                "outside both")
    return f"{c['check']} >= {c['min']:g}: {c['value']:.6g}"


def _task_lines(task: dict | None) -> list[str]:
    """Task agreement per output: pass/FAIL where a threshold was stated (validate --budget-metric), else
    ok/low against the kind's default threshold."""
    if not task or not task["checks"]:
        return []
    lines = ["task agreement" + (" (--budget-metric)" if task["binding"] else
                                 " (kinds chosen from the output shapes; --budget-metric to choose or enforce)")]
    for c in task["checks"]:
        mark = ("pass" if c["passed"] else "FAIL") if c["stated"] and task["binding"] else (
            "ok" if c["passed"] else "low")
        lines.append(f"  {mark:<4}  {c['says']} {_num(c['value'], '.4g')} (min {c['threshold']:g}) on "
                     f"{c['output']}: {c['why']}")
    lines += [f"  note: {n}" for n in task.get("notes", [])]
    return lines


def format_validation(report: dict) -> list[str]:
    """Fidelity table with the stated checks, latency table, edge checks, quantized model: whichever
    the report has."""
    lines = []
    val = report.get("validation")
    if val:
        fed = "; ".join(f"{name} {v['shape']}" + (f" in [{v['min']:.4g}, {v['max']:.4g}]" if "min" in v else "")
                        for name, v in val["inputs"].items()) or "-"
        lines += ["", f"validation ({val['input_source']} inputs: {fed}): onnxruntime CPU, original vs pruned",
                  f"{'output':<24} {'max_abs':>9} {'mean_abs':>9} {'max_rel':>9} {'mean_rel':>9} {'cosine':>9} "
                  f"{'snr_db':>7} {'top1':>6} {'top5':>6}"]
        for name, o in val["outputs"].items():
            snr = "inf" if o.get("snr_db", 0) is None else _num(o.get("snr_db"), ".1f")
            lines.append(f"{name[:24]:<24} {o['max_abs']:>9.3g} {o['mean_abs']:>9.3g} {o['max_rel']:>9.3g} "
                         f"{_num(o.get('mean_rel'), '.3g'):>9} {o['cosine']:>9.6f} {snr:>7} "
                         f"{_num(o.get('top1'), '.3f'):>6} {_num(o.get('top5'), '.3f'):>6}")
            for c in o.get("checks", []):
                lines.append(f"  {'pass' if c['passed'] else 'FAIL'}  {_check_text(c)}")
            if o.get("note"):
                lines.append(f"  note: {o['note']}")
        lines += _task_lines(val.get("task"))
    lat = report.get("latency")
    if lat:
        fs = lat.get("flops_speedup")
        lines += ["", "latency (ms per run, median [p10 - p90]), onnxruntime CPU, batch "
                      f"{next(iter(lat['batch'].values()), '-')}",
                  f"{'threads':>7} {'original':>24} {'pruned':>24} {'speedup':>8} {'MACs speedup':>13} {'runs':>5}"]
        for r in lat["settings"]:
            o, n = r["original_ms"], r["pruned_ms"]
            lines.append(f"{r['threads']:>7} {o['median']:>9.3f} [{o['p10']:.3f} - {o['p90']:.3f}]".ljust(32)
                         + f" {n['median']:>9.3f} [{n['p10']:.3f} - {n['p90']:.3f}]".ljust(25)
                         + f" {_num(r['speedup'], '.2f'):>7}x {_num(fs, '.2f'):>12}x {r['runs']:>5}")
        for note in lat.get("notes", []):
            lines.append(f"  note: {note}")
    edge = report.get("edge")
    if edge:
        lines += ["", "edge readiness of the pruned model"]
        for name, c in edge.items():
            if isinstance(c, dict):
                lines.append(f"  {'pass' if c['passed'] else 'FAIL'}  {name:<18} {c['reason']}")
    q = report.get("quantized")
    if q:
        lines += ["", f"int8 model ({q['mode']}): {'pass' if q['passed'] else 'FAIL'}  {q['reason']}"
                      + (f"; wrote {q['path']}" if q.get("path") else "")]
    return lines


def write_plot(report: dict, path) -> None:
    """PNG: kept channels per layer (before/after) and, when measured, latency before/after per thread
    setting. matplotlib is the optional extra 'plot'."""
    try:
        import matplotlib
    except ImportError:
        raise OptionError("--plot needs matplotlib: pip install 'onnxprune[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report.get("layers") or []
    lat = report.get("latency")
    ncols = 2 if lat else 1
    fig, axes = plt.subplots(1, ncols, figsize=(min(30.0, max(6.0, 0.25 * len(layers) + 3)) + (4 if lat else 0), 4.5),
                             gridspec_kw={"width_ratios": [3, 1]} if lat else None, squeeze=False)
    ax = axes[0][0]
    x = np.arange(len(layers))
    ax.bar(x, [layer["channels_before"] for layer in layers], color="#cccccc", label="before")
    ax.bar(x, [layer["channels_after"] for layer in layers], color="#3b75af", label="kept")
    ax.set_xticks(x)
    ax.set_xticklabels([layer["name"][-24:] for layer in layers], rotation=90, fontsize=6)
    ax.set_ylabel("output channels")
    ax.set_title("kept channels per layer")
    ax.legend()
    if lat:
        ax2 = axes[0][1]
        rows = lat["settings"]
        xs = np.arange(len(rows))
        ax2.bar(xs - 0.2, [r["original_ms"]["median"] for r in rows], 0.4, color="#cccccc", label="original")
        ax2.bar(xs + 0.2, [r["pruned_ms"]["median"] for r in rows], 0.4, color="#3b75af", label="pruned")
        for i, r in enumerate(rows):  # spread as p10-p90 whiskers
            for dx, key in ((-0.2, "original_ms"), (0.2, "pruned_ms")):
                ax2.plot([i + dx, i + dx], [r[key]["p10"], r[key]["p90"]], color="black", linewidth=1)
        ax2.set_xticks(xs)
        ax2.set_xticklabels([f"{r['threads']} thr\n{r['speedup']:.2f}x" for r in rows])
        ax2.set_ylabel("ms per run (median, p10-p90)")
        ax2.set_title("latency")
        ax2.legend(fontsize=7)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise OptionError(f"cannot write plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def format_analysis(analysis: Analysis, verbose: bool = False) -> str:
    """Groups with sizes and members; frozen groups with their reasons."""
    lines = [f"{len(analysis.groups)} channel groups: {len(analysis.prunable_groups)} prunable, "
             f"{sum(1 for g in analysis.groups if g.frozen)} frozen"]
    for g in analysis.groups:
        if verbose:
            lines.append(g.details())
            continue
        state = "frozen" if g.frozen else ("prunable" if g.prunable else "single channel")
        prods = ", ".join(sorted({p.node.name or p.node.op_type for p in g.producers}))[:60]
        lines.append(f"  [{g.id:>3}] {g.name[:40]:<40} {g.size:>6} ch  {state:<8} producers: {prods}")
        for r in g.frozen:
            lines.append(f"          frozen: {r}")
    return "\n".join(lines)


def analysis_dict(analysis: Analysis) -> dict:
    """``onnxprune analyze --json``: every group with size, members and freeze reasons."""
    return {
        "groups_total": len(analysis.groups),
        "groups_prunable": len(analysis.prunable_groups),
        "groups": [{
            "id": g.id,
            "name": g.name,
            "channels": g.size,
            "prunable": g.prunable,
            "frozen": list(g.frozen),
            "producers": [f"{p.node.name}:{p.value.name}:axis{p.axis}" for p in g.producers],
            "params": [f"{p.node.name}:{p.value.name}:axis{p.axis}:{p.role}" for p in g.params],
            "tensors": [f"{v.name}:axis{d.axis}" for v, d in g.dims],
        } for g in analysis.groups],
    }
