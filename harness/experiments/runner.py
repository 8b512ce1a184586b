"""Run one configuration: load data, fit the method, evaluate, write the record."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.core import cpu
from harness.core.cache import ArtifactCache, save_tensors
from harness.core.errors import HarnessError
from harness.core.records import SCHEMA_VERSION, atomic_write_json, config_hash, environment, now_iso, record_path
from harness.core.tempfiles import remove_stale_temps
from harness.core.threads import pinned_threads
from harness.core.versions import code_version
from harness.data.catalog import load_benchmark
from harness.data.facts import is_synthetic
from harness.data.synthetic import data_version, knob_options
from harness.engine.context import RunContext
from harness.engine.hparams_registry import default_arch, default_image_size, run_hparams
from harness.engine.methods import get_method
from harness.engine.settings import check_run_inputs, check_seed
from harness.experiments.predictions import collect_predictions, output_reference
from harness.plugins import load_plugins

# Config keys that do not change a run's result and so are left out of its hash.
UNHASHED = ("device",)


def make_config(
    *, dataset: str, method: str, arch: str | None = None, seed: int = 0, scale: str = "tiny",
    data_seed: int = 0, data_root: str | None = None, data_options: dict[str, str] | None = None,
    image_size: int | None = None, overrides: dict[str, Any] | None = None, device: str = "auto",
) -> dict[str, Any]:
    """The full configuration of a run: every setting, hparams included, each checked (harness.engine.settings)."""
    load_plugins()
    cpu.check()
    get_method(method)  # unknown names fail here, before any work
    check_run_inputs(dataset, data_root=data_root, image_size=image_size, data_options=data_options)
    check_seed("--seed", seed)
    check_seed("--data-seed", data_seed)
    if is_synthetic(dataset):
        data_options = knob_options(dataset, data_options)  # canonical, so the same knobs give the same run id
    arch = arch or default_arch(dataset, scale)
    image_size = image_size or default_image_size(dataset, scale, arch)
    return {
        "dataset": dataset, "method": method, "arch": arch, "seed": seed, "scale": scale,
        "data_seed": data_seed, "data_root": data_root, "data_options": data_options or {},
        **({"image_size": image_size} if image_size is not None else {}),
        # what the preset draws is part of the run's identity: a resumed sweep reruns what a new generator
        # or a recalibrated preset draws differently instead of counting old records as finished
        **({"data_version": data_version(dataset)} if is_synthetic(dataset) else {}),
        "hparams": run_hparams(method, dataset, scale, arch, overrides), "device": device,
    }


def model_facts(ctx: RunContext, model: torch.nn.Module) -> dict[str, Any]:
    """What a record says about the model: architecture, starting weights (name, file, sha256), protocol."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"arch": ctx.arch, "weights": ctx.weights().describe(), "finetune": ctx.finetune,
            "input_size": ctx.input_size, "trainable_parameters": int(trainable),
            "parameters": int(sum(p.numel() for p in model.parameters()))}


def run_id(config: dict[str, Any]) -> str:
    return config_hash({k: v for k, v in config.items() if k not in UNHASHED})


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HarnessError("--device cuda asked for, but no GPU is visible to torch")
    if name != "cpu" and not name.startswith("cuda"):
        raise HarnessError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


def check_writable(out_dir: Path, what: str = "output folder") -> None:
    """``out_dir`` exists (made if need be) and can be written, else one line naming it as ``what``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"cannot create {what} {out_dir}: {exc.strerror}") from None
    if not os.access(out_dir, os.W_OK):
        raise HarnessError(f"{what} {out_dir} is not writable")


def make_context(config: dict[str, Any], out_dir: Path, *, cache_dir: Path | None = None,
                 show_progress: bool = True) -> RunContext:
    """The seeded context of ``config`` (its benchmark loaded, with the frozen stem's output where the protocol
    caches it), caching under ``cache_dir`` or ``out_dir/cache``: a generated preset is drawn by the first run
    that needs it and read back by the others."""
    device = resolve_device(config["device"])
    torch.manual_seed(config["seed"])
    np.random.seed(config["seed"] % 2**32)
    cache = ArtifactCache(cache_dir or out_dir / "cache")
    benchmark = load_benchmark(config["dataset"], scale=config["scale"], data_seed=config["data_seed"],
                               data_root=config["data_root"], options=config["data_options"],
                               image_size=config.get("image_size"), show_progress=show_progress, store=cache)
    ctx = RunContext(benchmark=benchmark, arch=config["arch"], seed=config["seed"], scale=config["scale"],
                     device=device, hparams=config["hparams"], method=config["method"],
                     cache=cache, run_dir=out_dir / "runs" / run_id(config),
                     show_progress=show_progress)
    ctx.use_stem_cache()
    return ctx


def execute(config: dict[str, Any], out_dir: Path, *, cache_dir: Path | None = None,
            show_progress: bool = True, save_model: bool = False) -> Path:
    """Run ``config`` and write its record to ``out_dir/runs/<run_id>.json``; return that path.

    Beside the record go its per-example predictions (``<run_id>.predictions.npz``, harness.experiments.predictions)
    and, with ``save_model``, the final weights (``<run_id>.model.safetensors``); the record's ``outputs``
    names each with its sha256. The run's float work uses a fixed thread count (:mod:`harness.core.threads`), so
    its record is the same whatever the machine's cores; the count is written into the record's environment.
    """
    load_plugins()  # a sweep worker or cluster job may start here
    out_dir = Path(out_dir)
    check_writable(out_dir)
    remove_stale_temps(out_dir / "runs")
    with pinned_threads() as threads:
        record = _run(config, out_dir, cache_dir, show_progress, save_model)
    record["environment"]["threads"] = threads
    path = record_path(out_dir, record["run_id"])
    atomic_write_json(path, record)
    return path


def _run(config: dict[str, Any], out_dir: Path, cache_dir: Path | None, show_progress: bool,
         save_model: bool) -> dict[str, Any]:
    """Load the data, fit the method, evaluate it, write its outputs: the run's record (not yet written)."""
    rid = run_id(config)
    started = time.monotonic()
    ctx = make_context(config, out_dir, cache_dir=cache_dir, show_progress=show_progress)
    benchmark, device = ctx.benchmark, ctx.device
    method = get_method(config["method"])(config["hparams"])
    result = method.fit(ctx)
    predictions = collect_predictions(result.model, benchmark, device, show_progress=show_progress)
    outputs = {"predictions": record_path(out_dir, rid).with_suffix(".predictions.npz")}
    predictions.save(outputs["predictions"])
    if save_model:  # loading safetensors unpickles nothing; the metadata rebuilds the network (harness.api)
        outputs["model"] = record_path(out_dir, rid).with_suffix(".model.safetensors")
        network = dict(arch=ctx.arch, num_classes=benchmark.num_classes, image_size=benchmark.image_size,
                       width=ctx.width, depth=ctx.hparams.get("depth"), input_size=ctx.input_size)
        save_tensors(outputs["model"], result.model.state_dict(), meta={"run_id": rid, "network": network})
    labels = method.labels_used(result)
    split = labels["attention_split"]
    record = {
        "schema": SCHEMA_VERSION, "run_id": rid, "created": now_iso(), "status": "ok", "error": None,
        **{k: config[k] for k in ("dataset", "method", "arch", "seed", "scale")},
        "config": config,
        "metrics": predictions.metrics(),
        "labels_used": labels,
        "model": model_facts(ctx, result.model),
        "cost": {
            "annotation_fraction": result.attention_queries / len(benchmark.splits[split]) if split else 0.0,
            "annotation_seconds": result.annotation_seconds,
            "extra_training_fraction": result.extra_training_fraction,
            "seconds": round(time.monotonic() - started, 2),
        },
        "model_selection": result.selection,
        "details": result.details,
        "environment": environment(str(device)),
        "code_version": code_version(),
        "outputs": {name: output_reference(path) for name, path in outputs.items()},
    }
    if "method_label" in result.details:
        record["method_label"] = result.details.pop("method_label")
    return record

