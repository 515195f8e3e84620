"""One stable hash for ids, fingerprints and cache keys: what identifies a run, a task's data or a cached observation."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(value: Any, length: int = 16) -> str:
    """The first `length` hex digits of the sha256 of `value` as JSON with sorted keys (non-JSON values as str()):
    the same on every machine and Python run, unlike hash()."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]
