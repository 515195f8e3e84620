"""Schema migrations, applied in order and recorded by name, so old stores keep working."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Callable

from ..adapter_identity import ADAPTER_WEIGHTS, REDUCED, digest, method_name
from ..hashing import stable_hash


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


def _audit_identity(db: sqlite3.Connection) -> None:
    """Audited adapters stored before audits named them get the identity an audit gives them now, so the report shows
    each as its own row instead of pooling unnamed adapters of one method and rank as seeds: a name (the adapter's
    folder name, with parent folders where two adapters share it; `audited-<run id>` when no folder was stored), the
    method with its LoRA variant (read from the adapter's config when its folder still holds the audited weights,
    else as stored), and the run id a new audit of it computes (so a re-audit re-scores it instead of adding a second
    row; an old row whose new id a later audit already wrote is that audit's older copy and is dropped). An old
    reference is keyed by its role, as now."""
    rows = [dict(zip(("run_id", "method", "config"), r)) for r in db.execute("SELECT run_id, method, config_json FROM runs")]
    for r in rows:
        r["config"] = json.loads(r["config"] or "{}")
    audits = [r for r in rows if isinstance(r["config"].get("audit"), dict) and r["config"]["audit"]]
    names = _adapter_names({str(r["config"]["audit"]["adapter"]) for r in audits if r["config"]["audit"].get("adapter")})
    for r in audits:
        config, audit = r["config"], r["config"]["audit"]
        if "name" in audit or "role" in audit:
            continue
        if "reference" in audit:
            new = {**config, "audit": {"role": "reference"}}
            method = r["method"]
        else:
            adapter = audit.get("adapter")
            method = _variant(adapter, audit.get("digest"), r["method"])
            name = names[str(adapter)] if adapter else f"audited-{r['run_id'][:8]}"
            new = {**config, "method": {**(config.get("method") or {}), "name": method}, "audit": {**audit, "name": name}}
        _rekey(db, r["run_id"], stable_hash(new), method, new)


def _adapter_names(folders: set[str]) -> dict[str, str]:
    """Each adapter folder's name: its last path component, with as many parent folders as it takes to tell it from
    every other folder."""
    parts = {f: Path(f).parts for f in folders}
    out = {}
    for folder, own in parts.items():
        for k in range(1, len(own) + 1):
            if all(other[-k:] != own[-k:] for f, other in parts.items() if f != folder):
                break
        out[folder] = Path(*own[-k:]).as_posix()
    return out


def _variant(adapter: str | None, stored_digest: str | None, method: str) -> str:
    """The method with its LoRA variant from the adapter's config, when its folder still holds the weights that were
    audited (same digest); else the method as stored (older audits named a DoRA adapter 'lora')."""
    folder = Path(adapter) if adapter else None
    try:
        if folder is None or digest(folder / ADAPTER_WEIGHTS) != stored_digest:
            return method
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return method
    if not isinstance(config, dict):
        return method
    return method_name(config) + (REDUCED if method.endswith(REDUCED) else "")


def _rekey(db: sqlite3.Connection, old: str, new: str, method: str, config: dict[str, Any]) -> None:
    """Give run `old` id `new`, `method` and `config`, its metrics and samples with it (the foreign keys allow no
    in-place change of the id); when `new` is already stored, `old` is its older copy and goes."""
    if new != old and db.execute("SELECT 1 FROM runs WHERE run_id = ?", (new,)).fetchone():
        for table in ("metrics", "samples", "runs"):
            db.execute(f"DELETE FROM {table} WHERE run_id = ?", (old,))
        return
    db.execute("UPDATE runs SET method = ?, config_json = ? WHERE run_id = ?",
               (method, json.dumps(config, sort_keys=True), old))
    if new == old:
        return
    columns = [r[1] for r in db.execute("PRAGMA table_info(runs)") if r[1] != "run_id"]
    db.execute(f"INSERT INTO runs (run_id, {', '.join(columns)}) SELECT ?, {', '.join(columns)} FROM runs "
               "WHERE run_id = ?", (new, old))
    for table in ("metrics", "samples"):
        db.execute(f"UPDATE {table} SET run_id = ? WHERE run_id = ?", (new, old))
    db.execute("DELETE FROM runs WHERE run_id = ?", (old,))


COST_COLUMNS = ("train_seconds", "trainable_params", "peak_rss_mb")
"""Run columns that older stores kept beside the metric rows of the same names (0005 moves them into metrics)."""


def _cost_as_metrics(db: sqlite3.Connection) -> None:
    """A run's cost is stored once, as metric rows: a value held only in an old run column becomes its metric row
    (where the run already has that row, the row stays, as the report always read it), and the columns go."""
    for column in COST_COLUMNS:
        db.execute(f"""INSERT INTO metrics (run_id, metric, value)
                       SELECT run_id, ?, {column} FROM runs r WHERE {column} IS NOT NULL AND NOT EXISTS
                         (SELECT 1 FROM metrics m WHERE m.run_id = r.run_id AND m.metric = ? AND m.group_name IS NULL
                          AND m.split IS NULL AND m.layer IS NULL)""", (column, column))
        db.execute(f"ALTER TABLE runs DROP COLUMN {column}")


TABLES = ("experiment", "runs", "metrics", "samples", "selections")
"""The tables the migrations make: a store without one of them is damaged."""

MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("0001_initial", _initial),
    ("0002_samples", _samples),
    ("0003_tuning", _tuning),
    ("0004_audit_identity", _audit_identity),
    ("0005_cost_as_metrics", _cost_as_metrics),
]
