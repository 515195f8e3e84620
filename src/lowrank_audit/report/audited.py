"""The audited adapters of a task: each one's name, method, real rank, the modules its weight metrics average over,
and what the report says beside it (a base-model warning, why shift recovered is not shown)."""

from __future__ import annotations

from .data import Run, ReportData
from .tables import Column, TableView, fmt_rank

ADAPTED = "weight_adapted_matrices"


def adapted_modules(run: Run) -> str:
    """'q_proj, v_proj (4 matrices)': the module types a run's update touches, from its stored counts."""
    types = sorted(group for metric, group, split, layer in run.metrics if metric == ADAPTED and group is not None)
    total = run.get(ADAPTED).value
    return "" if total is None else f"{', '.join(types)} ({total:.0f} matrices)"


def audited_table(data: ReportData, task: str) -> TableView | None:
    """One row per audited adapter (and the reference, base); None for a sweep's runs, which have no name."""
    runs = [r for r in data.finished(task) if r.name is not None or r.notes]
    if not any(r.name is not None for r in runs):
        return None
    cols = [Column("Adapter", numeric=False), Column("Method", numeric=False), Column("Rank"),
            Column("Adapted modules", numeric=False), Column("Notes", numeric=False)]
    shared = [n for n in dict.fromkeys(runs[0].notes) if all(n in r.notes for r in runs)]  # said once, below
    rows = [[r.name or r.method, r.method, fmt_rank(r.rank), adapted_modules(r),
             " ".join(n for n in dict.fromkeys(r.notes) if n not in shared)] for r in runs]
    return TableView(f"{task}: audited adapters", cols, rows,
                     " ".join(["Rank: the largest rank any adapted module has (AdaLoRA: after its budget pruning). "
                               "Weight metrics are means over the adapted modules only.", *shared]))
