"""Shared fixtures: caches go to a temp folder, never to the real home; one tiny model per session."""

from __future__ import annotations

import logging
import os
from typing import Callable

import pytest

from lowrank_audit.experiment import load_spec, narrow
from lowrank_audit.logs import LOGGER
from lowrank_audit.models import load_model
from lowrank_audit.sweep import task_vocabulary


def pytest_configure(config):
    """Under pytest-xdist each worker gets one core: one torch thread here and in the commands tests start, so two
    workers on two cores do not oversubscribe them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


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


@pytest.fixture()
def tool_lines(caplog) -> Callable[[], list[str]]:
    """The tool's lines logged so far in the test, as the command line prints them (pytest's caplog, only the
    lowrank_audit logger's records: not the libraries')."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    return lambda: [r.getMessage() for r in caplog.records if r.name.split(".")[0] == LOGGER]
