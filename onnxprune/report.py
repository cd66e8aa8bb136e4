"""The report: one JSON-able dict with stable keys, and its terminal rendering."""

from __future__ import annotations

from onnxprune import __version__
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
        "flops_unit": "multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul at the validation input shapes",
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
    return f"{100.0 * (before - after) / before:.1f}%" if before else "n/a"


def format_summary(report: dict) -> str:
    """A short terminal table: what was removed, sizes, and the validation figures."""
    lines = [
        f"params  {report['params_before']:>14,} -> {report['params_after']:>14,}  "
        f"(-{_pct(report['params_before'], report['params_after'])})",
        f"MACs    {report['flops_before']:>14,} -> {report['flops_after']:>14,}  "
        f"(-{_pct(report['flops_before'], report['flops_after'])})",
        f"groups  {report['groups_prunable']} prunable, {report['groups_frozen']} frozen, "
        f"{report['channels_removed']} channels removed",
    ]
    target = report.get("target")
    if target:
        asked = ", ".join(f"{k} <= {v:,}" for k, v in target["asked"].items())
        lines.append(f"target  {asked}: ratio {target['ratio']:g} is the smallest that meets it")
    sing = report.get("singularity")
    if sing:
        red = sing["max_redundancy"]
        lines.append(f"redundancy  {red['channels']} channels, {red['params']:,} params, {red['flops']:,} MACs removable "
                     f"by the gradient-matrix rank ({sing['samples']} samples)")
        if "warning" in sing:
            lines.append(f"        warning: {sing['warning']}")
    ft = report.get("finetune")
    if ft:
        lines.append(f"finetune {ft['steps']} steps on {ft['samples']} samples: distillation loss "
                     f"{ft['loss_first']:.4g} -> {ft['loss_last']:.4g}")
    auto = report.get("auto")
    if auto:
        lines.append(f"auto    {auto['searched']} {auto[auto['searched']]:.3g}: {auto['budget']}; inputs: {auto['inputs']}")
        lines.append(f"        stopped: {auto['stopped']}")
    touched = [g for g in report["groups"] if g["removed"]]
    if touched:
        lines.append("")
        lines.append(f"{'group':<40} {'kept':>11}  why")
        for g in touched[:40]:
            lines.append(f"{g['name'][:40]:<40} {g['kept']:>4}/{g['channels']:<6}  {g['why']}")
        if len(touched) > 40:
            lines.append(f"... and {len(touched) - 40} more groups (see the JSON report)")
    val = report.get("validation")
    if val:
        lines.append("")
        lines.append(f"validation ({val['input_source']} inputs): onnxruntime CPU, original vs pruned")
        lines.append(f"{'output':<30} {'max_abs':>10} {'mean_abs':>10} {'max_rel':>10} {'cosine':>10}")
        for name, o in val["outputs"].items():
            lines.append(f"{name[:30]:<30} {o['max_abs']:>10.3g} {o['mean_abs']:>10.3g} {o['max_rel']:>10.3g} "
                         f"{o['cosine']:>10.6f}")
    return "\n".join(lines)


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
