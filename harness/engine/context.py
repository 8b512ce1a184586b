"""The run context a method gets: the benchmark, the run's settings and shared, cached stages.

The context gives the pretrained starting point and the reference ERM model of (dataset, arch, seed),
which ERM, DFR, JTT's selection and both SLIM variants reuse.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.core.cache import ArtifactCache, load_tensors, save_tensors
from harness.core.errors import HarnessError
from harness.data.catalog import dataset_fingerprint
from harness.data.containers import Benchmark
from harness.engine.hparams_registry import run_hparams
from harness.engine.pretrain import resolve_input_size, resolve_weights
from harness.engine.training import SELECTIONS, FitResult, Objective, TrainHparams, fit
from harness.models.network import Network, create_model
from harness.models.stem_cache import with_stem_inputs
from harness.models.weights import Weights

MODEL_KEYS = ("width", "depth", "pretrained", "finetune", "input_size")
TRAIN_KEYS = tuple(TrainHparams.__dataclass_fields__)


@dataclass
class RunContext:
    benchmark: Benchmark
    arch: str
    seed: int
    scale: str
    device: torch.device
    hparams: dict[str, Any]
    method: str  # whose run this is: its own defaults tell the settings its user changed (reference_hparams)
    cache: ArtifactCache
    run_dir: Path  # files a method saves beside its record (figures, query logs)
    show_progress: bool = True
    _weights: Weights | None = field(default=None, repr=False)

    # ---- models ---------------------------------------------------------------------------------
    def weights(self) -> Weights:
        """The starting weights (``pretrained``: imagenet, standin, none or a file; see harness.models.weights)."""
        if self._weights is None:
            self._weights = resolve_weights(
                self.hparams.get("pretrained", "standin"), self.arch, self.input_size, width=self.width,
                depth=self.hparams.get("depth"), device=self.device, show_progress=self.show_progress)
        return self._weights

    @property
    def width(self) -> float:
        return self.hparams.get("width", 1.0)

    @property
    def input_size(self) -> int:
        """The size the backbone sees (``input_size='auto'``: 256 px for EfficientNets below that)."""
        return resolve_input_size(self.hparams.get("input_size", "auto"), self.arch, self.benchmark.image_size)

    @property
    def finetune(self) -> str:
        return self.hparams.get("finetune", "full")

    def _create(self, weights: Weights | None) -> Network:
        return create_model(self.arch, self.benchmark.num_classes, self.benchmark.image_size, width=self.width,
                            depth=self.hparams.get("depth"), weights=weights, input_size=self.input_size,
                            inputs="stem" if self.finetune == "upper" else "images")

    def new_model(self) -> Network:
        """A fresh model from the starting weights; the new head is initialised from the run's seed."""
        weights = self.weights()
        torch.manual_seed(self.seed)
        return self._create(weights)

    def use_stem_cache(self) -> None:
        """``finetune='upper'``: give every split the frozen stem's output (computed once, cached)."""
        if self.finetune != "upper" or self.benchmark.splits["train"].stem is not None:
            return
        encoder = create_model(self.arch, self.benchmark.num_classes, self.benchmark.image_size,
                               width=self.width, depth=self.hparams.get("depth"), weights=self.weights(),
                               input_size=self.input_size)
        key = dict(data=dataset_fingerprint(self.benchmark), arch=self.arch, width=self.width,
                   depth=self.hparams.get("depth"), input_size=self.input_size, weights=self.weights().describe())
        self.benchmark = with_stem_inputs(self.benchmark, encoder, self.cache, key, self.device,
                                          show_progress=self.show_progress)

    def train(self, model: nn.Module, hp: dict[str, Any], *, split: str = "train", indices=None,
              objective: Objective | None = None, desc: str = "train", seed: int | None = None,
              on_batch=None) -> FitResult:
        """Train ``model`` on ``split`` with the training settings in ``hp`` (validated on val); ``on_batch`` as
        in ``harness.engine.training.fit``."""
        b = self.benchmark
        return fit(model, b.splits[split], TrainHparams.from_dict(hp), device=self.device,
                   seed=self.seed if seed is None else seed, num_groups=b.num_groups, indices=indices,
                   objective=objective, val=b.splits["val"], desc=desc, show_progress=self.show_progress,
                   on_batch=on_batch)

    def reference_hparams(self) -> dict[str, Any]:
        """The reference model's settings: what an ERM run on this dataset, scale and architecture has (ERM's
        defaults and the model choices), with every model or training setting this run's user changed from
        its method's own defaults (a sweep file's overrides, ``--set``). So the reference DFR and SLIM start
        from is the model the sweep's ERM run trains, and that run takes it from the cache."""
        own = run_hparams(self.method, self.benchmark.name, self.scale, self.arch)
        changed = {k: v for k, v in self.hparams.items() if k in (*MODEL_KEYS, *TRAIN_KEYS) and own.get(k) != v}
        return run_hparams("erm", self.benchmark.name, self.scale, self.arch, changed)

    def reference_key(self) -> dict[str, Any]:
        return dict(data=dataset_fingerprint(self.benchmark), arch=self.arch, seed=self.seed,
                    hparams=self.reference_hparams(), weights=self.weights().describe()["sha256"])

    def reference_model(self) -> tuple[Network, dict[str, Any]]:
        """The ERM reference model f_r of (dataset, arch, seed), trained once and cached.

        It is selected by val average accuracy, so methods built on it (SLIM) read no group labels.
        Returns the model and its selection record.
        """
        return self.load_model(self._reference_path())

    def reference_history(self) -> list[dict[str, Any]]:
        """The reference model's training curve, epoch by epoch (what an ERM run records)."""
        return load_tensors(self._reference_path())[1].get("history", [])

    def _reference_path(self) -> Path:
        hp = self.reference_hparams()
        if SELECTIONS[hp["selection"]]:
            raise HarnessError("the reference model must be selected without group labels")

        def train(path: Path) -> None:
            model = self.new_model()
            result = self.train(model, hp, desc=f"ERM reference {self.arch} seed {self.seed}")
            save_tensors(path, model.state_dict(), meta={"selection": result.selection, "history": result.history})

        return self.cache.get_or_create("reference", self.reference_key(), "safetensors", train)

    def load_model(self, path: Path) -> tuple[Network, dict[str, Any]]:
        state, meta = load_tensors(path)
        model = self._create(None)
        model.load_state_dict(state)
        return model.to(self.device).eval(), meta.get("selection", {})
