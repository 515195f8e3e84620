"""Batched sampling with the KV cache: prompts left-padded, stop at EOS, seeded per batch.

Decoder-only models continue the last position, so prompts are padded on the left and the attention mask
marks the padding; transformers' `generate` derives position ids from that mask and reuses the KV cache.
Each batch draws from its own seed (`seed`, batch index), so the same settings give the same samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedTokenizerBase

from ..errors import AuditError
from ..models.precision import FP32, Precision


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that determines the sampled tokens (with the model, the prompts and the precision)."""

    max_new_tokens: int = 20
    num_samples: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.num_samples < 1 or self.batch_size < 1:
            raise AuditError(f"generation needs max_new_tokens, num_samples and batch_size >= 1 (got {self})")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise AuditError(f"generation needs temperature >= 0 (0 = greedy) and 0 < top_p <= 1 (got {self})")

    def key(self) -> dict:
        """The settings as a dict, part of every generation cache key."""
        return asdict(self)


@dataclass(frozen=True)
class Generations:
    """ids [n_prompts, num_samples, max_new_tokens] (padding after the end) and lengths [n_prompts, num_samples]."""

    ids: torch.Tensor
    lengths: torch.Tensor

    def texts(self, tokenizer: PreTrainedTokenizerBase) -> list[list[str]]:
        """Decoded completions, one list of samples per prompt (special tokens removed)."""
        return [[tokenizer.decode(row[:n].tolist(), skip_special_tokens=True) for row, n in zip(rows, lens)]
                for rows, lens in zip(self.ids, self.lengths.tolist())]


def left_pad(seqs: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids, attention mask), padded on the left to the longest sequence."""
    if any(len(s) == 0 for s in seqs):
        raise AuditError("a generation prompt encodes to no tokens; every prompt needs at least one token.")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
    return ids, mask


def _config(settings: GenerationSettings, tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    sample = settings.temperature > 0
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        num_return_sequences=settings.num_samples,
        do_sample=sample,
        temperature=settings.temperature if sample else None,
        top_p=settings.top_p if sample else None,
        top_k=0 if sample else None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=True,
    )


@torch.no_grad()
def generate(model: nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[list[int]],
             settings: GenerationSettings, precision: Precision = FP32, progress: bool = False,
             desc: str = "generate") -> Generations:
    """Sample `settings.num_samples` completions of each prompt (token ids, no special tokens added)."""
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise AuditError("generation needs a tokenizer with an EOS and a pad token (set tokenizer.pad_token).")
    n, k, t = len(prompts), settings.num_samples, settings.max_new_tokens
    out = torch.full((n, k, t), tokenizer.pad_token_id, dtype=torch.long)
    lengths = torch.zeros((n, k), dtype=torch.long)
    config = _config(settings, tokenizer)
    was_training = model.training
    model.eval()
    starts = range(0, n, settings.batch_size)
    with precision.weights_cast_once(model, trainable=True):  # once, not at every generated token
        for b, start in enumerate(tqdm(starts, desc=desc, disable=not progress, leave=False, unit="batch")):
            chunk = prompts[start:start + settings.batch_size]
            ids, mask = left_pad(chunk, tokenizer.pad_token_id)
            with torch.random.fork_rng(), precision.autocast():
                torch.manual_seed(settings.seed * 1_000_003 + b)
                seqs = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            new = seqs[:, ids.shape[1]:].reshape(len(chunk), k, -1)
            ended = new == tokenizer.eos_token_id
            first_eos = torch.where(ended.any(-1), ended.int().argmax(-1), torch.tensor(new.shape[-1]))
            out[start:start + len(chunk), :, :new.shape[-1]] = new
            lengths[start:start + len(chunk)] = first_eos
    keep = torch.arange(t) < lengths.unsqueeze(-1)
    out = torch.where(keep, out, torch.tensor(tokenizer.pad_token_id))
    model.train(was_training)
    return Generations(out, lengths)
