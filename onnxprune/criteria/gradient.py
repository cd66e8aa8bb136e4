"""Gradient criteria through the torch twin (gradient-matrix singularity, Dirichlet pruning, Taylor): ``taylor``, ``singularity``,
``dirichlet``; and ``finetune`` (recovery by distillation). They need calibration data and torch.

Targets without labels: a classifier-shaped output ([N, classes]) is trained towards the original
model's own top-1 (cross-entropy; with ``labels`` in the data file, towards those); any other output
is probed with seeded random directions r (loss <r, y>), whose gradients give the Gauss-Newton
matrix J^T J of a squared error in expectation. (Distilling to the model's own outputs has zero
gradient at the start, where the twin still equals the original.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

from onnxprune.allocation import select
from onnxprune.errors import OptionError
from onnxprune.graph import Analysis, Group
from onnxprune.plan import Plan
from onnxprune.progress import steps

if TYPE_CHECKING:
    from onnxprune.criteria.base import Scores

DEFAULT_BATCH = 32


@dataclass
class Calibration:
    """Samples stacked on axis 0 of every input; fed in batches of ``batch`` (the model's own batch
    size where its batch dim is fixed)."""

    feeds: dict[str, np.ndarray]
    labels: np.ndarray | None
    batch: int

    @property
    def samples(self) -> int:
        return len(next(iter(self.feeds.values())))

    def batches(self):
        n = self.samples
        usable = n - n % self.batch if n >= self.batch else 0
        for i in range(0, usable, self.batch):
            yield ({k: v[i:i + self.batch] for k, v in self.feeds.items()},
                   None if self.labels is None else self.labels[i:i + self.batch])


def load_calibration(model: ir.Model, data) -> Calibration:
    """Calibration data for ``model`` from an .npz or image folder (onnxprune.data.DataSource)."""
    from onnxprune.data import as_source

    source = as_source(data)
    inputs = {v.name: (list(v.shape) if v.shape is not None else [], v.dtype.numpy())
              for v in model.graph.inputs if v.name not in model.graph.initializers}
    feeds = source.arrays(inputs)
    shape = next(iter(model.graph.inputs)).shape
    fixed = shape[0] if shape is not None and len(shape) and isinstance(shape[0], int) and shape[0] > 0 else None
    n = len(next(iter(feeds.values())))
    if any(len(v) != n for v in feeds.values()):
        raise OptionError(f"{source.path}: inputs hold different numbers of samples")
    batch = fixed or min(DEFAULT_BATCH, n)
    if n < batch:
        raise OptionError(f"{source.path}: {n} samples, fewer than the model's fixed batch of {batch}")
    return Calibration(feeds, source.labels(n), batch)


def _classifier(t) -> bool:
    return t.dim() == 2 and t.shape[1] > 1


def _probe_loss(outputs, labels, seed: int):
    """Sum over samples: cross-entropy to labels / own top-1 on classifier outputs, <r, y> elsewhere."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for i, y in enumerate(outputs):
        if not torch.is_floating_point(y):
            continue
        if _classifier(y):
            target = torch.as_tensor(labels) if labels is not None and i == 0 else y.detach().argmax(1)
            total = total + F.cross_entropy(y, target, reduction="sum")
        else:
            total = total + (y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum()
    return total


def distillation_loss(outputs, targets, labels=None, hard: bool = False):
    """Mean over the batch, towards the original's outputs ``targets``: on classifier outputs
    cross-entropy to ``labels`` when given, else KL to the original's softmax, or with ``hard``
    cross-entropy to its top-1 (whose gradient is not zero while the model still equals the original);
    squared error on other outputs."""
    import torch
    import torch.nn.functional as F

    total = 0.0
    for i, (y, t) in enumerate(zip(outputs, targets)):
        if not torch.is_floating_point(y):
            continue
        t = torch.as_tensor(t, dtype=y.dtype)
        if _classifier(y):
            if (labels is not None and i == 0) or hard:
                target = torch.as_tensor(labels) if labels is not None and i == 0 else t.argmax(1)
                total = total + F.cross_entropy(y, target, reduction="mean")
            else:
                total = total + F.kl_div(F.log_softmax(y, 1), F.log_softmax(t, 1), log_target=True,
                                         reduction="batchmean")
        else:
            total = total + F.mse_loss(y, t, reduction="mean")
    return total


def gate_gradients(model: ir.Model, analysis: Analysis, calib: Calibration, progress: bool = True
                   ) -> dict[int, np.ndarray]:
    """G[n, k] = dL_n/dg_k per prunable group, gates on every read of the channel (gradient-matrix singularity)."""
    import torch

    from onnxprune.twin.group_gates import GatedTwin, GroupGates

    layout = GroupGates(analysis, analysis.prunable_groups)
    ones = torch.ones(layout.size, requires_grad=True)
    twin = GatedTwin(model, layout, gate_fn=lambda: ones)
    twin.requires_grad_(False)
    twin.record = True
    rows = []
    with steps(calib.samples // calib.batch, "gradients per sample", progress) as bar:
        for i, (feeds, labels) in enumerate(calib.batches()):
            outputs = twin(feeds)
            _probe_loss(outputs, labels, seed=i).backward()
            rows.append(twin.gate_gradients())
            bar.update(1)
    return layout.split(np.concatenate(rows)) if rows else {}


def taylor_scores(grads: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """First-order Taylor: mean over samples of G[n, k]^2 (the OBD salience up to 1/2)."""
    return {gid: np.mean(G ** 2, axis=0) for gid, G in grads.items()}


@dataclass
class Redundancy:
    rank: int
    cap: int  # most channels removable: C - rank (at least one kept)
    scores: np.ndarray  # higher = kept longer (column-pivoted QR order)


def singularity(grads: dict[int, np.ndarray], tau: float = 1e-2, energy: float | None = None
                ) -> dict[int, Redundancy]:
    """Numerical rank of each group's G: #{sigma_i > tau sigma_1} (or the smallest r whose cumulative
    energy reaches ``energy``); the channels column-pivoted QR picks first are the most independent."""
    from scipy.linalg import qr

    out = {}
    for gid, G in grads.items():
        size = G.shape[1]
        sigma = np.linalg.svd(G, compute_uv=False)
        if sigma.size == 0 or sigma[0] == 0:
            rank = 0
        elif energy is not None:
            cum = np.cumsum(sigma ** 2) / np.sum(sigma ** 2)
            rank = int(np.searchsorted(cum, energy) + 1)
        else:
            rank = int(np.sum(sigma > tau * sigma[0]))
        _, piv = qr(G, mode="r", pivoting=True)
        scores = np.empty(size)
        scores[piv] = np.arange(size, 0, -1, dtype=np.float64)
        out[gid] = Redundancy(rank=rank, cap=max(0, min(size - max(rank, 1), size - 1)), scores=scores)
    return out


def singularity_counts(groups: list[Group], red: dict[int, Redundancy], ratio: float | None) -> dict[int, int]:
    """Channels to remove per group: the cap (``ratio`` None, i.e. auto), or ``ratio`` of all channels
    shared in proportion to the caps, never more than a cap (hierarchical, layer level)."""
    if ratio is None:
        return {g.id: red[g.id].cap for g in groups if g.id in red}
    total_caps = sum(red[g.id].cap for g in groups if g.id in red)
    want = ratio * sum(g.size for g in groups if g.id in red)
    if total_caps == 0:
        return {}
    return {g.id: min(red[g.id].cap, math.floor(want * red[g.id].cap / total_caps + 1e-9))
            for g in groups if g.id in red}


def dirichlet_scores(model: ir.Model, analysis: Analysis, calib: Calibration, targets: list[list[np.ndarray]],
                     steps_: int | None = None, beta: float = 1.0, alpha0: float = 1.0, sampling: bool = False,
                     samples: int = 4, lr: float = 0.05, progress: bool = True) -> dict[int, np.ndarray]:
    """Posterior importance phi_k / sum(phi) per group (Dirichlet pruning), weights frozen, gates
    K phi / sum(phi) (point) or K s with s ~ Dir(phi) by Gamma rsample (sampling, logits averaged over
    ``samples``), loss = distillation + beta * KL(Dir(phi) || Dir(alpha0)) / batch."""
    import torch
    import torch.nn.functional as F

    from onnxprune.twin.group_gates import GatedTwin, GroupGates

    groups = analysis.prunable_groups
    layout = GroupGates(analysis, groups)
    theta = {g.id: torch.nn.Parameter(torch.full((g.size,), math.log(math.e - 1))) for g in groups}

    def gates():
        parts = []
        for g in groups:
            phi = F.softplus(theta[g.id])
            if sampling:
                s = torch.distributions.Gamma(phi, torch.ones_like(phi)).rsample()
                parts.append(g.size * s / s.sum())
            else:
                parts.append(g.size * phi / phi.sum())
        return torch.cat(parts) if parts else torch.zeros(0)

    def kl(phi):
        a0 = torch.full_like(phi, alpha0)
        return (torch.lgamma(phi.sum()) - torch.lgamma(a0.sum()) - torch.lgamma(phi).sum() + torch.lgamma(a0).sum()
                + ((phi - a0) * (torch.digamma(phi) - torch.digamma(phi.sum()))).sum())

    twin = GatedTwin(model, layout, gate_fn=gates)
    twin.requires_grad_(False)
    opt = torch.optim.Adam(list(theta.values()), lr=lr)
    batches = list(calib.batches())
    total = steps_ or max(50, len(batches))
    with steps(total, "dirichlet gates", progress) as bar, torch.random.fork_rng():
        torch.manual_seed(0)  # the sampling variant draws gates: same data and options, same scores
        for step in range(total):
            (feeds, labels), target = batches[step % len(batches)], targets[step % len(batches)]
            outs = [twin(feeds) for _ in range(samples if sampling else 1)]
            outputs = [torch.stack([o[i] for o in outs]).mean(0) for i in range(len(outs[0]))]
            loss = distillation_loss(outputs, target, labels, hard=True)
            loss = loss + beta * sum(kl(F.softplus(t)) for t in theta.values()) / calib.batch
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.update(1)
    with torch.no_grad():
        return {g.id: (F.softplus(theta[g.id]) / F.softplus(theta[g.id]).sum()).numpy().astype(np.float64)
                for g in groups}


def mass_counts(groups: list[Group], importance: dict[int, np.ndarray], tau: float = 0.95) -> dict[int, int]:
    """Per group: remove all but the smallest set whose posterior mass reaches ``tau``."""
    out = {}
    for g in groups:
        p = np.sort(importance[g.id])[::-1]
        keep = int(np.searchsorted(np.cumsum(p), tau - 1e-12) + 1)
        out[g.id] = max(0, g.size - min(keep, g.size))
    return out


def finetune(model: ir.Model, calib: Calibration, targets: list[list[np.ndarray]], steps_: int, lr: float = 1e-4,
             progress: bool = True) -> list[float]:
    """Distil ``model`` (pruned) towards the original's outputs ``targets`` (one list per batch) for
    ``steps_`` Adam steps on every float weight, then write the weights back. Returns the losses."""
    import torch

    from onnxprune.twin import Twin

    twin = Twin(model)
    # Weights only: a one-element float constant is part of the computation (a Pow exponent, a norm's
    # epsilon, an attention scale), and a step on it breaks the model (x ** 2.0001 of x < 0 is NaN).
    params = [p for p in twin.parameters() if p.requires_grad and p.numel() > 1]
    opt = torch.optim.Adam(params, lr=lr)
    batches = list(calib.batches())
    losses = []
    with steps(steps_, "fine-tuning", progress) as bar:
        for step in range(steps_):
            (feeds, _), target = batches[step % len(batches)], targets[step % len(batches)]
            loss = distillation_loss(twin(feeds), target)  # the original's outputs, never labels
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.update(1)
    twin.write_back(model)
    return losses


def reference_outputs(m: ir.Model, calib) -> list[list[np.ndarray]]:
    """The (unpruned) model's outputs on every calibration batch, from onnxruntime."""
    from onnxprune.validate.fidelity import session

    sess = session(ir.to_proto(m).SerializeToString(), role="original model")
    return [sess.run(None, feeds) for feeds, _ in calib.batches()]


def redundancy_report(m: ir.Model, analysis: Analysis, red: dict, calib, options: dict, input_shapes) -> dict:
    """The network's maximum redundancy (every group at its cap) in channels, params and MACs."""
    from onnxprune.metrics import macs_per_node, params_per_initializer
    from onnxprune.targets import predicted_size

    caps = Plan()
    rows = {}
    for g in analysis.prunable_groups:
        r = red.get(g.id)
        if r is None:
            continue
        rows[g.name] = {"channels": g.size, "rank": r.rank, "max_ratio": round(r.cap / g.size, 4)}
        if r.cap:
            caps.removed[g.id] = select(g, r.scores, (r.cap + 0.5) / g.size)
    macs0 = macs_per_node(m, input_shapes)
    params0 = params_per_initializer(m)
    params, macs = predicted_size(analysis, caps, macs0, params0)
    widest = max((g.size for g in analysis.prunable_groups), default=0)
    out = {"samples": calib.samples, "tau": options.get("tau", 1e-2), "energy": options.get("energy"),
           "groups": rows,
           "max_redundancy": {"channels": caps.count(), "params": sum(params0.values()) - params,
                              "flops": sum(macs0.values()) - macs}}
    if calib.samples < 2 * widest:
        out["warning"] = (f"{calib.samples} samples for a widest group of {widest} channels: ranks are capped at "
                          f"the sample count; use at least {2 * widest}")
    return out


class _GradientCriterion:
    """Shared attributes of the criteria that need calibration data and the torch twin."""

    needs_data = True
    needs_torch = True
    at_zero_ratio = "nothing"
    merges = False
    compensates = False
    options: tuple[str, ...] = ()
    sizes_itself = False
    shares_ratio_by_counts = False


class TaylorCriterion(_GradientCriterion):
    name = "taylor"
    summary = "first-order Taylor: mean squared gradient of the loss w.r.t. a gate on each channel"

    def score(self, analysis: Analysis, context) -> Scores:
        from onnxprune.criteria.base import Scores

        return Scores(taylor_scores(gate_gradients(context.model, analysis, context.calibration(), context.progress)))


class SingularityCriterion(_GradientCriterion):
    name = "singularity"
    summary = ("rank of each group's per-sample gradient matrix: at most C - rank channels go, the least "
               "independent (column-pivoted QR) first; a ratio is shared in proportion to those caps")
    options = ("singularity_tau", "singularity_energy")
    sizes_itself = True
    shares_ratio_by_counts = True

    def score(self, analysis: Analysis, context) -> Scores:
        from onnxprune.criteria.base import Scores

        opts = context.options
        grads = gate_gradients(context.model, analysis, context.calibration(), context.progress)
        red = singularity(grads, tau=opts.singularity_tau, energy=opts.singularity_energy)
        groups = analysis.prunable_groups
        options = {"tau": opts.singularity_tau, "energy": opts.singularity_energy}
        report = {"singularity": redundancy_report(context.model, analysis, red, context.calibration(), options,
                                                   context.input_shapes)}
        return Scores({gid: r.scores for gid, r in red.items()}, counts=lambda r: singularity_counts(groups, red, r),
                      count_why=lambda r: ("numerical rank of the gradient matrix" if r is None
                                           else f"ratio {r:g} shared by the caps"), report=report)


class DirichletCriterion(_GradientCriterion):
    name = "dirichlet"
    summary = ("posterior importance of Dirichlet gates trained on --data; its own count keeps the channels "
               "holding --dirichlet-mass of the posterior")
    options = ("dirichlet_sampling", "dirichlet_beta", "dirichlet_alpha0", "dirichlet_steps", "dirichlet_samples",
               "dirichlet_mass")
    sizes_itself = True

    def score(self, analysis: Analysis, context) -> Scores:
        from onnxprune.criteria.base import Scores

        o = context.options
        scores = dirichlet_scores(context.model, analysis, context.calibration(), context.reference_outputs(),
                                  steps_=o.dirichlet_steps, beta=o.dirichlet_beta, alpha0=o.dirichlet_alpha0,
                                  sampling=o.dirichlet_sampling, samples=o.dirichlet_samples, progress=context.progress)
        groups = analysis.prunable_groups
        report = {"dirichlet": {"variant": "sampling" if o.dirichlet_sampling else "point", "beta": o.dirichlet_beta,
                                "alpha0": o.dirichlet_alpha0}}
        return Scores(scores, counts=lambda r: mass_counts(groups, scores, o.dirichlet_mass),
                      count_why=lambda r: f"posterior mass {o.dirichlet_mass:g} kept", report=report)


TAYLOR, SINGULARITY, DIRICHLET = TaylorCriterion(), SingularityCriterion(), DirichletCriterion()
