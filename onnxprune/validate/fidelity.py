"""Run both models on the same inputs in onnxruntime and state how far their outputs are apart.

Polygraphy-style: per output max/mean absolute and relative error, cosine, SNR, top-k agreement for
classifier-shaped outputs, and the user's tolerances checked element by element."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxprune.data import DEFAULT_BATCH, DEFAULT_FREE_DIM, as_source  # noqa: F401  (re-exported)
from onnxprune.errors import InputError, OptionError, ValidationError
from onnxprune.io import refuse_input_files
from onnxprune.runtime import (  # noqa: F401  (re-exported)
    ORT_TO_NUMPY,
    Session,
    fixed_batch,
    input_signature,
    run_outputs,
    session,
    synthetic_inputs,
)
from onnxprune.validate.tasks import classifier_shaped

# Synthetic fidelity inputs: 8 samples where the batch dim is free, so top-k agreement means something.
DEFAULT_SAMPLES = 8
# Calibration files can be large; fidelity reads at most this many samples.
MAX_DATA_SAMPLES = 256
# Sessions, feeds and runs live in onnxprune.runtime; their names stay importable from here for callers
# outside validate/.


def topk_agreement(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """top1: share of samples whose argmax agrees; top5: share whose reference argmax is among the
    other model's 5 highest (as top-5 accuracy with the reference's predictions as labels)."""
    r, o = ref.reshape(ref.shape[0], -1), out.reshape(out.shape[0], -1)
    ref_top1 = r.argmax(1)
    agree = {"top1": float(np.mean(ref_top1 == o.argmax(1)))}
    if r.shape[1] > 5:
        top5 = np.argsort(-o, axis=1, kind="stable")[:, :5]
        agree["top5"] = float(np.mean((top5 == ref_top1[:, None]).any(1)))
    return agree


def saturation_note(ref: np.ndarray) -> str | None:
    """Softmax outputs near one-hot hide differences: abs/rel error and cosine look good while the
    logits behind them differ. Say so when most rows are saturated probabilities."""
    r = ref.reshape(ref.shape[0], -1).astype(np.float64)
    if r.shape[1] < 2 or r.min() < 0 or r.max() > 1 or not np.allclose(r.sum(1), 1.0, atol=1e-3):
        return None
    saturated = float(np.mean(r.max(1) > 0.99))
    if saturated < 0.5:
        return None
    return (f"saturated softmax-like output ({100 * saturated:.0f}% of rows have a probability > 0.99): "
            "errors and cosine understate differences; compare top-k, or the logits before the softmax")


def output_metrics(ref: np.ndarray, out: np.ndarray) -> dict:
    """max/mean abs error; max_rel (max abs error over the reference's largest magnitude) and mean_rel
    (mean abs error over the reference's mean magnitude); cosine; SNR in dB (null when identical:
    infinite); top1/top5 agreement for classifier-shaped outputs; a note for saturated softmax."""
    ref64, out64 = ref.astype(np.float64).ravel(), out.astype(np.float64).ravel()
    diff = np.abs(ref64 - out64)
    scale = float(np.abs(ref64).max()) if ref64.size else 0.0
    mean_scale = float(np.abs(ref64).mean()) if ref64.size else 0.0
    nr, no = np.linalg.norm(ref64), np.linalg.norm(out64)
    cosine = float(ref64 @ out64 / (nr * no)) if nr > 0 and no > 0 else float(nr == no)
    noise = float(diff @ diff)
    metrics = {
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "mean_abs": float(diff.mean()) if diff.size else 0.0,
        "max_rel": float(diff.max() / scale) if diff.size and scale > 0 else float(diff.max() if diff.size else 0.0),
        "mean_rel": (float(diff.mean() / mean_scale) if diff.size and mean_scale > 0
                     else float(diff.mean() if diff.size else 0.0)),
        "cosine": cosine,
        "snr_db": None if noise == 0 else (float(10 * np.log10(float(nr) ** 2 / noise)) if nr > 0 else float("-inf")),
    }
    if classifier_shaped(ref.shape) and ref.shape[0] > 0:
        metrics.update(topk_agreement(ref, out))
    note = saturation_note(ref) if classifier_shaped(ref.shape) and ref.size else None
    if note:
        metrics["note"] = note
    return metrics


class Tolerances:
    """The user's tolerances: a default per kind and per-output values (``name:value``, as Polygraphy).

    ``atol``/``rtol``: an element fails when |a - b| > atol and |a - b| > rtol * |reference| (Polygraphy's
    elementwise rule; an unstated one of the two counts as 0). ``cosine``/``top1``: minimum values;
    ``top1`` applies to classifier-shaped outputs only."""

    KINDS = ("atol", "rtol", "cosine", "top1")

    def __init__(self, **given: list[str] | None) -> None:
        self.default: dict[str, float] = {}
        self.per_output: dict[str, dict[str, float]] = {}
        for kind in self.KINDS:
            for item in given.get(kind) or []:
                name, sep, value = str(item).rpartition(":")
                try:
                    v = float(value)
                except ValueError:
                    raise OptionError(f"--{_flag(kind)} '{item}': expected VALUE or OUTPUT:VALUE") from None
                if not np.isfinite(v) or v < 0:
                    raise OptionError(f"--{_flag(kind)} '{item}': the value must be a finite number >= 0")
                if sep and name:
                    self.per_output.setdefault(name, {})[kind] = v
                else:
                    self.default[kind] = v

    def __bool__(self) -> bool:
        return bool(self.default or self.per_output)

    def check_names(self, outputs: list[str]) -> None:
        unknown = sorted(set(self.per_output) - set(outputs))
        if unknown:
            raise OptionError(f"tolerance for unknown output(s) {', '.join(unknown)}; "
                              f"the outputs are {', '.join(outputs)}")

    def for_output(self, name: str) -> dict[str, float]:
        return {**self.default, **self.per_output.get(name, {})}

    def check(self, name: str, ref: np.ndarray, out: np.ndarray, metrics: dict) -> list[dict]:
        """One entry per stated check: what was asked, the value measured, and whether it passed."""
        tol = self.for_output(name)
        checks = []
        if "atol" in tol or "rtol" in tol:
            atol, rtol = tol.get("atol", 0.0), tol.get("rtol", 0.0)
            r64 = ref.astype(np.float64)
            diff = np.abs(r64 - out.astype(np.float64))
            bad = int(np.count_nonzero(((diff > atol) & (diff > rtol * np.abs(r64))) | np.isnan(diff)))  # NaN fails
            checks.append({"check": "atol/rtol", "atol": atol, "rtol": rtol, "mismatched": bad,
                           "elements": int(diff.size), "passed": bad == 0})
        if "cosine" in tol:
            checks.append({"check": "cosine", "min": tol["cosine"], "value": metrics["cosine"],
                           "passed": metrics["cosine"] >= tol["cosine"]})
        if "top1" in tol:
            if "top1" in metrics:
                checks.append({"check": "top1", "min": tol["top1"], "value": metrics["top1"],
                               "passed": metrics["top1"] >= tol["top1"]})
            elif name in self.per_output and "top1" in self.per_output[name]:
                raise OptionError(f"--min-top1 {name}:...: output '{name}' has shape {list(ref.shape)}, "
                                  "not classifier-shaped ([N, classes] or [N, classes, 1, 1])")
        return checks


def _flag(kind: str) -> str:
    return kind if kind in ("atol", "rtol") else f"min-{kind}"


def _describe_inputs(sess: Session) -> str:
    return ", ".join(f"'{i.name}' {list(i.shape)} {i.type.replace('tensor(', '').rstrip(')')}"
                     for i in sess.get_inputs())


def check_same_interface(ref_sess: Session, new_sess: Session) -> None:
    """Same input names, dtypes and compatible shapes, and the same output names; otherwise the two
    files are not one model before and after pruning, and comparing them means nothing."""
    ref_in, new_in = ref_sess.get_inputs(), new_sess.get_inputs()
    same = [i.name for i in ref_in] == [i.name for i in new_in] and all(
        a.type == b.type and len(a.shape) == len(b.shape) and all(
            not (isinstance(x, int) and isinstance(y, int)) or x == y for x, y in zip(a.shape, b.shape))
        for a, b in zip(ref_in, new_in))
    if not same:
        raise ValidationError(f"the models have mismatched inputs: the original takes {_describe_inputs(ref_sess)}; "
                              f"the pruned model takes {_describe_inputs(new_sess)} (compare a model with its own "
                              "pruned version)")
    ref_out = [o.name for o in ref_sess.get_outputs()]
    new_out = [o.name for o in new_sess.get_outputs()]
    if ref_out != new_out:
        raise ValidationError(f"the models have different outputs: {ref_out} vs {new_out}")


def validation_feeds(sess: Session, data=None, seed: int = 0, input_shapes: dict | None = None,
                     samples: int = DEFAULT_SAMPLES) -> tuple[dict[str, np.ndarray], str]:
    """The fidelity inputs and where they came from: ``data`` (a path or ``onnxprune.data.DataSource``:
    an .npz of calibration data or saved inputs, or a folder of images; at most MAX_DATA_SAMPLES
    samples) or seeded synthetic inputs with ``samples`` on a free batch dim."""
    if data is not None:
        source = as_source(data)
        inputs = {name: (dims, dtype or np.float32) for name, (dims, dtype) in input_signature(sess).items()}
        return source.arrays(inputs, limit=MAX_DATA_SAMPLES), source.describe()
    return synthetic_inputs(sess, seed, batch=samples, overrides=input_shapes), f"synthetic (seed {seed})"


def value_range(arr: np.ndarray) -> dict[str, float]:
    """The smallest and largest value fed (bools as 0/1): what the report states beside the shape."""
    if not arr.size:
        return {}
    a = arr.astype(np.float64) if arr.dtype == np.bool_ else arr
    return {"min": float(np.min(a)), "max": float(np.max(a))}


def save_feeds(feeds: dict[str, np.ndarray], path) -> None:
    """``--save-inputs``: the exact inputs, for ``--load-inputs`` (or Polygraphy) to replay."""
    try:
        with open(path, "wb") as f:
            np.savez(f, **feeds)
    except OSError as exc:
        raise InputError(f"cannot write inputs to {path}: {exc.strerror or exc}") from None


def compare_models(original, pruned, feeds: dict[str, np.ndarray] | None = None, seed: int = 0,
                   input_shapes: dict[str, tuple] | None = None, tolerances: Tolerances | None = None,
                   data=None, save_inputs=None, source: str | None = None,
                   reference: list[np.ndarray] | None = None, budget_metrics: tuple[str, ...] = (),
                   target=None, binding: bool = True, synthetic: bool | None = None) -> dict:
    """Both models on the same inputs (``feeds``, else ``data`` (.npz), else synthetic): output names and
    shapes must match; metrics per output; the stated ``tolerances`` checked. ``reference``: the
    original's outputs on ``feeds`` when the caller already ran it.

    Task agreement (onnxprune.validate.tasks): per output the kind chosen from its shape, or
    ``budget_metrics`` (--budget-metric items); thresholds from ``target`` (a TargetConfig, else defaults).
    With ``binding`` the stated ones decide ``passed``; ``synthetic``: the inputs are noise (None: when
    neither ``feeds`` nor ``data`` was given)."""
    from onnxprune.config import TargetConfig
    from onnxprune.validate.tasks import TaskBudget, parse_metric_requests

    requests = parse_metric_requests(budget_metrics)
    synthetic = (feeds is None and data is None) if synthetic is None else synthetic
    ref_sess, new_sess = session(original, role="original model"), session(pruned, role="pruned model")
    check_same_interface(ref_sess, new_sess)
    if feeds is None:
        feeds, source = validation_feeds(ref_sess, data, seed, input_shapes)
    if save_inputs is not None:
        for model in (original, pruned):  # neither model nor its weights may be written over
            if not isinstance(model, bytes):
                refuse_input_files(model, [(Path(save_inputs), "--save-inputs file")])
        save_feeds(feeds, save_inputs)
    tolerances = tolerances or Tolerances()
    tolerances.check_names([o.name for o in ref_sess.get_outputs()])
    try:
        ref = reference if reference is not None else run_outputs(ref_sess, feeds)
    except Exception as exc:
        raise ValidationError(f"the original model fails on the validation inputs: {str(exc).splitlines()[0][:300]} "
                              "(give shapes with --input-shape NAME:D,D,...)") from exc
    try:
        new = run_outputs(new_sess, feeds)
    except Exception as exc:
        raise ValidationError(f"the pruned model fails in onnxruntime: {str(exc).splitlines()[0][:300]}") from exc
    outputs, passed = {}, None
    names = [o.name for o in ref_sess.get_outputs()]
    first = next(iter(feeds.values()), None)
    task = TaskBudget.choose(names, ref, target or TargetConfig(), synthetic,
                             batch=first.shape[0] if first is not None and first.ndim else None, requests=requests,
                             refuse_unused=False)
    measured = task.measure(ref, new)
    verdict = task.passed(measured) if binding else None
    for o, r, n in zip(ref_sess.get_outputs(), ref, new):
        if r.shape != n.shape:
            raise ValidationError(f"output '{o.name}' changed shape: {r.shape} -> {n.shape}")
        metrics = output_metrics(r, n)
        checks = tolerances.check(o.name, r, n, metrics)
        outputs[o.name] = {"shape": list(r.shape), **metrics, "checks": checks}
        if checks:
            passed = (passed is not False) and all(c["passed"] for c in checks)
    return {
        "inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype), **value_range(v)} for k, v in feeds.items()},
        "input_source": source or "given",
        "outputs": outputs,
        "task": {"checks": task.rows(measured), "synthetic": synthetic, "binding": binding and verdict is not None,
                 "notes": task.notes},
        "passed": passed if verdict is None else (passed is not False) and verdict,
    }
