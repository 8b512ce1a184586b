"""Sweep files: experiment grids declared in TOML, checked and expanded into run configs (paper Sec. 5).

A sweep file (see harness/experiments/configs/quick.toml for a commented example) names::

    name, description, scale, datasets, methods, archs, seeds, [data_seed]
    [overrides]                      hyperparameters for every run (hparams_registry keys)
    [overrides_by_arch.<arch>]       ... for one architecture
    [overrides_by_dataset.<dataset>] ... for one dataset
    [overrides_by_method.<method>]   ... for one method (later tables win: global < arch < dataset < method)
    [data.<dataset>]                 root = "...", options = {...}, [image_size] for real datasets
    [data_levels]                    <dataset> = [{...}, ...]: data options each of the dataset's main-grid
                                     runs is repeated with (a synthetic preset's difficulty knobs)
    [slim_sweeps]                    SLIM ablations (paper Tables 7 and 8): datasets, [archs], [seeds],
                                     budget.<method> and subset_frac.<method> (a list, or a table of
                                     lists keyed by dataset); the other setting stays at its default
    [submitit]                       options of the cluster executor (see executors.SubmititExecutor)
    [regression]                     tolerance settings of ``python -m harness regression``
"""
from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.registry import METHODS
from harness.data.catalog import list_datasets
from harness.data.facts import is_synthetic
from harness.data.sizes import SCALES
from harness.data.synthetic import knob_options
from harness.engine.hparams_registry import default_hparams
from harness.engine.settings import check_value
from harness.experiments.runner import make_config, run_id

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SLIM_AXES = ("budget", "subset_frac")
_TOP_LEVEL = {
    "name", "description", "scale", "datasets", "methods", "archs", "seeds", "data_seed", "image_size", "overrides",
    "overrides_by_arch", "overrides_by_dataset", "overrides_by_method", "data", "slim_sweeps", "submitit",
    "regression", "variants", "data_levels",
}


@dataclass(frozen=True)
class DataSource:
    """Where a real dataset lies on disk, its loader options and (optionally) the image size to load."""

    root: str
    options: dict[str, str] = field(default_factory=dict)
    image_size: int | None = None


@dataclass(frozen=True)
class SlimSweeps:
    """Paper Tables 7 and 8: each listed value of one setting, the other at its registry default."""

    datasets: tuple[str, ...]
    archs: tuple[str, ...]
    seeds: tuple[int, ...]
    values: dict[str, dict[str, dict[str, list[float]]]]  # axis -> method -> dataset -> values


@dataclass(frozen=True)
class SweepSpec:
    name: str
    source: str
    description: str
    scale: str
    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    archs: tuple[str, ...]
    seeds: tuple[int, ...]
    data_seed: int = 0
    image_size: int | None = None  # every dataset's, unless its [data.<dataset>] table sets one
    overrides: dict[str, Any] = field(default_factory=dict)
    overrides_by: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # arch/dataset/method
    data: dict[str, DataSource] = field(default_factory=dict)
    slim_sweeps: SlimSweeps | None = None
    submitit: dict[str, Any] = field(default_factory=dict)
    regression: dict[str, Any] = field(default_factory=dict)
    # each main-grid run once per entry, with its settings laid over the others ({}: as configured); an
    # entry's optional ``methods`` list names the methods it applies to (default: every method)
    variants: tuple[dict[str, Any], ...] = ({},)
    # dataset -> the data options each of its main-grid runs is repeated with (absent: once, as configured)
    data_levels: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ loading


def resolve_sweep_file(name_or_path: str | Path) -> Path:
    """A path to a TOML file, or the name of a shipped config ('quick', 'paper', 'regression')."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
    raise HarnessError(f"sweep file {name_or_path} not found (shipped configs: {names})")


def load_sweep(name_or_path: str | Path) -> SweepSpec:
    """Read and check a sweep file; names of shipped configs are accepted too."""
    path = resolve_sweep_file(name_or_path)
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                           "TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"{path}: not valid TOML ({exc})") from None
    return parse_sweep(raw, source=str(path))


def parse_sweep(raw: dict[str, Any], source: str = "<sweep>") -> SweepSpec:
    """Check a parsed sweep file and turn it into a :class:`SweepSpec`."""
    def fail(message: str) -> HarnessError:
        return HarnessError(f"{source}: {message}")

    unknown = sorted(set(raw) - _TOP_LEVEL)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOP_LEVEL))}")
    for key in ("datasets", "methods", "archs", "seeds"):
        if not isinstance(raw.get(key), list) or not raw[key]:
            raise fail(f"'{key}' must be a non-empty list")
    scale = raw.get("scale", "tiny")
    if scale not in SCALES:
        raise fail(f"scale {scale!r} is not one of {', '.join(SCALES)}")
    seeds = _int_list(raw["seeds"], "seeds", fail)
    data_seed = raw.get("data_seed", 0)
    if isinstance(data_seed, bool) or not isinstance(data_seed, int) or data_seed < 0:
        raise fail(f"data_seed={data_seed!r}: must be a whole number >= 0")
    overrides_by = {}
    swept = raw.get("slim_sweeps") if isinstance(raw.get("slim_sweeps"), dict) else {}
    named = {"arch": raw["archs"] + list(swept.get("archs", [])),
             "dataset": raw["datasets"] + list(swept.get("datasets", [])), "method": raw["methods"]}
    for axis, allowed in named.items():
        table = _table(raw, f"overrides_by_{axis}", fail)
        stray = sorted(set(table) - set(allowed))
        if stray:
            raise fail(f"overrides_by_{axis} names {', '.join(stray)}, which the grid's {axis}s do not list")
        overrides_by[axis] = {k: _settings(table, k, fail, f"overrides_by_{axis}.") for k in table}
    data = {}
    for dataset, entry in _table(raw, "data", fail).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("root"), str):
            raise fail(f"[data.{dataset}] needs root = \"<folder of the dataset>\"")
        stray = sorted(set(entry) - {"root", "options", "image_size"})
        if stray:
            raise fail(f"[data.{dataset}] has unknown key(s) {', '.join(stray)}; known: root, options, image_size")
        size = _image_size(entry.get("image_size"), f"[data.{dataset}] image_size", fail)
        data[dataset] = DataSource(entry["root"], {k: str(v) for k, v in entry.get("options", {}).items()}, size)
    return SweepSpec(
        name=str(raw.get("name", Path(source).stem)), source=source,
        description=str(raw.get("description", "")), scale=scale, datasets=tuple(raw["datasets"]),
        methods=tuple(raw["methods"]), archs=tuple(raw["archs"]), seeds=tuple(seeds),
        data_seed=data_seed, image_size=_image_size(raw.get("image_size"), "image_size", fail),
        overrides=_settings(raw, "overrides", fail),
        overrides_by=overrides_by, data=data,
        slim_sweeps=_parse_slim_sweeps(raw, seeds, fail) if "slim_sweeps" in raw else None,
        submitit=_table(raw, "submitit", fail), regression=_table(raw, "regression", fail),
        variants=_variants(raw, fail), data_levels=_data_levels(raw, fail),
    )


def _variants(raw: dict[str, Any], fail: Callable[[str], HarnessError]) -> tuple[dict[str, Any], ...]:
    """``variants = [{}, {slim_ablation = "random_subset"}, ...]``: settings each main-grid run is repeated
    with (e.g. SLIM's variants and ablations for its stage-diagnostics table); an entry's ``methods = [...]``
    limits it to those methods (e.g. a reference row of SLIM_Val's alone)."""
    listed = raw.get("variants", [{}])
    if not isinstance(listed, list) or not listed or not all(isinstance(v, dict) for v in listed):
        raise fail("'variants' must be a non-empty list of tables of settings")
    for entry in listed:
        only = entry.get("methods", raw["methods"])
        if not isinstance(only, list) or not only or set(only) - set(raw["methods"]):
            raise fail(f"[variants] methods = {only!r}: must be a non-empty list of the grid's methods")
        for name, value in entry.items():
            if name != "methods":
                _check_setting(name, value, "[variants]", fail)
    return tuple(dict(v) for v in listed)


def _data_levels(raw: dict[str, Any], fail: Callable[[str], HarnessError]) -> dict[str, tuple[dict[str, Any], ...]]:
    """``[data_levels] <dataset> = [{}, {texture_contrast = 0.2}, ...]``: an axis of data options per dataset
    (a synthetic preset's difficulty knobs; {} is the dataset as configured), each checked here."""
    levels = {}
    for dataset, listed in _table(raw, "data_levels", fail).items():
        if dataset not in raw["datasets"]:
            raise fail(f"[data_levels] names {dataset}, which the grid's datasets do not list")
        if not isinstance(listed, list) or not listed or not all(isinstance(v, dict) for v in listed):
            raise fail(f"[data_levels] {dataset} must be a non-empty list of tables of data options")
        if is_synthetic(dataset):
            for level in listed:
                try:
                    knob_options(dataset, level)
                except HarnessError as exc:
                    raise fail(f"[data_levels] {exc}") from None
        levels[dataset] = tuple(dict(v) for v in listed)
    return levels


def _image_size(size: Any, what: str, fail: Callable[[str], HarnessError]) -> int | None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise fail(f"{what} must be a positive integer")
    return size


def _table(raw: dict[str, Any], key: str, fail: Callable[[str], HarnessError], prefix: str = "") -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise fail(f"[{prefix}{key}] must be a table")
    return value


def _settings(raw: dict[str, Any], key: str, fail: Callable[[str], HarnessError], prefix: str = "") -> dict:
    """A table of hyperparameters, each value checked against the settings schema (harness.engine.settings)."""
    table = _table(raw, key, fail, prefix)
    for name, value in table.items():
        _check_setting(name, value, f"[{prefix}{key}]", fail)
    return table


def _check_setting(key: str, value: Any, where: str, fail: Callable[[str], HarnessError]) -> None:
    try:
        check_value(key, value, where)
    except HarnessError as exc:
        raise fail(str(exc)) from None


def _int_list(values: Any, key: str, fail: Callable[[str], HarnessError]) -> list[int]:
    """A non-empty list of whole numbers (TOML's true and false are not: Python counts bools as ints)."""
    if not isinstance(values, list) or not values:
        raise fail(f"'{key}' must be a non-empty list of integers")
    wrong = [v for v in values if isinstance(v, bool) or not isinstance(v, int)]
    if wrong:
        raise fail(f"'{key}' must be a non-empty list of integers; {_toml_value(wrong[0])} is not one")
    return values


def _toml_value(value: Any) -> str:
    """A value as the sweep file spells it (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _parse_slim_sweeps(raw: dict[str, Any], seeds: list[int],
                       fail: Callable[[str], HarnessError]) -> SlimSweeps:
    table = _table(raw, "slim_sweeps", fail)
    stray = sorted(set(table) - {"datasets", "archs", "seeds", *SLIM_AXES})
    if stray:
        raise fail(f"[slim_sweeps] has unknown key(s) {', '.join(stray)}")
    datasets = table.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise fail("[slim_sweeps] needs datasets = [...]")
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    budgeted = [name for name in METHODS if METHODS.get(name).budgeted]  # the methods with a budget and subset
    for axis in SLIM_AXES:
        values[axis] = {}
        for method, entry in _table(table, axis, fail, "slim_sweeps.").items():
            if method not in budgeted:
                raise fail(f"[slim_sweeps.{axis}] names {method!r}; only {' and '.join(budgeted)} have a {axis}")
            per_dataset = entry if isinstance(entry, dict) else {d: entry for d in datasets}
            missing = [d for d in datasets if d not in per_dataset]
            if missing:
                raise fail(f"[slim_sweeps.{axis}.{method}] gives no values for {', '.join(missing)}")
            for dataset in datasets:
                listed = per_dataset[dataset]
                if not isinstance(listed, list) or not all(isinstance(v, int | float) for v in listed):
                    raise fail(f"[slim_sweeps.{axis}.{method}] values for {dataset} must be a list of "
                               "numbers")
                for value in listed:
                    _check_setting(axis, value, f"[slim_sweeps.{axis}.{method}]", fail)
            values[axis][method] = {d: list(per_dataset[d]) for d in datasets}
    return SlimSweeps(
        datasets=tuple(datasets), archs=tuple(table.get("archs", raw["archs"])),
        seeds=tuple(_int_list(table.get("seeds", seeds), "slim_sweeps.seeds", fail)), values=values,
    )


# ---------------------------------------------------------------------------------------- expansion


def expand(spec: SweepSpec, *, device: str = "auto",
           extra_overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every run config of the sweep, each once, in run order (see :func:`_order_runs`).

    ``extra_overrides`` (the command line's ``--set``) win over the file's overrides; the SLIM sweep
    values win over both.
    """
    check_inputs(spec)
    configs: dict[str, dict[str, Any]] = {}
    variant_of: dict[str, int] = {}

    def add(dataset: str, method: str, arch: str, seed: int, axis_values: dict[str, Any],
            variant: int, level: dict[str, Any] | None = None) -> None:
        by = spec.overrides_by
        overrides = {**spec.overrides, **by["arch"].get(arch, {}), **by["dataset"].get(dataset, {}),
                     **by["method"].get(method, {}), **(extra_overrides or {}), **axis_values}
        source = spec.data.get(dataset)
        config = make_config(
            dataset=dataset, method=method, arch=arch, seed=seed, scale=spec.scale, data_seed=spec.data_seed,
            data_root=str(Path(source.root).expanduser().resolve()) if source else None,
            data_options={**(source.options if source else {}), **(level or {})},
            image_size=(source.image_size if source else None) or spec.image_size,
            overrides=_resolved_paths(overrides), device=device,
        )
        rid = run_id(config)
        if rid not in configs:
            configs[rid] = config
            variant_of[rid] = variant

    for dataset, method, arch, seed, extra in product(spec.datasets, spec.methods, spec.archs, spec.seeds,
                                                      spec.variants):
        if method not in extra.get("methods", [method]):
            continue
        known = default_hparams(method, dataset, spec.scale)  # a variant's settings reach the methods that have them
        applies = method in extra.get("methods", spec.methods)
        settings = {k: v for k, v in extra.items() if applies and k in known}
        for level in spec.data_levels.get(dataset, ({},)):
            add(dataset, method, arch, seed, settings, 0, level)
    sweeps = spec.slim_sweeps
    if sweeps is not None:
        for axis in SLIM_AXES:
            other = SLIM_AXES[1 - SLIM_AXES.index(axis)]
            for method, per_dataset in sweeps.values[axis].items():
                for dataset, arch, seed in product(sweeps.datasets, sweeps.archs, sweeps.seeds):
                    defaults = default_hparams(method, dataset, spec.scale)
                    add(dataset, method, arch, seed, {axis: defaults[axis], other: defaults[other]}, 0)
                    for value in per_dataset[dataset]:
                        cast = int(value) if axis == "budget" else float(value)
                        add(dataset, method, arch, seed, {axis: cast, other: defaults[other]}, 1)
    return _order_runs(list(configs.values()), spec, variant_of)


def only(configs: list[dict[str, Any]], key: str, names: list[str] | None) -> list[dict[str, Any]]:
    """The runs of ``configs`` whose ``key`` ("dataset" or "method") is one of ``names`` (all of them when
    None), in their order; a name the sweep does not run is an error."""
    if names is None:
        return configs
    known = list(dict.fromkeys(c[key] for c in configs))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise HarnessError(f"--{key}s: the sweep has no runs of {', '.join(unknown)}; it runs {', '.join(known)}")
    return [c for c in configs if c[key] in names]


def _order_runs(configs: list[dict[str, Any]], spec: SweepSpec,
                variant_of: dict[str, int]) -> list[dict[str, Any]]:
    """ERM first (it creates the shared reference models), then the methods in the file's order.

    Within a method the main-grid runs go before the SLIM sweep values, and consecutive runs differ in
    dataset and arch, so parallel workers build different shared stages instead of waiting on one.
    """
    methods = ["erm"] + [m for m in spec.methods if m != "erm"]
    methods += sorted({c["method"] for c in configs} - set(methods))

    def key(config: dict[str, Any]) -> tuple:
        return (methods.index(config["method"]), variant_of[run_id(config)], config["seed"],
                _position(spec.datasets, config["dataset"]), _position(spec.archs, config["arch"]))

    return sorted(configs, key=key)


def _position(items: tuple[str, ...], item: str) -> int:
    return items.index(item) if item in items else len(items)


def _resolved_paths(overrides: dict[str, Any]) -> dict[str, Any]:
    """Weights files named by ``pretrained`` become absolute paths (the run may start elsewhere)."""
    choice = overrides.get("pretrained")
    if isinstance(choice, str) and choice not in ("standin", "none"):
        return {**overrides, "pretrained": str(Path(choice).expanduser().resolve())}
    return overrides


def check_inputs(spec: SweepSpec) -> None:
    """Fail before any run when a real dataset's folder or a weights file the sweep names is missing."""
    known = {e.name: e for e in list_datasets()}
    swept = spec.slim_sweeps.datasets if spec.slim_sweeps else ()
    for dataset in dict.fromkeys(spec.datasets + swept):
        if dataset not in known:
            raise HarnessError(f"{spec.source}: unknown dataset {dataset!r}; "
                               "`python -m harness datasets` lists them")
        if known[dataset].synthetic:
            continue
        source = spec.data.get(dataset)
        if source is None:
            raise HarnessError(f"{spec.source}: {dataset} is read from disk; "
                               f"add [data.{dataset}] root = \"...\"")
        if not Path(source.root).expanduser().is_dir():
            raise HarnessError(f"{spec.source}: data folder of {dataset} not found: {source.root} "
                               f"(put the dataset there or edit [data.{dataset}] root)")
    tables = [spec.overrides, *(t for by in spec.overrides_by.values() for t in by.values())]
    for table in tables:
        choice = table.get("pretrained")
        is_file_choice = isinstance(choice, str) and choice not in ("imagenet", "standin", "none")
        if is_file_choice and not Path(choice).expanduser().is_file():
            raise HarnessError(f"{spec.source}: pretrained weights file not found: {choice} "
                               "(place the timm weights there or edit the file's pretrained setting)")
