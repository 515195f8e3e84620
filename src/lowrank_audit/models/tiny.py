"""A tiny randomly initialised Llama and a word-level tokenizer, built in-process (no download)."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ..config.spec import TinyModelSpec

SPECIALS = ["[PAD]", "[UNK]", "[EOS]"]


def tiny_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """Whitespace/punctuation word tokenizer over `words`: every word is one token, so any lexicon fits."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]")


def tiny_model(spec: TinyModelSpec, vocab_size: int) -> LlamaForCausalLM:
    """A Llama with the given sizes, weights drawn from `spec.seed` (same spec -> same weights)."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=None,
    )
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        model = LlamaForCausalLM(config)
    return model
