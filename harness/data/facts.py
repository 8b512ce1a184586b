"""What the paper says about a dataset, by name. Each dataset's class holds its own (``facts``, a
:class:`harness.data.dataset.DatasetFacts`); this module asks the registry, so tables, evaluation and
hyperparameters read them without knowing where a dataset is defined.

A synthetic preset stands for one paper dataset (its ``paper_dataset``) and shares its facts. This module
imports nothing at its top, so any module may read it, the command line's parser included (it must not import
torch): the datasets' modules are imported when a question first needs them.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.data.dataset import Dataset, DatasetFacts
    from harness.data.synthetic import SyntheticPreset


def _registered(name: str) -> type[Dataset] | None:
    # Deferred: the datasets' modules import torch, which the command line's parser must not (see above).
    from harness.data.catalog import dataset_class

    return dataset_class(name)


def _preset(name: str) -> type[SyntheticPreset] | None:
    from harness.data.synthetic import SyntheticPreset  # deferred, as in _registered

    dataset = _registered(name)
    return dataset if dataset is not None and issubclass(dataset, SyntheticPreset) else None


def is_synthetic(name: str) -> bool:
    """Whether ``name`` is one of the harness's generated presets (harness.data.synthetic)."""
    return _preset(name) is not None


def paper_dataset(name: str) -> str:
    """The paper dataset a name stands for: 'waterbirds-synth' -> 'waterbirds'; any other name itself."""
    preset = _preset(name)
    return name if preset is None else preset.paper_dataset


def facts(name: str) -> DatasetFacts | None:
    """The facts of the paper dataset ``name`` stands for (None for datasets the paper has not)."""
    dataset = _registered(paper_dataset(name))
    return None if dataset is None else dataset.facts


class _Facts(Mapping[str, "DatasetFacts"]):
    """The facts of every registered dataset that has its own, by name, shipped ones first (in the paper's
    order: Waterbirds, CelebA, ISIC, NICO, ImageNet-9); a live view, so a plug-in registered later shows."""

    def __getitem__(self, name: str) -> DatasetFacts:
        dataset = _registered(name)
        if dataset is None or dataset.facts is None:
            raise KeyError(name)
        return dataset.facts

    def __iter__(self) -> Iterator[str]:
        from harness.data.catalog import dataset_names  # deferred, as in _registered

        return iter([name for name in dataset_names() if name in self])

    def __len__(self) -> int:
        return sum(1 for _ in self)


FACTS: Mapping[str, DatasetFacts] = _Facts()
