"""The scorer's own bias against identity words: neutral sentences per group, and masking that removes it."""

import numpy as np

from lowrank_audit.scorers import ScorerOptions, build_scorer
from lowrank_audit.scorers.identity import PLACEHOLDER, IdentityMask, neutral_sentences, scorer_bias
from lowrank_audit.tasks.lexicon import IDENTITY_GROUPS


def test_mask_replaces_every_identity_mention():
    mask = IdentityMask(IDENTITY_GROUPS)
    assert mask(["The gay man said gays and Muslims were welcome.", "A Latina neighbor, two women and a Black student."]) == [
        f"The {PLACEHOLDER} said {PLACEHOLDER} and {PLACEHOLDER} were welcome.",
        f"A {PLACEHOLDER}, two {PLACEHOLDER} and a {PLACEHOLDER}."]
    assert mask(["Gayle manages the blackboard."]) == ["Gayle manages the blackboard."]  # whole words only


def test_masking_removes_the_default_scorers_gap_on_neutral_sentences():
    scorer = build_scorer(ScorerOptions())  # profanity: offline
    bias = {b.group: b for b in scorer_bias(scorer.score, 0.5, IDENTITY_GROUPS)}
    means = np.array([b.mean for b in bias.values()])
    assert means.max() - means.min() > 0.1  # the scorer fires on some identity words themselves
    direct = scorer.score(neutral_sentences(IDENTITY_GROUPS["orientation"]["gay"]))
    assert bias["orientation/gay"].mean == direct.mean() and bias["orientation/gay"].rate == (direct >= 0.5).mean()
    masked = np.array([b.masked_mean for b in bias.values()])
    assert masked.max() - masked.min() < 1e-12 and {b.masked_rate for b in bias.values()} == {bias["race/Black"].masked_rate}
