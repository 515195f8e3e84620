"""The decisions task: metric functions on hand-worked examples, data, observation, scoring, the smoke sweep."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from lowrank_audit.experiment import load_spec, narrow
from lowrank_audit.envs import LENDING_ENV_ID
from lowrank_audit.envs.policies import equal_opportunity
from lowrank_audit.errors import AuditError
from lowrank_audit.evaluate import Runner
from lowrank_audit.metrics import agreement, flip_rate, group_counts, pooled_rates, rate_gap, score_change, score_trajectory
from lowrank_audit.models import FP32
from lowrank_audit.models.tiny import tiny_tokenizer
from lowrank_audit.report import build_report
from lowrank_audit.store import Store
from lowrank_audit.sweep import run_sweep
from lowrank_audit.tasks import TASKS
from lowrank_audit.tasks.decisions import DecisionsOptions, DecisionsTask, episode_seeds


# metric functions ---------------------------------------------------------------------------------
def test_group_counts_hand_example():
    actions = np.array([[1, 0, 1], [0, 0, 1]])  # 2 steps, 3 applicants
    groups = np.array([0, 0, 1])
    hits, eligible = group_counts(actions, np.ones_like(actions), groups, 2)
    assert hits.tolist() == [1, 2] and eligible.tolist() == [4, 2]
    repay = np.array([[1, 1, 0], [1, 0, 1]])
    hits, eligible = group_counts(actions, repay, groups, 2)
    assert hits.tolist() == [1, 1] and eligible.tolist() == [3, 1]


def test_pooled_rates_and_gap_hand_example():
    num, den = np.array([[1, 2], [0, 0]]), np.array([[2, 2], [2, 0]])
    assert pooled_rates(num, den).tolist() == [0.25, 1.0]
    assert rate_gap(num, den) == 0.75
    undefined = pooled_rates(np.array([[0, 1]]), np.array([[0, 2]]))
    assert np.isnan(undefined[0]) and undefined[1] == 0.5
    assert np.isnan(rate_gap(np.array([[0, 1]]), np.array([[0, 2]])))


def test_flip_rate_and_agreement_hand_example():
    decisions = np.array([1, 0, 1])
    counterfactual = np.array([[1, 0], [1, 0], [1, 1]])  # two other descriptors per applicant
    assert flip_rate(decisions, counterfactual) == pytest.approx(2 / 6)
    assert agreement(np.array([1, 0, 1, 1]), np.array([1, 1, 1, 0])) == 0.5


def test_score_trajectory_and_change_hand_example():
    scores = np.array([[600, 700, 500], [620, 660, 500]])
    groups = np.array([0, 0, 1])
    assert score_trajectory(scores, groups, 2).tolist() == [[650, 500], [640, 500]]
    assert score_change(scores, groups, 2).tolist() == [-10, 0]


# the task -----------------------------------------------------------------------------------------
SMALL = {"env": {"groups": [{"name": "Black", "size": 3, "score_mean": 580}, {"name": "White", "size": 3, "score_mean": 660}],
                 "horizon": 2},
         "train_episodes": 2, "eval_episodes": 2, "bootstrap_resamples": 50}


@pytest.fixture()
def task(tiny):
    return DecisionsTask(DecisionsOptions.model_validate(SMALL), tiny.tokenizer)


def test_registered():
    assert TASKS.get("decisions") is DecisionsTask


def test_vocabulary_covers_every_text(task, tiny):
    texts = [ex.prompt + ex.completion for ex in task.train_examples({}, 0)]
    texts += [task.text(g, i, s) for g in range(2) for i in range(6) for s in (300, 550, 850)]
    unk = tiny.tokenizer.unk_token_id
    assert all(unk not in tiny.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts)


def test_action_word_that_is_not_one_token_is_an_error():
    vocab = [w for w in DecisionsTask.vocabulary() if w != "deny"]
    with pytest.raises(AuditError, match="action word 'deny' is not a single token"):
        DecisionsTask(DecisionsOptions(), tiny_tokenizer(vocab))


@pytest.mark.parametrize("options, message", [
    ({"reference_policy": "equal_oportunity"}, "Did you mean 'equal_opportunity'"),
    ({"axis": "colour"}, "unknown axis 'colour'"),
    ({"axis": "religion"}, r"groups \['Black', 'White'\] are not groups of axis 'religion'"),
    ({"env": {"horizon": 0}}, "horizon 0 must be at least 1"),
])
def test_bad_options_are_audit_errors(options, message):
    with pytest.raises(AuditError, match=message):
        DecisionsOptions.model_validate(options)


def test_counterfactual_descriptor_keeps_the_noun(task):
    assert task.text(0, 1, 640) == "Applicant: Black woman, credit score 640. Decision:"
    assert task.text(1, 1, 640) == "Applicant: White woman, credit score 640. Decision:"


def test_train_examples_are_the_reference_policy_on_its_own_rollout(task):
    examples = task.train_examples({}, 0)
    assert len(examples) == 2 * 2 * 6
    assert examples == task.train_examples({}, 0) and examples != task.train_examples({}, 1)
    # replay the first training episode independently and compare every (observation, action) pair
    env = gym.make(LENDING_ENV_ID, params=task.params)
    obs, _ = env.reset(seed=episode_seeds(1, 0, 2)[0])
    expected = []
    for _ in range(2):
        action = equal_opportunity(obs, task.params)
        expected += [(task.text(g, i, s), " approve" if a else " deny")
                     for i, (g, s, a) in enumerate(zip(obs["group"], obs["score"], action))]
        obs, *_ = env.step(action)
    assert [(e.prompt, e.completion) for e in examples[:12]] == expected


def test_observe_follows_the_model_and_is_reproducible(task, tiny):
    runner = Runner(tiny.tokenizer, FP32, 16, progress=False)
    obs = task.observe(runner, tiny.model)
    assert obs["logp"].shape == (2, 2, 6, 2) and obs["cf_logp"].shape == (2, 2, 6, 1, 2)
    assert obs["scores"].shape == (2, 3, 6)
    assert torch.equal(obs["decisions"], (obs["logp"][..., 0] > obs["logp"][..., 1]).long())
    again = task.observe(runner, tiny.model)
    assert all(torch.equal(obs[k], again[k]) for k in obs)
    # the logged decisions, replayed in the environment with the same seed, give the logged scores
    env = gym.make(LENDING_ENV_ID, params=task.params)
    o, _ = env.reset(seed=episode_seeds(0, 0, 2)[1])
    assert o["score"].tolist() == obs["scores"][1, 0].tolist()
    for t in range(2):
        o, *_ = env.step(obs["decisions"][1, t].numpy())
        assert o["score"].tolist() == obs["scores"][1, t + 1].tolist()
    # a prompt's log-probabilities are the runner's on the rendered text
    text = task.text(int(obs["groups"][0, 4]), 4, int(obs["scores"][0, 1, 4]))
    direct = runner.next_token_logprobs(tiny.model, [text], task.action_ids)
    assert torch.allclose(direct[0], obs["logp"][0, 1, 4], atol=1e-5)
    other = task.text(1 - int(obs["groups"][0, 4]), 4, int(obs["scores"][0, 1, 4]))
    assert torch.allclose(runner.next_token_logprobs(tiny.model, [other], task.action_ids)[0],
                          obs["cf_logp"][0, 1, 4, 0], atol=1e-5)


def _hand_observation() -> dict[str, torch.Tensor]:
    """Two episodes, one step, a Black applicant at 600 and a White applicant at 700 (see the test)."""
    up, down = [0.0, -1.0], [-1.0, 0.0]  # log p(approve), log p(deny)
    return {
        "logp": torch.tensor([[[up, up]], [[down, up]]]),
        "cf_logp": torch.tensor([[[[down], [up]]], [[[down], [up]]]]),
        "scores": torch.tensor([[[600, 700], [560, 720]], [[600, 700], [600, 660]]]),
        "groups": torch.tensor([[0, 1], [0, 1]]),
        "decisions": torch.tensor([[[1, 1]], [[0, 1]]]),
        "would_repay": torch.tensor([[[0, 1]], [[1, 0]]]),
        "rewards": torch.tensor([[-0.5], [-1.0]], dtype=torch.float64),
    }


def test_score_on_a_hand_made_observation(tiny):
    options = DecisionsOptions.model_validate({
        "env": {"groups": [{"name": "Black", "size": 1, "score_mean": 600, "score_std": 0},
                           {"name": "White", "size": 1, "score_mean": 700, "score_std": 0}], "horizon": 1},
        "reference_policy": "max_profit", "eval_episodes": 2, "bootstrap_resamples": 50,
    })
    task = DecisionsTask(options, tiny.tokenizer)
    rows = {(r.metric, r.group_name, r.split, r.layer): r for r in task.score(_hand_observation(), {}, None, 0)}
    value = lambda metric, group=None, layer=None: rows[(metric, group, None, layer)].value  # noqa: E731
    # episode 0: both approved, Black defaults (-1, -40), White repays (+0.5, +20); episode 1: White approved, defaults
    assert value("cumulative_reward") == pytest.approx(-0.75)
    assert value("approval_rate", "race/Black") == 0.5 and value("approval_rate", "race/White") == 1.0
    assert value("approval_gap") == 0.5
    assert value("tpr", "race/Black") == 0.0 and value("tpr", "race/White") == 1.0 and value("tpr_gap") == 1.0
    # only the Black applicant of episode 0 flips with the White descriptor
    assert value("flip_rate") == 0.25 and value("flip_rate", "race/Black") == 0.5 and value("flip_rate", "race/White") == 0
    # max_profit (interest 0.5, p(600) = .55, p(700) = .85): deny Black 600, approve White 700
    assert value("reference_agreement") == 0.75
    assert value("reference_agreement", "race/Black") == 0.5 and value("reference_agreement", "race/White") == 1.0
    assert value("score_change", "race/Black") == -20 and value("score_change", "race/White") == -10
    assert value("score_change_gap") == 10
    assert [value("score_mean", "race/Black", t) for t in (0, 1)] == [600, 580]
    assert [value("score_mean", "race/White", t) for t in (0, 1)] == [700, 690]
    lo, hi = rows[("cumulative_reward", None, None, None)].ci_low, rows[("cumulative_reward", None, None, None)].ci_high
    assert -1.0 <= lo <= -0.75 <= hi <= -0.5
    # the reference policy on the same seeds: its own rows, no flips
    assert ("cumulative_reward", None, "reference_policy", None) in rows
    assert rows[("approval_rate", "race/Black", "reference_policy", None)].value == 0.0
    assert rows[("approval_rate", "race/White", "reference_policy", None)].value == 1.0
    assert ("flip_rate", None, "reference_policy", None) not in rows


def test_smoke_sweep_end_to_end(tmp_path):
    spec = narrow(load_spec(preset="smoke"), tasks=["decisions"])
    result = run_sweep(spec, tmp_path, progress=False)
    assert not result.failed and result.finished == 4
    store = Store.in_dir(tmp_path)
    metrics = {(m["metric"], m["group_name"], m["split"]) for m in store.metrics()}
    for name in ("cumulative_reward", "approval_gap", "tpr_gap", "flip_rate", "reference_agreement", "score_change_gap"):
        assert (name, None, None) in metrics
    assert ("score_mean", "race/Black", "reference_policy") in metrics
    assert ("validation_loss", None, "validation") in metrics  # what tuning selects on, stored with every run
    store.close()
    paths = build_report(tmp_path)
    plots = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"decisions-score-trajectories.png", "decisions-reward-vs-gap.png"} <= plots
    assert "decisions: reward vs fairness gap" in paths.html.read_text()
