"""Figure makers, one line each: every maker draws the figures whose metrics a task's runs have.

A maker is `(task, variants, plots_dir, slug) -> list[Plot]`; it returns [] when its metrics are absent,
so one list serves every task. A new task with its own figures adds its module and one line here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .classification_plots import classification_plots
from .data import Variant
from .decisions_plots import decision_plots
from .forgetting_plots import forgetting_plots
from .inside_plots import inside_plots
from .plots import Plot, rank_plots
from .toxicity_plots import toxicity_plots

FigureMaker = Callable[[str, list[Variant], Path, str], list[Plot]]

FIGURES: list[FigureMaker] = [
    rank_plots,
    classification_plots,
    inside_plots,
    forgetting_plots,
    decision_plots,
    toxicity_plots,
]


def task_plots(task: str, variants: list[Variant], plots_dir: Path, slug: str) -> list[Plot]:
    """Every figure of every maker, in registry order."""
    return [plot for make in FIGURES for plot in make(task, variants, plots_dir, slug)]
