"""Shared fixtures: a toy benchmark small enough for every unit test (DomainBed's debug dataset idea)."""
from __future__ import annotations

import harness  # noqa: F401  (first: pins the CPU kernels before numpy and torch load, harness.core.cpu)

# isort: split
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from harness.data.containers import Benchmark, Split
from harness.plugins import load_plugins

torch.set_num_threads(2)
load_plugins()  # the methods and CAM variants every test may name


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--gpu-tests-on-cpu", action="store_true",
                     help="without a CUDA device, run the tests marked gpu on the CPU at their small sizes "
                          "(what `python -m harness gpu-check` does on a machine without a GPU)")


@pytest.fixture
def gpu_device(request: pytest.FixtureRequest):
    """The device of the tests marked gpu: CUDA; or the CPU, one torch thread, with ``--gpu-tests-on-cpu``;
    else the test skips."""
    if torch.cuda.is_available():
        yield torch.device("cuda")
        return
    if not request.config.getoption("--gpu-tests-on-cpu"):
        pytest.skip("no CUDA device (python -m harness gpu-check runs the gpu tests)")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a loaded two-core machine are many times slower than one
    yield torch.device("cpu")
    torch.set_num_threads(previous)


def make_toy_split(n: int, aligned: float, rng: np.random.Generator, size: int = 32) -> Split:
    """Class = object shape (filled square vs plus), spurious = background colour, aligned with the class
    with probability ``aligned``. Masks are exactly the object's pixels."""
    labels = rng.integers(0, 2, n)
    spurious = np.where(rng.random(n) < aligned, labels, 1 - labels)
    images = np.empty((n, 3, size, size), np.uint8)
    masks = np.zeros((n, size, size), bool)
    backgrounds = np.array([[40, 140, 40], [40, 60, 160]], np.uint8)
    for i in range(n):
        noise = rng.integers(0, 30, (3, size, size))
        images[i] = np.clip(backgrounds[spurious[i]][:, None, None] + noise, 0, 255)
        s = size // 3
        y, x = rng.integers(2, size - s - 2, 2)
        if labels[i] == 0:
            masks[i, y:y + s, x:x + s] = True
        else:
            masks[i, y + s // 3:y + 2 * s // 3, x:x + s] = True
            masks[i, y:y + s, x + s // 3:x + 2 * s // 3] = True
        images[i][:, masks[i]] = 230
    return Split(images=torch.from_numpy(images), labels=torch.from_numpy(labels),
                 spurious=torch.from_numpy(spurious), groups=torch.from_numpy(labels * 2 + spurious),
                 masks=torch.from_numpy(masks))


def make_toy_benchmark(seed: int = 0, n_train: int = 160) -> Benchmark:
    rng = np.random.default_rng(seed)
    return Benchmark(
        name="toy",
        class_names=["square", "plus"],
        spurious_names=["green", "blue"],
        group_names=["square/green", "square/blue", "plus/green", "plus/blue"],
        splits={"train": make_toy_split(n_train, 0.9, rng), "val": make_toy_split(64, 0.5, rng),
                "test": make_toy_split(64, 0.5, rng)},
        info={"seed": seed, "synthetic": True, "generator_version": "toy-1"},
    )


@pytest.fixture
def toy_benchmark() -> Benchmark:
    return make_toy_benchmark()


@pytest.fixture
def one_thread():
    """Runs in this process use one torch thread (the sweep's default share), as the workers would."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


FAST_MODEL = {"pretrained": "none", "width": 0.25, "depth": 2}


@pytest.fixture
def make_context(tmp_path):
    """Factory of RunContexts on the toy benchmark: untrained narrow models, few epochs, CPU."""
    from harness.core.cache import ArtifactCache
    from harness.engine.context import RunContext
    from harness.engine.hparams_registry import run_hparams

    def make(method: str = "erm", *, benchmark: Benchmark | None = None, arch: str = "resnet18", seed: int = 0,
             **overrides):
        benchmark = benchmark or make_toy_benchmark()
        hp = run_hparams(method, benchmark.name, "tiny", arch, {"epochs": 3, **FAST_MODEL, **overrides})
        return RunContext(benchmark=benchmark, arch=arch, seed=seed, scale="tiny", device=torch.device("cpu"),
                          hparams=hp, method=method, cache=ArtifactCache(tmp_path / "cache"), run_dir=tmp_path / "run",
                          show_progress=False)

    return make


def images_folder(folder: Path, count: int) -> list[Path]:
    """``count`` flat 8 x 8 PNG files in a new ``folder``, image i of grey level 10 i."""
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        paths.append(folder / f"{i}.png")
        PIL.Image.fromarray(np.full((8, 8, 3), i * 10, np.uint8)).save(paths[-1])
    return paths
