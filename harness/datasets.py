"""The dataset registry: synthetic presets (generated, the default) and real datasets (read from disk).

What the paper says about each dataset lives in :mod:`harness.dataset_facts`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.cache import default_cache_root
from harness.data import Benchmark
from harness.dataset_facts import FACTS, REAL_IMAGE_SIZE, is_synthetic
from harness.errors import HarnessError
from harness.real_datasets import REAL_DATASETS, load_real
from harness.synthetic import PRESETS, knob_options, make_benchmark


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    needs: str  # what the user must provide
    synthetic: bool


def list_datasets() -> list[DatasetEntry]:
    entries = [DatasetEntry(name, desc, "nothing: generated (--scale tiny|quick|paper; difficulty knobs as "
                                        "--data-option, e.g. texture_contrast=0.2)", True)
               for name, desc in PRESETS.items()]
    for info in REAL_DATASETS.values():
        needs = "--data-root with " + ", ".join(info.expected)
        if info.options:
            needs += "; options (--data-option k=v): " + ", ".join(info.options)
        masks = FACTS[info.name].masks
        entries.append(DatasetEntry(info.name, f"{info.description} (masks: {masks})", needs, False))
    return entries


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
