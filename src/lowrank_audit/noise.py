"""The libraries' noise (warnings, log records, progress bars) hidden unless --verbose, in this process and in the
processes that work for it (Ray workers get QUIET_ENV before they start and call `quiet_libraries` first)."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DATASETS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' and datasets' bars ("Writing model shards")
    "TQDM_DISABLE": "1",  # bars of libraries that call tqdm themselves (transformers' "Converting and de-quantizing
    # GGUF tensors" on the default model's first load); the tool's own bars pass disable= and are not affected
}
"""Settings the libraries read from the environment when they are imported (transformers, datasets, tqdm)."""

_quiet = False


def quiet_libraries() -> None:
    """Only the tool's own lines: the libraries' warnings and log records are hidden; lowrank_audit's warnings show.

    Warnings are dropped where they are shown, not by a filter: scikit-learn's joblib workers reset the global filters
    while they run (`warnings.resetwarnings()` in a thread), which let transformers' FutureWarnings through a filter.
    The environment is read by the libraries when they are imported, after this. A second call changes nothing."""
    global _quiet
    if _quiet:
        return
    _quiet = True
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    show = warnings.showwarning

    def own_warnings_only(message, category, filename, lineno, file=None, line=None) -> None:
        if Path(filename).resolve().is_relative_to(PACKAGE_DIR):
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = own_warnings_only
    logging.getLogger().setLevel(logging.ERROR)  # loggers without a level of their own (lowrank_audit's has one: logs.py)


def is_quiet() -> bool:
    """True once `quiet_libraries` ran in this process (the command line without --verbose)."""
    return _quiet


def quiet_env() -> dict[str, str]:
    """QUIET_ENV as this process has it (a variable the user set keeps the user's value), for a worker process."""
    return {key: os.environ.get(key, value) for key, value in QUIET_ENV.items()}
