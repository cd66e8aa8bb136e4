"""A small LLaMA-style byte-level language model, trained on Python's standard-library docstrings.

Reusable pieces for the language-model benchmark (``tools/bench_lm.py``) and for anyone who needs real
text and a trained decoder on a machine without downloads:

* ``docstring_corpus()``: module, class and function docstrings of every ``.py`` file under this
  interpreter's stdlib (``sysconfig``), read with ``ast`` (no import), split by module into train /
  calibration / held-out evaluation (a module's text lands in exactly one split, chosen by a CRC32 of
  its dotted name, so held-out text is never seen in training or calibration). Tokens are UTF-8 bytes
  (vocabulary 256): exact and tokenizer-free. ``cached_corpus()`` keeps the parsed splits in the cache.
* ``TinyLlama``: plain torch, written the way Hugging Face's LLaMA is (so its ONNX export looks like a
  real exporter's output of such a model): RMSNorm, rotary embeddings with rotate-half, grouped-query
  attention with separate q/k/v/o ``Linear`` layers, a view/transpose to heads and ``repeat_kv`` as
  expand + reshape, a causal additive mask, softmax in float, SwiGLU feed-forward (gate/up/down),
  untied input embedding and LM head, no KV cache. Input ``input_ids`` [batch, seq] int64, output
  ``logits`` [batch, seq, 256].
* ``trained_model(config)``: train (seeded, fixed step count) or load the cached checkpoint and its
  ONNX export (TorchScript exporter, opset 17, dynamic batch and sequence) from
  ``~/.cache/onnxprune-bench/lm-<hash>/``, keyed by a hash of the config, the corpus and the versions
  of Python and torch; reruns skip training.
* ``perplexity(onnx_path, sequences)``: byte-level perplexity in onnxruntime.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import sys
import sysconfig
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("ONNXPRUNE_BENCH_CACHE", Path.home() / ".cache" / "onnxprune-bench"))
SPLITS = ("train", "calib", "eval")
# Bumped when the module's forward (hence the export) changes but the trained weights stay valid.
EXPORT_REVISION = 2


# ---------------------------------------------------------------------------------------------- corpus
def _docstrings(source: str) -> list[str]:
    """Module, class and function docstrings of one file, in source order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # lib2to3 test data and the like: not Python 3
        return []
    nodes = [tree] + [n for n in ast.walk(tree)
                      if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    nodes.sort(key=lambda n: getattr(n, "lineno", 0))
    docs = (ast.get_docstring(n, clean=True) for n in nodes)
    return [d for d in docs if d and len(d) >= 16]


def split_of(module: str) -> str:
    """The split a module's text belongs to: 1/16 held-out evaluation, 1/16 calibration, the rest train."""
    bucket = zlib.crc32(module.encode()) % 16
    return "eval" if bucket == 0 else "calib" if bucket == 1 else "train"


def docstring_corpus(root: str | os.PathLike | None = None) -> dict[str, bytes]:
    """UTF-8 bytes per split ("train", "calib", "eval") of the docstrings under ``root`` (default: this
    interpreter's stdlib, site-packages excluded); files and docstrings in sorted, source order."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    parts: dict[str, list[str]] = {s: [] for s in SPLITS}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(p in ("site-packages", "dist-packages", "__pycache__") for p in rel.parts):
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        docs = _docstrings(source)
        if docs:
            module = ".".join(rel.with_suffix("").parts)
            parts[split_of(module)].append("\n\n".join(docs))
    return {s: "\n\n".join(texts).encode("utf-8") for s, texts in parts.items()}


def cached_corpus() -> dict[str, bytes]:
    """``docstring_corpus()`` of this interpreter's stdlib, cached under CACHE (parsing takes ~30 s)."""
    root = sysconfig.get_paths()["stdlib"]
    key = hashlib.sha256(f"{root} {sys.version} {split_of.__doc__}".encode()).hexdigest()[:16]
    path = CACHE / f"corpus-{key}.npz"
    if path.exists():
        with np.load(path) as data:
            return {s: data[s].tobytes() for s in SPLITS}
    corpus = docstring_corpus(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{s: np.frombuffer(corpus[s], dtype=np.uint8) for s in SPLITS})
    os.replace(tmp, path)
    return corpus


def sequences(data: bytes, count: int, length: int, seed: int | None = None) -> np.ndarray:
    """``count`` token sequences [count, length] int64 from ``data``: evenly spaced windows (seed None),
    or seeded random windows."""
    tokens = np.frombuffer(data, dtype=np.uint8)
    span = len(tokens) - length
    if span <= 0 or count < 1:
        raise ValueError(f"{len(tokens)} tokens cannot give {count} sequences of {length}")
    starts = (np.linspace(0, span, count).astype(np.int64) if seed is None
              else np.random.default_rng(seed).integers(0, span, count))
    return np.stack([tokens[s:s + length] for s in starts]).astype(np.int64)


# ----------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class LMConfig:
    dim: int = 192
    layers: int = 4
    heads: int = 8
    kv_heads: int = 2
    ffn: int = 512  # about 8/3 * dim, as LLaMA sizes it
    context: int = 128
    vocab: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    # training
    # 1350 steps (~2.8 M tokens, 1.4 epochs): 43 min measured on a loaded shared 2-core machine (about
    # 1.1 s a step on an idle core), once: the model is cached. At 450 steps the model is so under-trained
    # that its FFN is redundant: l1 alone lost only 1.16x perplexity at 40% of parameters removed (1.67x
    # at 1350 steps), which makes a poor judge of pruning methods.
    steps: int = 1350
    batch: int = 16
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.1
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


def _torch_model(config: LMConfig):
    """The TinyLlama module class, built lazily so this file imports without torch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class RMSNorm(nn.Module):
        def __init__(self, dim: int, eps: float) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))
            self.eps = eps

        def forward(self, x):
            variance = x.pow(2).mean(-1, keepdim=True)
            return self.weight * (x * torch.rsqrt(variance + self.eps))

    def rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def repeat_kv(x, n_rep: int):
        """[b, kv, t, d] -> [b, kv * n_rep, t, d] as Hugging Face writes it (expand + reshape)."""
        b, kv, t, d = x.shape
        if n_rep == 1:
            return x
        return x[:, :, None, :, :].expand(b, kv, n_rep, t, d).reshape(b, kv * n_rep, t, d)

    class Attention(nn.Module):
        def __init__(self, c: LMConfig) -> None:
            super().__init__()
            self.c = c
            hd = c.head_dim
            self.q_proj = nn.Linear(c.dim, c.heads * hd, bias=False)
            self.k_proj = nn.Linear(c.dim, c.kv_heads * hd, bias=False)
            self.v_proj = nn.Linear(c.dim, c.kv_heads * hd, bias=False)
            self.o_proj = nn.Linear(c.heads * hd, c.dim, bias=False)

        def forward(self, x, cos, sin, mask):
            c, (b, t, _) = self.c, x.shape
            hd = c.head_dim
            q = self.q_proj(x).view(b, t, -1, hd).transpose(1, 2)
            k = self.k_proj(x).view(b, t, -1, hd).transpose(1, 2)
            v = self.v_proj(x).view(b, t, -1, hd).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = repeat_kv(k, c.heads // c.kv_heads)
            v = repeat_kv(v, c.heads // c.kv_heads)
            scores = torch.matmul(q, k.transpose(2, 3)) * (hd ** -0.5) + mask
            probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            out = torch.matmul(probs, v).transpose(1, 2).contiguous()
            return self.o_proj(out.reshape(b, t, -1))

    class MLP(nn.Module):
        def __init__(self, c: LMConfig) -> None:
            super().__init__()
            self.gate_proj = nn.Linear(c.dim, c.ffn, bias=False)
            self.up_proj = nn.Linear(c.dim, c.ffn, bias=False)
            self.down_proj = nn.Linear(c.ffn, c.dim, bias=False)

        def forward(self, x):
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    class Block(nn.Module):
        def __init__(self, c: LMConfig) -> None:
            super().__init__()
            self.input_layernorm = RMSNorm(c.dim, c.norm_eps)
            self.self_attn = Attention(c)
            self.post_attention_layernorm = RMSNorm(c.dim, c.norm_eps)
            self.mlp = MLP(c)

        def forward(self, x, cos, sin, mask):
            x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
            return x + self.mlp(self.post_attention_layernorm(x))

    class TinyLlama(nn.Module):
        def __init__(self, c: LMConfig) -> None:
            super().__init__()
            self.c = c
            self.embed_tokens = nn.Embedding(c.vocab, c.dim)
            self.layers = nn.ModuleList(Block(c) for _ in range(c.layers))
            self.norm = RMSNorm(c.dim, c.norm_eps)
            self.lm_head = nn.Linear(c.dim, c.vocab, bias=False)
            inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float32) / c.head_dim))
            self.register_buffer("inv_freq", inv_freq, persistent=False)
            self.apply(self._init)

        @staticmethod
        def _init(module) -> None:
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

        def forward(self, input_ids):
            b, t = input_ids.shape
            x = self.embed_tokens(input_ids)
            # as Hugging Face's rotary embedding: int64 positions, a float matmul with inv_freq
            positions = torch.arange(t, device=input_ids.device)[None]
            freqs = (self.inv_freq[None, :, None] @ positions[:, None, :].float()).transpose(1, 2)
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos()[:, None], emb.sin()[:, None]
            mask = torch.full((t, t), float("-inf"), device=input_ids.device).triu(1)[None, None]
            for layer in self.layers:
                x = layer(x, cos, sin, mask)
            return self.lm_head(self.norm(x))

    return TinyLlama(config)


def build_model(config: LMConfig):
    """An untrained TinyLlama (seeded by ``config.seed``)."""
    import torch

    torch.manual_seed(config.seed)
    return _torch_model(config)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# -------------------------------------------------------------------------------------------- training
def _lr_at(step: int, c: LMConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < c.warmup:
        return c.lr * (step + 1) / c.warmup
    progress = (step - c.warmup) / max(1, c.steps - c.warmup)
    return c.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(config: LMConfig, corpus: dict[str, bytes], log=print):
    """Train a TinyLlama on the corpus's train split for ``config.steps`` AdamW steps (seeded windows);
    returns (model in eval mode, seconds, final smoothed train loss in nats per byte)."""
    import torch

    # one thread: on a shared 2-core machine two threads thrash (measured 1.1 s/step vs 4-10 s)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(config, corpus, log)
    finally:
        torch.set_num_threads(threads)


def _train(config: LMConfig, corpus: dict[str, bytes], log):
    import torch
    from torch.nn import functional as F

    model = build_model(config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.95))
    tokens = np.frombuffer(corpus["train"], dtype=np.uint8)
    rng = np.random.default_rng(config.seed)
    start, smooth = time.perf_counter(), None
    model.train()
    for step in range(config.steps):
        starts = rng.integers(0, len(tokens) - config.context - 1, config.batch)
        chunk = torch.from_numpy(np.stack([tokens[s:s + config.context + 1] for s in starts]).astype(np.int64))
        logits = model(chunk[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, config.vocab), chunk[:, 1:].reshape(-1))
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        value = float(loss.detach())
        smooth = value if smooth is None else 0.98 * smooth + 0.02 * value
        if step % 100 == 0 or step == config.steps - 1:
            log(f"  step {step:5d}/{config.steps}  loss {smooth:.3f} nats/byte  ({time.perf_counter() - start:.0f} s)")
    model.eval()
    return model, time.perf_counter() - start, smooth


EXPORTERS = ("torchscript", "dynamo")


def export_onnx(model, path: str | os.PathLike, context: int, exporter: str = "torchscript") -> None:
    """Dynamic batch and sequence; "torchscript" (dynamo=False, opset 17) or "dynamo" (dynamo=True, opset
    18: its own opset, as onnx's converter down to 17 fails on this graph), one file without external data."""
    import torch

    example = torch.zeros(2, context, dtype=torch.int64)
    names = {"input_names": ["input_ids"], "output_names": ["logits"]}
    with torch.no_grad():
        if exporter == "dynamo":
            batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("sequence", min=2, max=context)
            torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=18, external_data=False,
                              dynamic_shapes={"input_ids": {0: batch, 1: seq}}, verbose=False, **names)
        else:
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17,
                              dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                            "logits": {0: "batch", 1: "sequence"}}, **names)


def config_key(config: LMConfig, corpus: dict[str, bytes]) -> str:
    """Cache key: the config, the corpus bytes and the Python/torch versions that produced them."""
    import torch

    h = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    for s in SPLITS:
        h.update(hashlib.sha256(corpus[s]).digest())
    h.update(f"{sys.version_info[:2]} {torch.__version__}".encode())
    return h.hexdigest()[:16]


@dataclass
class TrainedLM:
    config: LMConfig
    directory: Path
    onnx_path: Path
    meta: dict


def trained_model(config: LMConfig, corpus: dict[str, bytes] | None = None, log=print,
                  exporter: str = "torchscript") -> TrainedLM:
    """The trained model's ONNX export by ``exporter`` and facts (params, training time, onnxruntime-vs-
    torch check), from the cache when present, else trained and/or exported, checked and cached."""
    import torch

    corpus = corpus or cached_corpus()
    directory = CACHE / f"lm-{config_key(config, corpus)}"
    suffix = "" if exporter == "torchscript" else f"-{exporter}"
    onnx_path, meta_path = directory / f"model-export{EXPORT_REVISION}{suffix}.onnx", directory / "meta.json"
    if onnx_path.exists() and meta_path.exists():
        log(f"cached model: {directory}")
        return TrainedLM(config, directory, onnx_path, json.loads(meta_path.read_text()))
    directory.mkdir(parents=True, exist_ok=True)
    if meta_path.exists() and (directory / "model.pt").exists():  # trained, exported by an older revision
        meta = json.loads(meta_path.read_text())
        model = build_model(config)
        model.load_state_dict(torch.load(directory / "model.pt"))
        model.eval()
    else:
        log(f"training {config} on {len(corpus['train']) / 1e6:.2f} MB of docstrings")
        model, seconds, loss = train(config, corpus, log)
        torch.save(model.state_dict(), directory / "model.pt")
        meta = {"config": asdict(config), "params": count_parameters(model), "train_seconds": round(seconds, 1),
                "train_loss": round(loss, 4), "corpus_bytes": {s: len(corpus[s]) for s in SPLITS}}
    tmp = directory / "model.onnx.tmp"
    export_onnx(model, tmp, config.context, exporter)
    meta["onnx_vs_torch_max_abs" + suffix.replace("-", "_")] = onnx_matches_torch(model, tmp, sequences(corpus["eval"], 4, config.context))
    os.replace(tmp, onnx_path)
    meta_path.write_text(json.dumps(meta, indent=2))
    return TrainedLM(config, directory, onnx_path, meta)


def onnx_matches_torch(model, onnx_path: str | os.PathLike, tokens: np.ndarray, tol: float = 1e-3) -> float:
    """Max |logits_ort - logits_torch| on ``tokens``; raises if it exceeds ``tol``."""
    import torch

    with torch.no_grad():
        want = model(torch.from_numpy(tokens)).numpy()
    got = _session(onnx_path).run(None, {"input_ids": tokens})[0]
    err = float(np.abs(got - want).max())
    if not err <= tol:
        raise RuntimeError(f"onnxruntime's logits differ from torch's by {err:.3g} (> {tol})")
    return err


# ---------------------------------------------------------------------------------------------- metric
def _session(model: str | os.PathLike | bytes, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                providers=["CPUExecutionProvider"])


def mean_nll(model: str | os.PathLike | bytes, tokens: np.ndarray, batch: int = 16) -> float:
    """Mean next-byte negative log-likelihood (nats) over ``tokens`` [n, t]: positions 0..t-2 predict
    1..t-1, every sequence read from its own start (no carried context)."""
    sess = _session(model)
    total, count = 0.0, 0
    for i in range(0, len(tokens), batch):
        x = tokens[i:i + batch]
        logits = sess.run(None, {"input_ids": x})[0][:, :-1].astype(np.float64)
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        target = x[:, 1:]
        total -= float(np.take_along_axis(logp, target[..., None], -1).sum())
        count += target.size
    return total / count


def perplexity(model: str | os.PathLike | bytes, tokens: np.ndarray) -> float:
    """Byte-level perplexity exp(mean NLL) of ``model`` (a path or serialized bytes) on ``tokens``."""
    return math.exp(mean_nll(model, tokens))
