"""The plug-in loader: the one module of the harness that imports the method packages.

Importing a plug-in package registers what it defines (``baselines``: ERM, JTT, GroupDRO, DFR; ``slim``:
SLIM_Tr, SLIM_Val) in :mod:`harness.registry`. The entry points (the CLI, a sweep worker) call
:func:`load_plugins` before they look a method up; the rest of the harness imports no plug-in
(an import-linter contract in pyproject.toml holds this).
"""
from __future__ import annotations


def load_plugins() -> None:
    """Import (and so register) every plug-in; cheap after the first call."""
    # Inside the function so that importing this module stays light: the plug-ins bring torch, sklearn and
    # UMAP, which only the entry points that run or describe methods need.
    import baselines  # noqa: F401
    import slim  # noqa: F401
