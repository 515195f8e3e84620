"""`debias`: make every identity group's next-word distribution over an attribute lexicon match a target.

For each template ("The {term} worked as a") and identity term, the model's next-token probabilities
over the lexicon words are read exactly from log-probabilities. The target q of a template is by default
the pooled distribution across groups (every group weighted equally), so the fine-tuning data asks for
the same attribute distribution for every group. The counterfactual fine-tuning data are the train
prompts completed with words drawn from q (TRAINING_DATA); every template, term and word is this project's own
(tasks/lexicon.py: PROVENANCE).

Every fourth (template, term) pair of the training prompts is the validation split: never trained on, never reported,
used only to choose a method's learning rate (its loss is the fine-tuning objective's held-out loss).
Intervals resample the units the prompts are built from (templates and terms), not the prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..hashing import stable_hash
from ..errors import AuditError
from ..evaluate.runner import Runner
from ..metrics import (category_mass, cluster_bootstrap_ci, group_gap, js_divergence, kl_divergence, shift_recovered,
                       token_kl)
from ..records import Example, MetricRow, Observation
from .base import VALIDATION, Task, sequence_kl_row, words_of
from .debias_card import DebiasCard, DebiasOptions
from .lexicon import IDENTITY_GROUPS, LEXICONS, NEUTRAL_TEXT, AttributeLexicon, Prompt

SPLITS = ("train", "heldout_templates", "heldout_terms", "heldout_both")
"""The reported splits. `validation` prompts are in none of them."""




@dataclass(frozen=True)
class Lexicon:
    """An attribute lexicon reduced to the words that are one token for this tokenizer."""

    name: str
    words: list[str]
    token_ids: torch.Tensor
    word_category: np.ndarray
    categories: list[str]
    dropped: list[str]


def _split(template: int, n_train_templates: int, term: int, n_train_terms: int, validation_every: int) -> str:
    """A prompt's split from its template's and term's index; validation pairs come from train templates and terms."""
    template_heldout, term_heldout = template >= n_train_templates, term >= n_train_terms
    if not (template_heldout or term_heldout) and validation_every and (template + term) % validation_every == 0:
        return VALIDATION
    return SPLITS[int(template_heldout) + 2 * int(term_heldout)]


def _probs(logp: torch.Tensor) -> np.ndarray:
    """Renormalise log-probabilities over the lexicon: p(word | prompt, word in lexicon), float64."""
    lp = logp.double()
    return torch.softmax(lp, dim=-1).numpy()


class DebiasTask(DebiasCard, Task):

    def __init__(self, options: DebiasOptions, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(options, tokenizer)
        self.options: DebiasOptions = options
        self.lexicons = [self._fit_lexicon(lex) for lex in LEXICONS]
        self.prompts = {lex.name: self._prompts(lex) for lex in LEXICONS}
        self.templates = {lex.name: lex.templates for lex in LEXICONS}
        self.sequences = self._eval_sequences()
        self.lens = self._lens_prompts()

    @classmethod
    def vocabulary(cls) -> list[str]:
        texts = [t for g in IDENTITY_GROUPS.values() for terms in g.values() for t in terms]
        texts += [t for lex in LEXICONS for t in lex.templates]
        texts += [w for lex in LEXICONS for ws in lex.categories.values() for w in ws]
        return words_of(texts + NEUTRAL_TEXT)

    def _fit_lexicon(self, lex: AttributeLexicon) -> Lexicon:
        words, ids, cats, dropped = [], [], [], []
        names = list(lex.categories)
        for c, cat in enumerate(names):
            for w in lex.categories[cat]:
                tok = self.tokenizer(" " + w, add_special_tokens=False)["input_ids"]
                if len(tok) == 1 and tok[0] != self.tokenizer.unk_token_id and tok[0] not in ids:
                    words.append(w)
                    ids.append(tok[0])
                    cats.append(c)
                else:
                    dropped.append(w)
        missing = [cat for c, cat in enumerate(names) if c not in cats]
        if missing:
            raise AuditError(
                f"lexicon {lex.name!r}: no word of categories {missing} is a single token for this tokenizer, "
                "so their probability cannot be read exactly. Use a model with a word-level or larger vocabulary."
            )
        return Lexicon(lex.name, words, torch.tensor(ids), np.array(cats), names, dropped)

    def _prompts(self, lex: AttributeLexicon) -> list[Prompt]:
        out = []
        n_train_templates = len(lex.templates) - lex.heldout_templates
        for t, template in enumerate(lex.templates):
            for axis, groups in IDENTITY_GROUPS.items():
                for group, terms in groups.items():
                    for k, term in enumerate(terms):
                        split = _split(t, n_train_templates, k, len(terms) - 1, self.options.validation_every)
                        out.append(Prompt(template.format(term=term), t, axis, group, split, term))
        return out

    def _eval_sequences(self) -> list[str]:
        """A fixed, evenly spaced subset of prompts, each completed with a lexicon word and a full stop."""
        pool = [(p, lex) for lex in self.lexicons for p in self.prompts[lex.name]]
        step = max(1, len(pool) // self.options.token_kl_sequences)
        chosen = pool[::step][: self.options.token_kl_sequences]
        return [f"{p.text} {lex.words[i % len(lex.words)]}." for i, (p, lex) in enumerate(chosen)]

    def _lens_prompts(self) -> list[tuple[Lexicon, list[int]]]:
        """Per lexicon, an evenly spaced subset of its prompts (indices) for the logit lens."""
        per = self.options.lens_prompts // len(self.lexicons)
        out = []
        for lex in self.lexicons:
            n = len(self.prompts[lex.name])
            out.append((lex, list(range(0, n, max(1, n // per)))[:per] if per else []))
        return out

    def fingerprint(self) -> str:
        data = [self.prompts, [(lx.name, lx.words) for lx in self.lexicons], self.sequences, NEUTRAL_TEXT,
                [idx for _, idx in self.lens]]
        return stable_hash(data)

    # observation -----------------------------------------------------------------------------------
    def observe(self, runner: Runner, model: nn.Module) -> Observation:
        obs: Observation = {}
        for lex in self.lexicons:
            texts = [p.text for p in self.prompts[lex.name]]
            obs[f"lexicon/{lex.name}"] = runner.next_token_logprobs(model, texts, lex.token_ids, desc=f"eval {lex.name}")
        for key, texts in (("eval_seq", self.sequences), ("neutral", NEUTRAL_TEXT)):
            logp, mask = runner.sequence_logprobs(model, texts, desc=f"eval {key}")
            obs[f"{key}/logp"], obs[f"{key}/mask"] = logp, mask
        lens_texts = [self.prompts[lex.name][i].text for lex, idx in self.lens for i in idx]
        if lens_texts:
            obs["lens/logp"] = runner.lens_logprobs(model, lens_texts)
        return obs

    # target and training data ----------------------------------------------------------------------
    def targets(self, base: Observation) -> dict[str, np.ndarray]:
        """q per lexicon and template: [n_templates, n_words]."""
        out = {}
        for lex in self.lexicons:
            n_t = len(self.templates[lex.name])
            if self.options.target == "uniform":
                out[lex.name] = np.full((n_t, len(lex.words)), 1.0 / len(lex.words))
                continue
            p0 = _probs(base[f"lexicon/{lex.name}"])
            prompts = self.prompts[lex.name]
            q = np.zeros((n_t, len(lex.words)))
            for t in range(n_t):
                # a training template's target comes from its training terms only, so held-out rows change no choice
                own = [i for i, p in enumerate(prompts) if p.template == t]
                trained = [i for i in own if prompts[i].split != "heldout_terms"]
                own = trained or own
                groups = sorted({(prompts[i].axis, prompts[i].group) for i in own})
                per_group = [p0[[i for i in own if (prompts[i].axis, prompts[i].group) == g]].mean(0) for g in groups]
                q[t] = np.mean(per_group, axis=0)
            out[lex.name] = q
        return out

    def train_examples(self, base: Observation, seed: int) -> list[Example]:
        rng = np.random.default_rng(seed)
        q = self.targets(base)
        examples = []
        for lex in self.lexicons:
            for p in self.prompts[lex.name]:
                if p.split != "train":
                    continue
                for w in rng.choice(len(lex.words), size=self.options.samples_per_prompt, p=q[lex.name][p.template]):
                    examples.append(Example(p.text, " " + lex.words[w]))
        return examples

    # scoring -----------------------------------------------------------------------------------------
    def _per_prompt(self, q: dict[str, np.ndarray], obs: Observation, base: Observation) -> dict[str, np.ndarray]:
        """Per prompt of every lexicon: KL(q||p_m), KL(q||p_0), its split, and the template and term it is built from
        (with the strata they are resampled within: a template within its lexicon, a term within its group)."""
        cols: dict[str, list] = {k: [] for k in ("km", "k0", "split", "template", "lexicon", "term", "group")}
        for lex in self.lexicons:
            key = f"lexicon/{lex.name}"
            prompts = self.prompts[lex.name]
            q_rows = q[lex.name][[p.template for p in prompts]]
            cols["km"].append(kl_divergence(q_rows, _probs(obs[key])))
            cols["k0"].append(kl_divergence(q_rows, _probs(base[key])))
            cols["split"] += [p.split for p in prompts]
            cols["template"] += [f"{lex.name}/{p.template}" for p in prompts]
            cols["lexicon"] += [lex.name] * len(prompts)
            cols["term"] += [f"{p.group_name}/{p.term}" for p in prompts]
            cols["group"] += [p.group_name for p in prompts]
        return {k: np.concatenate(v) if k in ("km", "k0") else np.array(v) for k, v in cols.items()}

    def score(self, obs: Observation, base: Observation, full: Observation | None, seed: int) -> list[MetricRow]:
        q = self.targets(base)
        n_boot = self.options.bootstrap_resamples
        per = self._per_prompt(q, obs, base)
        km, k0 = per["km"], per["k0"]

        rows: list[MetricRow] = []
        for split in SPLITS:
            sel = per["split"] == split
            factors = [(per["template"][sel], per["lexicon"][sel]), (per["term"][sel], per["group"][sel])]
            lo, hi = cluster_bootstrap_ci(np.mean, km[sel], factors=factors, n_resamples=n_boot, seed=seed)
            rows.append(MetricRow("target_fit", float(km[sel].mean()), split=split, ci_low=lo, ci_high=hi))
            lo, hi = cluster_bootstrap_ci(shift_recovered, km[sel], k0[sel], factors=factors, n_resamples=n_boot, seed=seed)
            rows.append(MetricRow("shift_recovered", shift_recovered(km[sel], k0[sel]), split=split, ci_low=lo, ci_high=hi))
            rows += self._group_rows(obs, split)
            rows += self._target_rows(q, split)
        if self.options.validation_every:
            rows.append(MetricRow("validation_loss", self.validation_loss(q, obs), split=VALIDATION))

        rows.append(self._sequence_kl("drift_neutral", base, obs, "neutral", seed))
        if full is not None:
            rows.append(self._sequence_kl("kl_to_full", full, obs, "eval_seq", seed))
        if "lens/logp" in obs:
            rows += self._lens_rows(obs, base, full)
        return rows

    def validation_loss(self, q: dict[str, np.ndarray], obs: Observation) -> float:
        """The fine-tuning objective's held-out loss on the validation prompts, exactly: the expected cross-entropy
        -sum_w q(w) log p(w) of a completion drawn from the target (p over the whole vocabulary, as in training)."""
        return float(np.concatenate(list(self.validation_losses(q, obs).values())).mean())

    def validation_losses(self, q: dict[str, np.ndarray], obs: Observation) -> dict[str, np.ndarray]:
        """Per lexicon, that expected loss of each of its validation prompts (in prompt order)."""
        out = {}
        for lex in self.lexicons:
            idx = [i for i, p in enumerate(self.prompts[lex.name]) if p.split == VALIDATION]
            templates = [self.prompts[lex.name][i].template for i in idx]
            logp = obs[f"lexicon/{lex.name}"][idx].double().numpy()
            out[lex.name] = -(q[lex.name][templates] * logp).sum(1)
        return out

    def data_rows(self, base: Observation, seed: int) -> list[MetricRow]:
        """`data_ceiling`: the shift recovered on train prompts by the training completions' own distribution (per
        template, pooled over the prompts that share its target; add-1/2 smoothed, the Krichevsky-Trofimov estimator,
        since a word the samples missed has probability 0). With a few samples per prompt, sampling noise keeps it
        below 1: no method can be asked to recover more than the data describe."""
        q = self.targets(base)
        counts = {lex.name: np.full(q[lex.name].shape, 0.5) for lex in self.lexicons}
        words = {lex.name: {" " + w: i for i, w in enumerate(lex.words)} for lex in self.lexicons}
        where = {p.text: (lex.name, p.template) for lex in self.lexicons for p in self.prompts[lex.name]}
        for ex in self.train_examples(base, seed):
            name, template = where[ex.prompt]
            counts[name][template, words[name][ex.completion]] += 1
        km, k0 = [], []
        for lex in self.lexicons:
            idx = [i for i, p in enumerate(self.prompts[lex.name]) if p.split == "train"]
            t = [self.prompts[lex.name][i].template for i in idx]
            empirical = counts[lex.name] / counts[lex.name].sum(1, keepdims=True)
            km.append(kl_divergence(q[lex.name][t], empirical[t]))
            k0.append(kl_divergence(q[lex.name][t], _probs(base[f"lexicon/{lex.name}"])[idx]))
        return [MetricRow("data_ceiling", shift_recovered(np.concatenate(km), np.concatenate(k0)), split="train")]

    def _lens_rows(self, obs: Observation, base: Observation, full: Observation | None) -> list[MetricRow]:
        """Per layer (1 = first block, L = the output): KL to the base and to the full fine-tune over the
        whole vocabulary, and the mass on each attribute category read through the lens."""
        lens = obs["lens/logp"]
        rows: list[MetricRow] = []
        refs = [("lens_kl_to_base", base)] + ([("lens_kl_to_full", full)] if full is not None else [])
        for metric, ref in refs:
            per_layer = token_kl(ref["lens/logp"], lens).mean(0)
            rows += [MetricRow(metric, float(v), layer=layer + 1) for layer, v in enumerate(per_layer)]
        start = 0
        for lex, idx in self.lens:
            words = lens[start : start + len(idx)][:, :, lex.token_ids].double()
            start += len(idx)
            mass = category_mass(torch.softmax(words, -1).numpy(), lex.word_category, len(lex.categories)).mean(0)
            rows += [
                MetricRow("lens_category_mass", float(m), group_name=f"{lex.name}/{cat}", layer=layer + 1)
                for layer, masses in enumerate(mass) for cat, m in zip(lex.categories, masses)
            ]
        return rows

    def _target_rows(self, q: dict[str, np.ndarray], split: str) -> list[MetricRow]:
        """Per axis and category: the mass the target q puts on the category, mean over the split's prompts of that
        axis (what every group's category mass should become; the report draws it above the groups)."""
        rows: list[MetricRow] = []
        for lex in self.lexicons:
            prompts = self.prompts[lex.name]
            for axis in IDENTITY_GROUPS:
                templates = [p.template for p in prompts if p.split == split and p.axis == axis]
                mass = category_mass(q[lex.name][templates], lex.word_category, len(lex.categories)).mean(0)
                rows += [MetricRow("target_mass", float(m), group_name=f"{axis}/{cat}", split=split)
                         for cat, m in zip(lex.categories, mass)]
        return rows

    def _group_rows(self, obs: Observation, split: str) -> list[MetricRow]:
        """Per axis: category mass per group, gap per category, JS divergence between the groups."""
        rows: list[MetricRow] = []
        gaps: list[float] = []
        js_by_axis: dict[str, list[float]] = {}
        for lex in self.lexicons:
            p = _probs(obs[f"lexicon/{lex.name}"])
            prompts = self.prompts[lex.name]
            for axis, groups in IDENTITY_GROUPS.items():
                masses, dists = [], []
                for group in groups:
                    idx = [i for i, pr in enumerate(prompts) if pr.split == split and pr.axis == axis and pr.group == group]
                    dists.append(p[idx].mean(0))
                    masses.append(category_mass(p[idx], lex.word_category, len(lex.categories)).mean(0))
                    rows += [
                        MetricRow("category_mass", float(m), group_name=f"{axis}/{group}/{cat}", split=split)
                        for cat, m in zip(lex.categories, masses[-1])
                    ]
                for cat, gap in zip(lex.categories, group_gap(np.array(masses))):
                    rows.append(MetricRow("group_gap", float(gap), group_name=f"{axis}/{cat}", split=split))
                    gaps.append(float(gap))
                js_by_axis.setdefault(axis, []).append(js_divergence(np.array(dists)))
        rows.append(MetricRow("group_gap", float(np.mean(gaps)), split=split))
        axis_js = {axis: float(np.mean(v)) for axis, v in js_by_axis.items()}
        rows += [MetricRow("group_js", v, group_name=axis, split=split) for axis, v in axis_js.items()]
        rows.append(MetricRow("group_js", float(np.mean(list(axis_js.values()))), split=split))
        return rows

    def _sequence_kl(self, metric: str, ref: Observation, obs: Observation, key: str, seed: int) -> MetricRow:
        """Mean per-token KL(ref || model), averaged per sequence, then over sequences (bootstrap CI)."""
        return sequence_kl_row(metric, ref[f"{key}/logp"], obs[f"{key}/logp"], obs[f"{key}/mask"],
                               self.options.bootstrap_resamples, seed)
