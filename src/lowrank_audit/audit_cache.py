"""An audited model's measurement (observation, weight-update spectra, general-text rows) kept on disk, so that a
later audit re-scores it (against a new reference) without loading the model, observing it or decomposing dW again."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .evaluate import ObservationCache
from .evaluate.weights import Spectrum
from .records import MetricRow
from .run_step import Measured

_OBS, _SPEC = "obs/", "spec/"


class MeasuredCache:
    """`<key>.safetensors` (observation and spectra, an ObservationCache entry) beside `<key>.json` (rows)."""

    def __init__(self, folder: Path) -> None:
        self.tensors = ObservationCache(folder)
        self.folder = Path(folder)

    def get(self, key: str) -> Measured | None:
        rows_file = self.folder / f"{key}.json"
        tensors = self.tensors.get(key) if rows_file.is_file() else None
        if tensors is None:
            return None
        obs = {k[len(_OBS):]: v for k, v in tensors.items() if k.startswith(_OBS)}
        spectra = {}
        for name in sorted({k[len(_SPEC):].rsplit("/", 1)[0] for k in tensors if k.startswith(_SPEC)}):
            cos = tensors.get(f"{_SPEC}{name}/cos")
            spectra[name] = Spectrum(tensors[f"{_SPEC}{name}/s"].numpy(), tensors[f"{_SPEC}{name}/left"].numpy(),
                                     None if cos is None else cos.numpy())
        rows = [MetricRow(**r) for r in json.loads(rows_file.read_text(encoding="utf-8"))]
        return Measured(obs, spectra or None, rows)

    def put(self, key: str, measured: Measured, keep_left: int | None = None) -> None:
        """Store `measured`; `keep_left`: how many left singular vectors of each dW to keep (an adapter's rank: no
        metric reads more of them), all when None."""
        tensors = {f"{_OBS}{k}": v for k, v in (measured.observation or {}).items()}
        for name, spec in (measured.spectra or {}).items():
            tensors[f"{_SPEC}{name}/s"] = torch.from_numpy(np.ascontiguousarray(spec.singular_values))
            tensors[f"{_SPEC}{name}/left"] = torch.from_numpy(np.ascontiguousarray(spec.left[:, :keep_left]))
            if spec.top_cosines is not None:
                tensors[f"{_SPEC}{name}/cos"] = torch.from_numpy(np.ascontiguousarray(spec.top_cosines))
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"{key}.json.tmp"
        tmp.write_text(json.dumps([asdict(r) for r in measured.rows]), encoding="utf-8")
        os.replace(tmp, self.folder / f"{key}.json")
        self.tensors.put(key, tensors)  # last: an entry counts only once its tensors are there
