"""Run by tests/test_cpu.py in a child process, whose environment sets the instruction-set level: a tiny
SLIM_Val run through the runner on the toy benchmark (its ERM reference model, GradCAM attention pass,
attention space by UMAP, curation and last-layer fit), written as a run record into the folder given."""
import harness  # noqa: F401, I001  (first: the pin, before numpy and torch load)

# isort: split
import sys
from pathlib import Path

from conftest import FAST_MODEL, make_toy_benchmark

import harness.experiments.runner


def main(out: Path) -> None:
    benchmark = make_toy_benchmark(n_train=64)
    harness.experiments.runner.load_benchmark = lambda *args, **kwargs: benchmark
    config = harness.experiments.runner.make_config(dataset="toy", method="slim-val", arch="resnet18", device="cpu",
                                        overrides={**FAST_MODEL, "epochs": 2, "figures": False})
    print(harness.experiments.runner.execute(config, out, show_progress=False))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
