"""The dataset interface every dataset implements: the shipped synthetic presets and real datasets, and those
other packages bring (entry point group ``slim_harness.datasets``, see harness.plugins). All of them are
registered by name in :data:`harness.core.registry.DATASETS` (harness.data.catalog registers the shipped ones).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from harness.core.errors import HarnessError
from harness.core.registry import describe
from harness.data.containers import Benchmark


@dataclass(frozen=True)
class DatasetFacts:
    """What the paper says about a dataset, in one place.

    ``family``: "binary" (paper Table 2) or "multi-class" (Table 3). ``weighted_avg``: its "Avg" weights
    test group accuracies by the train group proportions (the Waterbirds convention). ``published``: whose
    published JTT / GroupDRO / ERM settings it uses at the paper scale. ``slim_budgets``: paper Table 4's
    (attention budget, curated subset fraction) of SLIM_Tr and SLIM_Val; ``split_sizes``: Table 4's
    (train, val) sizes, so each budget is also a share of its split. ``test_splits``: the accuracy tables'
    test split, first one present wins. ``masks``: which object masks the real dataset has. ``looked_at``:
    in plain words, the object the model should look at in every image (what the masks mark), where one
    word fits all classes; None where each class is its own object (NICO, ImageNet-9). ``paper_accuracy``:
    paper Table 2 or 3's (worst mean, worst std, avg mean, avg std) in percent of the methods the harness
    runs, by their table row (the paper leaves GroupDRO, DFR and JTT out where it finds them inapplicable).
    """

    title: str
    family: str
    weighted_avg: bool
    published: str
    slim_budgets: tuple[tuple[int, float], tuple[int, float]]
    split_sizes: tuple[int, int]
    masks: str
    test_splits: tuple[str, ...] = ("test",)
    looked_at: str | None = None
    paper_accuracy: Mapping[str, tuple[float, float, float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset as ``python -m harness datasets`` lists it."""

    name: str
    description: str
    needs: str  # what the user must provide
    synthetic: bool  # generated: reads no --data-root


class Dataset(ABC):
    """A dataset: subclasses set ``name`` and ``description`` and implement :meth:`load`.

    ``needs_data_root``: the dataset is read from ``--data-root`` (required then, refused otherwise);
    ``options``: the ``--data-option`` keys it accepts. Both are checked before any work (:meth:`check_inputs`).
    ``facts``: what the paper reports about it (:class:`DatasetFacts`; None for a dataset the paper
    has not): with them it joins the paper's tables and its SLIM budgets.

    The benchmark's ``info`` must identify its content (a hash of the files read, the generator's seed and
    version): the stages runs share, the reference ERM model and the frozen stem's output, are cached by it
    (:func:`harness.data.catalog.dataset_fingerprint`), so two datasets with equal ``info`` would share them.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    needs_data_root: ClassVar[bool] = False
    options: ClassVar[Collection[str]] = ()
    facts: ClassVar[DatasetFacts | None] = None

    @abstractmethod
    def load(self, *, scale: str, data_seed: int, data_root: Path | None, image_size: int | None,
             options: dict[str, str], show_progress: bool) -> Benchmark:
        """The benchmark: at least train, val and test splits of uint8 images (see harness.data.containers)."""

    @classmethod
    def stored_key(cls, *, scale: str, data_seed: int, image_size: int | None,
                   options: dict[str, str]) -> dict | None:
        """What identifies the benchmark :meth:`load` makes from these arguments, where it is worth storing
        once made and reading back after (a generated dataset: drawing it costs more than reading it); None
        where it is not (the default: a real dataset's decoded images are already cached by
        :mod:`harness.data.image_cache`)."""
        return None

    @classmethod
    def check_inputs(cls, data_root: str | Path | None, options: dict[str, str] | None) -> None:
        """A one-line HarnessError unless the data root and options suit this dataset."""
        if cls.needs_data_root and data_root is None:
            raise HarnessError(f"dataset {cls.name!r} is read from disk: give --data-root PATH")
        if not cls.needs_data_root and data_root is not None:
            raise HarnessError(f"--data-root: dataset {cls.name!r} reads no data root")
        unknown = sorted(set(options or {}) - set(cls.options))
        if unknown:
            accepted = ", ".join(cls.options) or "none"
            raise HarnessError(f"--data-option {', '.join(unknown)}: dataset {cls.name!r} accepts {accepted}")

    @classmethod
    def entry(cls) -> DatasetEntry:
        """How ``python -m harness datasets`` lists it (here: a plug-in's, naming its class)."""
        needs = needs_text("--data-root" if cls.needs_data_root else "nothing", cls.options)
        return DatasetEntry(cls.name, f"{cls.description} (plug-in {describe(cls)})", needs, not cls.needs_data_root)


def needs_text(what: str, options: Collection[str]) -> str:
    """What a dataset needs, with the options it accepts."""
    return what + ("; options (--data-option k=v): " + ", ".join(options) if options else "")
