"""The real datasets: the paper's benchmarks (Sec. 5.1), read in the layouts people have on disk, one module
each (its layout, reading, groups, masks and paper facts), and datasets of the user's own in a generic layout
(:mod:`~harness.data.real.generic`). Shared parts: :mod:`~harness.data.real.reading` (metadata files, the files
they name) and :mod:`~harness.data.real.base` (:class:`RealDataset`: options, user masks, decoding into the
image cache).

Adding one: a module with a :class:`RealDataset` subclass, and its line in :data:`REAL_DATASETS`.
"""
from harness.data.real.base import RealDataset
from harness.data.real.celeba import CelebA
from harness.data.real.generic import MetadataCsv
from harness.data.real.imagenet9 import ImageNet9
from harness.data.real.isic import ISIC
from harness.data.real.nico import NICO
from harness.data.real.waterbirds import Waterbirds

# name -> class, in the paper's order (its tables list the datasets so)
REAL_DATASETS: dict[str, type[RealDataset]] = {
    dataset.name: dataset for dataset in (Waterbirds, CelebA, ISIC, NICO, ImageNet9, MetadataCsv)
}
