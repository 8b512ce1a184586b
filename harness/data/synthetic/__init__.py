"""Procedurally generated stand-ins for the paper's five benchmarks (the harness's default data).

Real datasets cannot be downloaded, so every preset draws its images. The package in parts: ``textures``
(backgrounds and colours) and ``render`` (objects, and one renderer per preset family) draw; ``presets``
defines each preset (groups, shares, sizes, renderer, difficulty knobs, the paper dataset it stands for);
``generate`` samples a preset's splits and the source task; ``dataset`` makes each preset a catalog dataset.
"""
from harness.data.synthetic.dataset import SYNTHETIC_DATASETS, SyntheticPreset
from harness.data.synthetic.generate import (
    GENERATOR_VERSION,
    IMAGE_SIZE,
    data_version,
    make_benchmark,
    make_source_task,
    minority_groups,
)
from harness.data.synthetic.presets import PRESETS, SIZE_OPTIONS, group_names, knob_options, preset_difficulty

__all__ = [
    "GENERATOR_VERSION", "IMAGE_SIZE", "PRESETS", "SIZE_OPTIONS", "SYNTHETIC_DATASETS", "SyntheticPreset",
    "data_version", "group_names", "knob_options", "make_benchmark", "make_source_task", "minority_groups",
    "preset_difficulty",
]
