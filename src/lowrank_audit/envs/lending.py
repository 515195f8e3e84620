"""A delayed-impact lending simulation (Liu et al. 2018; ml-fairness-gym's `lending`) as a gymnasium env.

A fixed population of applicants from two or more groups applies for a loan at every step. Initial
credit scores are drawn per group from a normal distribution, rounded to the score grid (300..850 in
steps of 10). The action approves (1) or denies (0) each applicant. Every step draws each applicant's
potential outcome, repay ~ Bernoulli(p_g(score)), whatever the action, so that the random stream does
not depend on the policy; an approved applicant who repays earns the bank `interest` and gains
`score_up` points, one who defaults costs the bank the loan (1) and loses `score_down` points; a
denied applicant's score does not move. The episode ends after `horizon` steps.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pydantic import BaseModel, ConfigDict, model_validator

from ..errors import AuditError

SCORE_MIN, SCORE_MAX, SCORE_STEP = 300, 850, 10
SCORES: tuple[int, ...] = tuple(range(SCORE_MIN, SCORE_MAX + 1, SCORE_STEP))


class LendingGroup(BaseModel):
    """One group of applicants: its name, size and initial score distribution."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    """Identity group (a group of the task's lexicon axis, e.g. 'Black')."""
    size: int = 16
    """Applicants of this group in the population."""
    score_mean: float = 620.0
    """Mean of the initial credit scores."""
    score_std: float = 60.0
    """Standard deviation of the initial credit scores (0 = every applicant at the mean)."""
    repay_shift: int = 0
    """Points added to this group's score before reading the repayment curve (group-dependent repayment)."""


class LendingParams(BaseModel):
    """Everything that defines the simulation; invalid values raise AuditError naming the fix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: list[LendingGroup] = [
        LendingGroup(name="Black", score_mean=580.0),
        LendingGroup(name="White", score_mean=660.0),
    ]
    """At least two groups of applicants."""
    repay_curve: dict[int, float] = {300: 0.05, 500: 0.25, 600: 0.55, 700: 0.85, 850: 0.98}
    """Repayment probability at score knots, linearly interpolated; must not decrease with the score."""
    interest: float = 0.5
    """Bank profit on a repaid loan of 1; a default loses the loan (1)."""
    score_up: int = 20
    """Score gained by repaying (a multiple of 10)."""
    score_down: int = 40
    """Score lost by defaulting (a multiple of 10)."""
    horizon: int = 10
    """Steps per episode."""

    @model_validator(mode="after")
    def _check(self) -> "LendingParams":
        for problem in _problems(self):
            raise AuditError(f"lending environment: {problem}")
        return self

    @property
    def n_applicants(self) -> int:
        return sum(g.size for g in self.groups)

    def applicant_groups(self) -> np.ndarray:
        """Group index of every applicant: group 0's applicants first, then group 1's, ..."""
        return np.repeat(np.arange(len(self.groups)), [g.size for g in self.groups]).astype(np.int64)


def _problems(p: LendingParams) -> list[str]:
    """Every invalid setting with its fix (the first one is raised)."""
    out = []
    if len(p.groups) < 2:
        out.append(f"needs at least two groups to compare, got {len(p.groups)}; add another entry to 'groups'.")
    names = [g.name for g in p.groups]
    if len(set(names)) != len(names):
        out.append(f"group names must differ, got {names}.")
    for g in p.groups:
        if g.size < 1:
            out.append(f"group {g.name!r} has size {g.size}; give every group at least one applicant.")
        if not SCORE_MIN <= g.score_mean <= SCORE_MAX:
            out.append(f"group {g.name!r} score_mean {g.score_mean} is outside [{SCORE_MIN}, {SCORE_MAX}].")
        if g.score_std < 0:
            out.append(f"group {g.name!r} score_std {g.score_std} is negative; use 0 or more.")
    knots = sorted(p.repay_curve.items())
    if len(knots) < 2:
        out.append("repay_curve needs at least two (score: probability) knots, e.g. {300: 0.05, 850: 0.98}.")
    for score, prob in knots:
        if not SCORE_MIN <= score <= SCORE_MAX:
            out.append(f"repay_curve knot {score} is outside the score range [{SCORE_MIN}, {SCORE_MAX}].")
        if not 0.0 <= prob <= 1.0:
            out.append(f"repay_curve probability {prob} at score {score} is outside [0, 1].")
    if any(b[1] < a[1] for a, b in zip(knots, knots[1:])):
        out.append("repay_curve must not decrease with the score (threshold policies assume it); reorder the probabilities.")
    if p.interest <= 0:
        out.append(f"interest {p.interest} must be positive (the profit on a repaid loan of 1).")
    for name in ("score_up", "score_down"):
        value = getattr(p, name)
        if value < 0 or value % SCORE_STEP:
            out.append(f"{name} {value} must be a non-negative multiple of {SCORE_STEP} (scores live on that grid).")
    if p.horizon < 1:
        out.append(f"horizon {p.horizon} must be at least 1 step.")
    return out


def repay_probability(params: LendingParams, scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """p_g(score): the repayment curve read at score + the group's repay_shift."""
    knots = sorted(params.repay_curve.items())
    shift = np.array([g.repay_shift for g in params.groups])[np.asarray(groups)]
    return np.interp(np.asarray(scores) + shift, [k for k, _ in knots], [v for _, v in knots])


class LendingEnv(gym.Env):
    """Observation {'group', 'score'} per applicant; action MultiBinary (1 = approve); reward = bank profit."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, params: LendingParams | dict | None = None) -> None:
        self.params = params if isinstance(params, LendingParams) else LendingParams.model_validate(params or {})
        n, n_groups = self.params.n_applicants, len(self.params.groups)
        self.observation_space = spaces.Dict({
            "group": spaces.MultiDiscrete(np.full(n, n_groups)),
            "score": spaces.Box(SCORE_MIN, SCORE_MAX, shape=(n,), dtype=np.int64),
        })
        self.action_space = spaces.MultiBinary(n)
        self._groups = self.params.applicant_groups()
        self._scores = np.zeros(n, dtype=np.int64)
        self._t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {"group": self._groups.copy(), "score": self._scores.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        mean = np.array([g.score_mean for g in self.params.groups])[self._groups]
        std = np.array([g.score_std for g in self.params.groups])[self._groups]
        raw = self.np_random.normal(mean, std)
        self._scores = np.clip(np.rint(raw / SCORE_STEP) * SCORE_STEP, SCORE_MIN, SCORE_MAX).astype(np.int64)
        self._t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        approve = np.asarray(action).astype(bool)
        if approve.shape != self._scores.shape:
            raise AuditError(f"lending environment: action has shape {approve.shape}, expected ({len(self._scores)},): "
                             "one approve (1) / deny (0) per applicant.")
        p = repay_probability(self.params, self._scores, self._groups)
        would_repay = self.np_random.random(len(p)) < p
        repaid, defaulted = approve & would_repay, approve & ~would_repay
        reward = float(self.params.interest * repaid.sum() - defaulted.sum())
        delta = np.where(repaid, self.params.score_up, 0) - np.where(defaulted, self.params.score_down, 0)
        self._scores = np.clip(self._scores + delta, SCORE_MIN, SCORE_MAX).astype(np.int64)
        self._t += 1
        info = {"would_repay": would_repay, "repaid": repaid, "defaulted": defaulted}
        return self._obs(), reward, self._t >= self.params.horizon, False, info
