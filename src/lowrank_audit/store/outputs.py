"""What a finished sweep leaves in its output folder: by default the adapters, the store, the report and the data.

A full-rank run's weights (`model.safetensors`: 540 MB for the default model) and the observation cache (the base's
and the full fine-tunes' log-probabilities, about 300 MB for the quick preset) are removed once every run of the sweep
has finished, unless `execution.keep_full_weights` / `execution.keep_cache` say to keep them. Until then they stay:
a re-run that retries a run needs them. A later sweep into the same folder that needs a removed full fine-tune as its
reference trains it again (same seed and data, so the same weights).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

FULL_WEIGHTS = "model.safetensors"
CACHE_DIR = "cache"


@dataclass
class Pruned:
    """What was removed from an output folder, by what it was, in bytes."""

    removed: dict[str, int] = field(default_factory=dict)


def folder_bytes(path: Path) -> int:
    """Bytes of the files under `path` (0 if it does not exist)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def prune_outputs(out_dir: Path, keep_full_weights: bool, keep_cache: bool) -> Pruned:
    """Remove the full-rank runs' weight folders and the observation cache, unless they are to be kept."""
    pruned = Pruned()
    if not keep_full_weights:
        folders = sorted({p.parent for p in (out_dir / "runs").glob(f"*/{FULL_WEIGHTS}")})
        if folders:
            pruned.removed["full-rank weights"] = sum(folder_bytes(f) for f in folders)
        for folder in folders:
            shutil.rmtree(folder)
    if not keep_cache and (out_dir / CACHE_DIR).is_dir():
        pruned.removed["observation cache"] = folder_bytes(out_dir / CACHE_DIR)
        shutil.rmtree(out_dir / CACHE_DIR)
    return pruned
