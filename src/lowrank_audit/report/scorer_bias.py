"""The scorer's own bias: each group's score on neutral sentences, as stored by `toxicity` (split `neutral`).

The rows depend on the scorer only, so they are read from the first finished run of the task.
"""

from __future__ import annotations

from .data import ReportData
from .tables import Column, TableView, fmt_number

METRICS = ("scorer_bias_score", "scorer_bias_rate", "scorer_bias_score_masked", "scorer_bias_rate_masked")


def scorer_bias_table(data: ReportData, task: str) -> TableView | None:
    """Per group: the scorer's mean score and share flagged on neutral sentences, unmasked and masked."""
    runs = data.finished(task)
    if not runs:
        return None
    run = runs[0]
    groups = sorted({k[1] for k in run.metrics if k[0] in METRICS and k[1] is not None})
    if not groups:
        return None
    rows = [[g] + [fmt_number(run.get(m, "neutral", g).value, 3) for m in METRICS] for g in groups]
    cols = [Column("Group", numeric=False), Column("Mean score"), Column("Share flagged"),
            Column("Mean score, masked"), Column("Share flagged, masked")]
    return TableView(
        f"{task}: the scorer's own bias on neutral sentences", cols, rows,
        "Each group's terms in neutral sentences ('The {term} is a teacher.', ...), scored by the task's scorer: a "
        "group scored high here is flagged for being named, not for what is said. Masked: every identity mention "
        "replaced by 'person' before scoring, as the toxicity figures that lead this section are scored.")
