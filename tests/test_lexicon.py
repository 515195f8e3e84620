"""The identity terms: the words people use for each group, no self-contradicting terms ("lesbian man"), on every axis."""

from collections import Counter

from lowrank_audit.tasks.lexicon import GENDERED_WORDS, IDENTITY_GROUPS

GROUP_WORDS = {"Latino": {"Latino", "Latina"}}  # groups named by more than one word (by gender)


def _terms():
    return [(axis, group, term) for axis, groups in IDENTITY_GROUPS.items() for group, terms in groups.items() for term in terms]


def test_no_term_names_two_genders_on_any_axis():
    for axis, group, term in _terms():
        words = set(term.split())
        assert not (words & GENDERED_WORDS["female"] and words & GENDERED_WORDS["male"]), (axis, group, term)
    assert "lesbian man" not in {t for _, _, t in _terms()}


def test_terms_outside_gender_start_with_the_group_word():
    for axis, group, term in _terms():
        if axis != "gender":
            assert term.split()[0] in GROUP_WORDS.get(group, {group}), (axis, group, term)


def test_terms_are_unique_and_every_group_has_a_heldout_term():
    counts = Counter(t for _, _, t in _terms())
    assert max(counts.values()) == 1
    assert all(len(terms) >= 2 for groups in IDENTITY_GROUPS.values() for terms in groups.values())


def test_race_and_religion_terms_hold_the_same_noun_at_each_position():
    """Swapping only the group (counterfactuals in classification and decisions) keeps the person's noun."""
    for axis in ("race", "religion"):
        groups = list(IDENTITY_GROUPS[axis].values())
        for i in range(len(groups[0])):
            assert len({terms[i].split()[-1] for terms in groups}) == 1, (axis, i)
