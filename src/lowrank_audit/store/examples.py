"""The fine-tuning data of a sweep, saved beside the store as JSONL so that anyone can read what was trained on."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from ..records import Example

DATA_DIR = "data"


def save_examples(path: Path, examples: Iterable[Example]) -> Path:
    """Write one JSON object per example (prompt, completion, and its meta) atomically: temp file, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps({"prompt": ex.prompt, "completion": ex.completion, **ex.meta}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_examples(path: Path) -> list[dict]:
    """The rows `save_examples` wrote."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
