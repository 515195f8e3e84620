"""Choose a tuning family's grid point: the lowest validation score among the grid runs that finished with one and
did not diverge.

Only the validation split decides (the task's `validation_metric`, the fine-tuning objective's held-out loss); a grid
point that diverged (failed, an undefined score, or what its task's divergence rule calls diverged, such as exploding
drift on neutral text) is recorded with the reason and cannot be chosen. Ties go to the earlier grid point, so the same
store always gives the same choice (a resumed sweep makes the choice a finished one made).
"""

from __future__ import annotations

import math
from typing import Callable

from .plan import PlannedRun
from .records import Candidate, Selection


def choose(grid: list[PlannedRun], metric: str, rank: int | None, status: Callable[[str], str | None],
           score: Callable[[str], float | None], diverged: Callable[[str], str] = lambda run_id: "") -> Selection:
    """The selection of one family from its grid runs (in grid order), their store status, validation score and why
    a finished one diverged ('' when it did not)."""
    candidates = []
    for run in grid:
        finished = status(run.run_id) == "finished"
        value = score(run.run_id) if finished else None
        defined = value is not None and math.isfinite(value)
        candidates.append(Candidate(run.run_id, dict(run.tuned), value if defined else None,
                                    status(run.run_id) or "pending", diverged(run.run_id) if finished else ""))
    scored = [c for c in candidates if c.score is not None and not c.diverged]
    chosen = min(scored, key=lambda c: c.score) if scored else None  # min keeps the first of equal scores
    first = grid[0]
    return Selection(first.family or "", first.task, first.method, rank, metric, tuple(candidates), chosen)
