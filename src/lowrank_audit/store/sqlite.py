"""SQLite store: runs, metrics and the experiment fingerprint; each finished run is one transaction."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ..errors import AuditError
from ..records import Candidate, MetricRow, SampleRow, Selection
from .migrations import MIGRATIONS, TABLES

STORE_FILE = "results.sqlite"


@dataclass
class RunRecord:
    """What the store knows about one run before it finishes."""

    run_id: str
    task: str
    method: str
    rank: int | None
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    family: str | None = None
    """The tuning family the run is a grid point of (None: it is not one)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _finite_or_none(x: float | None) -> float | None:
    """SQLite stores NaN as NULL anyway; make that explicit so 'undefined' reads back as None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class Store:
    """The results database of one output folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise AuditError(f"cannot open the results store {self.path}: {e}. Choose a writable --out folder.") from e
        self.db.row_factory = sqlite3.Row
        try:
            self._open()
        except BaseException:
            self.db.close()  # a refused store is left as it was: no connection keeps its -wal file around
            raise

    def _open(self) -> None:
        try:
            self._check_schema(migrated=False)
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.execute("PRAGMA journal_mode = WAL")
            self._migrate()
            self._check_schema(migrated=True)
        except sqlite3.OperationalError as e:  # locked, read-only, disk full: the folder, not the file
            raise self._unwritable(e) from None
        except sqlite3.DatabaseError as e:  # not an SQLite file, or a damaged one
            raise self._damaged(str(e)) from None

    @classmethod
    def in_dir(cls, out_dir: str | Path) -> "Store":
        return cls(Path(out_dir) / STORE_FILE)

    def close(self) -> None:
        self.db.close()

    def _damaged(self, what: str) -> AuditError:
        return AuditError(f"the results store {self.path} is damaged ({what}); it is left as it is. "
                          "Restore it from a backup, or choose a new --out folder.")

    def _unwritable(self, e: sqlite3.Error) -> AuditError:
        return AuditError(f"could not write the results store {self.path}: {e}. Free some space (or make the folder "
                          "writable) and re-run the same command: it resumes, every run written before is kept.")

    def _check_schema(self, migrated: bool) -> None:
        """Refuse a store whose tables were dropped, before anything is written to it: without `metrics`, every run
        would stay 'finished' with nothing to report, and re-creating a table would hide what was lost."""
        tables = {r["name"] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [t for t in TABLES if t not in tables] if migrated else []
        if not migrated and tables and "_migrations" not in tables:
            missing = ["_migrations"]
        if missing:
            raise self._damaged(f"table {', '.join(missing)} missing")

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        done = {r["name"] for r in self.db.execute("SELECT name FROM _migrations")}
        for name, apply in MIGRATIONS:
            if name in done:
                continue
            with self._transaction():
                apply(self.db)
                self.db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, _now()))

    def _transaction(self) -> "_Transaction":
        return _Transaction(self)

    # experiment identity -------------------------------------------------------------------------
    def bind_experiment(self, fingerprint: str, description: str) -> None:
        """Record which experiment this store belongs to; refuse a store made by a different one."""
        row = self.db.execute("SELECT value FROM experiment WHERE key = 'fingerprint'").fetchone()
        if row is None:
            with self._transaction():
                self.db.execute("INSERT INTO experiment VALUES ('fingerprint', ?)", (fingerprint,))
                self.db.execute("INSERT INTO experiment VALUES ('description', ?)", (description,))
            return
        if row["value"] != fingerprint:
            old = self.db.execute("SELECT value FROM experiment WHERE key = 'description'").fetchone()
            raise AuditError(
                f"{self.path} holds results of a different experiment ({old['value'] if old else '?'}), "
                f"not of this one ({description}). Choose another --out folder."
            )

    def experiment(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.db.execute("SELECT key, value FROM experiment")}

    def record_plan(self, run_ids: Iterable[str]) -> None:
        """Remember every run a sweep planned, for a re-run that cannot plan before the model loads (budget.params)."""
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO experiment VALUES ('plan', ?)", (json.dumps(sorted(run_ids)),))

    def plan(self) -> list[str] | None:
        """The run ids the last sweep into this store planned (None if no sweep has finished planning here)."""
        row = self.db.execute("SELECT value FROM experiment WHERE key = 'plan'").fetchone()
        return None if row is None else json.loads(row["value"])

    # runs ------------------------------------------------------------------------------------------
    def status(self, run_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return row["status"] if row else None

    def start_run(self, run: RunRecord) -> None:
        """Mark a run as running (a killed process leaves it 'running', which a re-run retries)."""
        with self._transaction():
            self.db.execute("DELETE FROM metrics WHERE run_id = ?", (run.run_id,))
            self.db.execute("DELETE FROM samples WHERE run_id = ?", (run.run_id,))
            self.db.execute(
                """INSERT INTO runs (run_id, task, method, rank, seed, status, config_json, started_at, family)
                   VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)
                   ON CONFLICT(run_id) DO UPDATE SET status='running', started_at=excluded.started_at,
                     finished_at=NULL, error=NULL, config_json=excluded.config_json,
                     family=coalesce(excluded.family, runs.family)""",
                (run.run_id, run.task, run.method, run.rank, run.seed, json.dumps(run.config, sort_keys=True), _now(),
                 run.family),
            )

    def finish_run(
        self,
        run_id: str,
        metrics: Iterable[MetricRow],
        *,
        artifact: str | None = None,
        samples: Iterable[SampleRow] = (),
    ) -> None:
        """Write all metrics (and samples) of a run and mark it finished, in one transaction. A run's cost (trainable
        parameters, train seconds, peak memory) is metric rows like every other number it has."""
        rows = [
            (run_id, m.metric, m.group_name, m.split, m.layer,
             _finite_or_none(m.value), _finite_or_none(m.ci_low), _finite_or_none(m.ci_high))
            for m in metrics
        ]
        with self._transaction():
            self.db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            self.db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self.db.execute("DELETE FROM samples WHERE run_id = ?", (run_id,))
            self.db.executemany(
                "INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, x.kind, x.prompt, x.completion, _finite_or_none(x.score), x.group_name, x.split, x.note)
                 for x in samples],
            )
            self.db.execute(
                "UPDATE runs SET status='finished', finished_at=?, artifact=?, error=NULL WHERE run_id=?",
                (_now(), artifact, run_id),
            )

    def fail_run(self, run_id: str, error: str) -> None:
        with self._transaction():
            self.db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            self.db.execute("DELETE FROM samples WHERE run_id = ?", (run_id,))
            self.db.execute(
                "UPDATE runs SET status='failed', finished_at=?, error=? WHERE run_id=?", (_now(), error, run_id)
            )

    def runs(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM runs ORDER BY task, seed, method, rank").fetchall()
        return [dict(r) for r in rows]

    def metrics(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM metrics ORDER BY run_id, metric, split, group_name")]

    def samples(self, run_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Stored samples, optionally of one run and one kind, highest score first."""
        query = "SELECT * FROM samples WHERE (? IS NULL OR run_id = ?) AND (? IS NULL OR kind = ?) ORDER BY score DESC"
        return [dict(r) for r in self.db.execute(query, (run_id, run_id, kind, kind))]

    # tuning ---------------------------------------------------------------------------------------
    def record_selection(self, selection: Selection) -> None:
        """Store (or replace) what tuning chose for a family, with every candidate's score."""
        candidates = [asdict(c) | {"point": dict(c.point)} for c in selection.candidates]
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO selections VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (selection.family, selection.task, selection.method, selection.rank, selection.metric,
                 selection.chosen.run_id if selection.chosen else None, json.dumps(candidates, sort_keys=True), _now()))

    def selections(self) -> list[Selection]:
        out = []
        for r in self.db.execute("SELECT * FROM selections ORDER BY task, method, rank"):
            candidates = tuple(Candidate(**c) for c in json.loads(r["candidates_json"]))
            chosen = next((c for c in candidates if c.run_id == r["chosen_run_id"]), None)
            out.append(Selection(r["family"], r["task"], r["method"], r["rank"], r["metric"], candidates, chosen))
        return out

    def metric_value(self, run_id: str, metric: str) -> float | None:
        """The value of a run's summary row of `metric` (no group, no layer; None if it has none)."""
        row = self.db.execute("SELECT value FROM metrics WHERE run_id = ? AND metric = ? AND group_name IS NULL "
                              "AND layer IS NULL ORDER BY split LIMIT 1", (run_id, metric)).fetchone()
        return None if row is None else row["value"]

    def metric_rows(self, run_id: str) -> list[MetricRow]:
        rows = self.db.execute("SELECT * FROM metrics WHERE run_id = ?", (run_id,)).fetchall()
        return [MetricRow(**{k: r[k] for k in asdict(MetricRow("", None))}) for r in rows]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (including KeyboardInterrupt); a write the disk refuses
    (full, read-only) becomes one AuditError, and the store keeps what it held before the transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> None:
        try:
            self.store.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise self.store._unwritable(e) from None

    def __exit__(self, exc_type, exc, tb) -> None:
        db = self.store.db
        if exc_type is None:
            try:
                db.execute("COMMIT")
                return
            except sqlite3.OperationalError as e:
                exc = e
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.OperationalError):
            raise self.store._unwritable(exc) from None
