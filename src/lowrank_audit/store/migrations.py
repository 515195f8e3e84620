"""Schema migrations, applied in order and recorded by name, so old stores keep working."""

from __future__ import annotations

import sqlite3
from typing import Callable


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Statement by statement: executescript() would COMMIT and break the migration's transaction."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _initial(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE experiment (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            task TEXT NOT NULL,
            method TEXT NOT NULL,
            rank INTEGER,
            seed INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
            config_json TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            train_seconds REAL,
            trainable_params INTEGER,
            peak_rss_mb REAL,
            artifact TEXT,
            error TEXT
        );
        CREATE TABLE metrics (
            run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
            metric TEXT NOT NULL,
            group_name TEXT,
            split TEXT,
            layer INTEGER,
            value REAL,
            ci_low REAL,
            ci_high REAL
        );
        CREATE UNIQUE INDEX metrics_key ON metrics (
            run_id, metric, coalesce(group_name, ''), coalesce(split, ''), coalesce(layer, -1)
        );
        """
    )


def _samples(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE samples (
            run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            prompt TEXT NOT NULL,
            completion TEXT NOT NULL,
            score REAL,
            group_name TEXT,
            split TEXT,
            note TEXT
        );
        CREATE INDEX samples_run ON samples (run_id, kind)
        """
    )


def _tuning(db: sqlite3.Connection) -> None:
    """A run's tuning family (NULL: not a grid point), and what tuning chose per family."""
    _run_script(
        db,
        """
        ALTER TABLE runs ADD COLUMN family TEXT;
        CREATE TABLE selections (
            family TEXT PRIMARY KEY,
            task TEXT NOT NULL,
            method TEXT NOT NULL,
            rank INTEGER,
            metric TEXT NOT NULL,
            chosen_run_id TEXT,
            candidates_json TEXT NOT NULL,
            chosen_at TEXT NOT NULL
        )
        """
    )


TABLES = ("experiment", "runs", "metrics", "samples", "selections")
"""The tables the migrations make: a store without one of them is damaged."""

MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("0001_initial", _initial),
    ("0002_samples", _samples),
    ("0003_tuning", _tuning),
]
