"""The lending environment: hand-checked steps, seeding, validation, gymnasium's checker, reference policies."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from lowrank_audit.envs import LENDING_ENV_ID, LendingParams, repay_probability
from lowrank_audit.envs.policies import POLICIES, equal_opportunity, group_blind, max_profit
from lowrank_audit.envs.rollout import rollout
from lowrank_audit.errors import AuditError

# repayment is certain above 600 and impossible at or below it: every step can be worked out by hand
CERTAIN = {300: 0.0, 600: 0.0, 610: 1.0, 850: 1.0}
LINEAR = {300: 0.0, 850: 1.0}  # p(s) = (s - 300) / 550


def params(**overrides) -> LendingParams:
    base = dict(groups=[{"name": "a", "size": 2, "score_mean": 650, "score_std": 0},
                        {"name": "b", "size": 1, "score_mean": 500, "score_std": 0}],
                repay_curve=CERTAIN, interest=0.5, score_up=20, score_down=40, horizon=2)
    return LendingParams.model_validate({**base, **overrides})


def test_passes_gymnasium_check_env_without_warnings():
    env = gym.make(LENDING_ENV_ID, params=LendingParams(horizon=3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught if "gymnasium" in str(w.filename)] == []


def test_steps_match_hand_computation():
    env = gym.make(LENDING_ENV_ID, params=params())
    obs, _ = env.reset(seed=0)
    assert obs["group"].tolist() == [0, 0, 1] and obs["score"].tolist() == [650, 650, 500]
    # approve a (repays: +20, +0.5), deny a (unchanged), approve b (defaults: -40, -1)
    obs, reward, terminated, truncated, info = env.step(np.array([1, 0, 1]))
    assert obs["score"].tolist() == [670, 650, 460]
    assert reward == pytest.approx(0.5 - 1.0)
    assert info["would_repay"].tolist() == [True, True, False]
    assert info["repaid"].tolist() == [True, False, False] and info["defaulted"].tolist() == [False, False, True]
    assert not terminated and not truncated
    obs, reward, terminated, _, _ = env.step(np.array([1, 1, 1]))
    assert obs["score"].tolist() == [690, 670, 420]
    assert reward == pytest.approx(0.5 + 0.5 - 1.0)
    assert terminated  # horizon 2


def test_scores_stay_on_the_grid_and_in_range():
    p = params(groups=[{"name": "a", "size": 1, "score_mean": 840, "score_std": 0},
                       {"name": "b", "size": 1, "score_mean": 320, "score_std": 0}], score_down=40)
    env = gym.make(LENDING_ENV_ID, params=p)
    env.reset(seed=0)
    obs, *_ = env.step(np.array([1, 1]))
    assert obs["score"].tolist() == [850, 300]  # 840 + 20 clipped; 320 - 40 clipped


def test_repay_probability_interpolates_and_shifts_by_group():
    p = params(repay_curve={300: 0.0, 500: 0.2, 700: 0.6},
               groups=[{"name": "a", "size": 1}, {"name": "b", "size": 1, "repay_shift": 100}])
    got = repay_probability(p, np.array([600, 600, 400, 850]), np.array([0, 1, 0, 0]))
    assert got.tolist() == pytest.approx([0.4, 0.6, 0.1, 0.6])


def test_repayment_frequency_follows_the_curve():
    p = params(repay_curve={300: 0.3, 850: 0.3},
               groups=[{"name": "a", "size": 3000}, {"name": "b", "size": 3000}])
    env = gym.make(LENDING_ENV_ID, params=p)
    env.reset(seed=1)
    _, reward, _, _, info = env.step(np.ones(6000, dtype=np.int8))
    share = info["would_repay"].mean()
    assert share == pytest.approx(0.3, abs=0.02)
    assert reward == pytest.approx(0.5 * info["repaid"].sum() - info["defaulted"].sum())


def test_initial_scores_follow_each_group_distribution():
    p = params(groups=[{"name": "a", "size": 4000, "score_mean": 560, "score_std": 50},
                       {"name": "b", "size": 4000, "score_mean": 680, "score_std": 50}])
    obs, _ = gym.make(LENDING_ENV_ID, params=p).reset(seed=3)
    assert set(np.unique(obs["score"] % 10)) == {0}
    assert obs["score"][:4000].mean() == pytest.approx(560, abs=3)
    assert obs["score"][4000:].mean() == pytest.approx(680, abs=3)
    assert obs["score"][:4000].std() == pytest.approx(50, abs=3)


def _run(seed: int, p: LendingParams) -> tuple[list, list]:
    env = gym.make(LENDING_ENV_ID, params=p)
    obs, _ = env.reset(seed=seed)
    scores, rewards = [obs["score"].tolist()], []
    for t in range(p.horizon):
        obs, reward, *_ = env.step(np.arange(p.n_applicants) % 2)
        scores.append(obs["score"].tolist())
        rewards.append(reward)
    return scores, rewards


def test_seeding_reproduces_trajectories():
    p = LendingParams(horizon=5)
    assert _run(7, p) == _run(7, p)
    assert _run(7, p) != _run(8, p)
    decide = lambda obs: [max_profit(o, p) for o in obs]  # noqa: E731
    a, b = rollout(LENDING_ENV_ID, p, [1, 2], decide), rollout(LENDING_ENV_ID, p, [1, 2], decide)
    for field in ("scores", "groups", "actions", "would_repay", "rewards"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert a.scores.shape == (2, 6, p.n_applicants) and a.rewards.shape == (2, 5)
    assert np.array_equal(a.scores[0], np.array(_replay(p, 1, a.actions[0])))


def _replay(p: LendingParams, seed: int, actions: np.ndarray) -> list:
    env = gym.make(LENDING_ENV_ID, params=p)
    obs, _ = env.reset(seed=seed)
    out = [obs["score"]]
    for a in actions:
        out.append(env.step(a)[0]["score"])
    return out


@pytest.mark.parametrize("overrides, message", [
    ({"horizon": 0}, "horizon 0 must be at least 1"),
    ({"groups": [{"name": "a"}]}, "at least two groups"),
    ({"groups": [{"name": "a"}, {"name": "a"}]}, "group names must differ"),
    ({"groups": [{"name": "a", "size": 0}, {"name": "b"}]}, "group 'a' has size 0"),
    ({"groups": [{"name": "a", "score_mean": 900}, {"name": "b"}]}, "score_mean 900.0 is outside"),
    ({"groups": [{"name": "a", "score_std": -1}, {"name": "b"}]}, "score_std -1.0 is negative"),
    ({"repay_curve": {300: 0.1, 850: 1.5}}, r"probability 1.5 at score 850 is outside \[0, 1\]"),
    ({"repay_curve": {300: -0.1, 850: 0.5}}, r"probability -0.1 at score 300 is outside \[0, 1\]"),
    ({"repay_curve": {300: 0.9, 850: 0.1}}, "must not decrease"),
    ({"repay_curve": {600: 0.5}}, "at least two"),
    ({"repay_curve": {200: 0.1, 850: 0.9}}, "knot 200 is outside"),
    ({"interest": 0}, "interest 0.0 must be positive"),
    ({"score_up": 15}, "score_up 15 must be a non-negative multiple of 10"),
    ({"score_down": -10}, "score_down -10 must be a non-negative multiple of 10"),
])
def test_invalid_parameters_are_audit_errors(overrides, message):
    with pytest.raises(AuditError, match=message):
        params(**overrides)


def test_wrong_action_shape_is_an_audit_error():
    env = gym.make(LENDING_ENV_ID, params=params())
    env.reset(seed=0)
    with pytest.raises(AuditError, match=r"action has shape \(2,\), expected \(3,\)"):
        env.step(np.array([1, 0]))


# reference policies -------------------------------------------------------------------------------
def test_max_profit_approves_exactly_the_positive_expected_profit():
    # interest 0.5: profitable when p > 2/3, i.e. (s - 300) / 550 > 2/3, s > 666.7; group b reads the curve 100 higher
    p = params(repay_curve=LINEAR, groups=[{"name": "a", "size": 3}, {"name": "b", "size": 3, "repay_shift": 100}])
    obs = {"group": np.array([0, 0, 0, 1, 1, 1]), "score": np.array([660, 670, 800, 560, 570, 700])}
    assert max_profit(obs, p).tolist() == [0, 1, 1, 0, 1, 1]


def test_group_blind_uses_one_threshold_maximising_expected_profit():
    # gains 1.5 p - 1: 700 -> +0.0909, 690 -> +0.0636, 650 -> -0.0455, 500 -> -0.4545; best cut: >= 690
    p = params(repay_curve=LINEAR, groups=[{"name": "a", "size": 2}, {"name": "b", "size": 2}])
    obs = {"group": np.array([0, 1, 0, 1]), "score": np.array([700, 690, 650, 500])}
    assert group_blind(obs, p).tolist() == [1, 1, 0, 0]
    swapped = {"group": 1 - obs["group"], "score": obs["score"]}
    assert group_blind(swapped, p).tolist() == [1, 1, 0, 0]
    nobody = {"group": obs["group"], "score": np.array([600, 600, 500, 400])}  # every loan loses money
    assert group_blind(nobody, p).tolist() == [0, 0, 0, 0]


def test_equal_opportunity_hand_example():
    # p: 800 .909, 700 .727, 600 .545, 500 .364; max_profit approves a800, a700, b700: target TPR = 2.364 / 3.818 = .619
    # a: >=800 gives .417, >=700 gives .75 -> approve 800, 700;  b: >=700 gives .444, >=600 gives .778 -> approve 700, 600
    p = params(repay_curve=LINEAR, groups=[{"name": "a", "size": 3}, {"name": "b", "size": 3}])
    obs = {"group": np.array([0, 0, 0, 1, 1, 1]), "score": np.array([800, 700, 600, 700, 600, 500])}
    assert equal_opportunity(obs, p).tolist() == [1, 1, 0, 1, 1, 0]


def test_equal_opportunity_gives_every_group_the_max_profit_tpr_with_the_highest_thresholds():
    p = LendingParams(groups=[{"name": "a", "size": 200, "score_mean": 580}, {"name": "b", "size": 200, "score_mean": 680}])
    obs, _ = gym.make(LENDING_ENV_ID, params=p).reset(seed=5)
    prob = repay_probability(p, obs["score"], obs["group"])
    target = prob[max_profit(obs, p) == 1].sum() / prob.sum()
    action = equal_opportunity(obs, p)
    for g in (0, 1):
        member = obs["group"] == g
        approved = member & (action == 1)
        assert prob[approved].sum() / prob[member].sum() >= target - 1e-9
        threshold = obs["score"][approved].min()
        assert (obs["score"][member & ~approved] < threshold).all()  # a threshold rule
        stricter = member & (obs["score"] > threshold)
        assert prob[stricter].sum() / prob[member].sum() < target  # the highest threshold that reaches the target
    mp = max_profit(obs, p)
    tpr = lambda a, g: prob[(obs["group"] == g) & (a == 1)].sum() / prob[obs["group"] == g].sum()  # noqa: E731
    assert abs(tpr(action, 0) - tpr(action, 1)) < abs(tpr(mp, 0) - tpr(mp, 1))


def test_unknown_policy_name_suggests_the_close_one():
    with pytest.raises(AuditError, match="unknown reference policy 'max_proft'. Did you mean 'max_profit'"):
        POLICIES.get("max_proft")
