"""Every PruneConfig field is used: changing it changes the pruned model or the report in at least one
mode where it is allowed. A field that a planner, transform or criterion dropped would fail here; a new
field without a case fails the coverage test."""

from __future__ import annotations

import json
import sys
from dataclasses import fields, replace

import onnx_ir as ir
import pytest
from conftest import tiny_attention, tiny_cnn

from onnxprune.config import PruneConfig
from onnxprune.pipeline import run

# Keys that only echo the config back: a change there proves nothing.
ECHO = {"criterion", "ratio", "allocation", "transforms", "onnxprune_version"}
DIRICHLET = {"criterion": "dirichlet", "dirichlet_steps": 8}
# --ratio auto on MACs: a timed objective would make every report differ, whatever the field did
AUTO = {"auto": True, "auto_objective": "macs"}

# field -> (base sections, changed value). Sections are given as {section: {field: value}}.
CASES: dict[str, tuple[dict, object]] = {
    "score.criterion": ({"target": {"ratio": 0.5}}, "fpgm"),
    "score.gaussian_k": ({"score": {"criterion": "gaussian"}}, 0.3),
    "score.gaussian_feature": ({"score": {"criterion": "gaussian"}, "target": {"ratio": 0.5}}, "sum"),
    "score.gaussian_outside": ({"score": {"criterion": "gaussian"}, "target": {"ratio": 0.5}}, True),
    "score.singularity_tau": ({"score": {"criterion": "singularity"}, "target": {"auto": True}, "data": "calib"}, 0.5),
    "score.singularity_energy": ({"score": {"criterion": "singularity"}, "target": {"auto": True}, "data": "calib"},
                                 0.5),
    "score.dirichlet_sampling": ({"score": DIRICHLET, "target": {"ratio": 0.5}, "data": "calib"}, True),
    "score.dirichlet_beta": ({"score": DIRICHLET, "target": {"auto": True}, "data": "calib"}, 50.0),
    "score.dirichlet_alpha0": ({"score": DIRICHLET, "target": {"auto": True}, "data": "calib"}, 20.0),
    "score.dirichlet_steps": ({"score": DIRICHLET, "target": {"ratio": 0.5}, "data": "calib"}, 1),
    "score.dirichlet_samples": ({"score": {**DIRICHLET, "dirichlet_sampling": True}, "target": {"ratio": 0.5},
                                 "data": "calib"}, 1),
    "score.dirichlet_mass": ({"score": DIRICHLET, "target": {"auto": True}, "data": "calib"}, 0.5),
    "allocation.mode": ({"target": {"ratio": 0.5}}, "local"),
    "allocation.normalize": ({"target": {"ratio": 0.5}, "allocation": {"mode": "global"}}, "mean"),
    "allocation.round_to": ({"target": {"ratio": 0.3}}, 4),
    "allocation.max_group_ratio": ({"target": {"ratio": 0.5}}, 0.25),
    "allocation.overrides": ({"target": {"ratio": 0.5}}, (("conv1", 0.25),)),
    "allocation.ignore": ({"target": AUTO, "data": "calib"}, (".*",)),
    "allocation.attention_unit": ({"target": {"ratio": 0.5}, "allocation": {"mode": "local"}, "model": "attention"},
                                  "dim"),
    "target.ratio": ({}, 0.5),
    "target.auto": ({}, True),
    "target.flops": ({}, 0.6),
    "target.params": ({}, 0.6),
    # A latency every candidate meets (10 s): the outcome must not depend on how fast this machine is.
    "target.latency": ({}, (1e4, False)),
    "target.latency_threads": ({"target": {"latency": (1e4, False)}}, 2),
    "target.auto_objective": ({"target": {"auto": True}, "data": "calib"}, "macs"),
    "target.auto_time": ({"target": AUTO, "data": "calib"}, 1e-9),
    "target.remove": ({}, ("conv1:0,1",)),
    "target.budget_cosine": ({"target": AUTO, "data": "calib", "model": "features"}, 0.2),
    "target.budget_top1": ({"target": AUTO, "data": "calib"}, 0.2),
    "target.budget_synthetic_cosine": ({"target": AUTO}, 0.2),
    "target.budget_metrics": ({"target": AUTO, "data": "calib"}, ("cosine=0.2",)),
    "transforms.merge": ({"target": {"ratio": 0.5}}, False),
    "transforms.compensate": ({"target": {"ratio": 0.5}, "data": "calib", "validation": {"enabled": True}}, True),
    "transforms.lumping_tolerance": ({"score": {"criterion": "lumping"}}, 0.9),
    "transforms.finetune": ({"target": {"ratio": 0.5}, "data": "calib", "validation": {"enabled": True}}, 3),
    "transforms.lr": ({"target": {"ratio": 0.5}, "transforms": {"finetune": 3}, "data": "calib"}, 0.05),
    "transforms.refit": ({"target": {"ratio": 0.5}, "data": "calib", "validation": {"enabled": True}}, True),
    "transforms.refit_selects": ({"target": {"ratio": 0.5}, "transforms": {"refit": True}, "data": "calib"}, False),
    "data.source": ({"target": {"ratio": 0.5}, "validation": {"enabled": True}}, "calib"),
    "data.seed": ({"target": {"ratio": 0.5}, "validation": {"enabled": True}}, 1),
    "data.input_shapes": ({"target": {"ratio": 0.5}}, {"x": (1, 2, 8, 8)}),
    "validation.enabled": ({"target": {"ratio": 0.5}}, True),
    "validation.checks": ({"target": {"ratio": 0.5}, "validation": {"enabled": True}}, "latency"),
    "output.path": ({"target": {"ratio": 0.5}}, "out.onnx"),
    "output.progress": ({"target": {"ratio": 0.5}}, True),
}


def all_fields() -> list[str]:
    default = PruneConfig()
    return [f"{s.name}.{f.name}" for s in fields(PruneConfig) for f in fields(getattr(default, s.name))]


def build(sections: dict, tiny_files, tmp_path) -> tuple[object, PruneConfig]:
    """(model, config): validation off unless asked, data and paths resolved."""
    model_file, calib = tiny_files
    model = {"features": lambda: tiny_cnn(classifier=False), "attention": tiny_attention}.get(
        sections.get("model"), lambda: model_file)()
    config = PruneConfig()
    config = replace(config, validation=replace(config.validation, enabled=False))
    for name, values in sections.items():
        if name in ("model",):
            continue
        if name == "data":
            config = replace(config, data=replace(config.data, source=str(calib)) if values == "calib" else values)
            continue
        config = replace(config, **{name: replace(getattr(config, name), **resolve(values, calib, tmp_path))})
    return model, config


def resolve(values: dict, calib, tmp_path) -> dict:
    out = dict(values)
    if out.get("source") == "calib":
        out["source"] = str(calib)
    if out.get("path") == "out.onnx":
        out["path"] = tmp_path / "out.onnx"
    if out.get("checks") == "latency":
        from onnxprune.validate.suite import ValidationOptions

        out["checks"] = ValidationOptions(latency=True, latency_runs=3, threads=[1])
    return out


def observe(model, config: PruneConfig, capsys, monkeypatch) -> tuple:
    """What a user can see: the pruned model's bytes, the report without echoed options, the files
    written and what reached a terminal."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    capsys.readouterr()
    m, report = run(model, config)
    err = capsys.readouterr().err
    shown = {k: v for k, v in report.items() if k not in ECHO}
    written = config.output.path is not None and config.output.path.exists()
    return ir.to_proto(m).SerializeToString(), json.dumps(shown, sort_keys=True, default=str), written, bool(err)


def changed_config(config: PruneConfig, field: str, value, calib, tmp_path) -> PruneConfig:
    section, name = field.split(".")
    resolved = resolve({name: "calib" if name == "source" and value == "calib" else value}, calib, tmp_path)
    return replace(config, **{section: replace(getattr(config, section), **resolved)})


def test_every_field_has_a_case():
    assert sorted(CASES) == sorted(all_fields())


@pytest.mark.parametrize("field", sorted(CASES))
def test_field_changes_the_result(field, tiny_files, tmp_path, capsys, monkeypatch):
    base_sections, value = CASES[field]
    model, base = build(base_sections, tiny_files, tmp_path)
    changed = changed_config(base, field, value, tiny_files[1], tmp_path)
    assert changed != base
    if field == "target.latency_threads":  # timings differ anyway; the timing must use the threads asked
        _, before = run(model, base)
        _, after = run(model, changed)
        assert (before["target"]["latency"]["threads"], after["target"]["latency"]["threads"]) == (1, 2)
        return
    assert observe(model, base, capsys, monkeypatch) != observe(model, changed, capsys, monkeypatch), field
