"""The synthetic presets: determinism, group structure, exact masks, spurious features, source task."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from matplotlib.colors import rgb_to_hsv

from harness.core.errors import HarnessError
from harness.data.synthetic import SYNTHETIC_DATASETS as DATASETS_BY_NAME
from harness.data.synthetic import generate, presets, render, textures

FLAT = {"noise": 0.0, "texture_contrast": 0.0, "object_pattern": 0.0}  # every region one flat colour


@pytest.fixture(scope="module")
def tiny() -> dict:
    return {name: generate.make_benchmark(name, "tiny", 0) for name in presets.PRESETS}


@pytest.fixture(scope="module")
def flat() -> dict:
    return {name: generate.make_benchmark(name, "tiny", 1, difficulty=FLAT) for name in presets.PRESETS}


def test_same_seed_same_bytes_other_seed_differs(tiny):
    for name in ("waterbirds-synth",):
        again = generate.make_benchmark(name, "tiny", 0)
        other = generate.make_benchmark(name, "tiny", 1)
        for split, s in tiny[name].splits.items():
            for field in ("images", "labels", "spurious", "groups", "masks"):
                same = torch.equal(getattr(s, field), getattr(again.splits[split], field))
                assert same, (name, split, field)
            assert not torch.equal(s.images, other.splits[split].images)


def test_shapes_dtypes_and_info(tiny):
    for _name, b in tiny.items():
        assert set(b.info) >= {"scale", "seed", "image_size", "synthetic", "generator_version"}
        assert b.info["synthetic"] is True and b.info["scale"] == "tiny" and b.image_size == 32
        assert len(b.group_names) == b.num_groups and b.has_masks
        for split in b.splits.values():
            n = len(split)
            assert split.images.dtype == torch.uint8 and split.images.shape == (n, 3, 32, 32)
            assert split.masks.dtype == torch.bool and split.masks.shape == (n, 32, 32)
            assert split.labels.dtype == split.spurious.dtype == split.groups.dtype == torch.int64
            assert int(split.labels.max()) < b.num_classes
            assert int(split.spurious.max()) < len(b.spurious_names)
            assert split.images.float().std() > 10  # not a blank canvas


def test_sizes_in_range_for_tiny_and_quick():
    for scale, (train_range, val_range) in {"tiny": ((600, 1000), (200, 800)),
                                            "quick": ((2000, 3000), (500, 1000))}.items():
        for name in presets.PRESETS:
            counts = generate.split_sizes(name, scale)
            assert train_range[0] <= counts["train"].sum() <= train_range[1], (name, scale)
            assert val_range[0] <= counts["val"].sum() <= val_range[1], (name, scale)


def test_paper_scale_train_groups_are_the_real_datasets():
    assert generate.split_sizes("waterbirds-synth", "paper")["train"].tolist() == [3498, 184, 56, 1057]
    assert generate.split_sizes("celeba-synth", "paper")["train"].tolist() == [71629, 66874, 22880, 1387]
    assert generate.split_sizes("waterbirds-synth", "paper")["test"].tolist() == [2255, 2255, 642, 642]
    assert generate.split_sizes("celeba-synth", "paper")["val"].sum() == 19867
    # ISIC 2019's benign/malignant images: 9210 of 19735 benign with a patch, 2557 malignant (none with one)
    benign_patch, benign_clean, malignant = generate.split_sizes("isic-synth", "paper")["train"].tolist()
    assert benign_patch + benign_clean + malignant == 17000
    assert abs(benign_patch / (benign_patch + benign_clean) - 9210 / 19735) < 1e-3
    assert abs(malignant / 17000 - 2557 / 22292) < 1e-3


def test_group_proportions_and_floors(tiny):
    for name, b in tiny.items():
        preset = presets.PRESETS[name]
        for split_name, split in b.splits.items():
            counts = split.group_counts(b.num_groups)
            shares = np.asarray(preset.proportions[split_name])
            if split_name == "train":  # the skew itself, up to rounding (and at least one per group)
                np.testing.assert_allclose(counts, np.maximum(shares * len(split), 1), atol=1.0)
            else:  # the skew, with every group of positive share raised to the floor
                assert (counts[shares > 0] >= generate.EVAL_GROUP_FLOOR["tiny"]).all(), (name, split_name)
                assert (counts[shares == 0] == 0).all()
                big = counts > generate.EVAL_GROUP_FLOOR["tiny"]
                expected = shares[big] / shares[big].sum() * counts[big].sum()
                np.testing.assert_allclose(counts[big], expected, atol=1.0)


def test_specific_group_structures(tiny):
    wb = tiny["waterbirds-synth"]
    train = wb.splits["train"].group_counts(4) / len(wb.splits["train"])
    np.testing.assert_allclose(train, np.array([3498, 184, 56, 1057]) / 4795, atol=2 / 800)
    for split in ("val", "test"):  # environments balanced within each class
        c = wb.splits[split].group_counts(4)
        assert abs(c[0] - c[1]) <= 1 and abs(c[2] - c[3]) <= 1
    celeba = tiny["celeba-synth"].splits
    assert celeba["train"].group_counts(4)[3] / len(celeba["train"]) < 0.015  # blond males ~1% of train
    c = celeba["test"].group_counts(4)
    assert c[0] > c[1] > c[2] > c[3] == generate.EVAL_GROUP_FLOOR["tiny"]  # skew kept, minority at the floor
    nico = tiny["nico-synth"].splits
    train = nico["train"].group_counts(36).reshape(6, 6)
    assert (train.argmax(axis=1) == np.arange(6)).all() and (np.diag(train) > 0.6 * train.sum(axis=1)).all()
    assert (nico["test"].group_counts(36) == nico["test"].group_counts(36)[0]).all()


def test_groups_agree_with_labels_and_spurious(tiny):
    for name, b in tiny.items():
        for split in b.splits.values():
            y, s, g = split.labels.numpy(), split.spurious.numpy(), split.groups.numpy()
            if name == "isic-synth":
                assert (s[y == 1] == 0).all()  # no patch on malignant images, ever
                np.testing.assert_array_equal(g, np.where(y == 1, 2, 1 - s))
            elif name == "imagenet9-synth":
                np.testing.assert_array_equal(g, 2 * y + (s != y))
            else:
                np.testing.assert_array_equal(g, y * len(b.spurious_names) + s)


def test_imagenet9_backgrounds(tiny):
    splits = tiny["imagenet9-synth"].splits
    mixed = splits["test_mixed_rand"]
    assert (mixed.spurious != mixed.labels).all()
    assert set(mixed.spurious.numpy().tolist()) == set(range(9))
    train = splits["train"]
    own = (train.spurious == train.labels).numpy()
    assert abs(own.mean() - np.mean(presets._IN9_MATCH)) < 0.02
    # each class keeps its own share of images on its own background (up to rounding of ~89 per class)
    per_class = [own[train.labels.numpy() == c].mean() for c in range(9)]
    np.testing.assert_allclose(per_class, presets._IN9_MATCH, atol=0.03)
    test = splits["test"].group_counts(18).reshape(9, 2)  # "original" keeps the correlation (floor aside)
    assert (test[:, 0] > test[:, 1]).all()


def test_masks_nonempty(tiny):
    for name, b in tiny.items():
        for split_name, split in b.splits.items():
            assert split.masks.flatten(1).any(dim=1).all(), (name, split_name)
            assert not split.masks.flatten(1).all(dim=1).any(), (name, split_name)


def _mask_colour_checks(split):
    """Per image: (mask pixels all one colour, that colour absent outside, #colours outside the mask)."""
    images = split.images.permute(0, 2, 3, 1).numpy().astype(np.int32)
    masks = split.masks.numpy()
    codes = images[..., 0] * 65536 + images[..., 1] * 256 + images[..., 2]
    first = np.argmax(masks.reshape(len(masks), -1), axis=1)
    object_code = codes.reshape(len(codes), -1)[np.arange(len(codes)), first][:, None, None]
    inside_uniform = ((codes == object_code) | ~masks).all(axis=(1, 2))
    absent_outside = ~((codes == object_code) & ~masks).any(axis=(1, 2))
    outside_colours = np.array([len(np.unique(c[~m])) for c, m in zip(codes, masks, strict=True)])
    return inside_uniform, absent_outside, outside_colours


def test_masks_cover_exactly_the_drawn_object(flat):
    for name, b in flat.items():
        for split_name, split in b.splits.items():
            inside, absent, _ = _mask_colour_checks(split)
            assert inside.all() and absent.all(), (name, split_name, inside.mean(), absent.mean())


def test_isic_patch_only_on_benign_and_outside_the_lesion(flat):
    for split in flat["isic-synth"].splits.values():
        inside, absent, outside_colours = _mask_colour_checks(split)
        assert inside.all() and absent.all()  # the patch colour never enters the lesion mask
        patch = split.spurious.numpy() == 1
        assert (outside_colours[patch] == 2).all()  # skin + patch
        assert (outside_colours[~patch] == 1).all()  # skin only: no patch elsewhere (malignant included)


def test_background_colour_comes_from_the_spurious_family(flat):
    for name in ("waterbirds-synth", "imagenet9-synth", "nico-synth"):
        b = flat[name]
        for split in b.splits.values():
            at = [(0, 0), (0, -1), (-1, 0), (-1, -1)]
            corners = torch.stack([split.images[:, :, y, x] for y, x in at], dim=1).numpy()
            corner_masks = torch.stack([split.masks[:, y, x] for y, x in at], dim=1).numpy()
            pick = np.argmin(corner_masks, axis=1)  # a corner the object does not cover
            assert not corner_masks[np.arange(len(pick)), pick].any()
            hsv = rgb_to_hsv(corners[np.arange(len(pick)), pick] / 255.0)
            for i, family in enumerate(split.spurious.numpy()):
                tex = textures._PRESET_TEXTURES[presets.PRESETS[name].textures[family]]
                h, s, v = hsv[i]
                assert tex.val[0] - 0.01 <= v <= tex.val[1] + 0.01, (name, family, v)
                if s > 0.15 and tex.hue[1] < 0.5:
                    assert abs((h - tex.hue[0] + 0.5) % 1.0 - 0.5) <= tex.hue[1] + 0.02, (name, family, h)


def _hair_brightness(split) -> np.ndarray:
    """Brightest channel of each image's hair colour (flat rendering: one colour per region)."""
    images = split.images.permute(0, 2, 3, 1).numpy().reshape(len(split), -1, 3)
    first = np.argmax(split.masks.numpy().reshape(len(split), -1), axis=1)
    return images[np.arange(len(split)), first].max(axis=1)


def test_hair_lightness_carries_the_celeba_label():
    knobs = {**FLAT, "distinctness": 1.0}
    split = generate.make_benchmark("celeba-synth", "tiny", 2, difficulty=knobs).splits["train"]
    value, blond = _hair_brightness(split), split.labels.numpy() == 1
    assert value[blond].min() > value[~blond].max()  # distinctness 1: the hair alone separates the classes
    knobs = {**FLAT, "distinctness": 0.5}
    split = generate.make_benchmark("celeba-synth", "tiny", 2, difficulty=knobs).splits["train"]
    value, blond = _hair_brightness(split), split.labels.numpy() == 1
    assert value[blond].min() < value[~blond].max()  # lower distinctness: the classes' hair colours overlap


def test_blob_rasterisation_matches_analytic_area():
    """Area of r(theta) = R (1 + sum a_k cos(k theta + p_k)) is pi R^2 (1 + sum a_k^2 / 2)."""
    size, radius = 256, 0.3
    coeffs = np.zeros((3, render._HARMONICS), dtype=np.complex64)
    coeffs[1, 2] = 0.3  # trefoil
    coeffs[2, 1], coeffs[2, 4] = 0.2j, 0.15  # oval + 5 lobes
    n = len(coeffs)
    half = np.full(n, 0.5, np.float32)
    u, v = render._frame(size, half, half, np.full(n, radius, np.float32), np.zeros(n, np.float32))
    area = render._blob_mask(u, v, coeffs).sum(axis=(1, 2)) / size**2
    expected = np.pi * radius**2 * (1 + (np.abs(coeffs) ** 2).sum(axis=1) / 2)
    np.testing.assert_allclose(area, expected, rtol=0.01)


def test_source_task_balanced_deterministic_and_disjoint():
    images, labels = generate.make_source_task(205, 32, seed=3)
    assert images.dtype == torch.uint8 and images.shape == (205, 3, 32, 32) and labels.dtype == torch.int64
    counts = torch.bincount(labels, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 205
    again, labels_again = generate.make_source_task(205, 32, seed=3)
    assert torch.equal(images, again) and torch.equal(labels, labels_again)
    assert not torch.equal(images, generate.make_source_task(205, 32, seed=4)[0])
    four, four_labels = generate.make_source_task(40, 64, seed=0, num_classes=4)
    assert four.shape == (40, 3, 64, 64) and torch.bincount(four_labels).tolist() == [10] * 4
    preset_shapes = {s for preset in presets.PRESETS.values() for s in preset.shapes}
    preset_textures = {t for preset in presets.PRESETS.values() for t in preset.textures}
    assert preset_shapes.isdisjoint(render.SOURCE_SHAPES) and len(set(render.SOURCE_SHAPES)) == 10
    assert preset_textures.isdisjoint(textures.SOURCE_TEXTURES)
    preset_patterns = {textures._PRESET_TEXTURES[t].pattern for t in preset_textures}
    assert preset_patterns.isdisjoint(textures._SOURCE_TEXTURES[t].pattern for t in textures.SOURCE_TEXTURES)


def test_source_shapes_differ_in_area():
    """The ten source kinds are distinct shapes: their unrotated masks pairwise differ a lot."""
    size = 64
    half = np.full(1, 0.5, np.float32)
    u, v = render._frame(size, half, half, np.full(1, 0.3, np.float32), np.zeros(1, np.float32))
    masks = np.stack([render._SOURCE_SHAPES[k](u, v)[0] for k in render.SOURCE_SHAPES])
    assert masks.reshape(10, -1).sum(axis=1).min() > 40
    both, either = masks[:, None] & masks[None], masks[:, None] | masks[None]
    overlap = both.sum(axis=(2, 3)) / either.sum(axis=(2, 3))
    assert (overlap[~np.eye(10, dtype=bool)] < 0.9).all()


@pytest.mark.parametrize("call, message", [
    (lambda: generate.make_benchmark("nope", "tiny", 0), "unknown synthetic preset"),
    (lambda: generate.make_benchmark("waterbirds-synth", "huge", 0), "unknown scale"),
    (lambda: generate.make_benchmark("waterbirds-synth", "tiny", -1), "seed"),
    (lambda: generate.make_benchmark("waterbirds-synth", "tiny", 0, {"spice": 1}), "unknown difficulty"),
    (lambda: generate.make_benchmark("waterbirds-synth", "tiny", 0, difficulty={"noise": -1}), "non-negative"),
    (lambda: generate.make_source_task(5, 32, 0), "at least one image per class"),
    (lambda: generate.make_source_task(100, 32, 0, num_classes=11), "num_classes"),
])
def test_bad_input_is_a_one_line_harness_error(call, message):
    with pytest.raises(HarnessError, match=message):
        call()


def test_presets_listed_with_descriptions_and_frozen_knobs():
    names = {"waterbirds-synth", "celeba-synth", "isic-synth", "nico-synth", "imagenet9-synth"}
    assert set(presets.PRESETS) == names
    assert all(isinstance(p.description, str) and p.description for p in presets.PRESETS.values())
    knobs = presets.preset_difficulty("waterbirds-synth")
    with pytest.raises(AttributeError):
        knobs.noise = 0.5  # type: ignore[misc]


# sha256 (first 16 hex digits) of every split's images, masks, labels, spurious attributes and groups, seed 0,
# tiny scale, computed with the generator before difficulty knobs could be set from a run (commit 929bfe3);
# and the preset's data version and a digest of its difficulty_id (cache keys).
DEFAULT_BYTES = {
    ("waterbirds-synth", 32): "d42448c901799cf0", ("waterbirds-synth", 64): "32a497ff6ab2e19a",
    ("celeba-synth", 32): "fd1892ef5eca6a9e", ("isic-synth", 32): "9a520d59be23351e",
    ("nico-synth", 32): "92edd5f4143da9a5", ("imagenet9-synth", 32): "318ab2f2a23c033d",
}
DEFAULT_IDENTITY = {"waterbirds-synth": ("4.a20d4c57", "aa442ec6"), "celeba-synth": ("4.5be12c40", "dd818fe4"),
                    "isic-synth": ("4.3fe53314", "6bd5bfa4"), "nico-synth": ("4.fc0f5df4", "2359926a"),
                    "imagenet9-synth": ("4.406fb521", "67cae0ae")}


def benchmark_digest(b) -> str:
    digest = hashlib.sha256()
    for name in sorted(b.splits):
        split = b.splits[name]
        for tensor in (split.images, split.masks, split.labels, split.spurious, split.groups):
            digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize(("name", "size"), sorted(DEFAULT_BYTES))
def test_a_preset_without_knobs_draws_the_same_bytes_as_before(name, size):
    """Runs that set no knob keep their data and identity: the generator's bytes, data version and cache key."""
    b = generate.make_benchmark(name, "tiny", 0, image_size=size)
    assert benchmark_digest(b) == DEFAULT_BYTES[name, size]
    version, difficulty = DEFAULT_IDENTITY[name]
    assert generate.data_version(name) == version
    assert hashlib.sha256(b.info["difficulty_id"].encode()).hexdigest()[:8] == difficulty
    assert benchmark_digest(generate.make_benchmark(name, "tiny", 0, difficulty=presets.knob_options(name, {}),
                                               image_size=size)) == DEFAULT_BYTES[name, size]


def test_knob_options_are_canonical_and_checked():
    """The command line's strings and a sweep file's numbers give one form; the preset's own value drops out."""
    assert presets.knob_options("waterbirds-synth", {"texture_contrast": "0.2", "object_size": "0.2,0.3"}) == \
        presets.knob_options("waterbirds-synth", {"object_size": [0.2, 0.3], "texture_contrast": 0.2}) == \
        {"object_size": [0.2, 0.3], "texture_contrast": 0.2}
    assert presets.knob_options("waterbirds-synth", {"texture_contrast": "0.5", "object_size": "0.12,0.2"}) == {}
    for options, message in (({"spice": "1"}, "takes only its difficulty knobs"), ({"noise": "x"}, "a number"),
                             ({"object_size": "0.3,0.1"}, "0 < low <= high"), ({"noise": "inf"}, "a number"),
                             ({"object_size": "1,2,3"}, "two numbers"), ({"rotation": True}, "a number")):
        with pytest.raises(HarnessError, match=message):
            presets.knob_options("waterbirds-synth", options)


def test_minority_groups_are_the_rarer_than_even_groups_of_their_class():
    """waterbirds-synth: 184 landbirds on water and 56 waterbirds on land in 4795 (paper scale); nico-synth:
    every class outside its own context (70 % of the class in its own, the rest in the five others)."""
    assert generate.minority_groups("waterbirds-synth", "paper") == ("landbird/water", "waterbird/land")
    nico = generate.minority_groups("nico-synth", "quick")
    assert len(nico) == 30 and "trefoil/autumn" not in nico and "trefoil/dim" in nico
    assert generate.minority_groups("imagenet9-synth", "tiny") == tuple(f"class{c}/mismatch" for c in range(9))


def test_train_size_draws_that_many_train_images_in_the_presets_proportions_and_leaves_val_and_test(tiny):
    """``--data-option train_size=N``: the train split holds N images whose groups follow the preset's train
    shares (each within one image of share * N, every group present), and the other splits are the bytes
    they are without the option (each split draws from its own seed)."""
    name, n = "celeba-synth", 300
    options = presets.knob_options(name, {"train_size": "300"})
    assert options == {"train_size": 300}
    data = DATASETS_BY_NAME[name]().load(scale="tiny", data_seed=0, data_root=None, image_size=None,
                                         options={"train_size": "300"}, show_progress=False)
    train = data.splits["train"]
    assert len(train) == n and data.info["train_size"] == n and "train_size" not in tiny[name].info
    counts = np.bincount(train.groups.numpy(), minlength=len(presets.PRESETS[name].groups))
    shares = np.asarray(presets.PRESETS[name].proportions["train"])
    assert (counts >= 1).all() and (np.abs(counts - shares * n) <= 1).all()
    for split in ("val", "test"):
        assert torch.equal(data.splits[split].images, tiny[name].splits[split].images)


def test_val_size_draws_that_many_val_images_and_leaves_train_and_test(tiny):
    """``--data-option val_size=N`` (a premise sweep's val split large enough for a 100-image curated subset):
    N val images in the preset's val proportions, raised to the scale's floor per group; train and test are
    the bytes they are without it, and the option is part of the data's identity."""
    name, n = "waterbirds-synth", 1000
    assert presets.knob_options(name, {"val_size": "1000", "test_size": 600}) == {"val_size": 1000, "test_size": 600}
    data = DATASETS_BY_NAME[name]().load(scale="tiny", data_seed=0, data_root=None, image_size=None,
                                         options={"val_size": str(n)}, show_progress=False)
    counts = data.splits["val"].group_counts(len(presets.PRESETS[name].groups))
    shares = np.asarray(presets.PRESETS[name].proportions["val"])
    floor = generate.EVAL_GROUP_FLOOR["tiny"]
    assert counts.sum() >= n and (np.abs(counts - np.maximum(shares * n, floor)) <= 1).all()
    assert data.info["val_size"] == n and "val_size" not in tiny[name].info
    for split in ("train", "test"):
        assert torch.equal(data.splits[split].images, tiny[name].splits[split].images)


@pytest.mark.parametrize("value", ["0", "3", "1.5", "many", True])
def test_a_train_size_below_one_image_per_group_or_not_whole_is_one_line(value):
    with pytest.raises(HarnessError, match=r"train_size=.*whole number >= 4 \(one image per group"):
        presets.knob_options("waterbirds-synth", {"train_size": value})


def _val_split(name: str, **knobs):
    """The tiny val split of preset ``name`` without pixel noise, with ``knobs`` overriding its difficulty."""
    split = generate.make_benchmark(name, "tiny", 0, difficulty={"noise": 0.0, **knobs}, image_size=64).splits["val"]
    return split.images.permute(0, 2, 3, 1).numpy().astype(np.int16), split.masks.numpy(), split.labels.numpy()


@pytest.mark.parametrize("name", ["waterbirds-synth", "nico-synth"])
def test_object_size_scales_every_object_and_leaves_the_rest_of_the_image(name):
    """The premise axis's knob: doubling ``object_size`` (both ends) draws each image's object at twice the radius,
    so its mask's area is four times as large (up to rasterisation), in the same colour, on the same background."""
    low, high = presets.preset_difficulty(name).object_size
    small, small_masks, _ = _val_split(name)
    large, large_masks, _ = _val_split(name, object_size=[2 * low, 2 * high])
    ratio = large_masks.sum((1, 2)) / small_masks.sum((1, 2))
    assert np.median(ratio) == pytest.approx(4.0, rel=0.02) and ((ratio > 3.5) & (ratio < 4.5)).mean() > 0.95
    outside, inside = ~(small_masks | large_masks), small_masks & large_masks
    assert np.array_equal(small[outside], large[outside])
    # each object is one flat colour: the same in both renderings wherever both objects cover a pixel
    assert (small[inside] == large[inside]).all(axis=-1).mean() > 0.99


def test_texture_contrast_scales_the_background_pattern_and_leaves_the_object():
    """``texture_contrast`` c paints first + c * pattern * (second - first) behind the object: the background's
    step from c = 0.5 to 1 is twice its step from 0.25 to 0.5 (to uint8 rounding); masks and objects do not move."""
    name = "waterbirds-synth"
    (low, masks, _), (mid, mid_masks, _), (high, high_masks, _) = (
        _val_split(name, texture_contrast=c) for c in (0.25, 0.5, 1.0))
    assert np.array_equal(masks, mid_masks) and np.array_equal(masks, high_masks)
    assert np.array_equal(low[masks], high[masks])
    step_low, step_high = (mid - low)[~masks], (high - mid)[~masks]
    assert np.abs(step_high - 2 * step_low).max() <= 3
    assert np.abs(step_high).mean() > 5  # the pattern is visible, so the step is not trivially zero


def test_colour_jitter_narrows_each_class_object_hues_and_leaves_shapes_and_background():
    """``colour_jitter`` is the spread of object hues around the class's hue: at 0.05 each class's objects
    span a tenth of the hue range they span at the preset's 0.6 (wherever the hue is not wrapped); masks and
    backgrounds are unchanged."""
    name = "waterbirds-synth"
    wide, masks, labels = _val_split(name)
    narrow, narrow_masks, _ = _val_split(name, colour_jitter=0.05)
    assert np.array_equal(masks, narrow_masks) and np.array_equal(wide[~masks], narrow[~masks])

    def hue_spread(images: np.ndarray, label: int) -> float:
        rows = np.flatnonzero(labels == label)
        hues = np.array([rgb_to_hsv(images[i][masks[i]][:1] / 255.0)[0, 0] for i in rows])
        centred = np.angle(np.exp(2j * np.pi * hues) / np.exp(2j * np.pi * hues).mean()) / (2 * np.pi)
        return float(np.ptp(centred))

    for label in (0, 1):
        assert hue_spread(narrow, label) == pytest.approx(hue_spread(wide, label) * 0.05 / 0.6, rel=0.25)


def test_a_stored_preset_is_drawn_once_and_read_back_as_drawn(tmp_path, monkeypatch):
    """``load_benchmark(..., store=cache)``: the first load draws the preset and stores it, the next with the same
    arguments reads it back (the generator is not called again) with the same bytes, names and identity;
    other knobs are another entry."""
    from harness.core.cache import ArtifactCache
    from harness.data.catalog import dataset_fingerprint, load_benchmark

    drawn = []
    real = generate.make_benchmark
    monkeypatch.setattr("harness.data.synthetic.dataset.make_benchmark",
                        lambda *a, **k: drawn.append(a) or real(*a, **k))
    store = ArtifactCache(tmp_path)
    load = lambda **options: load_benchmark("nico-synth", scale="tiny", data_seed=1, options=options,
                                            show_progress=False, store=store)
    first, again = load(), load()
    assert len(drawn) == 1
    fresh = real("nico-synth", "tiny", 1)
    for b in (first, again):
        assert benchmark_digest(b) == benchmark_digest(fresh)
        assert dataset_fingerprint(b) == dataset_fingerprint(fresh)
        assert (b.class_names, b.group_names, list(b.splits)) == (fresh.class_names, fresh.group_names,
                                                                  list(fresh.splits))
    knobbed = load(object_size="0.2,0.3")
    assert len(drawn) == 2 and dataset_fingerprint(knobbed) != dataset_fingerprint(fresh)
    assert len(list((tmp_path / "benchmark").glob("*.safetensors"))) == 2
