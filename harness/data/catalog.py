"""The datasets: synthetic presets (generated, the default), real datasets (read from disk) and datasets other
packages bring, each a :class:`harness.data.dataset.Dataset` subclass registered by name in
:data:`harness.core.registry.DATASETS`. Importing this module registers the shipped ones (presets first, then
the real datasets in the paper's order); harness.plugins registers the others.

What the paper says about each dataset lives on its class (``facts``); :mod:`harness.data.facts` answers by name.
"""
from __future__ import annotations

from pathlib import Path

from harness.core.cache import ArtifactCache, load_tensors, save_tensors
from harness.core.errors import HarnessError
from harness.core.registry import DATASETS
from harness.data.containers import Benchmark, Split
from harness.data.dataset import Dataset, DatasetEntry
from harness.data.real import REAL_DATASETS
from harness.data.synthetic import SYNTHETIC_DATASETS

SHIPPED_DATASETS = (*SYNTHETIC_DATASETS, *REAL_DATASETS)
for _shipped in (*SYNTHETIC_DATASETS.values(), *REAL_DATASETS.values()):
    DATASETS.register()(_shipped)


def dataset_names() -> tuple[str, ...]:
    """Every registered dataset's name: the shipped ones, then the plug-ins' in the order they registered."""
    return (*SHIPPED_DATASETS, *(name for name in DATASETS if name not in SHIPPED_DATASETS))


def dataset_class(name: str) -> type[Dataset] | None:
    """The registered class of dataset ``name``, None for a name no dataset has."""
    return DATASETS.get(name) if name in DATASETS else None


def list_datasets() -> list[DatasetEntry]:
    return [DATASETS.get(name).entry() for name in dataset_names()]


def load_benchmark(
    name: str,
    *,
    scale: str,
    data_seed: int = 0,
    data_root: str | Path | None = None,
    image_size: int | None = None,  # synthetic: the scale's size unless given; real: REAL_IMAGE_SIZE
    options: dict[str, str] | None = None,
    show_progress: bool = True,
    store: ArtifactCache | None = None,
) -> Benchmark:
    """Generate a synthetic preset, read a real dataset from ``data_root`` or load a plug-in's dataset.

    With a ``store``, a dataset that says it is worth storing (:meth:`Dataset.stored_key`: the generated
    presets) is made once, stored there, and read back by every later load with the same arguments."""
    dataset = dataset_class(name)
    if dataset is None:
        raise HarnessError(f"unknown dataset {name!r}; `python -m harness datasets` lists them")
    dataset.check_inputs(data_root, options)
    arguments = dict(scale=scale, data_seed=data_seed, image_size=image_size, options=dict(options or {}))

    def load() -> Benchmark:
        return dataset().load(**arguments, data_root=None if data_root is None else Path(data_root),
                              show_progress=show_progress)

    key = None if store is None else dataset.stored_key(**arguments)
    if key is None:
        return load()
    path = store.get_or_create("benchmark", {"dataset": name, **key}, "safetensors",
                               lambda target: _save_benchmark(target, load()))
    return _read_benchmark(path)


_SPLIT_FIELDS = ("images", "labels", "spurious", "groups", "masks")


def _save_benchmark(path: Path, benchmark: Benchmark) -> None:
    tensors = {f"{split}/{name}": getattr(data, name) for split, data in benchmark.splits.items()
               for name in _SPLIT_FIELDS if getattr(data, name) is not None}
    save_tensors(path, tensors, meta={"name": benchmark.name, "class_names": benchmark.class_names,
                                      "spurious_names": benchmark.spurious_names,
                                      "group_names": benchmark.group_names, "splits": list(benchmark.splits),
                                      "info": benchmark.info})


def _read_benchmark(path: Path) -> Benchmark:
    tensors, meta = load_tensors(path)
    splits = {split: Split(**{name: tensors[f"{split}/{name}"] for name in _SPLIT_FIELDS
                              if f"{split}/{name}" in tensors}) for split in meta["splits"]}
    return Benchmark(name=meta["name"], class_names=meta["class_names"], spurious_names=meta["spurious_names"],
                     group_names=meta["group_names"], splits=splits, info=meta["info"])


def dataset_fingerprint(benchmark: Benchmark) -> dict:
    """What identifies a benchmark's content for cache keys (name and generation/source facts)."""
    scalars = {k: v for k, v in benchmark.info.items() if isinstance(v, (str, int, float, bool))}
    return {"name": benchmark.name, **scalars}
