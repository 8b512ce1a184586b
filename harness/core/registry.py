"""Name -> implementation registries (timm's ``register_model`` shape); this module imports no plug-in.

A plug-in registers itself when its module is imported (``@METHODS.register`` on a class, or
``CAMS.register(name)(factory)``), or another installed package names it in an entry point;
:func:`harness.plugins.load_plugins` is the one place that imports the plug-in packages and loads the entry
points. Looking up an unknown name, or registering a second object under a taken one, is a one-line
:class:`HarnessError`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from harness.core.errors import HarnessError

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
            taken = self._entries.get(key, obj)
            if taken is not obj:  # a plug-in must not replace another one silently
                raise HarnessError(f"{self.kind} {key!r} is already registered by {describe(taken)}; "
                                   f"{describe(obj)} cannot take its name")
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


def describe(obj: Any) -> str:
    """Where ``obj`` comes from, e.g. 'baselines.erm.ERM'."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


# name -> harness.engine.methods.Method subclass
METHODS: Registry[Any] = Registry("method", " (harness.plugins.load_plugins() registers the shipped ones)")
CAMS: Registry[Any] = Registry("attention method")  # name -> factory(model) -> harness.attention.cams.CamExtractor
# name -> harness.data.dataset.Dataset subclass: the shipped synthetic presets and real datasets (importing
# harness.data.catalog registers them) and the datasets other packages bring
DATASETS: Registry[Any] = Registry("dataset", " (`python -m harness datasets` lists them)")
