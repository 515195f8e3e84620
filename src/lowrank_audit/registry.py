"""Name -> component registries with 'did you mean' errors (methods, tasks, presets)."""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Generic, Iterator, TypeVar

from .errors import AuditError

T = TypeVar("T")
C = TypeVar("C")


class Registry(Generic[T]):
    """A named collection; unknown names raise AuditError listing close matches and all known names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise AuditError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(sorted(self._items))}."
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._items.items()))


@dataclass(frozen=True)
class Lazy(Generic[C]):
    """A component registered without importing it: its card and where its implementation (a subclass of the card)
    lives."""

    card: C
    path: str
    """'package.module:Class'."""

    def load(self) -> Any:
        module, _, name = self.path.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and isinstance(self.card, type) and issubclass(cls, self.card)):
            raise TypeError(f"{self.path} does not implement card {self.card!r}")
        return cls


class Components(Registry[Any], Generic[C, T]):
    """A registry of components whose implementations import torch, transformers or peft: each is registered as a light
    card (what config validation and the report read, e.g. its options) and the path of its implementation, imported
    on the first `get`, so that checking a config or building a report never loads them. A class registered directly
    (`register`) is its own card."""

    def register_lazy(self, card: C, path: str) -> None:
        """Register `card` under its name, its implementation to be imported from `path` ('package.module:Class')."""
        self.register(card.name, Lazy(card, path))  # type: ignore[attr-defined]

    def card(self, name: str) -> C:
        """What is known of `name` without importing its implementation."""
        item = super().get(name)
        return item.card if isinstance(item, Lazy) else item

    def get(self, name: str) -> T:
        """The implementation of `name`, imported now if it was not yet."""
        item = super().get(name)
        return item.load() if isinstance(item, Lazy) else item

    def cards(self) -> Iterator[tuple[str, C]]:
        return iter([(name, self.card(name)) for name in self.names()])

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter([(name, self.get(name)) for name in self.names()])
