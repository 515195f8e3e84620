"""Which metrics a task's report shows and how: its task's catalogue (declared next to the task) and the cost rows
every trained run has. A task this version does not know (a store from another version) has only the cost."""

from __future__ import annotations

from ..catalogue import COST, WEIGHTS_AND_FORGETTING, MetricInfo
from ..tasks import TASKS


def task_metrics(task: str) -> list[MetricInfo]:
    """The catalogue of `task`'s metrics, in its results table's order, then what every run has: forgetting, intruders, the cost of training."""
    own = TASKS.card(task).metrics if task in TASKS else ()
    return [*own, *WEIGHTS_AND_FORGETTING, *COST]


def task_data_sources(task: str) -> list[tuple[str, str]]:
    """(heading, text) of where `task`'s data came from and how its fine-tuning data are made; none for an unknown task."""
    return list(TASKS.card(task).data_sources) if task in TASKS else []
