"""The synthetic presets: one generated stand-in for each of the paper's five benchmarks (Sec. 5.1), with
groups sized as the real dataset's (shared/reference/method-facts.md), and their difficulty knobs.

Each preset draws a core object (whose exact pixels are the ground-truth mask used for AIoU, paper Sec. 5.2) on
a background, with a spurious feature correlated with the class the way the paper's dataset has it. Its
difficulty is a small frozen set of knobs (:class:`harness.data.synthetic.render.Difficulty`) so that the
spurious feature is easier to learn than the core one while the core stays learnable; a run may override
knobs (:func:`knob_options`), and set a split's size (``train_size``, ``val_size``, ``test_size``: its groups
keep the preset's proportions for that split), so a preset whose real train split is too large for a CPU
runs its val and test at the paper's sizes with a smaller train split, and a sweep can hold a val split
large enough for the subsets it curates.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from harness.core.errors import HarnessError
from harness.data.synthetic.render import (
    Difficulty,
    Render,
    _blobs_on_contexts,
    _render_birds,
    _render_faces,
    _render_lesions,
)


@dataclass(frozen=True)
class Preset:
    """What a preset draws: its classes, groups and their shares per split, sizes, renderer and knobs."""

    description: str
    paper_dataset: str  # the paper dataset it stands in for, whose facts it shares (not part of data_version)
    class_names: tuple[str, ...]
    spurious_names: tuple[str, ...]
    groups: tuple[tuple[str, int, tuple[int, ...]], ...]  # (name, label, spurious values drawn uniformly)
    proportions: Mapping[str, tuple[float, ...]]  # split -> share of each group
    paper_sizes: Mapping[str, int]  # split -> size at the "paper" scale (the real dataset's)
    render: Render
    shapes: tuple[str, ...]  # object kinds drawn (disjoint from SOURCE_SHAPES)
    textures: tuple[str, ...]  # background families drawn (disjoint from SOURCE_TEXTURES)
    difficulty: Difficulty


def _shares(counts: tuple[float, ...]) -> tuple[float, ...]:
    total = float(sum(counts))
    return tuple(c / total for c in counts)


def _crossed_groups(class_names: tuple[str, ...], spurious_names: tuple[str, ...]):
    """Groups label x spurious, id = label * n_spurious + spurious, named 'class/spurious'."""
    return tuple((f"{c}/{s}", y, (a,))
                 for y, c in enumerate(class_names) for a, s in enumerate(spurious_names))


# The data options that set a split's size (its groups keep the preset's proportions for that split)
SIZE_OPTIONS = {"train": "train_size", "val": "val_size", "test": "test_size"}
_NICO_CLASSES = ("trefoil", "quatrefoil", "star", "egg", "gear", "peanut")
_NICO_CONTEXTS = ("autumn", "dim", "grass", "sky", "rock", "water")
_NICO_DOMINANCE = (0.70, 0.12, 0.08, 0.05, 0.03, 0.02)  # class c's share in context c, c+1, ... (mod 6)
_IN9_SHAPES = ("oval", "trefoil", "quatrefoil", "star", "egg", "gear", "heart", "peanut", "shell")
_IN9_BACKGROUNDS = ("forest", "water", "sand", "snow", "rock", "grass", "sky", "autumn", "dim")
# Class c's share of train/val/test images on its own background: classes lean on their backgrounds to
# different degrees, as the real ImageNet-9 classes do (mean 0.85; calibration).
_IN9_MATCH = (0.9, 0.8, 0.88, 0.82, 0.85, 0.9, 0.8, 0.88, 0.82)


def _nico_train_shares() -> tuple[float, ...]:
    shares = np.zeros(36)
    for c in range(6):
        for offset, share in enumerate(_NICO_DOMINANCE):
            shares[c * 6 + (c + offset) % 6] = share / 6
    return tuple(shares)


def _in9_groups():
    return tuple(
        (f"class{c}/{kind}", c, (c,) if kind == "match" else tuple(b for b in range(9) if b != c))
        for c in range(9) for kind in ("match", "mismatch")
    )


PRESETS: dict[str, Preset] = {
    "waterbirds-synth": Preset(
        description="Waterbirds stand-in: landbird vs waterbird silhouettes on land (forest) or water "
                    "backgrounds, train groups 3498/184/56/1057 of 4795",
        paper_dataset="waterbirds",
        class_names=("landbird", "waterbird"),
        spurious_names=("land", "water"),
        groups=_crossed_groups(("landbird", "waterbird"), ("land", "water")),
        proportions={"train": _shares((3498, 184, 56, 1057)), "val": _shares((467, 466, 133, 133)),
                     "test": _shares((2255, 2255, 642, 642))},
        paper_sizes={"train": 4795, "val": 1199, "test": 5794},
        render=_render_birds,
        shapes=("landbird", "waterbird"),
        textures=("forest", "water"),
        # Core: the body plan, and a hue that only leans (landbirds 0.05 +- 0.3, waterbirds -0.2 +- 0.3:
        # the ranges overlap). Small birds anywhere in the frame, so no fixed map finds them (calibration).
        difficulty=Difficulty(object_size=(0.12, 0.2), distinctness=1.0, shape_jitter=0.06, rotation=15.0,
                              colour_jitter=0.6, core_hue_gap=0.75, texture_contrast=0.5, noise=0.04,
                              object_pattern=0.0),
    ),
    "celeba-synth": Preset(
        description="CelebA stand-in: faces with blond or non-blond hair (core, masked); the spurious "
                    "'male' wears a beard; blond males ~1% of train",
        paper_dataset="celeba",
        class_names=("not_blond", "blond"),
        spurious_names=("female", "male"),
        groups=_crossed_groups(("not_blond", "blond"), ("female", "male")),
        proportions={"train": _shares((71629, 66874, 22880, 1387)), "val": _shares((8535, 8276, 2874, 182)),
                     "test": _shares((9767, 7535, 2480, 180))},
        paper_sizes={"train": 162770, "val": 19867, "test": 19962},
        render=_render_faces,
        shapes=("face_hair",),
        textures=("studio",),
        difficulty=Difficulty(object_size=(0.6, 0.95), distinctness=1.0, shape_jitter=0.0, rotation=8.0,
                              colour_jitter=0.02, core_hue_gap=0.0, texture_contrast=0.4, noise=0.04,
                              object_pattern=0.0),
    ),
    "isic-synth": Preset(
        description="ISIC stand-in: smooth even (benign) vs irregular mottled (malignant) lesions on skin; "
                    "a coloured patch on 47 % of the benign images, never on malignant ones; groups "
                    "9210/10525/2557 as in ISIC 2019",
        paper_dataset="isic",
        class_names=("benign", "malignant"),
        spurious_names=("no_patch", "patch"),
        groups=(("benign/patch", 0, (1,)), ("benign/no_patch", 0, (0,)), ("malignant/no_patch", 1, (0,))),
        # The real composition: in the ISIC 2019 benign/malignant images with patch annotations (a published
        # factsheet of that setup), 9210 of 19735 benign images carry a patch and none of 2557 malignant
        # ones; a random split keeps these shares in every split.
        proportions={split: _shares((9210, 10525, 2557)) for split in ("train", "val", "test")},
        paper_sizes={"train": 17000, "val": 2000, "test": 4000},
        render=_render_lesions,
        shapes=("smooth_lesion", "irregular_lesion", "patch_disc"),
        textures=("skin",),
        # ImageNet features tell mottled from smooth at a glance: the malignant lesions are only mildly
        # irregular and faintly mottled, so the patch is the easier cue (calibration).
        difficulty=Difficulty(object_size=(0.12, 0.2), distinctness=0.5, shape_jitter=0.05, rotation=180.0,
                              colour_jitter=0.03, core_hue_gap=0.0, texture_contrast=0.4, noise=0.03,
                              object_pattern=0.3),
    ),
    "nico-synth": Preset(
        description="NICO stand-in: 6 blob kinds x 6 contexts; each class mostly in its own context in "
                    "train (long tail over the rest), val/test balanced over contexts",
        paper_dataset="nico",
        class_names=_NICO_CLASSES,
        spurious_names=_NICO_CONTEXTS,
        groups=_crossed_groups(_NICO_CLASSES, _NICO_CONTEXTS),
        proportions={"train": _nico_train_shares(), "val": (1 / 36,) * 36, "test": (1 / 36,) * 36},
        paper_sizes={"train": 2220, "val": 740, "test": 1480},
        render=_blobs_on_contexts(_NICO_CLASSES, _NICO_CONTEXTS),
        shapes=_NICO_CLASSES,
        textures=_NICO_CONTEXTS,
        # Class c's objects: blob kind c and hue c / 6 +- 0.075 (neighbouring classes' hues do not overlap).
        difficulty=Difficulty(object_size=(0.12, 0.2), distinctness=0.8, shape_jitter=0.04, rotation=180.0,
                              colour_jitter=0.15, core_hue_gap=1 / 6, texture_contrast=0.5, noise=0.04,
                              object_pattern=0.0),
    ),
    "imagenet9-synth": Preset(
        description="ImageNet-9 stand-in: 9 blob kinds, background i mostly with class i; extra split "
                    "test_mixed_rand puts every object on another class's background",
        paper_dataset="imagenet9",
        class_names=tuple(f"class{c}" for c in range(9)),
        spurious_names=_IN9_BACKGROUNDS,
        groups=_in9_groups(),
        proportions={**{split: tuple(share for m in _IN9_MATCH for share in (m / 9, (1 - m) / 9))
                        for split in ("train", "val", "test")},
                     "test_mixed_rand": (0.0, 1 / 9) * 9},
        paper_sizes={"train": 45405, "val": 4185, "test": 4050, "test_mixed_rand": 4050},
        render=_blobs_on_contexts(_IN9_SHAPES, _IN9_BACKGROUNDS),
        shapes=_IN9_SHAPES,
        textures=_IN9_BACKGROUNDS,
        # Class c's objects: blob kind c and hue c / 9 +- 0.025 (the classes' hues are well apart).
        difficulty=Difficulty(object_size=(0.12, 0.2), distinctness=1.0, shape_jitter=0.04, rotation=180.0,
                              colour_jitter=0.05, core_hue_gap=1 / 9, texture_contrast=0.3, noise=0.04,
                              object_pattern=0.0),
    ),
}


def preset_difficulty(name: str) -> Difficulty:
    """The frozen difficulty knobs of preset ``name``."""
    return get_preset(name).difficulty


def get_preset(name: str) -> Preset:
    """Preset ``name``; an unknown name is a one-line error."""
    if name not in PRESETS:
        raise HarnessError(f"unknown synthetic preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def knob_options(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's data options for preset ``name`` (``--data-option knob=value``, a sweep's data levels) as
    difficulty overrides in one canonical form: floats, and ``object_size`` as [low, high] (given as
    "low,high" or a pair), so the command line and a sweep file name the same run. A knob set to the
    preset's own value is left out: that run is the preset's. Checked against the knobs and their ranges
    here, before any work."""
    preset = get_preset(name)
    options = dict(options or {})
    sizes = {key: _split_size(name, key, options.pop(key)) for key in SIZE_OPTIONS.values() if key in options}
    canonical = {key: _knob_value(name, key, value) for key, value in options.items()}
    try:
        with_overrides(preset.difficulty, canonical)
    except HarnessError as exc:
        raise HarnessError(f"--data-option for {name}: {exc}") from None
    own = asdict(preset.difficulty)
    knobs = {key: list(value) if isinstance(value, tuple) else value for key, value in sorted(canonical.items())
             if value != own[key]}
    return {**knobs, **sizes}


def _split_size(name: str, key: str, value: Any) -> int:
    """A split-size data option (``train_size``, ...) as a whole number of at least one image per group."""
    groups = len(get_preset(name).groups)
    try:
        size = int(value) if not isinstance(value, bool) and float(value) == int(float(value)) else None
    except (TypeError, ValueError):
        size = None
    if size is None or size < groups:
        raise HarnessError(f"--data-option {key}={value!r}: must be a whole number >= {groups} "
                           f"(one image per group of {name})")
    return size


def _knob_value(name: str, key: str, value: Any) -> Any:
    """One data option's value as a float (object_size: a pair of floats); unknown knobs are refused."""
    known = [f.name for f in fields(Difficulty)]
    if key not in known:
        raise HarnessError(f"--data-option {key}: {name} is generated and takes only its difficulty knobs "
                           f"({', '.join(known)}) and the split sizes ({', '.join(SIZE_OPTIONS.values())})")
    if isinstance(value, str):
        parts = value.split(",")
    else:
        parts = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        numbers = [float(p) for p in parts if not isinstance(p, bool)]
    except (TypeError, ValueError):
        numbers = []
    wanted = 2 if key == "object_size" else 1
    if len(numbers) != wanted or len(parts) != wanted or not all(np.isfinite(numbers)):
        form = "two numbers low,high" if wanted == 2 else "a number"
        raise HarnessError(f"--data-option {key}={value!r}: must be {form}")
    return tuple(numbers) if wanted == 2 else numbers[0]


def with_overrides(base: Difficulty, overrides: Mapping[str, Any] | None) -> Difficulty:
    """``base`` with some knobs replaced; unknown knobs and negative values are errors."""
    if not overrides:
        return base
    known = {f.name for f in fields(Difficulty)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise HarnessError(f"unknown difficulty knob(s) {unknown}; known: {', '.join(sorted(known))}")
    values = dict(overrides)
    if "object_size" in values:
        size = tuple(float(x) for x in values["object_size"])
        if len(size) != 2 or not 0 < size[0] <= size[1]:
            raise HarnessError(
                f"object_size must be (low, high) with 0 < low <= high, got {values['object_size']!r}")
        values["object_size"] = size
    for key, value in values.items():
        if key != "object_size" and (not isinstance(value, (int, float)) or value < 0):
            raise HarnessError(f"difficulty knob {key!r} must be a non-negative number, got {value!r}")
    return replace(base, **values)


def group_names(name: str) -> tuple[str, ...]:
    """Preset ``name``'s group names in group-id order."""
    return tuple(group for group, _, _ in get_preset(name).groups)

