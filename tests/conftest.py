"""Shared fixtures: caches go to a temp folder, never to the real home; one tiny model per session."""

from __future__ import annotations

import pytest

from lowrank_audit.experiment import load_spec, narrow
from lowrank_audit.models import load_model
from lowrank_audit.sweep import task_vocabulary


@pytest.fixture(scope="session", autouse=True)
def _audit_home(tmp_path_factory):
    """Session-wide, so that module- and session-scoped fixtures never see the real home either."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOWRANK_AUDIT_HOME", str(tmp_path_factory.getbasetemp() / "audit-home"))
        yield


@pytest.fixture(scope="session")
def smoke_spec():
    """The smoke preset narrowed to `debias`, so these tests keep their meaning as tasks join the preset."""
    return narrow(load_spec(preset="smoke"), tasks=["debias"])


@pytest.fixture()
def tiny(smoke_spec):
    """A tiny random Llama with the word-level tokenizer (fresh per test: tests may train it)."""
    return load_model(smoke_spec.model, task_vocabulary())
