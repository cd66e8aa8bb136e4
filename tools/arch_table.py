"""Write ``docs/architectures.md``: which architectures prune, and which channel groups freeze and why.

Run from anywhere::

    python tools/arch_table.py [--output docs/architectures.md]

Every model the test suite knows is analysed (``onnxprune.analyze``) and pruned at ratio 0.3 with the
l1 criterion (``onnxprune.prune``, validated in onnxruntime):

* the bundled ``models/digits_cnn.onnx`` and ``models/digits_resnet.onnx``;
* onnx's light zoo models with seeded random weights (``tests/zoo.py``);
* PaddleOCR det/rec/cls from the ``rapidocr-onnxruntime`` wheel (``tests/zoo.py``);
* the small torch architectures of ``tests/torch_archs.py`` with every exporter.

Models are written to a temporary directory that is removed afterwards. The output has no
timestamps or paths, so a rerun is byte-identical when neither onnxprune nor the models changed.
An exception inside onnxprune does not stop the run: the model's row says ``error: <message>``.
Takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import onnx  # noqa: E402

import onnxprune  # noqa: E402

RATIO = 0.3
CRITERION = "l1"


@dataclass
class Case:
    label: str
    family: str
    source: str  # how to get the model, for the reader (and for reproducing an error)
    make: object  # zero-argument callable returning the model path
    input_shapes: dict | None = None


@dataclass
class Result:
    case: Case
    groups: list = field(default_factory=list)  # [(name, size, frozen reasons, prunable)]
    report: dict | None = None
    analyze_error: str | None = None
    prune_error: str | None = None
    tracebacks: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# the models, in the order tests/test_oracle.py enumerates them
# ---------------------------------------------------------------------------------------------


def _cases(workdir: Path) -> list[Case]:
    import torch_archs
    import zoo
    from test_oracle import INPUT_SHAPES

    cases = [Case(n, "bundled", f"models/{n}.onnx", (lambda n=n: ROOT / "models" / f"{n}.onnx"))
             for n in ("digits_cnn", "digits_resnet")]

    def light(name: str) -> Path:
        path = workdir / f"light_{name}.onnx"
        onnx.save(zoo.light_model(name), path)
        return path

    cases += [Case(f"light_{n}", "onnx light zoo", f"zoo.light_model({n!r})", (lambda n=n: light(n)))
              for n in zoo.LIGHT_MODELS]

    paddle: dict = {}

    def paddle_model(kind: str) -> Path:
        if not paddle:
            paddle.update(zoo.paddleocr_models())
        return paddle[kind]

    cases += [Case(f"paddle_{k}", "PaddleOCR", f"zoo.paddleocr_models()[{k!r}]", (lambda k=k: paddle_model(k)),
                   INPUT_SHAPES.get(f"paddle_{k}")) for k in ("det", "rec", "cls")]
    cases += [Case(f"{a}_{e}", "torch export", f"torch_archs.export_arch({a!r}, {e!r}, dir)",
                   (lambda a=a, e=e: torch_archs.export_arch(a, e, workdir)))
              for a in torch_archs.ARCHS for e in torch_archs.EXPORTERS]
    return cases


def _message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return " ".join(text.split())


def _run(case: Case, workdir: Path) -> Result:
    res = Result(case)
    try:
        path = case.make()
    except Exception as exc:  # the model could not be made: not onnxprune's fault, but still reported
        res.analyze_error = "model not available: " + _message(exc)
        res.tracebacks.append(traceback.format_exc())
        return res
    try:
        an = onnxprune.analyze(path)
        res.groups = [(g.name, g.size, list(g.frozen), g.prunable) for g in an.groups]
    except Exception as exc:
        res.analyze_error = _message(exc)
        res.tracebacks.append(traceback.format_exc())
    try:
        _, res.report = onnxprune.prune(path, ratio=RATIO, criterion=CRITERION, output=workdir / f"{case.label}_pruned.onnx",
                                        input_shapes=case.input_shapes)
    except Exception as exc:
        res.prune_error = _message(exc)
        res.tracebacks.append(traceback.format_exc())
    return res


# ---------------------------------------------------------------------------------------------
# freeze reasons
# ---------------------------------------------------------------------------------------------

_NODE_REASON = re.compile(r"^(?P<op>[\w.]+) node '(?P<node>.*?)': (?P<text>.*)$", re.S)
_TENSOR_REASON = re.compile(r"^tensor '(?P<node>.*?)' (?P<text>.*)$", re.S)
_QUOTED = re.compile(r"'[^']*'")
_SHAPE_CHANGE = re.compile(r"\(\[[^\]]*\] -> \[[^\]]*\]\)")


def reason_category(reason: str) -> tuple[str, str]:
    """(category, where) for a freeze reason: the op and the text after the node name, with tensor
    names and concrete shapes elided so the same cause in different places reads the same."""
    m = _NODE_REASON.match(reason)
    if m:
        category, where = f"{m['op']}: {m['text']}", m["node"]
    else:
        m = _TENSOR_REASON.match(reason)
        category, where = (f"tensor '…' {m['text']}", m["node"]) if m else (reason, "")
    category = _SHAPE_CHANGE.sub("([…] -> […])", _QUOTED.sub("'…'", category))
    return category, where


def _categories(groups) -> dict[str, list]:
    """category -> [(group name, [where, ...]), ...] over the frozen groups."""
    out: dict[str, list] = {}
    for name, _size, frozen, _prunable in groups:
        per_group: dict[str, list] = {}
        for r in frozen:
            cat, where = reason_category(r)
            per_group.setdefault(cat, [])
            if where and where not in per_group[cat]:
                per_group[cat].append(where)
        for cat, wheres in per_group.items():
            out.setdefault(cat, []).append((name, wheres))
    return out


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _pct(before: int, after: int) -> str:
    return f"{100.0 * (before - after) / before:.1f}%" if before else "n/a"


def _names(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(f"`{i}`" for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _report_groups(report: dict) -> list:
    return [(g["name"], g["channels"], list(g["frozen"]), not g["frozen"] and g["channels"] > 1)
            for g in report["groups"]]


def _row(res: Result) -> list[str]:
    label = f"`{res.case.label}`"
    if res.analyze_error and res.report is None:
        return [label] + [_cell(f"error: {res.prune_error or res.analyze_error}")] + [""] * 7
    if res.analyze_error:  # prune worked, analyze did not: take the groups from the report
        groups = _report_groups(res.report)
    else:
        groups = res.groups
    n_prunable = sum(1 for g in groups if g[3])
    n_frozen = sum(1 for g in groups if g[2])
    all_ch = sum(g[1] for g in groups)
    pr_ch = sum(g[1] for g in groups if g[3])
    prunable = str(n_prunable)
    rep = res.report
    if rep is not None and rep["groups_prunable"] != n_prunable and not res.analyze_error:
        prunable += f" ({rep['groups_prunable']} in prune) ¹"
    channels = f"{pr_ch}/{all_ch} ({100.0 * pr_ch / all_ch:.0f}%)" if all_ch else "0/0"
    if rep is None:
        params = macs = _cell(f"error: {res.prune_error}")
        validation = "no"
    else:
        params = _pct(rep["params_before"], rep["params_after"])
        macs = _pct(rep["flops_before"], rep["flops_after"])
        validation = "yes" if (rep.get("validation") or {}).get("outputs") else "no"
    cats = _categories(groups)
    reasons = "; ".join(f"{c} (×{len(v)})" for c, v in sorted(cats.items(), key=lambda kv: (-len(kv[1]), kv[0])))
    if res.analyze_error:
        reasons = f"error in analyze: {res.analyze_error}" + (f"; {reasons}" if reasons else "")
    return [label, str(len(groups)), prunable, str(n_frozen), channels, params, macs, validation,
            _cell(reasons or "—")]


def render(results: list[Result]) -> str:
    lines = [
        "# Architectures: what prunes and what freezes",
        "",
        f"Generated by `python tools/arch_table.py` with onnxprune {onnxprune.__version__}. Do not edit by hand.",
        "",
        f"Every model the test suite knows, analysed with `onnxprune.analyze` and pruned with "
        f"`onnxprune.prune(ratio={RATIO}, criterion=\"{CRITERION}\")`. Light zoo models carry seeded random "
        "weights (`tests/zoo.py`), PaddleOCR models come from the `rapidocr-onnxruntime` wheel (rec at "
        "1x3x48x160, cls at 1x3x48x192), torch architectures are exported by `tests/torch_archs.py`.",
        "",
        "- **groups**: channel groups (channels that must be removed together); **prunable**: not frozen "
        "and more than one channel; **frozen**: groups with at least one freeze reason.",
        "- **prunable channels**: channels in prunable groups / channels in all groups.",
        f"- **params −**, **MACs −**: reduction at ratio {RATIO} (MACs of Conv/ConvTranspose/Gemm/MatMul at the "
        "validation input shapes).",
        "- **validated**: onnxruntime ran the original and the pruned model and compared their outputs.",
        "- **freeze reasons**: each reason with the node and tensor names elided, and the number of frozen groups "
        "it applies to in that model.",
        "",
        "| model | groups | prunable | frozen | prunable channels | params − | MACs − | validated | freeze reasons |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: | --- |",
    ]
    family = None
    for res in results:
        if res.case.family != family:
            family = res.case.family
            lines.append(f"| **{family}** | | | | | | | | |")
        lines.append("| " + " | ".join(_row(res)) + " |")

    mismatched = [r for r in results if r.report is not None and not r.analyze_error
                  and r.report["groups_prunable"] != sum(1 for g in r.groups if g[3])]
    if mismatched:
        lines += ["", "¹ `prune()` found fewer prunable groups than `analyze()` on the same file; see "
                      "[analyze() and prune() disagree](#analyze-and-prune-disagree)."]

    # -- why groups freeze ------------------------------------------------------------------------
    by_cat: dict[str, list] = {}
    for res in results:
        groups = res.groups if not res.analyze_error else (_report_groups(res.report) if res.report else [])
        for cat, entries in _categories(groups).items():
            by_cat.setdefault(cat, []).append((res.case.label, entries))
    lines += ["", "## Why groups freeze", "",
              "Each reason `analyze()` gives, with the models it occurs in: the number of frozen groups it applies "
              "to, and the nodes (or tensors) that reported it.", ""]
    for cat, models in sorted(by_cat.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        n_groups = sum(len(e) for _, e in models)
        lines.append(f"### {_cell(cat)}")
        lines.append("")
        lines.append(f"{len(models)} model{'s' if len(models) != 1 else ''}, {n_groups} group{'s' if n_groups != 1 else ''}.")
        lines.append("")
        for label, entries in models:
            wheres = []
            for _name, w in entries:
                wheres += [x for x in w if x not in wheres]
            groups_txt = f"{len(entries)} group{'s' if len(entries) != 1 else ''}"
            at = f" at {_names(wheres)}" if wheres else ""
            lines.append(f"- `{label}`: {groups_txt}{at}")
        lines.append("")

    # -- analyze() vs prune() -------------------------------------------------------------------------
    if mismatched:
        lines += ["## analyze() and prune() disagree", "",
                  "Groups that `prune()` reports frozen although `analyze()` of the same file finds them prunable "
                  "(reasons as `prune()`'s report gives them).", ""]
        for res in mismatched:
            ok = {g[0] for g in res.groups if g[3]}
            extra = [g for g in _report_groups(res.report) if g[0] in ok and g[2]]
            lines.append(f"- `{res.case.label}`: {len(ok)} prunable in `analyze()`, "
                         f"{res.report['groups_prunable']} in `prune()`:")
            for name, size, frozen, _ in extra:
                lines.append(f"  - `{name}` ({size} channels): " + "; ".join(_cell(r) for r in frozen))
        lines.append("")

    # -- errors -------------------------------------------------------------------------------------
    errors = [r for r in results if r.analyze_error or r.prune_error]
    lines += ["## Errors", ""]
    if not errors:
        lines += ["onnxprune raised no exception on any model.", ""]
    else:
        for res in errors:
            for what, msg in (("analyze", res.analyze_error), ("prune", res.prune_error)):
                if msg:
                    lines.append(f"- `{res.case.label}` ({what}, model from `{res.case.source}`): {_cell(msg)}")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "architectures.md")
    args = parser.parse_args(argv)

    warnings.simplefilter("ignore")
    logging.getLogger("torch").setLevel(logging.ERROR)
    results = []
    with tempfile.TemporaryDirectory(prefix="arch_table_") as tmp:
        workdir = Path(tmp)
        for case in _cases(workdir):
            print(f"{case.label} ...", file=sys.stderr, flush=True)
            res = _run(case, workdir)
            for tb in res.tracebacks:
                print(tb, file=sys.stderr)
            results.append(res)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    text = render(results)
    args.output.write_text(text, encoding="utf-8")
    n_err = sum(1 for r in results if r.analyze_error or r.prune_error)
    print(f"wrote {args.output} ({len(results)} models, {n_err} with errors)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
