"""Tiny random-weight transformers from ``transformers`` configs, exported with both torch exporters.

Helper module for the transformer tests (not a test file itself). Nothing is downloaded: every model is
built from a config with seeded random weights, 2 layers, hidden width 64, 4 heads of 16.

Public API
----------
ARCHS       name -> Arch (builder, input maker, head counts)
EXPORTERS   ("torchscript17", "dynamo18")
export(name, exporter, directory) -> Path of ``<name>_<exporter>.onnx``
inputs(name) -> {input name: ndarray} (deterministic)
bert_encoder(...) -> the BERT module, with token types, another attention implementation or redrawn weights

Exports: ``torchscript17`` is ``torch.onnx.export(dynamo=False, opset_version=17)`` with batch and sequence
axes dynamic (so head splits read Shape at run time, as real exports do); ``dynamo18`` is
``torch.onnx.export(dynamo=True, opset_version=18)`` with the same dynamic axes. Attention is the eager
implementation (MatMul/Softmax/MatMul), what optimum-style exports of these models hold.
"""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

EXPORTERS = ("torchscript17", "dynamo18")
HIDDEN, HEADS, LAYERS, FFN, VOCAB, SEQ = 64, 4, 2, 128, 100, 8


@dataclass(frozen=True)
class Arch:
    build: Callable[[], nn.Module]
    inputs: Callable[[], dict[str, np.ndarray]]
    dynamic: dict[str, dict[int, str]]  # input -> {axis: name}
    heads: int = HEADS  # query heads per layer
    kv_heads: int = HEADS  # key/value heads per layer


class _LastHidden(nn.Module):
    """forward(x) -> last_hidden_state, the one output the exports have."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        self.model, self.name = model, name

    def forward(self, x):
        return self.model(**{self.name: x}).last_hidden_state


class _LastHiddenMasked(nn.Module):
    """forward(input_ids, attention_mask) -> last_hidden_state."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _tokens() -> dict[str, np.ndarray]:
    ids = np.random.default_rng(0).integers(0, VOCAB, (2, SEQ)).astype(np.int64)
    return {"input_ids": ids, "attention_mask": np.ones((2, SEQ), dtype=np.int64)}


class _BertEncoder(nn.Module):
    """forward(input_ids, attention_mask[, token_type_ids]) -> last_hidden_state."""

    def __init__(self, model: nn.Module, token_types: bool) -> None:
        super().__init__()
        self.model, self.token_types = model, token_types

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {"token_type_ids": token_type_ids} if self.token_types else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state


def bert_encoder(token_types: bool = False, attention: str = "eager", std: float | None = None) -> nn.Module:
    """The zoo's BERT (2 layers, 4 heads, width 64, vocab 100, 2 token types, 32 positions), eval mode:
    ``token_types`` adds the token_type_ids input; ``attention`` is transformers' implementation (eager:
    MatMul/Softmax/MatMul, which onnxruntime's optimizer fuses; sdpa: the dynamo exporter writes ai.onnx
    Attention at opset 23); ``std`` redraws every parameter from N(0, std) (the default init has zero
    biases and unit norms: nothing to tell apart)."""
    from transformers import BertConfig, BertModel
    cfg = BertConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN,
                     vocab_size=VOCAB, type_vocab_size=2, max_position_embeddings=32, attn_implementation=attention)
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    if std is not None:
        with torch.no_grad():
            for p in bert.parameters():
                p.normal_(0.0, std)
    return _BertEncoder(bert, token_types)


def _vit() -> nn.Module:
    from transformers import ViTConfig, ViTModel
    cfg = ViTConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN,
                    image_size=32, patch_size=8, num_channels=3, attn_implementation="eager")
    return _LastHidden(ViTModel(cfg, add_pooling_layer=False), "pixel_values")


def _whisper() -> nn.Module:
    from transformers import WhisperConfig, WhisperModel
    cfg = WhisperConfig(d_model=HIDDEN, encoder_layers=LAYERS, decoder_layers=1, encoder_attention_heads=HEADS,
                        decoder_attention_heads=HEADS, encoder_ffn_dim=FFN, decoder_ffn_dim=FFN, num_mel_bins=16,
                        max_source_positions=16, max_target_positions=16, vocab_size=VOCAB,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                        attn_implementation="eager")
    return _LastHidden(WhisperModel(cfg).get_encoder(), "input_features")


def _gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2Model
    cfg = GPT2Config(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=FFN, n_positions=32, vocab_size=VOCAB,
                     bos_token_id=1, eos_token_id=2, use_cache=False, attn_implementation="eager")
    return _LastHiddenMasked(GPT2Model(cfg))


def _llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaModel
    cfg = LlamaConfig(hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=32, use_cache=False,
                      attn_implementation="eager")
    return _LastHiddenMasked(LlamaModel(cfg))


def _pixels() -> dict[str, np.ndarray]:
    return {"pixel_values": np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)}


def _mels() -> dict[str, np.ndarray]:
    return {"input_features": np.random.default_rng(0).standard_normal((2, 16, 32)).astype(np.float32)}


_SEQ_AXES = {0: "batch", 1: "seq"}
ARCHS: dict[str, Arch] = {
    "bert": Arch(bert_encoder, _tokens, {"input_ids": _SEQ_AXES, "attention_mask": _SEQ_AXES}),
    "vit": Arch(_vit, _pixels, {"pixel_values": {0: "batch"}}),
    "whisper": Arch(_whisper, _mels, {"input_features": {0: "batch"}}),
    "gpt2": Arch(_gpt2, _tokens, {"input_ids": _SEQ_AXES, "attention_mask": _SEQ_AXES}),
    "llama": Arch(_llama, _tokens, {"input_ids": _SEQ_AXES, "attention_mask": _SEQ_AXES}, kv_heads=2),
}


def inputs(name: str) -> dict[str, np.ndarray]:
    return ARCHS[name].inputs()


def build(name: str) -> nn.Module:
    """The eval-mode model, seeded per architecture. Norm weights and every bias are randomised: the
    initialised ones are ones and zeros, which the dynamo exporter would deduplicate into one shared
    initializer, and which would hide a wrongly sliced parameter."""
    with torch.random.fork_rng():
        torch.manual_seed(sum(map(ord, name)))
        model = ARCHS[name].build().eval()
        with torch.no_grad():
            for mod in model.modules():
                if "Norm" in type(mod).__name__ and getattr(mod, "weight", None) is not None:
                    mod.weight.uniform_(0.5, 1.5)
                if isinstance(getattr(mod, "bias", None), torch.Tensor):
                    mod.bias.uniform_(-0.2, 0.2)
    return model


def export(name: str, exporter: str, directory: pathlib.Path) -> pathlib.Path:
    """Export ``name`` with ``exporter`` to ``directory/<name>_<exporter>.onnx`` (self-contained file)."""
    arch = ARCHS[name]
    model = build(name)
    feeds = arch.inputs()
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    names = list(feeds)
    path = pathlib.Path(directory) / f"{name}_{exporter}.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "torchscript17":
            torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17, input_names=names,
                              output_names=["last_hidden_state"],
                              dynamic_axes={**arch.dynamic, "last_hidden_state": {0: "batch"}})
        elif exporter == "dynamo18":
            dims: dict[str, torch.export.Dim] = {}
            shapes = tuple({ax: dims.setdefault(n, torch.export.Dim(n, min=1, max=64 if n == "batch" else 32))
                            for ax, n in arch.dynamic.get(k, {}).items()} for k in names)
            prog = torch.onnx.export(model, args, dynamo=True, opset_version=18, input_names=names,
                                     output_names=["last_hidden_state"], dynamic_shapes=shapes, verbose=False)
            prog.save(str(path), external_data=False)
        else:
            raise ValueError(f"unknown exporter {exporter!r}")
    return path
