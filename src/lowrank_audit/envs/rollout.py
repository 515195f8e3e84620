"""Run seeded lending episodes side by side, one batched decision per step for all episodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np

from .lending import LendingParams

# observations of every episode at one step -> one action per episode
Decide = Callable[[list[dict[str, np.ndarray]]], list[np.ndarray]]


@dataclass(frozen=True)
class Trajectories:
    """E episodes of T steps over N applicants."""

    scores: np.ndarray       # [E, T+1, N] int64, scores before each step and after the last
    groups: np.ndarray       # [E, N] int64
    actions: np.ndarray      # [E, T, N] int64, 1 = approve
    would_repay: np.ndarray  # [E, T, N] int64, potential outcome of a loan at that step
    rewards: np.ndarray      # [E, T] float64, bank profit per step


def rollout(env_id: str, params: LendingParams, seeds: list[int], decide: Decide) -> Trajectories:
    """One episode per seed (env.reset(seed=s)), all stepped together with the actions of `decide`."""
    envs = [gym.make(env_id, params=params) for _ in seeds]
    observations = [env.reset(seed=s)[0] for env, s in zip(envs, seeds)]
    scores, actions, repay, rewards = [[o["score"] for o in observations]], [], [], []
    for _ in range(params.horizon):
        step_actions = [np.asarray(a, dtype=np.int64) for a in decide(observations)]
        results = [env.step(a) for env, a in zip(envs, step_actions)]
        observations = [r[0] for r in results]
        scores.append([o["score"] for o in observations])
        actions.append(step_actions)
        repay.append([r[4]["would_repay"] for r in results])
        rewards.append([r[1] for r in results])
    for env in envs:
        env.close()
    return Trajectories(
        scores=np.stack(scores, axis=1).astype(np.int64),
        groups=np.stack([o["group"] for o in observations]).astype(np.int64),
        actions=np.stack(actions, axis=1).astype(np.int64),
        would_repay=np.stack(repay, axis=1).astype(np.int64),
        rewards=np.array(rewards, dtype=np.float64).T,
    )
