"""How much of SLIM's curation changes when its inputs change at float16 rounding level (issue 31).

Another CPU computes the features with other kernels and so other roundings; this probe imitates that on
fixed inputs: it curates F_A and F_Abar as given and perturbed, by rounding to float16 and back, or by a
factor 1 +- 2**-11 per element (random sign), and reports the Jaccard index of the query ids, the kept
sets and the curated subsets (as sets of rows), and how many subsets are identical, over several seeds.
``--bits B`` also measures a remedy: both curations get their inputs rounded to B significant bits first
(a grid coarser than float16's 11), before the chaotic stages (PCA, UMAP, k-means, spreading).

    python docs/probes/rounding_sensitivity.py /work/shared/reference/slim-authors-golden/*.npz \
        --seeds 0 1 2 3 4 --bits 8 5

Each file holds ``fa``, ``fabar``, ``labels`` and ``truth`` (the noise-free answers), and a JSON file
beside it the budgets and the subset size; the oracle answers ``truth`` without noise.
"""
from __future__ import annotations

import harness  # noqa: F401, I001  (first: pins the CPU kernels before numpy loads)

# isort: split
import argparse
import json
from pathlib import Path

import numpy as np

from simulated_oracle import SimulatedOracle
from slim.pipeline import SlimCurator

VARIANTS = ("paper", "authors")
SIDE = 4  # the stand-in masks and maps the oracle reads: the map lies on the mask where attention is correct


def float16_rounding(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


def relative_eps(x: np.ndarray) -> np.ndarray:
    signs = np.random.default_rng(0).choice((-1.0, 1.0), size=x.shape)
    return (x * (1 + signs * 2.0 ** -11)).astype(np.float32)


PERTURBATIONS = {"float16": float16_rounding, "1+-2^-11": relative_eps}


def to_bits(x: np.ndarray, bits: int | None) -> np.ndarray:
    """``x`` rounded to ``bits`` significant bits (None: unchanged)."""
    if bits is None:
        return x
    mantissa, exponent = np.frexp(x.astype(np.float64))
    return np.ldexp(np.round(mantissa * 2.0 ** bits) / 2.0 ** bits, exponent).astype(np.float32)


def oracle(truth: np.ndarray, budget: int) -> SimulatedOracle:
    masks = np.zeros((len(truth), SIDE, SIDE), bool)
    masks[:, 1:3, 1:3] = True
    maps = np.where(truth.astype(bool)[:, None, None], masks, ~masks).astype(np.float32)
    return SimulatedOracle(maps, masks, flip_prob=0.0, budget=budget, random_state=0)


def curate(case: dict, fa: np.ndarray, fabar: np.ndarray, variant: str, seed: int):
    budgets = {int(c): int(b) for c, b in case["budgets"].items()}
    curator = SlimCurator(budgets, case["subset_size"], settings={"slim_variant": variant}, random_state=seed)
    return curator.curate(fa, fabar, case["labels"], oracle(case["truth"], sum(budgets.values())))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    a, b = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    return len(a & b) / len(a | b) if a | b else 1.0


def load(path: Path) -> dict:
    arrays = np.load(path)
    facts = json.loads(path.with_suffix(".json").read_text())
    return {"name": path.stem, "fa": arrays["fa"], "fabar": arrays["fabar"], "labels": arrays["labels"],
            "truth": arrays["truth"], "budgets": facts["budgets"], "subset_size": facts["subset_size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--bits", nargs="*", type=int, default=[], help="remedies to measure: significant bits")
    args = parser.parse_args()
    print("| input | variant | inputs rounded to | perturbation | queries: Jaccard mean (min) | kept: Jaccard "
          "mean (min) | subset: Jaccard mean (min) | identical subsets |")
    print("|---|---|---|---|---|---|---|---|")
    for case in map(load, args.inputs):
        for variant in VARIANTS:
            for bits in [None, *args.bits]:
                base = {seed: curate(case, to_bits(case["fa"], bits), to_bits(case["fabar"], bits), variant, seed)
                        for seed in args.seeds}
                for name, perturb in PERTURBATIONS.items():
                    scores = {"queries": [], "kept": [], "subset": []}
                    same = 0
                    for seed in args.seeds:
                        other = curate(case, to_bits(perturb(case["fa"]), bits),
                                       to_bits(perturb(case["fabar"]), bits), variant, seed)
                        scores["queries"].append(jaccard(base[seed].query_ids, other.query_ids))
                        scores["kept"].append(jaccard(np.flatnonzero(base[seed].keep), np.flatnonzero(other.keep)))
                        scores["subset"].append(jaccard(base[seed].indices, other.indices))
                        same += np.array_equal(base[seed].indices, other.indices)
                    cells = " | ".join(f"{np.mean(v):.2f} ({np.min(v):.2f})" for v in scores.values())
                    grid = "float32 (as given)" if bits is None else f"{bits} bits"
                    print(f"| {case['name']} | {variant} | {grid} | {name} | {cells} | {same} / {len(args.seeds)} |",
                          flush=True)


if __name__ == "__main__":
    main()
