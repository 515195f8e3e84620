"""Table makers beyond the results tables, one line each (as `figures.FIGURES`): every maker returns what a task's
stored rows support and nothing otherwise, so build.py names no task. A task with its own tables adds its module and
one line here."""

from __future__ import annotations

from typing import Callable

from .audited import audited_table
from .data import ReportData
from .scorer_bias import scorer_bias_table
from .tables import TableView
from .toxicity_pairs import toxicity_pair_table
from .toxicity_plots import toxic_sample_tables

TableMaker = Callable[[ReportData, str], list[TableView]]


def _optional(make: Callable[[ReportData, str], TableView | None]) -> TableMaker:
    """A maker of at most one table as a maker of a list."""
    return lambda data, task: [t] if (t := make(data, task)) is not None else []


TABLES: list[TableMaker] = [
    _optional(audited_table),
    _optional(toxicity_pair_table),
    _optional(scorer_bias_table),
]
"""Shown after the results tables."""

WARNED: list[TableMaker] = [
    toxic_sample_tables,
]
"""Tables of model-generated text that may be offensive: shown collapsed behind a content warning."""
