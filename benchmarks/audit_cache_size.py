"""What each kept measurement of an audit's cache (`OUT/cache/<key>.safetensors` and `.json`) holds, in bytes per part:
the observation's full-vocabulary log-probabilities (teacher-forced sequences, logit lens), the lexicon log-probabilities,
and the weight-update spectra (singular values, left singular vectors, intruder cosines); README's audit section gives
the formula these follow.

Usage: PYTHONPATH=src python benchmarks/audit_cache_size.py OUT   (OUT: the folder of a finished `lowrank-audit audit`)
"""

from __future__ import annotations

import sys
from pathlib import Path

from safetensors import safe_open


def part(key: str) -> str:
    """'obs/neutral/logp' -> 'obs/neutral/logp'; 'spec/model.layers.0.mlp.up_proj/left' -> 'spec/*/left'."""
    return f"spec/*/{key.rsplit('/', 1)[1]}" if key.startswith("spec/") else key


def main(out: Path) -> None:
    for file in sorted((out / "cache").glob("*.safetensors")):
        rows = file.with_suffix(".json")
        parts: dict[str, list[int]] = {}
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                t = f.get_tensor(key)
                n = parts.setdefault(part(key), [0, 0, 0])
                n[0], n[1] = n[0] + 1, n[1] + t.numel() * t.element_size()
                n[2] = max(n[2], t.shape[-1] if t.dim() else 1)
        kind = "kept measurement" if any(k.startswith("spec/") for k in parts) else "base observation"
        print(f"{file.name}: {file.stat().st_size} bytes ({kind}), rows {rows.stat().st_size if rows.is_file() else 0} bytes")
        for name, (count, size, last) in sorted(parts.items()):
            print(f"  {name:28s} {count:4d} tensors {size:12d} bytes  (last dim up to {last})")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
