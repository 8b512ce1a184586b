"""Run by tests/test_slim_threads.py in a child process: curate a fixed synthetic split with every stage from
the attention space on, and print the curation's facts as JSON (thread count set by the parent's env)."""
from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import torch


def main(threads: int) -> None:
    torch.set_num_threads(threads)
    from simulated_oracle import SimulatedOracle
    from slim.pipeline import SlimCurator

    rng = np.random.default_rng(0)
    n = 400
    labels, env = rng.integers(0, 2, n), rng.integers(0, 2, n)
    correct = rng.random(n) < 0.6
    class_dir, env_dir = rng.normal(size=(2, 96)) * 3, rng.normal(size=(2, 96)) * 3
    fa = np.where(correct[:, None], class_dir[labels], env_dir[env] + 6) + rng.normal(size=(n, 96))
    fabar = env_dir[env] + rng.normal(size=(n, 96))
    masks = np.zeros((n, 6, 6), bool)
    masks[:, 1:4, 1:4] = True
    maps = np.where(correct[:, None, None], masks, ~masks).astype(np.float32)
    oracle = SimulatedOracle(maps, masks, budget=20, random_state=0)
    curation = SlimCurator(20, 80, settings={"umap_pca_dims": 50}, random_state=0).curate(
        fa.astype(np.float32), fabar.astype(np.float32), labels, oracle)
    details = curation.details()
    details["attention_space"].pop("seconds", None)  # wall time
    details["indices"] = curation.indices.tolist()
    details["embedding_sha1"] = hashlib.sha1(np.ascontiguousarray(curation.embedding).tobytes()).hexdigest()
    details["scores_sha1"] = hashlib.sha1(np.ascontiguousarray(curation.scores).tobytes()).hexdigest()
    print(json.dumps(details, sort_keys=True))


if __name__ == "__main__":
    main(int(sys.argv[1]))
