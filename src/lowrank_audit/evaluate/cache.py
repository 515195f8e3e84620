"""Cache of observations (reference distributions) as safetensors files, keyed by what determines them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from ..hashing import stable_hash


def cache_key(*parts: Any) -> str:
    """A stable key from JSON-serialisable parts (model identity, task data fingerprint, precision, ...)."""
    return stable_hash(parts, 24)


class ObservationCache:
    """Folder of `<key>.safetensors`; writes are atomic (temp file + rename), so a kill never leaves half a file."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        path = self.folder / f"{key}.safetensors"
        return load_file(path) if path.is_file() else None

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"{key}.tmp"
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, self.folder / f"{key}.safetensors")

    def get_or_compute(self, key: str, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The cached tensors of `key`, or `compute()` stored under it (a run or an audit observes once)."""
        tensors = self.get(key)
        if tensors is None:
            tensors = compute()
            self.put(key, tensors)
        return tensors
