"""Every method's hyperparameters in one place, per dataset and scale (DomainBed's registry shape).

``default_hparams(method, dataset, scale)`` gives the values a run uses unless the command line
overrides them (``--set key=value``). Paper-scale values are the literature's (see
shared/reference/method-facts.md); tiny and quick values are calibrated for the synthetic presets on CPU.
"""
from __future__ import annotations

from typing import Any

from harness.errors import HarnessError

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
# Synthetic presets at tiny/quick scale: the same shares of a much smaller split.
_SLIM_SYNTH = {
    "tiny": {"slim-tr": (24, 0.15), "slim-val": (16, 0.30)},
    "quick": {"slim-tr": (40, 0.10), "slim-val": (24, 0.20)},
}


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
        if dataset.endswith("-synth") or scale != "paper":
            budget, frac = _SLIM_SYNTH.get(scale, _SLIM_SYNTH["quick"])[method]
        else:
            tr, val = _SLIM_PAPER[paper_dataset(dataset)]
            budget, frac = tr if method == "slim-tr" else val
        from slim.pipeline import DEFAULT_SETTINGS  # the pipeline's stage settings live beside their code

        hp.update(DEFAULT_SETTINGS, budget=budget, subset_frac=frac, figures=True)
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


def model_hparams(arch: str, dataset: str, scale: str) -> dict[str, Any]:
    """Model choices: narrower ResNets / shallower ViTs for the synthetic presets on the CPU, and the
    starting weights ('standin' = the synthetic ImageNet stand-in, 'none', or a weights file path)."""
    hp: dict[str, Any] = {"pretrained": "standin"}
    if dataset.endswith("-synth") and scale in ("tiny", "quick"):
        if arch.startswith("resnet"):
            hp["width"] = 0.5
        elif arch.startswith("vit"):
            hp["depth"] = 6
    return hp


def run_hparams(method: str, dataset: str, scale: str, arch: str, overrides: dict[str, Any] | None = None) -> dict:
    """Everything a run uses: the method's defaults, the model choices, then the user's overrides."""
    hp = default_hparams(method, dataset, scale) | model_hparams(arch, dataset, scale)
    for key, value in (overrides or {}).items():
        if key not in hp and key not in _EXTRA_KEYS:
            raise HarnessError(f"unknown setting {key!r} for {method}; known: {', '.join(sorted(hp))}")
        hp[key] = value
    if method == "gdro" and hp.get("gdro_strong_l2"):
        # The GroupDRO paper's strong-L2 setting replaces lr and weight decay unless the user set them too.
        hp.update({k: v for k, v in _gdro_strong_l2(dataset, scale).items() if k not in (overrides or {})})
    from harness.settings import check_hparams  # types and ranges of every setting, before any work

    check_hparams(hp)
    return hp


# Settings a user may add that no default lists (model options of other families).
_EXTRA_KEYS = ("width", "depth")
