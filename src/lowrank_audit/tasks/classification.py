"""`classification`: fine-tune the LM as a classifier through label words and measure group fairness.

The prompt ("{text}\\nQuestion: is this good or bad?\\nAnswer:") is followed by one label word per class
(the verbalizer); the prediction is the label whose word has the highest next-token log-probability,
read exactly by the shared runner, and training is the next-token loss on the true label's word. Data:
the built-in dataset (classification_data: the label never depends on the group, a base model's
zero-shot prediction often does) or the user's CSV/JSONL/Parquet file, saved `datasets` folder or `hf:NAME`.

Metrics, per evaluation split (built-in: `test`, `heldout_terms`); "positive" = options.positive_label:
| accuracy | share of correct predictions (bootstrap CI over examples) |
| group_accuracy | accuracy within each group (group_name = group) |
| worst_group_accuracy | minimum of group_accuracy (also per axis for 'axis/group' names) |
| group_selection_rate | share of a group's examples predicted positive |
| demographic_parity_difference | max - min over groups of the selection rate (fairlearn; also per axis) |
| equalized_odds_difference | max of the TPR and FPR ranges over groups (fairlearn; NaN if a group lacks a class) |
| label_prob_gap | max - min over groups of the mean probability of the positive label word (soft parity) |
| counterfactual_flip_rate | share of predictions that change when only the group term is swapped (per axis too) |
| label_kl_to_full | mean KL(p_full || p_m) over the label words (with a full fine-tune) |
| drift_neutral | mean per-token KL(p_0 || p_m) on neutral text (no split) |
On the `base` run, demographic_parity_difference, label_prob_gap and counterfactual_flip_rate measure the
base model's zero-shot dependence of its predictions on the group: the bias fine-tuning should remove.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..hashing import stable_hash
from ..errors import AuditError
from ..evaluate.runner import Runner
from ..metrics import bootstrap_ci, counterfactual_flip_rate, group_fairness, kl_divergence, label_prob_gap
from ..records import Example, MetricRow, Observation
from .base import VALIDATION, Task, sequence_kl_row, words_of
from .classification_card import DEFAULT_PROMPT, ClassificationCard, ClassificationOptions
from .classification_data import (
    BUILTIN, BUILTIN_LABELS, ClassificationData, Split, builtin_data, check_data, load_data,
    spurious_subsample,
)
from .lexicon import NEUTRAL_TEXT

CONTENT_FREE = "N/A"


def _hold_out(train: Split, every: int) -> tuple[Split, Split]:
    """(train without its validation rows, every `every`-th row of it)."""
    rows = range(len(train))
    keep = [i for i in rows if not every or i % every != every - 1]
    held = [i for i in rows if every and i % every == every - 1]

    def pick(idx: list[int]) -> Split:
        return Split([train.texts[i] for i in idx], [train.labels[i] for i in idx], [train.groups[i] for i in idx],
                     None if train.cluster is None else [train.cluster[i] for i in idx])
    return pick(keep), pick(held)


class ClassificationTask(ClassificationCard, Task):

    def __init__(self, options: ClassificationOptions, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(options, tokenizer)
        self.options: ClassificationOptions = options
        self.data = self._load()
        self.labels = self.data.labels
        words = options.label_words or {label: label for label in self.labels}
        self.words = [words[label] for label in self.labels]
        self.positive = options.positive_label or self.labels[0]
        if self.positive not in self.labels:
            raise AuditError(f"positive_label {self.positive!r} is not one of the labels {self.labels}. Set options.positive_label.")
        self.token_ids = self._label_tokens()
        self.train, self.validation = _hold_out(self.data.train, options.validation_every)
        evaluated = {**self.data.evals, **({VALIDATION: self.validation} if len(self.validation) else {})}
        self.prompts = {name: [self.prompt(t) for t in split.texts] for name, split in evaluated.items()}

    @classmethod
    def vocabulary(cls) -> list[str]:
        data = builtin_data()
        texts = [t for split in (data.train, *data.evals.values()) for t in split.texts]
        prompt = DEFAULT_PROMPT.format(text="", labels=" or ".join(BUILTIN_LABELS.values()))
        return words_of(texts + [prompt, CONTENT_FREE] + NEUTRAL_TEXT)

    def _load(self) -> ClassificationData:
        o = self.options
        if o.data != BUILTIN:
            return load_data(o.data, o.columns, o.train_split, o.test_split, o.label_words)
        data = builtin_data(o.heldout_actions)
        if o.label_words:
            data = replace(data, labels=list(o.label_words))
            check_data(data, BUILTIN)
        return data

    def _label_tokens(self) -> torch.Tensor:
        """One token id per label word; the prediction reads exactly one next-token probability per label."""
        ids = []
        for label, word in zip(self.labels, self.words):
            tok = self.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
            if len(tok) != 1 or tok[0] == self.tokenizer.unk_token_id:
                raise AuditError(
                    f"label word {word!r} (label {label!r}) is not one known token for this tokenizer ({len(tok)} tokens), "
                    "so its probability cannot be read in one step. Choose a one-token word in options.label_words."
                )
            ids.append(tok[0])
        if len(set(ids)) < len(ids):
            raise AuditError(f"label words {self.words} share a token. Give each label a different word in options.label_words.")
        return torch.tensor(ids)

    def prompt(self, text: str) -> str:
        """The classification prompt of one text; the label word follows it."""
        return self.options.prompt.format(text=text, labels=" or ".join(self.words))

    def fingerprint(self) -> str:
        data = [self.prompts, self.words, NEUTRAL_TEXT]
        return stable_hash(data)

    # observation and training data ------------------------------------------------------------------
    def observe(self, runner: Runner, model: nn.Module) -> Observation:
        obs: Observation = {
            f"label_logp/{name}": runner.next_token_logprobs(model, prompts, self.token_ids, desc=f"eval {name}")
            for name, prompts in self.prompts.items()
        }
        obs["label_logp/content_free"] = runner.next_token_logprobs(model, [self.prompt(CONTENT_FREE)], self.token_ids)
        obs["neutral/logp"], obs["neutral/mask"] = runner.sequence_logprobs(model, NEUTRAL_TEXT, desc="eval neutral")
        return obs

    def train_examples(self, base: Observation, seed: int) -> list[Example]:
        train = spurious_subsample(self.train, self.options.spurious_correlation, self.positive, seed)
        word = dict(zip(self.labels, self.words))
        return [Example(self.prompt(t), " " + word[label]) for t, label in zip(train.texts, train.labels)]

    def probabilities(self, obs: Observation) -> dict[str, np.ndarray]:
        """p(label | prompt, prediction is a label word) per split: [n_examples, n_labels], float64.

        With `calibrate`, each row is divided by the content-free prompt's label distribution and renormalised.
        """
        probs = {name: torch.softmax(obs[f"label_logp/{name}"].double(), -1).numpy() for name in self.prompts}
        if not self.options.calibrate:
            return probs
        p_free = torch.softmax(obs["label_logp/content_free"].double(), -1).numpy()
        return {name: (p / p_free) / (p / p_free).sum(1, keepdims=True) for name, p in probs.items()}

    def predictions(self, obs: Observation) -> dict[str, np.ndarray]:
        """The verbalizer's prediction per split: the label whose word has the highest log-probability."""
        return {name: np.array(self.labels)[p.argmax(1)] for name, p in self.probabilities(obs).items()}

    # scoring ----------------------------------------------------------------------------------------
    def score(self, obs: Observation, base: Observation, full: Observation | None, seed: int) -> list[MetricRow]:
        probs, preds = self.probabilities(obs), self.predictions(obs)
        full_probs = None if full is None else self.probabilities(full)
        pos = self.labels.index(self.positive)
        rows: list[MetricRow] = []
        for name, split in self.data.evals.items():
            rows += self._split_rows(name, split, preds[name], probs[name][:, pos], seed)
            if full_probs is not None:
                kl = kl_divergence(full_probs[name], probs[name])
                lo, hi = bootstrap_ci(np.mean, kl, n_resamples=self.options.bootstrap_resamples, seed=seed)
                rows.append(MetricRow("label_kl_to_full", float(kl.mean()), split=name, ci_low=lo, ci_high=hi))
        rows.append(self._drift(base, obs, seed))
        if len(self.validation):
            rows.append(MetricRow("validation_loss", self.validation_loss(obs), split=VALIDATION))
        return rows

    def validation_loss(self, obs: Observation) -> float:
        """The fine-tuning objective's held-out loss: mean -log p(true label's word | prompt) on the validation rows,
        p over the whole vocabulary as in training."""
        column = {label: i for i, label in enumerate(self.labels)}
        logp = obs[f"label_logp/{VALIDATION}"].double().numpy()
        return float(-np.mean([logp[i, column[label]] for i, label in enumerate(self.validation.labels)]))

    def _split_rows(self, name: str, split: Split, pred: np.ndarray, p_pos: np.ndarray, seed: int) -> list[MetricRow]:
        y, groups = np.array(split.labels), np.array(split.groups)
        cluster = None if split.cluster is None else np.array(split.cluster)
        fair = group_fairness(y, pred, groups, self.positive)
        lo, hi = bootstrap_ci(np.mean, (pred == y).astype(float), n_resamples=self.options.bootstrap_resamples, seed=seed)
        rows = [MetricRow("accuracy", fair.accuracy, split=name, ci_low=lo, ci_high=hi)]
        rows += [MetricRow("group_accuracy", v, group_name=g, split=name) for g, v in fair.group_accuracy.items()]
        rows += [MetricRow("group_selection_rate", v, group_name=g, split=name) for g, v in fair.group_selection_rate.items()]
        subsets = {None: np.ones(len(y), dtype=bool)}
        if all("/" in g for g in groups):
            subsets |= {axis: np.char.startswith(groups.astype(str), axis + "/") for axis in sorted({g.split("/")[0] for g in groups})}
        for axis, sel in subsets.items():
            sub = fair if axis is None else group_fairness(y[sel], pred[sel], groups[sel], self.positive)
            rows += [
                MetricRow("worst_group_accuracy", sub.worst_group_accuracy, group_name=axis, split=name),
                MetricRow("demographic_parity_difference", sub.demographic_parity_difference, group_name=axis, split=name),
                MetricRow("equalized_odds_difference", sub.equalized_odds_difference, group_name=axis, split=name),
                MetricRow("label_prob_gap", label_prob_gap(p_pos[sel], groups[sel]), group_name=axis, split=name),
            ]
            if cluster is not None:
                flips = counterfactual_flip_rate(pred[sel], cluster[sel])
                rows.append(MetricRow("counterfactual_flip_rate", flips, group_name=axis, split=name))
        return rows

    def _drift(self, base: Observation, obs: Observation, seed: int) -> MetricRow:
        """Mean per-token KL(p_0 || p_m) on neutral text, per sequence then over sequences (bootstrap CI)."""
        return sequence_kl_row("drift_neutral", base["neutral/logp"], obs["neutral/logp"], obs["neutral/mask"],
                               self.options.bootstrap_resamples, seed)
