"""tools/pretrained_models.py: the registry is self-consistent and the package-free input sources are real,
deterministic and split into disjoint calibration and evaluation halves. (The models themselves come from
packages the project does not install; `python tools/pretrained_models.py check` runs them.)"""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pm():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import pretrained_models
    finally:
        sys.path.pop(0)
    return pretrained_models


def test_every_model_has_an_input_builder_a_check_and_its_exporter(pm):
    assert len({m.key for m in pm.REGISTRY}) == len(pm.REGISTRY)
    for m in pm.REGISTRY:
        assert m.inputs in pm.INPUT_BUILDERS, m.key
        assert m.key in pm.CHECKS, m.key
        assert not m.export or m.export in pm.EXPORTERS, m.key
        assert m.path.endswith(".onnx") or m.export, m.key  # shipped ONNX, or weights we export
    kinds = {m.kind for m in pm.REGISTRY}
    assert {"detector", "recogniser", "classifier", "embedder"} <= kinds


def test_a_package_that_is_not_installed_is_reported_missing(pm):
    fake = pm.PretrainedModel("x", "no-such-distribution-xyz", "1.0", "x/model.onnx", "detector", "top1",
                              "page", "MIT", 1.0)
    assert pm.located_path(fake) is None and pm.installed_version(fake) is None
    with pytest.raises(FileNotFoundError, match="not installed"):
        pm.onnx_path(fake)


def test_docstring_sentences_are_real_and_the_splits_disjoint(pm):
    calib, evaluation = pm.sentences(pm.CALIB), pm.sentences(pm.EVAL)
    assert len(calib) > 200 and len(evaluation) > 200
    assert not set(calib) & set(evaluation)
    assert all(s.endswith(".") and 6 <= len(s.split()) <= 40 for s in calib)
    with pytest.raises(ValueError, match="split"):
        pm.sentences("train")


def test_tones_are_normalised_frames_at_pitches_the_other_split_never_uses(pm):
    crepe = pm.BY_KEY["crepe-tiny"]
    a, b = pm.real_inputs(crepe, 16, pm.CALIB), pm.real_inputs(crepe, 16, pm.EVAL)
    frames = a.feeds["frames"]
    assert frames.shape == (16, 1024) and frames.dtype == np.float32
    np.testing.assert_allclose(frames.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(frames.std(1), 1, atol=1e-4)
    assert all(55 <= f <= 880 * 1.02 for f in a.truth)
    # each frame's strongest spectral peak is a harmonic of the f0 it claims
    spectrum = np.abs(np.fft.rfft(frames, n=16384, axis=1))
    peak_hz = spectrum.argmax(1) * pm.CREPE_RATE / 16384
    harmonic = peak_hz / np.array(a.truth)
    assert np.all(harmonic > 0.9) and np.all(np.abs(harmonic - np.round(harmonic)) < 0.1)
    assert not set(np.round(a.truth, 3)) & set(np.round(b.truth, 3))
    again = pm.real_inputs(crepe, 16, pm.CALIB)
    np.testing.assert_array_equal(again.feeds["frames"], frames)


def test_the_photo_splits_are_disjoint(pm):
    calib, evaluation = pm.PHOTO_SPLITS[pm.CALIB], pm.PHOTO_SPLITS[pm.EVAL]
    assert not set(calib) & set(evaluation) and len(calib) >= 8 and len(evaluation) >= 8


def test_rendered_text_line_has_the_requested_height_and_ink(pm):
    rng = np.random.default_rng(0)
    line = pm.render_text_line("Return the lowest index", 48, rng, max_width=320)
    assert line.shape[0] == 48 and line.shape[2] == 3 and 40 < line.shape[1] <= 320
    gray = line.mean(2)
    assert gray.min() < 100 and np.median(gray) > 170  # dark text on a light background


def test_list_command_reports_every_model(pm, capsys):
    assert pm.main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == [m.key for m in pm.REGISTRY]
