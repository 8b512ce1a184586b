"""Agreement of a run with the CPU's float32 run of the same configuration, within what the precision it ran
in allows: section (c) of ``python -m harness gpu-check``.

A run in another precision is not the CPU's run with its last digits changed: every rounding difference
enters training, and the run ends at a nearby, different model. What can be bounded is how many test images
change their prediction.

bf16 keeps 8 significant bits: each rounding is off by at most u = 2^-8 (0.39 %) relative. Under autocast a
convolution rounds its inputs and weights to bf16 and its float32 sum back to bf16, so each layer adds about
u of relative error, and independent errors add in quadrature: after L layers about u sqrt(3 L), 3 % for the
~50 layers of EfficientNet-Lite0 below its head (the README's "GPU check" gives what was measured). A
prediction flips when the image's logit margin is within that error, and training on a stem cache 3 % off,
rounding every step, moves the model further in the same direction: the images that change are those near
the decision boundary. So each test image is modelled as flipping independently with a probability q (the
flip rate); a group of n images then changes its count of correct predictions by a difference of flips
whose standard deviation is at most sqrt(n q), and :func:`allowed_change` allows ``ceil(Z sqrt(n q))``
images, Z = 3 standard deviations (at least one image where q > 0). The rates (:data:`FLIP_RATE`) are the
measured ones (README, "GPU check") with headroom: bf16 5 %; float32 on the GPU (TF32 off, where only
summation orders differ, u = 2^-24) 0.5 %; float32 on the CPU 0 (one thread: the same sums, the same record).

On the default preset's test split (waterbirds-synth, tiny: groups of 187, 187, 53 and 53 images, 480 in
all) bf16 allows 10, 10, 5 and 5 images (5.3, 5.3, 9.4 and 9.4 points) and 15 in the average (3.1 points).

SLIM_Val is not held to this model: its curation is discrete (a UMAP embedding, the points nearest k-means
centres, the top half by a propagated score), so a rounding-level change of F_A can change which images
are asked about and kept, and a run in another precision is another draw of the curation. It is held to
what its settings fix exactly (queries asked, subset size) and to the envelope of the committed seeds: no
group may change by more images than it changed between seed 0 and another seed of the same record.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Z = 3.0  # standard deviations of the flip model a change may reach
FLIP_RATE = {"cpu fp32": 0.0, "fp32": 0.005, "bf16": 0.05}
SPLIT = "test"


@dataclass(frozen=True)
class Comparison:
    """One quantity of a run beside the reference's: values as shown, the change in images (or units) and
    the change allowed."""

    what: str
    reference: str
    value: str
    change: int
    allowed: int | None  # None: shown, not judged

    @property
    def ok(self) -> bool | None:
        return None if self.allowed is None else abs(self.change) <= self.allowed


def allowed_change(n: int, rate: float, z: float = Z) -> int:
    """Most images of a group of ``n`` whose count of correct predictions may change when each flips with
    probability ``rate``: ``ceil(z sqrt(n rate))``, at least 1 where the rate is positive, 0 where it is 0."""
    if rate <= 0:
        return 0
    return max(1, math.ceil(z * math.sqrt(n * rate)))


def correct_counts(record: dict[str, Any], split: str = SPLIT) -> dict[str, tuple[int, int]]:
    """{group: (correct predictions, images)} of ``split`` in a run record."""
    metrics = record["metrics"][split]
    return {group: (round(acc * metrics["group_count"][group]), metrics["group_count"][group])
            for group, acc in metrics["group_acc"].items()}


def _rows(reference: dict[str, Any], candidate: dict[str, Any],
          allowed: dict[str, int | None]) -> list[Comparison]:
    """Per group and for the whole split: correct counts of the two records and the change allowed
    (``allowed`` by group name and "all")."""
    ref, new = correct_counts(reference), correct_counts(candidate)
    if set(ref) != set(new) or any(ref[g][1] != new[g][1] for g in ref):
        raise ValueError("the two records' test splits hold different groups or group sizes")
    rows = [Comparison(f"{SPLIT} {group} correct", f"{ref[group][0]} / {n}", f"{new[group][0]} / {n}",
                       new[group][0] - ref[group][0], allowed[group]) for group, (_, n) in ref.items()]
    total, n_all = sum(c for c, _ in ref.values()), sum(n for _, n in ref.values())
    rows.append(Comparison(f"{SPLIT} all correct (avg acc)", f"{total} / {n_all}",
                           f"{sum(c for c, _ in new.values())} / {n_all}",
                           sum(c for c, _ in new.values()) - total, allowed["all"]))
    worst = {name: min(acc for acc in rec["metrics"][SPLIT]["group_acc"].values())
             for name, rec in (("ref", reference), ("new", candidate))}
    rows.append(Comparison(f"{SPLIT} worst-group acc", f"{100 * worst['ref']:.1f}", f"{100 * worst['new']:.1f}",
                           0, None))
    return rows


def flip_model_rows(reference: dict[str, Any], candidate: dict[str, Any], rate: float) -> list[Comparison]:
    """The comparison of a smoothly trained model (ERM) under the flip model at ``rate``."""
    counts = correct_counts(reference)
    allowed: dict[str, int | None] = {g: allowed_change(n, rate) for g, (_, n) in counts.items()}
    allowed["all"] = allowed_change(sum(n for _, n in counts.values()), rate)
    return _rows(reference, candidate, allowed)


def seed_envelope(seed0: dict[str, Any], other_seeds: list[dict[str, Any]]) -> dict[str, int]:
    """{group or "all": the largest change of its correct count between ``seed0`` and another seed's record}."""
    base = correct_counts(seed0)
    total = sum(c for c, _ in base.values())
    envelope = dict.fromkeys([*base, "all"], 0)
    for record in other_seeds:
        other = correct_counts(record)
        for group in base:
            envelope[group] = max(envelope[group], abs(other[group][0] - base[group][0]))
        envelope["all"] = max(envelope["all"], abs(sum(c for c, _ in other.values()) - total))
    return envelope


def curation_rows(reference: dict[str, Any], candidate: dict[str, Any], envelope: dict[str, int] | None,
                  rate: float) -> list[Comparison]:
    """SLIM's comparison: queries asked and subset size exactly; accuracies exactly at rate 0 (the CPU's own
    rerun), else within ``envelope`` (:func:`seed_envelope` of the committed seeds; shown, not judged, without
    one)."""
    rows = [Comparison(what, str(reference["details"][key]), str(candidate["details"][key]),
                       candidate["details"][key] - reference["details"][key], 0)
            for what, key in (("attention queries", "queries"), ("curated subset size", "subset_size"))]
    groups = [*correct_counts(reference), "all"]
    allowed: dict[str, int | None] = dict.fromkeys(groups, 0) if rate <= 0 else \
        dict(envelope) if envelope else dict.fromkeys(groups, None)
    return rows + _rows(reference, candidate, allowed)


def unjudged(rows: list[Comparison]) -> list[Comparison]:
    """``rows`` shown without a verdict."""
    return [Comparison(r.what, r.reference, r.value, r.change, None) for r in rows]
