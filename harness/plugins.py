"""The plug-in loader: the one module of the harness that imports the method packages and other packages'
plug-ins.

Importing a plug-in package registers what it defines (``baselines``: ERM, JTT, GroupDRO, DFR; ``slim``:
SLIM_Tr, SLIM_Val) in :mod:`harness.core.registry`. Another installed package adds methods, datasets and CAM
variants through entry points (:data:`ENTRY_POINT_GROUPS`), so ``pip install my-method`` is enough::

    [project.entry-points."slim_harness.methods"]
    my-method = "my_package.method:MyMethod"      # a harness.engine.methods.Method subclass named "my-method"

The entry points (the CLI, a sweep worker) call :func:`load_plugins` before they look a method up; the rest
of the harness imports no plug-in (an import-linter contract in pyproject.toml holds this).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

from harness.core.errors import HarnessError
from harness.core.registry import CAMS, DATASETS, METHODS, Registry

# entry point group -> the registry it fills
ENTRY_POINT_GROUPS: dict[str, Registry[Any]] = {
    "slim_harness.methods": METHODS,
    "slim_harness.datasets": DATASETS,
    "slim_harness.cams": CAMS,
}


def load_plugins() -> None:
    """Import (and so register) every plug-in, the shipped ones and those of installed packages' entry
    points; cheap after the first call. A broken entry point is a one-line HarnessError naming it."""
    # Inside the function so that importing this module stays light: the plug-ins bring torch, sklearn and
    # UMAP, which only the entry points that run or describe methods need.
    import baselines  # noqa: F401
    import slim  # noqa: F401

    load_entry_points()


@cache  # an entry point is loaded once; a failure is not cached, so it is reported again on the next call
def load_entry_points() -> None:
    """Register the object of every entry point of :data:`ENTRY_POINT_GROUPS` of the installed packages."""
    checks = entry_point_checks()
    for group, registry in ENTRY_POINT_GROUPS.items():
        for point in entry_points(group=group):
            register_entry_point(point, registry, checks[group])


Check = Callable[[str, Any], "str | None"]  # (name, object) -> what is wrong with them (None: nothing)


def entry_point_checks() -> dict[str, Check]:
    """group -> the check of an entry point's object: of the kind the group holds, under a free name."""
    # Here: the base classes live with the data and model code (torch), which load_plugins imports anyway.
    from harness.data.catalog import SHIPPED_DATASETS
    from harness.data.dataset import Dataset
    from harness.engine.methods import Method

    def subclass_of(base: type) -> Check:
        return lambda name, obj: None if inspect.isclass(obj) and issubclass(obj, base) else \
            f"{_name_of(obj)} is not a {base.__module__}.{base.__name__} subclass"

    def dataset(name: str, obj: Any) -> str | None:
        shipped = f"the harness ships a dataset named {name!r}" if name in SHIPPED_DATASETS else None
        abstract = f"{_name_of(obj)} does not implement load" if inspect.isabstract(obj) else None
        return subclass_of(Dataset)(name, obj) or shipped or abstract

    return {
        "slim_harness.methods": subclass_of(Method),
        "slim_harness.datasets": dataset,
        "slim_harness.cams": lambda name, obj: None if callable(obj) else f"{_name_of(obj)} is not callable "
        "(a factory model -> harness.attention.cams.CamExtractor, e.g. a CamExtractor subclass)",
    }


def register_entry_point(point: EntryPoint, registry: Registry[Any], check: Check) -> None:
    """Load ``point`` and register its object under the entry point's name.

    The object is ``module:attribute`` (passing ``check``; a class's own ``name``, if it has one, must be
    the entry point's), or a bare module whose import registers the name itself (``@register``).
    """
    where = f"plug-in entry point {point.name!r} = {point.value!r} (group {point.group}"
    if point.dist is not None:
        where += f", package {point.dist.name}"
    where += ")"
    try:
        obj = point.load()
    except Exception as exc:  # noqa: BLE001  (any failure of someone else's code becomes one line)
        raise HarnessError(f"{where} failed to load: {_one_line(exc)}") from None
    if isinstance(obj, ModuleType):
        if point.name not in registry:
            raise HarnessError(f"{where}: importing module {obj.__name__} registered no {registry.kind} "
                               f"{point.name!r}; name the object (module:attribute) or register it there")
        return
    if (problem := check(point.name, obj)) is not None:
        raise HarnessError(f"{where}: {problem}")
    own = getattr(obj, "name", point.name) if inspect.isclass(obj) else point.name
    if own != point.name:
        raise HarnessError(f"{where}: the class is named {own!r}; name the entry point {own!r} too")
    try:
        registry.register(point.name)(obj)
    except HarnessError as exc:
        raise HarnessError(f"{where}: {exc}") from None


def _name_of(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or f"a {type(obj).__name__}"


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message``."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
