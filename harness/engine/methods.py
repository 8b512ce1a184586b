"""What a method is: its base class, its result and its registration.

A method (DomainBed's "algorithm") takes a :class:`harness.engine.context.RunContext` and returns a
:class:`MethodResult`: a model mapping float images in [0, 1] to logits, plus what it used and what it
cost. A method owns its display name and its hyperparameters (published and synthetic-scale, see
:meth:`Method.default_hparams`) beside its code; ``@register`` puts it in :data:`harness.core.registry.METHODS`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from harness.core.registry import METHODS

if TYPE_CHECKING:  # annotations only: the context and the settings import torch
    from torch import nn

    from harness.engine.context import RunContext
    from harness.engine.settings import Setting


@dataclass
class MethodResult:
    model: nn.Module  # float images in [0, 1] -> logits
    selection: dict[str, Any]  # criterion, uses_val_group_labels, epoch
    extra_training_fraction: float = 0.0  # data passes beyond the initial ERM, in train-set sizes
    attention_queries: int = 0
    annotation_seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


class Method:
    """Base class: subclasses set ``name``, ``title``, the labels they need, and implement ``fit``.

    What the harness needs to know of a method, it reads from these declarations, never from the method's
    name: the schema of its own settings, where its rows go in the tables, and whether it curates a subset on
    an attention budget (the command line's --budget and --subset-frac, the budget tables: paper Tables 4, 7
    and 8).
    """

    name: ClassVar[str]
    title: ClassVar[str]  # the name tables and figures show
    needs_train_group_labels: ClassVar[bool] = False
    needs_val_group_labels: ClassVar[bool] = False
    attention_split: ClassVar[str | None] = None  # split whose instances get attention queries
    extra_settings: ClassVar[tuple[str, ...]] = ()  # settings a user may add that no default lists
    # type and range of each setting of the method's own (harness.engine.settings.SETTINGS has the shared ones)
    settings_schema: ClassVar[Mapping[str, Setting]] = {}
    # The place of its rows in the tables (the paper's order, cheap to costly); unranked methods come last.
    table_rank: ClassVar[float] = math.inf
    # Whether it curates a subset on an attention budget: its hparams hold ``budget`` (None: ``budget_share``
    # of the curated split) and ``subset_frac``, its records details.queries and details.query_fraction, and
    # its runs fill the budget tables (paper Tables 4, 7 and 8) and are compared at their budget.
    budgeted: ClassVar[bool] = False

    def __init__(self, hparams: dict[str, Any]) -> None:
        self.hparams = hparams

    @classmethod
    def default_hparams(cls, dataset: str, scale: str) -> dict[str, Any]:
        """The method's own settings on ``dataset`` at ``scale``, laid over the shared training defaults
        (:func:`harness.engine.hparams_registry.default_hparams`)."""
        return {}

    @classmethod
    def adjust_hparams(cls, hp: dict[str, Any], given: dict[str, Any], dataset: str, scale: str) -> None:
        """Change ``hp`` in place after the user's overrides ``given`` (settings that imply others)."""

    @classmethod
    def row_label(cls, hparams: dict[str, Any]) -> str:
        """The row a run with ``hparams`` fills in the accuracy tables (a method with variants names each)."""
        return cls.title

    @classmethod
    def in_accuracy_tables(cls, hparams: dict[str, Any]) -> bool:
        """Whether a run with ``hparams`` is a row of the accuracy tables (not only of a method's own tables)."""
        return True

    @classmethod
    def variant(cls, hparams: dict[str, Any]) -> tuple[str, str]:
        """(implementation, ablation) of a run with ``hparams``: a budgeted method's runs of one budget are
        table cells of their own per variant (the stage diagnostics table's Variant and Ablation columns)."""
        return "paper", "none"

    def fit(self, ctx: RunContext) -> MethodResult:
        raise NotImplementedError

    def labels_used(self, result: MethodResult) -> dict[str, Any]:
        """Which labels the run read: the method's own needs plus what its settings add."""
        return {
            "train_group_labels": self.needs_train_group_labels or self.hparams.get("sampler") == "group_balanced",
            "val_group_labels": self.needs_val_group_labels or bool(result.selection.get("uses_val_group_labels")),
            "attention_queries": result.attention_queries,
            "attention_split": self.attention_split if result.attention_queries else None,
        }


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to the registry under its ``name``."""
    return METHODS.register()(cls)


def get_method(name: str) -> type[Method]:
    """The registered method ``name`` (plug-ins are registered by :func:`harness.plugins.load_plugins`)."""
    return METHODS.get(name)
