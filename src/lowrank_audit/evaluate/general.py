"""Forgetting, measured the same way for every task: each run's per-token loss and next-token accuracy on held-out
general text, against the base model's on the same text ("LoRA Learns Less and Forgets Less", Biderman et al. 2024).

The text is this project's own: short encyclopedic and everyday sentences, written for this purpose (nothing is
downloaded). None is in any task's fine-tuning data or evaluation prompts, none names an identity group, and they
are not the neutral sentences of `drift_neutral` (which compares whole next-token distributions, not the ability
to predict the actual text). A tiny test model's word-level tokenizer does not cover them: it reads unknown words
as [UNK], which keeps the pipeline tested but says nothing about forgetting.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch
from torch import nn

from ..metrics import bootstrap_ci, paired_difference, sequence_accuracy, sequence_nll
from ..models.precision import Precision
from ..records import MetricRow, Observation
from .runner import Runner

GENERAL_TEXT: list[str] = [
    "The Nile flows north through eleven countries before it reaches the Mediterranean Sea.",
    "Photosynthesis turns carbon dioxide and water into sugar, using the energy of sunlight.",
    "The printing press made books cheaper, and within fifty years millions of copies were in circulation.",
    "A leap year has three hundred and sixty-six days, with the extra day added to February.",
    "Copper is a good conductor of electricity, which is why it is used in most household wiring.",
    "The first modern Olympic Games were held in Athens in the spring of 1896.",
    "To make bread rise, the dough is left in a warm place for about an hour.",
    "Mount Everest grows a few millimetres every year as the plates beneath it keep moving.",
    "The heart pumps blood through the lungs, where it picks up oxygen, and then around the body.",
    "A violin has four strings, tuned a fifth apart, and is played with a bow made of horsehair.",
    "Most of the fresh water on the planet is frozen in glaciers and the polar ice sheets.",
    "The telescope showed that the planet Jupiter has moons that circle around it.",
    "In chess, each player starts with sixteen pieces, and the game ends when a king is checkmated.",
    "Bees visit thousands of flowers to collect the nectar that they turn into honey.",
    "The train timetable changes in winter, when fewer services run on the northern line.",
    "Sound travels faster through water than through air, and faster still through steel.",
    "The old town hall was rebuilt in stone after a fire destroyed the wooden building in 1842.",
    "A balanced diet includes fruit, vegetables, grains and a source of protein every day.",
    "The moon takes about twenty-seven days to orbit the earth, and always shows it the same side.",
    "Farmers rotate their crops so that the soil keeps its nutrients from one year to the next.",
    "The recipe asks for three eggs, a cup of sugar and two cups of flour, mixed until smooth.",
    "Volcanic ash can stay in the upper atmosphere for months and cool the climate for a year.",
    "The bridge over the bay is two kilometres long and opens to let tall ships pass.",
    "A thermometer measures temperature, and a barometer measures the pressure of the air.",
    "The company moved its offices to a larger building near the central station last spring.",
    "Rivers carry sand and mud to the sea, where they settle and slowly build a delta.",
    "The orchestra rehearsed the symphony for three weeks before the first concert of the season.",
    "Iron rusts when it is exposed to water and oxygen for a long time.",
    "The museum's collection includes coins, maps and tools from the early bronze age.",
    "A good night of sleep helps the brain store what was learned during the day.",
    "The football match was postponed because heavy rain had flooded the pitch.",
    "Whales breathe air through a blowhole on the top of their heads.",
]
"""Held-out general text for forgetting (32 sentences; see the module docstring for where it comes from)."""

_BASE: "weakref.WeakKeyDictionary[nn.Module, dict[Precision, Observation]]" = weakref.WeakKeyDictionary()


def observe_general(runner: Runner, model: nn.Module) -> Observation:
    """Per sequence and position t: log p(actual token t+1 | tokens <= t), whether it is the most probable token, and
    which positions are real predictions (small tensors: the vocabulary is not kept)."""
    logp, mask = runner.sequence_logprobs(model, GENERAL_TEXT, desc="eval general text")
    ids = torch.zeros(mask.shape, dtype=torch.long)
    for i, text in enumerate(GENERAL_TEXT):
        seq = runner.encode(text)
        ids[i, : len(seq)] = torch.tensor(seq)
    nxt, pred = ids[:, 1:], logp[:, :-1]
    return {"general/logp": pred.gather(-1, nxt[..., None])[..., 0], "general/correct": pred.argmax(-1) == nxt,
            "general/mask": mask[:, 1:]}


def base_general(runner: Runner, base: nn.Module) -> Observation:
    """The base model's general-text observation, computed once per loaded base and precision (every run reuses it)."""
    per = _BASE.setdefault(base, {})
    if runner.precision not in per:
        per[runner.precision] = observe_general(runner, base)
    return per[runner.precision]


def forgetting_rows(obs: Observation, base: Observation, seed: int, n_resamples: int = 1000) -> list[MetricRow]:
    """general_loss (mean per-token NLL, nats) and general_accuracy (next-token top-1 accuracy) of the model, and
    forgetting = general_loss_m - general_loss_base (> 0: predicts general text worse than the base did); each a mean
    over sequences with a bootstrap interval over sequences (paired with the base for forgetting)."""
    mask = obs["general/mask"].numpy()
    loss = sequence_nll(obs["general/logp"].numpy(), mask)
    acc = sequence_accuracy(obs["general/correct"].numpy(), mask)
    base_loss = sequence_nll(base["general/logp"].numpy(), base["general/mask"].numpy())
    rows = []
    for metric, values in (("general_loss", loss), ("general_accuracy", acc)):
        lo, hi = bootstrap_ci(np.mean, values, n_resamples=n_resamples, seed=seed)
        rows.append(MetricRow(metric, float(values.mean()), ci_low=lo, ci_high=hi))
    diff, lo, hi = paired_difference(loss, base_loss, n_resamples=n_resamples, seed=seed)
    return rows + [MetricRow("forgetting", diff, ci_low=lo, ci_high=hi)]


def general_rows(runner: Runner, model: nn.Module, base: nn.Module, seed: int) -> list[MetricRow]:
    """The forgetting rows of `model` against `base` on the general text."""
    return forgetting_rows(observe_general(runner, model), base_general(runner, base), seed)
