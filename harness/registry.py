"""Name -> implementation registries (timm's ``register_model`` shape); this module imports no plug-in.

A plug-in registers itself when its module is imported (``@METHODS.register`` on a class, or
``CAMS.register(name)(factory)``); :func:`harness.plugins.load_plugins` is the one place that imports the
plug-in packages. Looking up an unknown name is a one-line :class:`HarnessError` listing the known ones.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")


class Registry(Generic[T]):
    """Implementations of one ``kind`` (e.g. "method") by name."""

    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint  # what to do when a name is unknown (e.g. which command lists them)
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register the object under ``name`` (default: its ``name`` attribute)."""

        def add(obj: T) -> T:
            key = name if name is not None else obj.name  # type: ignore[attr-defined]
            self._entries[key] = obj
            return obj

        return add

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none registered"
            raise HarnessError(f"unknown {self.kind} {name!r}; choose from {known}{self.hint}")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: Any) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))


# name -> harness.methods.Method subclass
METHODS: Registry[Any] = Registry("method", " (harness.plugins.load_plugins() registers the shipped ones)")
CAMS: Registry[Any] = Registry("attention method")  # name -> factory(model) -> harness.cams.CamExtractor
