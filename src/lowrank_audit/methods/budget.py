"""A parameter budget: choose a method's size option so that its trainable parameters match a target count."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..errors import AuditError
from .card import MethodOptions

if TYPE_CHECKING:
    from torch import nn

    from .base import Method

MAX_SIZE = 2**20
Count = Callable[[int], "int | None"]


def match_budget(cls: type[Method], options: MethodOptions, model: nn.Module, target: int) -> tuple[MethodOptions, int]:
    """`options` with `cls.size_option` set to the smallest value whose trainable count is closest to `target`, and
    that count. Counts grow with the size for most methods (RandLoRA's shrink); most are affine in it, which is
    tried first, then a bisection; a count that falls where it should rise (LoKr, whose Kronecker factor turns
    full above a rank) gets every smaller size tried."""
    key = cls.size_option
    if key is None:
        raise ValueError(f"{cls.name} has no size option to match a parameter budget")
    counts: dict[int, int | None] = {}

    def count(size: int) -> int | None:
        """Trainable parameters at this size; None where the model does not allow it."""
        if size not in counts:
            method = cls(options.model_copy(update={key: size}))
            try:
                method.check(model)
                counts[size] = method.trainable_count(model)
            except AuditError:
                counts[size] = None
        return counts[size]

    if count(1) is None:
        raise AuditError(f"{cls.name}: no {key} fits this model (even {key} = 1 is rejected).")
    increasing = count(2) is None or count(2) >= count(1)
    best = _affine_guess(count, target) or _bisect(count, target, increasing)
    lo = 1  # the smallest size with the same count (counts can stop changing, e.g. LoKr's full factor)
    while lo < best:
        mid = (lo + best) // 2
        lo, best = (lo, mid) if count(mid) == count(best) else (mid + 1, best)
    before = count(best - 1) if best > 1 else None
    if before is not None and (before > count(best) if increasing else before < count(best)):
        for size in range(1, best):
            count(size)
    best = min((s for s, c in counts.items() if c is not None), key=lambda s: (abs(counts[s] - target), s))
    return options.model_copy(update={key: best}), counts[best]


def _affine_guess(count: Count, target: int) -> int | None:
    """The best size if the count is a + b * size around the size that solves a + b * size = target, else None."""
    c1, c2 = count(1), count(2)
    if c2 is None or c2 == c1:
        return None
    guess = max(1, round(1 + (target - c1) / (c2 - c1)))
    sizes = [s for s in (guess - 1, guess, guess + 1) if s >= 1]
    if any(count(s) != c1 + (s - 1) * (c2 - c1) for s in sizes):
        return None
    low, high = sorted((count(sizes[0]), count(sizes[-1])))
    if not (low <= target <= high or guess == 1):
        return None
    return min(sizes, key=lambda s: (abs(count(s) - target), s))


def _bisect(count: Count, target: int, increasing: bool) -> int:
    """Bisection on the first size that is invalid or past the target; the best of it and the one before."""

    def past(size: int) -> bool:
        c = count(size)
        return c is None or (c > target if increasing else c <= target)

    lo, hi = 1, 2
    while hi < MAX_SIZE and not past(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if past(mid) else (mid, hi)
    return min((s for s in (lo, hi) if count(s) is not None), key=lambda s: (abs(count(s) - target), s))
