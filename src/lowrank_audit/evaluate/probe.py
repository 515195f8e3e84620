"""The probe every trained or loaded model must pass: it changes the base model's outputs."""

from __future__ import annotations

import torch

from ..errors import AuditError
from ..records import Observation


def check_changed(obs: Observation, base_obs: Observation, label: str) -> None:
    """A model whose outputs equal the base's on every evaluation input is an error, not a 'no shift' result."""
    if all(torch.equal(obs[k], base_obs[k]) for k in obs if k in base_obs):
        raise AuditError(
            f"{label}: the model's outputs are identical to the base model's on every evaluation prompt; "
            "the method changed nothing (wrong target modules, a zero-initialised adapter never trained, "
            "or a failed load)."
        )
