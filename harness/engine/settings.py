"""One schema of every setting a run takes: its type and range, checked before any work starts.

:data:`SETTINGS` maps a shared hyperparameter key (``--set key=value``, a sweep file's overrides) to a
:class:`Setting`; a method declares the schema of its own settings on its class
(``Method.settings_schema``), and :func:`schema` joins them all. A test checks that every default of every
method has an entry. :func:`check_hparams` checks a run's settings, :func:`check_run_inputs` the run's data
options, each failure one line naming the setting.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.core.errors import HarnessError
from harness.core.registry import METHODS
from harness.data.catalog import dataset_class
from harness.engine.training import SAMPLERS, SELECTIONS

AUTO, NONE = "auto", "none"  # words some integer settings accept instead of a number
IMAGE_SIZE_RANGE = (16, 2048)  # pixels of a side: ViT patches are 16 px
# the seeds every stage accepts: faiss' k-means takes a C int (scikit-learn and numpy's legacy seeding < 2**32)
SEED_RANGE = (0, 2**31 - 1)


@dataclass(frozen=True)
class Setting:
    """A setting's type (``int``, ``float``, ``bool`` or ``str``) and range.

    Numbers lie in [low, high] (``open_low`` / ``open_high``: the bound itself is excluded); ``float``
    settings accept whole numbers too. Strings are one of ``choices`` (any string when empty);
    ``words`` are strings a number setting also accepts ('auto', 'none').
    """

    kind: type
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    nullable: bool = False  # None (a setting left to be derived, e.g. SLIM's budget from its share) is allowed
    not_above: str | None = None  # the setting a whole number of this one may not exceed (a range's two ends)

    def describe(self) -> str:
        """The allowed values in words, e.g. 'a number in (0, 1]' or one of 'sgd', 'adamw'."""
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return f"one of {', '.join(map(repr, self.choices))}" if self.choices else "a string"
        what = "a whole number" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
            what += f" in {left}{_num(self.low)}, {_num(self.high)}{right}"
        elif self.low is not None:
            what += f" {'>' if self.open_low else '>='} {_num(self.low)}"
        elif self.high is not None:
            what += f" {'<' if self.open_high else '<='} {_num(self.high)}"
        return what + "".join(f" or {word!r}" for word in self.words)

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, str) and value.lower() in self.words:
            return True
        if self.kind is bool or self.kind is str:
            return isinstance(value, self.kind) and (not self.choices or value in self.choices)
        number_types = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, number_types) or not math.isfinite(value):
            return False
        return not (self.low is not None and (value < self.low or (self.open_low and value == self.low))
                    or self.high is not None and (value > self.high or (self.open_high and value == self.high)))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def count(low: int = 1, high: float | None = None, *words: str, not_above: str | None = None) -> Setting:
    return Setting(int, low, high, words=words, not_above=not_above)


def fraction(*, open_low: bool = False, open_high: bool = False) -> Setting:
    return Setting(float, 0.0, 1.0, open_low=open_low, open_high=open_high)


def positive() -> Setting:
    return Setting(float, 0.0, open_low=True)


FLAG = Setting(bool)
NON_NEGATIVE = Setting(float, 0.0)

SETTINGS: dict[str, Setting] = {
    # training (harness.engine.training.TrainHparams)
    "epochs": count(1), "lr": positive(), "weight_decay": NON_NEGATIVE, "batch_size": count(1),
    "optimizer": Setting(str, choices=("sgd", "adamw")), "momentum": fraction(open_high=True),
    "augment": FLAG, "sampler": Setting(str, choices=SAMPLERS), "selection": Setting(str, choices=tuple(SELECTIONS)),
    "compile": FLAG,
    # model (harness.models.network): channel width of ResNets, block count of ViTs, starting weights
    "width": Setting(float, 0.0, 4.0, open_low=True), "depth": count(1, 48),
    "pretrained": Setting(str),  # 'imagenet', 'standin', 'none' or a weights file (checked where it is read)
    "finetune": Setting(str, choices=("full", "upper")), "input_size": count(16, 2048, AUTO),
}


def schema() -> dict[str, Setting]:
    """Every setting's entry: the shared ones (:data:`SETTINGS`) and those each registered method declares
    (``Method.settings_schema``); two methods may declare one setting only alike."""
    joined = dict(SETTINGS)
    for name in METHODS:
        for key, setting in METHODS.get(name).settings_schema.items():
            if joined.setdefault(key, setting) != setting:
                raise HarnessError(f"method {name} declares setting {key!r} as {setting.describe()}; it is "
                                   f"{joined[key].describe()} elsewhere")
    return joined


def check_value(key: str, value: Any, where: str = "setting") -> None:
    """A HarnessError unless ``value`` is allowed for ``key`` (keys without an entry are not checked)."""
    setting = schema().get(key)
    if setting is not None and not setting.accepts(value):
        raise HarnessError(f"{where} {key}={value!r}: must be {setting.describe()}")


def check_hparams(hp: dict[str, Any]) -> None:
    """Every value of a run's hparams in its range, and ranges that pair up (``Setting.not_above``, e.g.
    cluster_k_min <= cluster_k_max)."""
    for key, value in hp.items():
        check_value(key, value)
    for key, setting in schema().items():
        if setting.not_above is None:
            continue
        low, high = hp.get(key), hp.get(setting.not_above)
        if isinstance(low, int) and isinstance(high, int) and low > high:
            raise HarnessError(f"setting {key}={low} is above {setting.not_above}={high}")


def check_seed(flag: str, seed: Any) -> None:
    """A run's seed (``--seed``, ``--data-seed``, a sweep's seeds) is a whole number in :data:`SEED_RANGE`."""
    low, high = SEED_RANGE
    if isinstance(seed, bool) or not isinstance(seed, int) or not low <= seed <= high:
        raise HarnessError(f"{flag} {seed!r}: must be a whole number in [{low}, {high}]")


def check_run_inputs(dataset: str, *, data_root: str | None, image_size: Any, data_options: dict | None) -> None:
    """Data settings that must fit the dataset, as its class says (harness.data.dataset.Dataset.check_inputs:
    the generated presets take no root, their data options are difficulty knobs, checked by
    ``synthetic.knob_options``); an image size renders a preset at that size."""
    dataset_type = dataset_class(dataset)
    if dataset_type is not None:
        dataset_type.check_inputs(data_root, data_options)
    if image_size is not None:
        low, high = IMAGE_SIZE_RANGE
        if isinstance(image_size, bool) or not isinstance(image_size, int) or not low <= image_size <= high:
            raise HarnessError(f"--image-size {image_size!r}: must be a whole number in [{low}, {high}]")
