"""One batched runner for forward passes: tasks say what they need, the runner executes it.

Sequences are right-padded, so every real token keeps its natural position and causal attention never
sees padding; log-probabilities are always taken in fp32, whatever precision the forward pass used.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from ..models.precision import Precision
from .generate import GenerationSettings, Generations, generate
from .lens import lens_logits


class Runner:
    """Batches texts through a model under the experiment's precision."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, precision: Precision, batch_size: int, progress: bool = True) -> None:
        self.tokenizer = tokenizer
        self.precision = precision
        self.batch_size = batch_size
        self.progress = progress

    def generate(self, model: nn.Module, prompts: Sequence[list[int]], settings: GenerationSettings,
                 desc: str = "generate") -> Generations:
        """Sampled completions of `prompts` (token ids), under this runner's precision and progress setting."""
        return generate(model, self.tokenizer, prompts, settings, self.precision, self.progress, desc)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _batches(self, model: nn.Module, seqs: Sequence[list[int]],
                 desc: str) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
        """Right-padded batches of `seqs`; meanwhile `model`'s weights are cast to bf16 once, not at every batch."""
        starts = range(0, len(seqs), self.batch_size)
        with self.precision.weights_cast_once(model, trainable=True):
            for start in tqdm(starts, desc=desc, disable=not self.progress, leave=False, unit="batch"):
                chunk = seqs[start : start + self.batch_size]
                width = max(len(s) for s in chunk)
                ids = torch.full((len(chunk), width), self.tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for i, s in enumerate(chunk):
                    ids[i, : len(s)] = torch.tensor(s)
                    mask[i, : len(s)] = 1
                yield slice(start, start + len(chunk)), ids, mask

    @torch.no_grad()
    def _logits(self, model: nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        """fp32 logits at every position, or only at the positions `keep` (transformers' `logits_to_keep`)."""
        was_training = model.training
        model.eval()
        with self.precision.autocast():
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=0 if keep is None else keep).logits
        model.train(was_training)
        return logits.float()

    def next_token_logprobs(self, model: nn.Module, prompts: Sequence[str], token_ids: torch.Tensor,
                            desc: str = "next-token") -> torch.Tensor:
        """log p(token | prompt) for each prompt and each of `token_ids`: [n_prompts, n_tokens], fp32."""
        seqs = [self.encode(p) for p in prompts]
        out = torch.empty((len(seqs), len(token_ids)), dtype=torch.float32)
        for sl, ids, mask in self._batches(model, seqs, desc):
            last = mask.sum(1) - 1
            keep = last.unique()  # the output layer only where some prompt ends: it is a fifth of SmolLM2's matmuls
            logp = torch.log_softmax(self._logits(model, ids, mask, keep), dim=-1)
            out[sl] = logp[torch.arange(len(ids)), torch.searchsorted(keep, last)][:, token_ids]
        return out

    def sequence_logprobs(self, model: nn.Module, texts: Sequence[str],
                          desc: str = "sequences") -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced next-token log-probabilities over the full vocabulary at every real position.

        Returns (logp [n, T, vocab] fp32, mask [n, T] bool), T = longest sequence.
        """
        seqs = [self.encode(t) for t in texts]
        width = max(len(s) for s in seqs)
        logps, masks = [], []
        for _, ids, mask in self._batches(model, seqs, desc):
            logp = torch.log_softmax(self._logits(model, ids, mask), dim=-1)
            pad = width - ids.shape[1]
            logps.append(nn.functional.pad(logp, (0, 0, 0, pad)))
            masks.append(nn.functional.pad(mask, (0, pad)).bool())
        return torch.cat(logps), torch.cat(masks)

    def text_logliks(self, model: nn.Module, texts: Sequence[str], prefix_id: int,
                     desc: str = "log-likelihoods") -> tuple[torch.Tensor, torch.Tensor]:
        """Exact log p(text) of each text after a prefix token: sum over its tokens of log p(token | prefix, earlier).

        Returns (sum of log-probabilities [n] float64, number of scored tokens [n]); only the gathered
        log-probabilities are kept, never the [n, T, vocab] tensor.
        """
        seqs = [[prefix_id] + self.encode(t) for t in texts]
        total = torch.empty(len(seqs), dtype=torch.float64)
        for sl, ids, mask in self._batches(model, seqs, desc):
            logp = torch.log_softmax(self._logits(model, ids, mask), dim=-1)[:, :-1]
            token = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
            total[sl] = (token.double() * mask[:, 1:]).sum(1)
        return total, torch.tensor([len(s) - 1 for s in seqs])

    def completion_logliks(self, model: nn.Module, examples: Sequence[tuple[str, str]],
                           desc: str = "completions") -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced log p(completion | prompt) of (prompt, completion) pairs, each tokenized in two parts as the
        trainer tokenizes a fine-tuning example, p over the whole vocabulary.

        Returns (sum of the completion tokens' log-probabilities [n] float64, number of completion tokens the loss
        sees [n]); the training loop's loss on these examples as one batch is -sum(sums) / sum(numbers). The output
        layer runs only where a completion token is predicted.
        """
        parts = [(self.encode(p), self.encode(c)) for p, c in examples]
        total = torch.zeros(len(parts), dtype=torch.float64)
        count = torch.zeros(len(parts), dtype=torch.long)
        for sl, ids, mask in self._batches(model, [p + c for p, c in parts], desc):
            start = torch.tensor([max(len(p), 1) for p, _ in parts[sl]])  # a sequence's first token is never predicted
            scored = (torch.arange(1, ids.shape[1]) >= start[:, None]) & mask[:, 1:].bool()  # [b, T-1], token t + 1
            keep = scored.any(0).nonzero().squeeze(1)
            if not len(keep):  # only empty completions: nothing to score
                continue
            logp = torch.log_softmax(self._logits(model, ids, mask, keep), dim=-1)
            token = logp.gather(-1, ids[:, keep + 1, None]).squeeze(-1).double()
            total[sl] = torch.where(scored[:, keep], token, 0.0).sum(1)
            count[sl] = scored.sum(1)
        return total, count

    @torch.no_grad()
    def lens_logprobs(self, model: nn.Module, prompts: Sequence[str], desc: str = "logit lens") -> torch.Tensor:
        """Next-token log-probabilities at each prompt's last position, read at every layer: [n, layers, vocab].

        One forward pass per batch (output_hidden_states), not one per layer.
        """
        seqs = [self.encode(p) for p in prompts]
        out = []
        was_training = model.training
        model.eval()
        for _, ids, mask in self._batches(model, seqs, desc):
            with self.precision.autocast():
                hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, logits_to_keep=1).hidden_states
                last = mask.sum(1) - 1
                rows = torch.arange(len(ids))
                logits = lens_logits(model, tuple(h[rows, last] for h in hidden))
            out.append(torch.log_softmax(logits.float(), dim=-1).transpose(0, 1))
        model.train(was_training)
        return torch.cat(out)
