"""Environments for sequential decision tasks, registered with gymnasium on import."""

import gymnasium as gym

from .lending import LendingEnv, LendingGroup, LendingParams, repay_probability

LENDING_ENV_ID = "lowrank_audit/Lending-v0"

if LENDING_ENV_ID not in gym.registry:
    gym.register(id=LENDING_ENV_ID, entry_point="lowrank_audit.envs.lending:LendingEnv")

__all__ = ["LENDING_ENV_ID", "LendingEnv", "LendingGroup", "LendingParams", "repay_probability"]
