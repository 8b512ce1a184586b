"""Experiment grids declared in TOML, expanded into run configs and run with resume.

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

Every run is identified by the hash of its config (``runner.run_id``, the device excluded), so a sweep
started again skips the runs whose record says ``ok`` and retries the failed ones. Records made by another
code version (harness.core.versions) are stale: a sweep that would add runs beside them stops before any work
unless told to rerun them (``stale="rerun"``) or keep them (``stale="keep"``). Runs go in stages,
ERM first: ERM's runs create the reference models (one per dataset, arch and seed) that DFR, JTT and
SLIM reuse from the sweep's shared cache (``OUT/cache``).
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import time
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.core.disk import DiskFull
from harness.core.errors import HarnessError
from harness.core.progress import progress
from harness.core.records import atomic_write_json, load_records, now_iso
from harness.core.registry import METHODS
from harness.core.tempfiles import HOST, process_alive, remove_stale_temps, temp_path
from harness.core.versions import current_version, record_version
from harness.core.versions import describe as describe_version
from harness.data.catalog import list_datasets
from harness.data.facts import SCALES, is_synthetic
from harness.data.synthetic import knob_options
from harness.engine.hparams_registry import default_hparams
from harness.engine.settings import check_value
from harness.experiments.executors import Executor, RunOutcome, is_current, record_status, run_record, scratch_folder
from harness.experiments.runner import check_writable, make_config, run_id

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


# ----------------------------------------------------------------------------------------- running


@dataclass
class SweepOutcome:
    run_ids: list[str]
    skipped: list[str]  # finished before this start
    completed: list[str]
    failed: list[RunOutcome]
    stage_seconds: dict[str, float]
    elsewhere: list[str] = field(default_factory=list)  # finished meanwhile by another sweep on this --out
    claimed: list[str] = field(default_factory=list)  # still held by a sweep on another host: not run here


def is_finished(out_dir: Path, rid: str) -> bool:
    """True when the run's record exists, reads as JSON, says ``ok`` and was made by this code version."""
    return is_current(out_dir, rid)


STALE_POLICIES = ("refuse", "rerun", "keep")


def stale_runs(out_dir: Path, run_ids: list[str]) -> dict[str, str | None]:
    """The ``ok`` runs of ``run_ids`` made by another code version than this one: run id -> their version."""
    current = current_version()
    versions = {rid: record_version(record) for rid in run_ids
                if (record := run_record(out_dir, rid)) is not None and record.get("status") == "ok"}
    return {rid: version for rid, version in versions.items() if version != current}


def _versions_text(versions: Iterable[str | None]) -> str:
    counts = Counter(describe_version(v) for v in versions)
    return ", ".join(f"{count} by {version}" for version, count in sorted(counts.items()))


def sweep_records(out_dir: Path, run_ids: list[str]) -> list[dict[str, Any]]:
    """The records of ``run_ids`` that exist under ``out_dir/runs`` (ok and failed)."""
    return load_records(Path(out_dir) / "runs", run_ids)


# ------------------------------------------------------------------------------------------ claims
# A sweep claims each run before starting it: OUT/claims/<run_id>.claim names its host and pid. A second
# sweep on the same folder leaves claimed runs alone; a claim whose process is dead (on this host) is stale.

CLAIM_POLL_SECONDS = 2.0


def claim_path(out_dir: Path, rid: str) -> Path:
    return Path(out_dir) / "claims" / f"{rid}.claim"


def claim_owner(out_dir: Path, rid: str) -> dict[str, Any] | None:
    """Who holds the run's claim ({host, pid}), or None when nobody alive on this host does."""
    try:
        owner = json.loads(claim_path(out_dir, rid).read_text())
    except (OSError, json.JSONDecodeError):
        return None  # no claim (a claim is linked into place whole, so it never reads half-written)
    if owner.get("host") == HOST and not process_alive(int(owner.get("pid", 0))):
        return None
    return owner


def claim_run(out_dir: Path, rid: str) -> bool:
    """Claim the run for this process; False when another live sweep holds it (a stale claim is taken)."""
    path = claim_path(out_dir, rid)
    scratch_folder(path.parent)
    mine = temp_path(path)
    mine.write_text(json.dumps({"host": HOST, "pid": os.getpid(), "created": now_iso()}))
    try:
        for _ in range(2):
            try:
                os.link(mine, path)  # atomic: fails if a claim exists
                return True
            except FileExistsError:
                if claim_owner(out_dir, rid) is not None:
                    return False
                path.unlink(missing_ok=True)  # its sweep is dead: take it over
        return False
    finally:
        mine.unlink(missing_ok=True)


def _claim_unfinished(out_dir: Path, rid: str) -> bool:
    """Claim the run unless another sweep holds it or has finished it since this sweep started."""
    if not claim_run(out_dir, rid):
        return False
    if is_finished(out_dir, rid):
        release_run(out_dir, rid)
        return False
    return True


def release_run(out_dir: Path, rid: str) -> None:
    """Drop this process's claim on the run (another's is left alone)."""
    owner = claim_owner(out_dir, rid)
    if owner is not None and owner.get("host") == HOST and owner.get("pid") == os.getpid():
        claim_path(out_dir, rid).unlink(missing_ok=True)


def _wait_for_claims(configs: list[dict[str, Any]], out_dir: Path, log: Callable[[str], None]) -> dict[str, list]:
    """Wait while sweeps on this host run ``configs``; sort them into 'done' (ok records), 'remote'
    (claims of other hosts, which cannot be checked) and 'rerun' (their sweep died or failed them)."""
    def owners() -> dict[str, dict]:
        return {rid: owner for rid in map(run_id, configs) if (owner := claim_owner(out_dir, rid)) is not None}

    held = owners()
    local = {rid for rid, owner in held.items() if owner["host"] == HOST}
    if local:
        pids = sorted({held[rid]["pid"] for rid in local})
        log(f"waiting for {len(local)} run(s) that another sweep on this folder is running (pid "
            f"{', '.join(map(str, pids))})")
    while local & set(held := owners()):
        time.sleep(CLAIM_POLL_SECONDS)
    sorted_runs: dict[str, list] = {"done": [], "remote": [], "rerun": []}
    for config in configs:
        rid = run_id(config)
        kind = "remote" if rid in held else "done" if is_finished(out_dir, rid) else "rerun"
        sorted_runs[kind].append(config if kind == "rerun" else rid)
    for rid in sorted_runs["remote"]:
        log(f"  claimed by a sweep on host {held[rid]['host']} (pid {held[rid]['pid']}), not run here: {rid} "
            f"(delete {claim_path(out_dir, rid)} if that sweep is gone)")
    return sorted_runs


# ----------------------------------------------------------------------------------------- running


def run_sweep(configs: list[dict[str, Any]], out_dir: Path, executor: Executor, *, name: str = "sweep",
              log: Callable[[str], None] = print, show_progress: bool = True, stale: str = "refuse") -> SweepOutcome:
    """Run every config whose record is not ``ok`` yet, stage by stage; never stop at a failing run, except
    for a full disk: that run's failure is recorded where the disk still allows and the sweep ends with a
    DiskFull naming the file and the space (no later run starts; starting again resumes).

    Runs another sweep on the same folder has claimed are left to it; this one waits for them at the end
    and runs those that sweep did not finish. ``stale`` says what to do with finished runs of another code
    version when there are runs to make beside them: "refuse" (a HarnessError before any work: their table
    cells would mix versions), "rerun" them, or "keep" them (the tables then need ``allow_mixed``).
    """
    if stale not in STALE_POLICIES:
        raise HarnessError(f"stale={stale!r}: choose from {', '.join(STALE_POLICIES)}")
    out_dir = Path(out_dir)
    check_writable(out_dir)
    remove_stale_temps(out_dir)
    run_ids = [run_id(c) for c in configs]
    statuses = {rid: record_status(out_dir, rid) for rid in run_ids}
    old = stale_runs(out_dir, run_ids)
    rerun = list(old) if stale == "rerun" else []
    statuses.update(dict.fromkeys(rerun, "stale"))
    skipped = [rid for rid in run_ids if statuses[rid] == "ok"]
    retried = [rid for rid in run_ids if statuses[rid] == "failed"]
    pending = [c for c, rid in zip(configs, run_ids, strict=True) if statuses[rid] != "ok"]
    if old:
        what = (f"{name}: {len(old)} finished run(s) were made by another code version "
                f"({_versions_text(old.values())}; this is {describe_version(current_version())})")
        if stale == "refuse" and pending:
            raise HarnessError(f"{what}, and {len(pending)} run(s) would be made beside them: start again with "
                               "--rerun-stale to rerun them, or --allow-mixed to keep them and mix versions")
        log(f"{what}: {'rerun (--rerun-stale)' if stale == 'rerun' else 'kept'}")
    cache_dir = scratch_folder(out_dir / "cache")  # models and features: regenerable, never committed
    atomic_write_json(out_dir / "sweep.json", {"name": name, "created": now_iso(), "run_ids": run_ids})
    log(f"{name}: {len(run_ids)} runs; {len(skipped)} finished earlier (skipped), "
        f"{len(retried)} failed earlier (retried), "
        + (f"{len(rerun)} of another code version (rerun), " if rerun else "")
        + f"{len(pending) - len(retried) - len(rerun)} new")

    stage_seconds: dict[str, float] = {}
    if pending and executor.prepares_locally:
        started = time.monotonic()
        executor.prepare(pending)
        stage_seconds["pretraining (stand-in weights)"] = time.monotonic() - started
    outcome = SweepOutcome(run_ids, skipped, [], [], stage_seconds)
    time_left = TimeLeft(pending)
    full_disk = None  # a run that found the disk full stops the sweep: the runs after it would too
    while pending and full_disk is None:
        deferred: list[dict[str, Any]] = []
        results = _outcomes(_stages(pending), executor, out_dir, cache_dir, stage_seconds, deferred)
        with contextlib.closing(results):  # stopping early releases this sweep's claims
            for result in progress(results, desc=f"{name} runs", total=len(pending), enabled=show_progress):
                (outcome.completed.append(result.run_id) if result.status == "ok" else outcome.failed.append(result))
                log(f"  {result.status:6s} {result.label} ({result.seconds:.0f} s) {result.run_id}"
                    + (f": {result.error}" if result.error else "") + f" [{time_left.finished(result)}]")
                if result.disk_full:
                    full_disk = result.disk_full
                    break
        if full_disk is not None:
            break
        waited = _wait_for_claims(deferred, out_dir, log) if deferred else {"done": [], "remote": [], "rerun": []}
        outcome.elsewhere += waited["done"]
        outcome.claimed += waited["remote"]
        pending = waited["rerun"]
    if outcome.elsewhere:
        log(f"{len(outcome.elsewhere)} run(s) were run by another sweep on this folder")
    if outcome.failed:
        log(f"{len(outcome.failed)} run(s) failed (records with status 'failed'; "
            "they are retried on the next start):")
        for failed in outcome.failed:
            log(f"  {failed.label} {failed.run_id}: {failed.error}")
    if full_disk is not None:
        left = len(run_ids) - len(skipped) - len(outcome.completed) - len(outcome.failed)
        raise DiskFull(f"{name} stopped, {left} run(s) not started: {full_disk}")
    return outcome


class TimeLeft:
    """How many runs are left and about how long they will take: each pending run is assumed to take what
    the finished runs of its method took on average in this start (all finished runs' average for a method
    not seen yet), divided by the parallelism observed so far (compute seconds per wall second)."""

    def __init__(self, configs: list[dict[str, Any]]) -> None:
        self.pending = {run_id(c): c["method"] for c in configs}
        self.total = len(configs)
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.started = time.monotonic()

    def finished(self, result: RunOutcome) -> str:
        """Account for ``result``; '12/162 done, 150 left, about 35 min'."""
        method = self.pending.pop(result.run_id, None)
        if method is not None:
            self.seconds[method].append(result.seconds)
        done = self.total - len(self.pending)
        text = f"{done}/{self.total} done, {len(self.pending)} left"
        finished = [s for values in self.seconds.values() for s in values]
        if not self.pending or not finished:
            return text
        wall = max(time.monotonic() - self.started, 1e-9)
        parallel = max(1.0, sum(finished) / wall)
        overall = sum(finished) / len(finished)
        need = sum(np.mean(self.seconds[m]) if self.seconds.get(m) else overall for m in self.pending.values())
        return f"{text}, about {format_duration(need / parallel)} to go"


def format_duration(seconds: float) -> str:
    """'45 s', '12 min', '2.3 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _stages(configs: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Consecutive runs of one method form a stage; stages run one after the other."""
    stages: list[tuple[str, list[dict[str, Any]]]] = []
    for config in configs:
        if not stages or stages[-1][0] != config["method"]:
            stages.append((config["method"], []))
        stages[-1][1].append(config)
    return stages


def _outcomes(stages: list[tuple[str, list[dict[str, Any]]]], executor: Executor, out_dir: Path,
              cache_dir: Path, stage_seconds: dict[str, float], deferred: list[dict[str, Any]]) -> Iterator[RunOutcome]:
    """Each stage's runs this sweep could claim, through the executor; the others go to ``deferred``."""
    for method, configs in stages:
        started = time.monotonic()
        mine = [c for c in configs if _claim_unfinished(out_dir, run_id(c))]
        deferred += [c for c in configs if not any(c is m for m in mine)]
        try:
            for result in executor.map(mine, out_dir, cache_dir) if mine else ():
                release_run(out_dir, result.run_id)
                yield result
        finally:
            for config in mine:
                release_run(out_dir, run_id(config))
        label = f"{method} (shared reference models)" if method == "erm" else method
        stage_seconds[label] = stage_seconds.get(label, 0.0) + time.monotonic() - started


def stage_report(stage_seconds: dict[str, float]) -> str:
    """Lines 'stage: seconds' with a total, for the console and the reproduction README."""
    width = max((len(s) for s in stage_seconds), default=5)
    lines = [f"  {stage:<{width}}  {seconds:8.1f} s" for stage, seconds in stage_seconds.items()]
    lines.append(f"  {'total':<{width}}  {sum(stage_seconds.values()):8.1f} s")
    return "\n".join(lines)



def machine_description(device: str) -> str:
    """CPU model and core count, and the GPU when the sweep used one."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    if device != "cpu" and torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return f"{text}; GPU: {torch.cuda.device_count()} x {', '.join(names)}"
    return f"{text}; no GPU used"


def _display_path(source: str) -> str:
    """``source`` relative to the repository (shipped configs) or the working directory when under one."""
    path = Path(source).resolve()
    for base in (CONFIG_DIR.parent.parent, Path.cwd()):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return source


def write_reproduction_readme(out_dir: Path, *, spec: SweepSpec, outcome: SweepOutcome,
                              records: list[dict[str, Any]], stage_seconds: dict[str, float],
                              wall_seconds: float, command: str, device: str, outputs: list[Path]) -> Path:
    """OUT/README.md: when, how and on what the results were made, stage times, and links to them."""
    ok = sum(r.get("status") == "ok" for r in records)
    links = [p.relative_to(out_dir) for p in outputs if p.is_relative_to(out_dir)]
    per_run = sum(link.parent.name == "runs" for link in links)
    lines = [
        f"# Reproduction: {spec.name}",
        "",
        *([spec.description.strip(), ""] if spec.description.strip() else []),
        f"- date: {now_iso()}",
        f"- command: `{command}`",
        f"- machine: {machine_description(device)}",
        f"- software: python {platform.python_version()}, torch {torch.__version__}",
        f"- sweep file: {_display_path(spec.source)}",
        f"- runs: {len(outcome.run_ids)} ({ok} ok, {len(outcome.failed)} failed); "
        f"{len(outcome.skipped)} were finished by an earlier start and not rerun",
        f"- wall time of this start: {wall_seconds / 60:.1f} min",
        "",
        "## Time per stage (this start)",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *(f"| {stage} | {seconds:.1f} |" for stage, seconds in stage_seconds.items()),
        f"| total | {sum(stage_seconds.values()):.1f} |",
        "",
        "## Outputs",
        "",
        *(f"- [{link}]({link})" for link in links if link.parent.name != "runs"),
        "",
        f"Figures the runs drew (attention spaces, elbow curves): {per_run} files in `figures/runs/`. "
        "Run records (one JSON file per run, named by its config hash) are in `runs/`.",
    ]
    if outcome.failed:
        lines += ["", "## Failed runs", ""]
        lines += [f"- {o.label} (`{o.run_id}`): {o.error}" for o in outcome.failed]
    path = Path(out_dir) / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
