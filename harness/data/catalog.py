"""The datasets: synthetic presets (generated, the default), real datasets (read from disk) and datasets
other packages bring (:class:`Dataset` subclasses in :data:`harness.core.registry.DATASETS`).

What the paper says about each dataset lives in :mod:`harness.data.facts`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from harness.core.cache import default_cache_root
from harness.core.errors import HarnessError
from harness.core.registry import DATASETS, describe
from harness.data.containers import Benchmark
from harness.data.facts import REAL_IMAGE_SIZE, facts, is_synthetic
from harness.data.real import REAL_DATASETS, load_real
from harness.data.synthetic import PRESETS, knob_options, make_benchmark

SHIPPED_DATASETS = (*PRESETS, *REAL_DATASETS)


class Dataset(ABC):
    """A dataset from another package (entry point group ``slim_harness.datasets``, see harness.plugins).

    Subclasses set ``name`` and ``description`` and implement :meth:`load`. ``needs_data_root``: the
    dataset is read from ``--data-root`` (required then, refused otherwise); ``options``: the
    ``--data-option`` keys it accepts. Both are checked before any work (:meth:`check_inputs`).

    The benchmark's ``info`` must identify its content (a hash of the files read, the generator's seed and
    version): the stages runs share, the reference ERM model and the frozen stem's output, are cached by it
    (:func:`dataset_fingerprint`), so two datasets with equal ``info`` would share them.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    needs_data_root: ClassVar[bool] = False
    options: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def load(self, *, scale: str, data_seed: int, data_root: Path | None, image_size: int | None,
             options: dict[str, str], show_progress: bool) -> Benchmark:
        """The benchmark: at least train, val and test splits of uint8 images (see harness.data.containers)."""

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


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    needs: str  # what the user must provide
    synthetic: bool  # generated: reads no --data-root


def list_datasets() -> list[DatasetEntry]:
    entries = [DatasetEntry(name, desc, "nothing: generated (--scale tiny|quick|paper; difficulty knobs as "
                                        "--data-option, e.g. texture_contrast=0.2)", True)
               for name, desc in PRESETS.items()]
    for info in REAL_DATASETS.values():
        known = facts(info.name)  # none for a dataset the paper has not (the user's own, csv)
        description = f"{info.description} (masks: {known.masks})" if known else info.description
        entries.append(DatasetEntry(info.name, description,
                                    _needs("--data-root with " + ", ".join(info.expected), info.options), False))
    for name in DATASETS:
        plugin = DATASETS.get(name)
        needs = _needs("--data-root" if plugin.needs_data_root else "nothing", plugin.options)
        entries.append(DatasetEntry(name, f"{plugin.description} (plug-in {describe(plugin)})", needs,
                                    not plugin.needs_data_root))
    return entries


def _needs(what: str, options: Collection[str]) -> str:
    """What a dataset needs, with the options it accepts."""
    return what + ("; options (--data-option k=v): " + ", ".join(options) if options else "")


def load_benchmark(
    name: str,
    *,
    scale: str,
    data_seed: int = 0,
    data_root: str | Path | None = None,
    image_size: int | None = None,  # synthetic: the scale's size unless given; real: REAL_IMAGE_SIZE
    options: dict[str, str] | None = None,
    cache_dir: Path | None = None,
    show_progress: bool = True,
) -> Benchmark:
    """Generate a synthetic preset or read a real dataset from ``data_root``."""
    known = {e.name for e in list_datasets()}
    if name not in known:
        raise HarnessError(f"unknown dataset {name!r}; `python -m harness datasets` lists them")
    if name in DATASETS:
        plugin = DATASETS.get(name)
        plugin.check_inputs(data_root, options)
        return plugin().load(scale=scale, data_seed=data_seed, data_root=None if data_root is None else Path(data_root),
                             image_size=image_size, options=dict(options or {}), show_progress=show_progress)
    if is_synthetic(name):
        if data_root is not None:
            raise HarnessError(f"{name} is generated; --data-root is for the real datasets")
        return make_benchmark(name, scale, data_seed, difficulty=knob_options(name, options), image_size=image_size)
    if data_root is None:
        raise HarnessError(f"dataset {name!r} is read from disk: give --data-root PATH")
    return load_real(name, Path(data_root), image_size=image_size or REAL_IMAGE_SIZE,
                     cache_dir=Path(cache_dir or default_cache_root() / "images"),
                     options=options, progress=show_progress)


def dataset_fingerprint(benchmark: Benchmark) -> dict:
    """What identifies a benchmark's content for cache keys (name and generation/source facts)."""
    scalars = {k: v for k, v in benchmark.info.items() if isinstance(v, (str, int, float, bool))}
    return {"name": benchmark.name, **scalars}
