"""Every criterion x every way of saying how much x local/global allocation x with and without data,
through the real entry point (``onnxprune.cli.main``) on a tiny model. Each cell either prunes and
reports what it was asked, or refuses cleanly (exit 2, one ``onnxprune: error:`` line)."""

from __future__ import annotations

import json

import onnx
import pytest

from onnxprune.criteria import REGISTRY

MODES = {"ratio": ["--ratio", "0.5"], "auto": ["--ratio", "auto"], "flops": ["--target-flops", "0.6"],
         "params": ["--target-params", "0.6"]}
# Keep the gradient criteria quick on 32 samples: a few gate steps are enough to test the plumbing.
FAST = {"dirichlet": ["--dirichlet-steps", "5"]}


def expected_refusal(name: str, mode: str, data: bool) -> str | None:
    """The fragment of the error a cell must give, or None when it must prune."""
    crit = REGISTRY[name]
    if crit.needs_data and not data:
        return "needs calibration data"
    if mode == "auto" and crit.at_zero_ratio == "lossless":
        return "no --criterion lumping"
    # Channels counted per group (own counts, or auto's threshold search): --allocation has no meaning.
    if crit.shares_ratio_by_counts or mode == "auto" and (crit.sizes_itself or crit.at_zero_ratio == "threshold"):
        return "--allocation"
    return None


def check_pruned(report: dict, name: str, mode: str, allocation: str) -> None:
    assert report["criterion"] == name
    if mode == "auto":
        assert report["ratio"] == "auto"
        if "auto" in report:  # the fidelity budget's search (criteria that size themselves have none)
            assert report["auto"]["search"] and report["allocation"]["mode"] == allocation
    else:
        assert report["channels_removed"] > 0
        assert report["allocation"]["mode"] == allocation
    if mode in ("flops", "params"):
        t = report["target"]
        assert t["predicted"][mode] <= t["asked"][mode]
        assert t["predicted"] == {"flops": report["flops_after"], "params": report["params_after"]}


def run_cell(cli, tmp_path, tiny_files, name: str, mode: str, allocation: str, data: bool) -> None:
    model, calib = tiny_files
    out, rep = tmp_path / "out.onnx", tmp_path / "r.json"
    # With data the run validates on it (something must read --data); without, validation is skipped.
    extra = ["--data", calib] if data else ["--no-validate"]
    res = cli(model, out, "--criterion", name, *MODES[mode], "--allocation", allocation, *extra, *FAST.get(name, []),
              "--quiet", "--report", rep)
    refusal = expected_refusal(name, mode, data)
    if refusal is not None:
        res.assert_refused(refusal)
        assert not out.exists() and not rep.exists()
        return
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    onnx.checker.check_model(onnx.load(out))
    report = json.loads(rep.read_text())
    check_pruned(report, name, mode, allocation)
    if data:
        assert report["validation"]["input_source"].startswith("data file"), report["validation"]["input_source"]


# One test function per criterion family so xdist spreads the slow (data: gradients, activations) cells.
DATA_FREE = [n for n, c in REGISTRY.items() if not c.needs_data]
WITH_DATA = [n for n, c in REGISTRY.items() if c.needs_data]


@pytest.mark.parametrize("data", [False, True], ids=["no-data", "data"])
@pytest.mark.parametrize("allocation", ["local", "global"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", DATA_FREE)
def test_data_free_criteria(cli, tmp_path, tiny_files, name, mode, allocation, data):
    run_cell(cli, tmp_path, tiny_files, name, mode, allocation, data)


@pytest.mark.parametrize("data", [False, True], ids=["no-data", "data"])
@pytest.mark.parametrize("allocation", ["local", "global"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", WITH_DATA)
def test_data_criteria(cli, tmp_path, tiny_files, name, mode, allocation, data):
    run_cell(cli, tmp_path, tiny_files, name, mode, allocation, data)


def test_the_matrix_covers_every_registered_criterion():
    assert sorted(DATA_FREE + WITH_DATA) == sorted(REGISTRY)
