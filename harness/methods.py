"""What a method is, the run context it gets, and the method registry.

A method (DomainBed's "algorithm") takes a :class:`RunContext` and returns a :class:`MethodResult`: a
model mapping float images in [0, 1] to logits, plus what it used and what it cost. The context gives
shared, cached stages: the pretrained starting point and the reference ERM model of
(dataset, arch, seed), which ERM, DFR, JTT's selection and both SLIM variants reuse.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from harness.cache import ArtifactCache, load_tensors, save_tensors
from harness.data import Benchmark
from harness.datasets import dataset_fingerprint
from harness.errors import HarnessError
from harness.hparams_registry import default_hparams
from harness.models import Network, create_model
from harness.pretrain import resolve_input_size, resolve_weights
from harness.stem_cache import with_stem_inputs
from harness.training import SELECTIONS, FitResult, Objective, TrainHparams, fit
from harness.weights import Weights

MODEL_KEYS = ("width", "depth", "pretrained", "finetune", "input_size")
TRAIN_KEYS = tuple(TrainHparams.__dataclass_fields__)


@dataclass
class MethodResult:
    model: nn.Module  # float images in [0, 1] -> logits
    selection: dict[str, Any]  # criterion, uses_val_group_labels, epoch
    extra_training_fraction: float = 0.0  # data passes beyond the initial ERM, in train-set sizes
    attention_queries: int = 0
    annotation_seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    benchmark: Benchmark
    arch: str
    seed: int
    scale: str
    device: torch.device
    hparams: dict[str, Any]
    cache: ArtifactCache
    run_dir: Path  # files a method saves beside its record (figures, query logs)
    show_progress: bool = True
    _weights: Weights | None = field(default=None, repr=False)

    # ---- models ---------------------------------------------------------------------------------
    def weights(self) -> Weights:
        """The starting weights (``pretrained``: imagenet, standin, none or a file; see harness.weights)."""
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
              objective: Objective | None = None, desc: str = "train", seed: int | None = None) -> FitResult:
        """Train ``model`` on ``split`` with the training settings in ``hp`` (validated on val)."""
        b = self.benchmark
        return fit(model, b.splits[split], TrainHparams.from_dict(hp), device=self.device,
                   seed=self.seed if seed is None else seed, num_groups=b.num_groups, indices=indices,
                   objective=objective, val=b.splits["val"], desc=desc, show_progress=self.show_progress)

    def reference_hparams(self) -> dict[str, Any]:
        """ERM's settings for this dataset and scale, with this run's model choices: the reference model."""
        hp = default_hparams("erm", self.benchmark.name, self.scale)
        hp.update({k: self.hparams[k] for k in MODEL_KEYS if k in self.hparams})
        return hp

    def reference_key(self) -> dict[str, Any]:
        return dict(data=dataset_fingerprint(self.benchmark), arch=self.arch, seed=self.seed,
                    hparams=self.reference_hparams(), weights=self.weights().describe()["sha256"])

    def reference_model(self) -> tuple[Network, dict[str, Any]]:
        """The ERM reference model f_r of (dataset, arch, seed), trained once and cached.

        It is selected by val average accuracy, so methods built on it (SLIM) read no group labels.
        Returns the model and its selection record.
        """
        hp = self.reference_hparams()
        if SELECTIONS[hp["selection"]]:
            raise HarnessError("the reference model must be selected without group labels")

        def train(path: Path) -> None:
            model = self.new_model()
            result = self.train(model, hp, desc=f"ERM reference {self.arch} seed {self.seed}")
            save_tensors(path, model.state_dict(), meta={"selection": result.selection, "history": result.history})

        path = self.cache.get_or_create("reference", self.reference_key(), "safetensors", train)
        return self.load_model(path)

    def load_model(self, path: Path) -> tuple[Network, dict[str, Any]]:
        state, meta = load_tensors(path)
        model = self._create(None)
        model.load_state_dict(state)
        return model.to(self.device).eval(), meta.get("selection", {})


class Method:
    """Base class: subclasses set ``name``, the labels they need, and implement ``fit``."""

    name: ClassVar[str]
    needs_train_group_labels: ClassVar[bool] = False
    needs_val_group_labels: ClassVar[bool] = False
    attention_split: ClassVar[str | None] = None  # split whose instances get attention queries

    def __init__(self, hparams: dict[str, Any]) -> None:
        self.hparams = hparams

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


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    _REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    import baselines  # noqa: F401  (registers ERM, JTT, GroupDRO, DFR)
    import slim  # noqa: F401  (registers SLIM_Tr, SLIM_Val)

    if name not in _REGISTRY:
        raise HarnessError(f"unknown method {name!r}; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
