"""The synthetic presets as catalog datasets: one :class:`SyntheticPreset` subclass per preset."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from harness.core.errors import HarnessError
from harness.data.containers import Benchmark
from harness.data.dataset import Dataset, DatasetEntry
from harness.data.synthetic.generate import data_version, make_benchmark
from harness.data.synthetic.presets import PRESETS, SIZE_OPTIONS, knob_options

GENERATED = ("nothing: generated (--scale tiny|quick|paper; difficulty knobs as --data-option, e.g. "
             "texture_contrast=0.2, and a split's size as --data-option train_size=N, val_size=N or test_size=N)")


class SyntheticPreset(Dataset):
    """A generated preset: it reads no data root, and its data options are its difficulty knobs (checked by
    :func:`harness.data.synthetic.presets.knob_options`). ``paper_dataset``: the paper dataset it stands in
    for, whose facts it shares."""

    paper_dataset: ClassVar[str]

    @classmethod
    def check_inputs(cls, data_root: str | Path | None, options: dict[str, str] | None) -> None:
        if data_root is not None:
            raise HarnessError(f"--data-root: for the real datasets only; {cls.name} is generated")

    @classmethod
    def entry(cls) -> DatasetEntry:
        return DatasetEntry(cls.name, cls.description, GENERATED, True)

    @classmethod
    def stored_key(cls, *, scale: str, data_seed: int, image_size: int | None,
                   options: dict[str, str]) -> dict | None:
        """Drawing a preset at the paper scale takes seconds a run; reading it back, a fraction of one."""
        return {"preset": cls.name, "data_version": data_version(cls.name), "scale": scale, "seed": int(data_seed),
                "image_size": image_size, "options": knob_options(cls.name, options)}

    def load(self, *, scale: str, data_seed: int, data_root: Path | None, image_size: int | None,
             options: dict[str, str], show_progress: bool) -> Benchmark:
        knobs = knob_options(self.name, options)
        sizes = {split: knobs.pop(option) for split, option in SIZE_OPTIONS.items() if option in knobs}
        return make_benchmark(self.name, scale, data_seed, difficulty=knobs, image_size=image_size, sizes=sizes)


def preset_dataset(name: str) -> type[SyntheticPreset]:
    """Preset ``name`` as a dataset class, e.g. ``WaterbirdsSynth`` for waterbirds-synth."""
    preset = PRESETS[name]
    class_name = "".join(part.capitalize() for part in name.split("-"))
    return type(class_name, (SyntheticPreset,), {"name": name, "description": preset.description,
                                                  "paper_dataset": preset.paper_dataset, "__module__": __name__})


SYNTHETIC_DATASETS: dict[str, type[SyntheticPreset]] = {name: preset_dataset(name) for name in PRESETS}
