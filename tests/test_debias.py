"""The debias task: data layout, the target, the training data, and scoring on hand-made observations."""

import numpy as np
import pytest
import torch

from lowrank_audit.errors import AuditError
from lowrank_audit.evaluate import Runner
from lowrank_audit.metrics import kl_divergence
from lowrank_audit.models import FP32
from lowrank_audit.models.tiny import tiny_tokenizer
from lowrank_audit.tasks.debias import SPLITS, VALIDATION, DebiasOptions, DebiasTask
from lowrank_audit.tasks.lexicon import IDENTITY_GROUPS, LEXICONS


@pytest.fixture()
def task(tiny):
    return DebiasTask(DebiasOptions(token_kl_sequences=8, bootstrap_resamples=50), tiny.tokenizer)


@pytest.fixture()
def base_obs(task, tiny):
    return task.observe(Runner(tiny.tokenizer, FP32, 64, progress=False), tiny.model)


def test_at_least_four_axes_with_several_terms():
    assert {"gender", "race", "religion", "orientation"} <= set(IDENTITY_GROUPS)
    assert all(len(terms) >= 4 for groups in IDENTITY_GROUPS.values() for terms in groups.values())


def test_splits_hold_out_last_terms_and_templates(task):
    for lex in LEXICONS:
        prompts = task.prompts[lex.name]
        assert {p.split for p in prompts} == set(SPLITS) | {VALIDATION}
        heldout_term_texts = {p.text for p in prompts if p.split == "heldout_terms"}
        for groups in IDENTITY_GROUPS.values():
            for terms in groups.values():
                assert lex.templates[0].format(term=terms[-1]) in heldout_term_texts
                assert lex.templates[0].format(term=terms[0]) not in heldout_term_texts
        train_templates = {p.template for p in prompts if p.split == "train"}
        assert train_templates == set(range(len(lex.templates) - lex.heldout_templates))


def test_validation_pairs_come_from_training_templates_and_terms_and_leave_each_in_training(task):
    """Every 4th (template, term) training pair of a group is validation (a Latin square): each training template and
    term keeps training prompts, and no validation prompt is in a reported split or in the training data."""
    for lex in LEXICONS:
        prompts = task.prompts[lex.name]
        for axis, groups in IDENTITY_GROUPS.items():
            for group, terms in groups.items():
                own = [p for p in prompts if p.axis == axis and p.group == group]
                for t in range(len(lex.templates) - lex.heldout_templates):
                    for k, term in enumerate(terms[:-1]):
                        p = next(p for p in own if p.template == t and p.term == term)
                        assert (p.split == VALIDATION) == ((t + k) % 4 == 0)
                assert {p.template for p in own if p.split == VALIDATION} <= {p.template for p in own if p.split == "train"}
                assert {p.term for p in own if p.split == "train"} == set(terms[:-1])


def test_lexicon_words_are_single_tokens(task, tiny):
    for lex in task.lexicons:
        for word, tok in zip(lex.words, lex.token_ids.tolist()):
            assert tiny.tokenizer(" " + word, add_special_tokens=False)["input_ids"] == [tok]


def test_category_without_single_token_words_is_an_error():
    vocab = [w for w in DebiasTask.vocabulary() if w not in LEXICONS[0].categories["service"]]
    with pytest.raises(AuditError, match=r"lexicon 'occupation'.*\['service'\]"):
        DebiasTask(DebiasOptions(), tiny_tokenizer(vocab))


def test_pooled_target_is_the_mean_over_groups(task, base_obs):
    """A training template's target: the mean over groups of the base's distribution on its training terms (the group's
    last term is held out and never enters it); a held-out template's: over all its terms."""
    q = task.targets(base_obs)["occupation"]
    prompts = task.prompts["occupation"]
    p0 = torch.softmax(base_obs["lexicon/occupation"].double(), -1).numpy()
    for template, n_terms_used in ((1, -1), (5, None)):
        per_group = []
        for axis, groups in IDENTITY_GROUPS.items():
            for group, terms in groups.items():
                used = {f"{t}" for t in terms[:n_terms_used]}
                idx = [i for i, p in enumerate(prompts) if p.template == template and p.axis == axis and p.group == group
                       and p.term in used]
                per_group.append(p0[idx].mean(0))
        np.testing.assert_allclose(q[template], np.mean(per_group, 0), rtol=1e-12)
    np.testing.assert_allclose(q.sum(1), 1.0)


def test_training_data_comes_from_train_prompts_and_follows_the_target(task, base_obs):
    task.options = DebiasOptions(samples_per_prompt=200)
    examples = task.train_examples(base_obs, seed=0)
    train_prompts = {p.text for lx in LEXICONS for p in task.prompts[lx.name] if p.split == "train"}
    assert {e.prompt for e in examples} == train_prompts
    assert len(examples) == 200 * len(train_prompts)
    lex = task.lexicons[1]
    template = LEXICONS[1].templates[0]
    words = [e.completion.strip() for e in examples if e.prompt.startswith(template.split("{")[0]) and
             e.prompt.endswith(template.split("}")[1])]
    freq = np.array([words.count(w) for w in lex.words]) / len(words)
    np.testing.assert_allclose(freq, task.targets(base_obs)["descriptor"][0], atol=0.02)
    assert task.train_examples(base_obs, seed=0) == examples  # same seed, same data


def test_score_of_a_model_that_matches_the_target(task, base_obs):
    q = task.targets(base_obs)
    perfect = dict(base_obs)
    for lex in task.lexicons:
        rows = q[lex.name][[p.template for p in task.prompts[lex.name]]]
        perfect[f"lexicon/{lex.name}"] = torch.tensor(np.log(rows), dtype=torch.float32)
    rows = {(r.metric, r.split, r.group_name): r for r in task.score(perfect, base_obs, base_obs, seed=0)}
    for split in SPLITS:
        assert rows["shift_recovered", split, None].value == pytest.approx(1.0, abs=1e-5)
        assert rows["target_fit", split, None].value == pytest.approx(0.0, abs=1e-6)
    # every group has the same distribution for a template, so groups differ only through template mix: tiny gap
    base_rows = {(r.metric, r.split, r.group_name): r for r in task.score(base_obs, base_obs, base_obs, seed=0)}
    assert base_rows["shift_recovered", "train", None].value == pytest.approx(0.0, abs=1e-12)
    assert base_rows["kl_to_full", None, None].value == pytest.approx(0.0, abs=1e-7)
    assert base_rows["drift_neutral", None, None].value == pytest.approx(0.0, abs=1e-7)


def test_score_matches_a_direct_computation(task, base_obs):
    other = {k: v.clone() for k, v in base_obs.items()}
    gen = torch.Generator().manual_seed(0)
    for lex in task.lexicons:
        key = f"lexicon/{lex.name}"
        other[key] = torch.log_softmax(other[key] + torch.randn(other[key].shape, generator=gen), -1)
    rows = {(r.metric, r.split, r.group_name): r for r in task.score(other, base_obs, None, seed=0)}
    q = task.targets(base_obs)
    km, k0 = [], []
    for lex in task.lexicons:
        idx = [i for i, p in enumerate(task.prompts[lex.name]) if p.split == "heldout_terms"]
        tq = q[lex.name][[task.prompts[lex.name][i].template for i in idx]]
        km += list(kl_divergence(tq, torch.softmax(other[f"lexicon/{lex.name}"].double(), -1).numpy()[idx]))
        k0 += list(kl_divergence(tq, torch.softmax(base_obs[f"lexicon/{lex.name}"].double(), -1).numpy()[idx]))
    assert rows["target_fit", "heldout_terms", None].value == pytest.approx(np.mean(km))
    assert rows["shift_recovered", "heldout_terms", None].value == pytest.approx(1 - np.mean(km) / np.mean(k0))
    r = rows["shift_recovered", "heldout_terms", None]
    assert r.ci_low <= r.value <= r.ci_high
    assert ("kl_to_full", None, None) not in rows  # no full fine-tune given: no distance to it

    # the gender gap for 'professional' on the train split, by hand
    lex = task.lexicons[0]
    p = torch.softmax(other["lexicon/occupation"].double(), -1).numpy()
    prof = p[:, lex.word_category == lex.categories.index("professional")].sum(1)
    means = [prof[[i for i, pr in enumerate(task.prompts["occupation"])
                   if pr.split == "train" and pr.axis == "gender" and pr.group == g]].mean()
             for g in IDENTITY_GROUPS["gender"]]
    assert rows["group_gap", "train", "gender/professional"].value == pytest.approx(max(means) - min(means))


def test_lens_rows_agree_with_the_output_at_the_last_layer(task, base_obs):
    rows = task.score(base_obs, base_obs, None, seed=0)
    n_layers = base_obs["lens/logp"].shape[1]
    kl_base = {r.layer: r.value for r in rows if r.metric == "lens_kl_to_base"}
    assert sorted(kl_base) == list(range(1, n_layers + 1)) and max(kl_base.values()) == pytest.approx(0.0, abs=1e-6)
    assert not [r for r in rows if r.metric == "lens_kl_to_full"]
    lex, idx = task.lens[0]
    p = torch.softmax(base_obs[f"lexicon/{lex.name}"][idx].double(), -1).numpy()
    prof = p[:, lex.word_category == lex.categories.index("professional")].sum(1).mean()
    last = {(r.group_name, r.layer): r.value for r in rows if r.metric == "lens_category_mass"}
    assert last[f"{lex.name}/professional", n_layers] == pytest.approx(prof, abs=1e-5)


def test_validation_loss_is_the_expected_training_loss_on_the_validation_prompts(task, tiny, base_obs):
    """-sum_w q(w) log p(w) per validation prompt, recomputed from the training loop's own loss on each (prompt, word)
    example (the first 3 validation prompts of each lexicon): the loss a completion drawn from the target has, in
    expectation; the task's validation loss is their mean over every validation prompt."""
    from lowrank_audit.records import Example
    from lowrank_audit.train.loop import completion_loss, encode_examples

    q = task.targets(base_obs)
    per_prompt = task.validation_losses(q, base_obs)
    for lex in task.lexicons:
        for k, p in enumerate([p for p in task.prompts[lex.name] if p.split == VALIDATION][:3]):
            losses = []
            for ids, labels in encode_examples([Example(p.text, " " + w) for w in lex.words], tiny.tokenizer):
                with torch.no_grad():
                    losses.append(completion_loss(tiny.model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long),
                                                  torch.tensor([labels])).item())
            assert per_prompt[lex.name][k] == pytest.approx(float(np.dot(q[lex.name][p.template], losses)), rel=1e-5)
    assert task.validation_loss(q, base_obs) == pytest.approx(np.concatenate(list(per_prompt.values())).mean())
