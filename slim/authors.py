"""SLIM's curation as its authors' public code computes it (xiweix/SLIM @ 04a4a72: ``utils/analysis.py``,
``utils/utils.py`` and ``slim_data_sampling.ipynb`` cells 11-27), written anew from what that code does.

Stage by stage (the paper's section, then what the code does where the text is silent or differs):

1. Attention space (Sec. 4.1): UMAP (n_neighbors 5, min_dist 0, random_state 0) fitted on the raw F_A and
   then applied to it with ``transform`` (which places the fitted rows again); the environment space is the
   same on F_Abar. Above 100,000 rows: n_neighbors 3, spread 1.9, fitted on a random 5,000.
2. Annotation sampling (Sec. 4.2): per class, faiss k-means in the attention space with k = the class's
   budget; for each centre one of the 5 nearest rows, drawn at random.
3. Expansion (Sec. 4.2): per class, scikit-learn's rbf ``LabelSpreading`` (alpha 1e-6) on the class's
   coordinates standardised by one scalar mean and std; the score is ``predict_proba``'s "yes" column on
   the fitted rows, each row renormalised, min-max scaled within the class. A class whose answers are all
   of one kind scores 1 everywhere.
4. Screening (Sec. 4.3): rows whose score is above the median of all classes' scores pooled.
5. Disentangling (Sec. 4.3): the kept rows of every class together; k-means in the attention space (core)
   and in the environment space (environment), k in 2..5 by the largest second difference of the inertia
   (which can only choose 3 or 4).
6. Consistency-weighted sampling, eqs. (3)-(6) with median distances, each subgroup measured to its own
   centroid; sizes floored with ``int()``; inside a subgroup k-means with k = its size and one of the 3
   rows nearest each centre at random, or the whole subgroup plus draws with replacement.

Where the published cells raise or misalign, the smallest patch that lets them run is applied and
reported (:data:`PATCHES`); ``curate`` returns which ones this input needed.
"""
from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import faiss
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.semi_supervised import LabelSpreading

from harness.core.errors import HarnessError
from simulated_oracle import Oracle
from slim.ablations import Ablation, Truth, ablation
from slim.annotation import ask, split_budget
from slim.clustering import Clustering
from slim.curation import Curation, check_inputs, class_counts
from slim.expansion import ALL_NO, ALL_YES, NO_ANSWERS, SPREAD
from slim.space import enable_umap_kernel_cache
from slim.threads import single_threaded

SOURCE = "xiweix/SLIM @ 04a4a72"
UMAP_SETTINGS = {"n_neighbors": 5, "min_dist": 0.0, "n_components": 2, "random_state": 0, "metric": "euclidean"}
LARGE_SPLIT = 100_000  # above this many rows the authors fit UMAP on a sample, with other settings
LARGE_UMAP_SETTINGS = {**UMAP_SETTINGS, "n_neighbors": 3, "spread": 1.9}
LARGE_FIT_SAMPLE = 5_000
FEATURE_PASS_SEED = 1  # get_attention_new seeds numpy with 1 before it draws the UMAP fit samples
QUERY_CANDIDATES, PICK_CANDIDATES = 5, 3  # rows nearest a centre that one is drawn from
KMEANS_ITERATIONS, KMEANS_RESTARTS = 100, 3
SPREAD_ALPHA, SPREAD_MAX_ITER, SPREAD_FIT_LIMIT = 1e-6, 100_000, 50_000
ELBOW_KS = (2, 3, 4, 5)
DEFAULT_GAMMA = (10.0, 5.0)  # the notebook's rbf gamma for class 0 and class 1 (Waterbirds)
PATCHES = {
    "core_loop": "the quota loop runs over the core clusters (the notebook loops over range(k_env))",
    "env_lookup": "a subgroup's environment share is looked up by its environment label, 0 where the core "
                  "cluster has no row of it (the notebook indexes by position among the labels present)",
    "size_pairing": "each subgroup is drawn with its own size (the notebook pairs the non-empty subgroups "
                    "with the full size list, shifting sizes when one is empty)",
    "zero_sizes": "subgroups of size 0 are skipped (faiss raises on k = 0)",
    "zero_spread": "where every cluster's median distance to its mean is 0 (coincident points), the clusters "
                   "share equally (the notebook divides by zero)",
    "zero_affinity": "rows whose rbf affinities all underflow (a NaN probability) score 0 before the "
                     "min-max scaling, instead of turning the class's scores into NaN",
    "constant_scores": "a class whose propagated scores are all equal scores 1 (the min-max scaling divides "
                       "by zero)",
    "median_ties": "when no score is above the pooled median (half the rows or more share the top score, "
                   "e.g. a class answered one way), the rows at the median are kept (nothing would be, and the "
                   "clustering raises)",
    "no_answers": "a class with no yes/no answer scores 1 everywhere, as one with answers of one kind (the "
                  "authors' code raises)",
}


def class_gamma(gamma: Sequence[float], label: int) -> float:
    """The rbf gamma of class ``label``: ``gamma[label]``, the last value for classes beyond the list.

    The notebook passes (10, 5) for Waterbirds' two classes and nothing for more; beyond class 1 this uses
    5, the value the authors gave the second class, so a binary split is unchanged."""
    return float(gamma[min(int(label), len(gamma) - 1)])


def attention_space(features: np.ndarray) -> np.ndarray:
    """(N, 2) float32: UMAP fitted on the raw ``features``, then ``transform`` of every row (stage 1)."""
    import umap  # deferred on purpose: umap-learn imports numba, seconds that most commands never need

    enable_umap_kernel_cache()
    features = np.asarray(features, dtype=np.float32)
    large = len(features) > LARGE_SPLIT
    reducer = umap.UMAP(**(LARGE_UMAP_SETTINGS if large else UMAP_SETTINGS))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")  # a seed makes UMAP single-threaded
        if large:
            rows = np.random.RandomState(FEATURE_PASS_SEED).choice(len(features), LARGE_FIT_SAMPLE, replace=False)
            reducer.fit(features[rows])
        else:
            reducer.fit(features)
        return np.asarray(reducer.transform(features), dtype=np.float32)


def kmeans(data: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """faiss k-means as the authors call it (100 iterations, best of 3 restarts, one thread):
    (centroids (k, d), each row's nearest centroid, its squared distance)."""
    data = np.ascontiguousarray(data, dtype=np.float32)
    # min_points_per_centroid only decides whether faiss prints a warning about small inputs
    model = faiss.Kmeans(data.shape[1], int(k), niter=KMEANS_ITERATIONS, nredo=KMEANS_RESTARTS, seed=int(seed),
                         verbose=False, min_points_per_centroid=1)
    model.train(data)
    squared, nearest = model.index.search(data, 1)
    return model.centroids, nearest[:, 0].astype(np.int64), squared[:, 0]


def query_rows(att_emb: np.ndarray, labels: np.ndarray, budgets: Mapping[int, int], seed: int,
               draw: random.Random) -> dict[int, np.ndarray]:
    """Stage 2: per class (ascending), k-means with k = its budget in the attention space and, for each
    centre, one of its 5 nearest rows of the class drawn with ``draw``. Rows of the split, in asking order."""
    queries = {}
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        points = np.ascontiguousarray(att_emb[members], dtype=np.float32)
        centroids, _, _ = kmeans(points, budgets[int(c)], seed)
        index = faiss.IndexFlatL2(points.shape[1])
        index.add(points)
        _, nearest = index.search(centroids, min(QUERY_CANDIDATES, len(members)))
        queries[int(c)] = members[[draw.choice(list(row)) for row in nearest]]
    return queries


def spread_scores(points: np.ndarray, given: np.ndarray, gamma: float,
                  sample_rng: np.random.RandomState) -> tuple[np.ndarray, list[str]]:
    """Stage 3 for one class: ``given`` holds 1 (yes), 0 (no) or -1 (unlabelled) per row. Returns the scores
    in [0, 1] and the patches it needed (see :data:`PATCHES`)."""
    yes, no = int((given == 1).sum()), int((given == 0).sum())
    if yes == 0 and no == 0:
        return np.ones(len(points)), ["no_answers"]
    if yes == 0 or no == 0:
        return np.ones(len(points)), []
    points = np.asarray(points, dtype=np.float32)
    points = (points - points.mean()) / points.std()
    model = LabelSpreading(kernel="rbf", gamma=gamma, alpha=SPREAD_ALPHA, max_iter=SPREAD_MAX_ITER)
    fit_rows = np.arange(len(points))
    if len(points) > SPREAD_FIT_LIMIT:
        answered, unanswered = np.flatnonzero(given != -1), np.flatnonzero(given == -1)
        fit_rows = np.concatenate([answered, sample_rng.choice(unanswered, SPREAD_FIT_LIMIT, replace=False)])
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(points[fit_rows], given[fit_rows])
        proba = model.predict_proba(points)
        proba = proba / np.atleast_2d(proba.sum(axis=1)).T
    score = proba[:, 1]
    patches = []
    if np.isnan(score).any():
        score, patches = np.nan_to_num(score, nan=0.0), ["zero_affinity"]
    low, high = score.min(), score.max()
    if high == low:
        return np.ones(len(points)), [*patches, "constant_scores"]
    return (score - low) / (high - low), patches


def elbow_k(inertia: Sequence[float]) -> int:
    """The k of :data:`ELBOW_KS` where the inertia curve bends most: the largest second difference, each
    difference halved as the authors do, the first on ties. Only the inner ks (3 or 4) can come out."""
    bend = np.diff(np.diff(inertia) / 2) / 2
    return ELBOW_KS[int(np.argmax(bend)) + 1]


def elbow(points: np.ndarray) -> tuple[int, list[float]]:
    """The elbow's k for ``points`` and the inertia curve it read (k-means by faiss, seed 0; the inertia a
    float32 sum of squared distances, as theirs)."""
    inertia = [np.sum(kmeans(points, k, 0)[2]) for k in ELBOW_KS]
    return elbow_k(inertia), [float(v) for v in inertia]


def median_spread(points: np.ndarray, labels: np.ndarray) -> tuple[dict[int, float], bool]:
    """Per label present: the median Euclidean distance of its rows to their mean, normalised to sum to 1
    (the authors' ``compute_sampling_probability``; 1 / rho of eqs. (3) and (5) with the median); and
    whether every distance was 0, when the shares are equal instead (the ``zero_spread`` patch)."""
    present = np.unique(labels)
    spread = []
    for label in present:
        rows = points[labels == label]
        spread.append(np.median(np.sqrt(np.sum((rows - np.mean(rows, axis=0)) ** 2, axis=1))))
    if np.sum(spread) == 0:
        return {int(label): 1.0 / len(present) for label in present}, True
    shares = np.array(spread) / np.sum(spread)
    return {int(label): share for label, share in zip(present, shares, strict=True)}, False


def subgroup_weights(att_kept: np.ndarray, op_kept: np.ndarray, core: np.ndarray, env: np.ndarray,
                     k_core: int, k_env: int) -> tuple[np.ndarray, list[str]]:
    """Cell 26, eqs. (3)-(6): the weight of subgroup (i, j) at index i * k_env + j, the core share times the
    environment share inside core cluster i, normalised over all subgroups; and the patches it needed."""
    core_share, degenerate = median_spread(att_kept, core)
    weights = np.zeros(k_core * k_env)
    patches = ["core_loop"] if k_core != k_env else []
    for i in range(k_core):
        inside = np.flatnonzero(core == i)
        env_share, flat = median_spread(op_kept[inside], env[inside]) if len(inside) else ({}, False)
        degenerate |= flat
        if len(env_share) < k_env and "env_lookup" not in patches:
            patches.append("env_lookup")
        for j in range(k_env):
            weights[i * k_env + j] = core_share.get(i, 0.0) * env_share.get(j, 0.0)
    return np.array([w / np.sum(weights) for w in weights]), [*patches, *(["zero_spread"] if degenerate else [])]


def sample_from_group(rows: np.ndarray, size: int, vectors: np.ndarray, seed: int) -> np.ndarray:
    """Cell 27's draw from one subgroup (``rows`` of the kept set, ``vectors`` their environment coordinates):
    k-means with k = ``size`` and one of the 3 rows nearest each centre at random; a subgroup smaller than
    ``size`` whole, plus random draws with replacement, shuffled."""
    draw = random.Random(seed)
    if size <= len(rows):
        vectors = np.asarray(vectors, dtype=np.float32)
        centroids, _, _ = kmeans(vectors, size, 0)
        distances = np.linalg.norm(vectors[:, np.newaxis] - centroids, axis=2)
        nearest = np.argsort(distances, axis=0)[:PICK_CANDIDATES, :]
        return rows[[draw.choice(list(nearest[:, i])) for i in range(len(centroids))]]
    extra = np.array(draw.choices(list(rows), k=size - len(rows)))
    picked = np.concatenate([rows, extra])
    draw.shuffle(picked)
    return picked


def draw_subgroups(subgroup: np.ndarray, sizes: Sequence[int], vectors: np.ndarray, seed: int,
                   pick: str = "centres") -> tuple[np.ndarray, list[str]]:
    """Cell 27: each non-empty subgroup ``label`` (``subgroup`` holds one label per kept row) drawn with its
    own ``sizes[label]`` by :func:`sample_from_group` (``pick="uniform"``: uniformly, the ``uniform_pick``
    ablation); rows of the kept set, and the patches it needed."""
    picked, patches = [], []
    for label, size in enumerate(sizes):
        rows = np.flatnonzero(subgroup == label)
        if len(rows) == 0 and label < subgroup.max() and "size_pairing" not in patches:
            patches.append("size_pairing")
        if len(rows) and size == 0 and "zero_sizes" not in patches:
            patches.append("zero_sizes")
        if len(rows) and size > 0 and pick == "uniform" and size <= len(rows):
            picked.append(np.array(random.Random(seed).sample(list(rows), size)))
        elif len(rows) and size > 0:
            picked.append(sample_from_group(rows, size, vectors[rows], seed))
    return (np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)), patches


def curate(fa: np.ndarray, fabar: np.ndarray, labels: np.ndarray, answer: Callable[[np.ndarray], Sequence[int]],
           *, budgets: Mapping[int, int], subset_size: int, seed: int = 0,
           gamma: Sequence[float] = DEFAULT_GAMMA, att_emb: np.ndarray | None = None,
           op_emb: np.ndarray | None = None, keep: np.ndarray | None = None,
           pick: str = "centres") -> dict[str, Any]:
    """The authors' curation of one split, stage by stage.

    ``answer(rows)`` returns 1 (attention correct), 0 (wrong) or -1 (not sure) for each row asked, one call
    per class; ``budgets`` maps each class to its number of queries; ``subset_size`` is the curated subset's
    nominal size (the floored sizes may sum to less); ``seed`` plays the notebook's random seed (the query
    draw and the subgroup draws); ``att_emb`` / ``op_emb`` replace stage 1 when given. Two overrides serve
    the ablations (:mod:`slim.ablations`): ``keep`` (rows) replaces screening's kept rows, and
    ``pick="uniform"`` draws inside each subgroup uniformly instead of near k-means centres. Returns every stage's
    output, rows as indices into the split: ``att_emb, op_emb, query_ids, answers, scores, kept, k_core,
    k_env, core_labels, env_labels, weights, sizes, constructed``, and ``patches`` (the names of
    :data:`PATCHES` this input needed) and ``elbow_curves``.
    """
    fa, fabar, labels = np.asarray(fa), np.asarray(fabar), np.asarray(labels)
    if not len(fa) == len(fabar) == len(labels):
        raise HarnessError(f"F_A, F_Abar and labels must have one row per instance, got {len(fa)}, {len(fabar)}, "
                           f"{len(labels)}")
    classes = [int(c) for c in np.unique(labels)]
    missing = [c for c in classes if int(budgets.get(c, 0)) < 1]
    if missing:
        raise HarnessError(f"the authors' annotation sampling needs at least one query per class; classes "
                           f"{missing} have none")
    if isinstance(subset_size, bool) or not isinstance(subset_size, (int, np.integer)) or subset_size < 1:
        raise HarnessError(f"curated subset size must be a positive integer, got {subset_size!r}")
    with single_threaded(), _faiss_threads(1):
        return _curate(fa, fabar, labels, answer, budgets, int(subset_size), int(seed), gamma, att_emb, op_emb,
                       keep, pick)


def _curate(fa, fabar, labels, answer, budgets, subset_size, seed, gamma, att_emb, op_emb, keep,
            pick) -> dict[str, Any]:
    att_emb = attention_space(fa) if att_emb is None else np.asarray(att_emb, dtype=np.float32)
    op_emb = attention_space(fabar) if op_emb is None else np.asarray(op_emb, dtype=np.float32)
    draw = random.Random(seed)  # the notebook seeds Python's and numpy's generators once, before class 0
    sample_rng = np.random.RandomState(seed)
    queries = query_rows(att_emb, labels, budgets, seed, draw)
    patches: list[str] = []
    scores = np.ones(len(labels)) * -1
    asked, answers = [], []
    for c, rows in queries.items():
        given_now = np.asarray(answer(rows), dtype=np.int64)
        if given_now.shape != rows.shape or not np.isin(given_now, (-1, 0, 1)).all():
            raise HarnessError(f"the annotator must answer 1, 0 or -1 for each of the {len(rows)} rows asked")
        members = np.flatnonzero(labels == c)
        given = np.full(len(labels), -1, dtype=np.int64)
        given[rows] = given_now  # a row drawn twice keeps its last answer, as in the notebook
        class_scores, class_patches = spread_scores(att_emb[members], given[members], class_gamma(gamma, c),
                                                    sample_rng)
        scores[members] = class_scores
        patches += [p for p in class_patches if p not in patches]
        asked.append(rows)
        answers.append(given_now)
    kept = np.flatnonzero(scores > np.median(scores))
    if len(kept) == 0:  # half the rows or more share the top score (a class answered one way scores 1)
        kept, patches = np.flatnonzero(scores >= np.median(scores)), [*patches, "median_ties"]
    if keep is not None:
        kept = np.unique(np.asarray(keep, dtype=np.int64))
    if len(kept) < max(ELBOW_KS):
        raise HarnessError(f"screening kept {len(kept)} rows; the authors' elbow clusters at least "
                           f"{max(ELBOW_KS)}")
    att_kept, op_kept = att_emb[kept], op_emb[kept]
    k_core, core_curve = elbow(att_kept)
    k_env, env_curve = elbow(op_kept)
    core = kmeans(att_kept, k_core, 0)[1]
    env = kmeans(op_kept, k_env, 0)[1]
    weights, weight_patches = subgroup_weights(att_kept, op_kept, core, env, k_core, k_env)
    patches += weight_patches
    sizes = [int(subset_size * w) for w in weights]
    picked, draw_patches = draw_subgroups(core * k_env + env, sizes, op_kept, seed, pick=pick)
    patches += draw_patches
    constructed = kept[picked]
    return {
        "att_emb": att_emb, "op_emb": op_emb, "query_ids": np.concatenate(asked),
        "answers": np.concatenate(answers), "scores": scores, "kept": kept, "k_core": k_core, "k_env": k_env,
        "core_labels": core, "env_labels": env, "weights": weights, "sizes": np.array(sizes, dtype=np.int64),
        "constructed": constructed, "patches": [p for p in PATCHES if p in patches],
        "elbow_curves": {"core": dict(zip(ELBOW_KS, core_curve, strict=True)),
                         "env": dict(zip(ELBOW_KS, env_curve, strict=True))},
    }


class _faiss_threads:
    """Within the block faiss runs on ``n`` OpenMP threads (its result then does not depend on the machine)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        faiss.omp_set_num_threads(self.before)


class AuthorsSpace:
    """Stage 1 as the authors run it (:func:`attention_space`), with the interface of
    :class:`slim.space.AttentionSpace` (``params``, ``fit_transform``, ``mode_``), so runs cache it alike."""

    def params(self) -> dict[str, Any]:
        return {"variant": "authors", "source": SOURCE, **UMAP_SETTINGS, "large_split": LARGE_SPLIT,
                "large_settings": LARGE_UMAP_SETTINGS, "large_fit_sample": LARGE_FIT_SAMPLE}

    def fit_transform(self, features: np.ndarray) -> np.ndarray:
        started = time.monotonic()
        with single_threaded():
            embedding = attention_space(features)
        large = len(features) > LARGE_SPLIT
        self.mode_ = {"pca_dims": None, "fit_size": LARGE_FIT_SAMPLE if large else len(features),
                      "transformed": len(features), "refit": "UMAP fitted, then transform of every row",
                      **(LARGE_UMAP_SETTINGS if large else UMAP_SETTINGS),
                      "seconds": round(time.monotonic() - started, 2)}
        return embedding


class AuthorsCurator:
    """The ``authors`` variant for the harness: :func:`curate` on a split, its output as a
    :class:`slim.curation.Curation` (one scope, "all": the authors pool the classes from screening on).

    The ablations act where they act on the paper variant (:mod:`slim.ablations`): the oracle's noise, the
    screening (``true_screening`` replaces the kept rows), the pick inside a subgroup, or the whole subset
    (of the size the authors' draw gave). The record's ``details.authors`` names the patches this input
    needed and the gamma of each class.
    """

    def __init__(self, budget: Mapping[int, int], subset_size: int, *, settings: Mapping[str, Any],
                 random_state: int = 0) -> None:
        self.budget = budget
        self.subset_size = subset_size
        self.settings = dict(settings)
        self.random_state = random_state

    def space(self) -> AuthorsSpace:
        return AuthorsSpace()

    def env_space(self) -> AuthorsSpace:
        """The authors cluster environments in a UMAP of F_Abar."""
        return AuthorsSpace()

    def query_ids(self, embedding: np.ndarray, labels: np.ndarray, env_embedding: np.ndarray | None = None
                  ) -> np.ndarray:
        """The rows :meth:`curate` asks about, in asking order."""
        labels = np.asarray(labels)
        budgets = split_budget(self.budget, labels)
        with _faiss_threads(1):
            queries = query_rows(embedding, labels, budgets, self.random_state, random.Random(self.random_state))
        return np.concatenate(list(queries.values()))

    def curate(self, fa: np.ndarray, fabar: np.ndarray, labels: np.ndarray, oracle: Oracle, *,
               embedding: np.ndarray | None = None, space_mode: dict[str, Any] | None = None,
               env_embedding: np.ndarray | None = None, truth: Truth | None = None) -> Curation:
        name = self.settings["slim_ablation"]
        check_inputs(fa, fabar, labels, self.subset_size, name, truth)
        row = ablation(name)
        labels = np.asarray(labels)
        budgets = split_budget(self.budget, labels)
        out = curate(fa, fabar, labels, lambda rows: ask(oracle, rows), budgets=budgets,
                     subset_size=int(self.subset_size), seed=self.random_state, att_emb=embedding,
                     op_emb=env_embedding, keep=np.flatnonzero(truth.correct) if row.true_screening else None,
                     pick=row.pick)
        return self._as_curation(out, labels, budgets, space_mode, row, truth)

    def _as_curation(self, out: dict[str, Any], labels: np.ndarray, budgets: dict[int, int],
                     space_mode: dict[str, Any] | None, row: Ablation, truth: Truth | None) -> Curation:
        kept, scores = out["kept"], out["scores"]
        keep = np.zeros(len(labels), dtype=bool)
        keep[kept] = True
        classes = [int(c) for c in np.unique(labels)]
        answered = {c: out["answers"][labels[out["query_ids"]] == c] for c in classes}
        indices = out["constructed"]
        replaced = row.replaced_subset(indices, {"all": (kept, len(indices))}, len(labels), truth,
                                       self.random_state)
        indices = indices if replaced is None else replaced
        return Curation(
            embedding=out["att_emb"], space_mode=dict(space_mode or {}), settings=dict(self.settings),
            budgets=budgets, query_ids=out["query_ids"], answers=out["answers"], scores=scores,
            spread_status={c: spread_status(answered[c]) for c in classes},
            unreached={c: 0 for c in classes}, unreached_scores={}, keep=keep,
            cutoffs={c: float(scores[keep & (labels == c)].min()) if (keep & (labels == c)).any() else None
                     for c in classes},
            kept_share={c: float(keep[labels == c].mean()) for c in classes},
            core={"all": clustering(out["att_emb"][kept], out["core_labels"], out["k_core"],
                                    out["elbow_curves"]["core"])},
            env={"all": clustering(out["op_emb"][kept], out["env_labels"], out["k_env"],
                                   out["elbow_curves"]["env"])},
            scope_rows={"all": kept},
            quotas={("all", c, e): int(out["sizes"][c * out["k_env"] + e])
                    for c in range(out["k_core"]) for e in range(out["k_env"])},
            indices=indices, repeats=int(len(indices) - len(np.unique(indices))),
            subset_classes=class_counts(labels, indices),
            warnings=[f"authors' code patched: {PATCHES[p]}" for p in out["patches"]],
            variant_details={"authors": {
                "source": SOURCE, "patches": out["patches"],
                "gamma": {str(c): class_gamma(DEFAULT_GAMMA, c) for c in classes},
                "weights": [float(w) for w in out["weights"]], "sizes": [int(n) for n in out["sizes"]],
                "nominal_subset_size": int(self.subset_size)}},
        )


def spread_status(answers: np.ndarray) -> str:
    """How a class's scores came about, in the words of :mod:`slim.expansion`."""
    yes, no = bool((answers == 1).any()), bool((answers == 0).any())
    return SPREAD if yes and no else ALL_YES if yes else ALL_NO if no else NO_ANSWERS


def clustering(points: np.ndarray, labels: np.ndarray, k: int, curve: Mapping[int, float]) -> Clustering:
    """One of the authors' clusterings as a :class:`slim.clustering.Clustering` (distances to each cluster's
    mean, for the record and the figures)."""
    centres = np.stack([points[labels == c].mean(0) if (labels == c).any() else np.zeros(points.shape[1])
                        for c in range(k)])
    return Clustering(labels=labels, distances=np.linalg.norm(points - centres[labels], axis=1), k=int(k),
                      curve={int(q): float(v) for q, v in curve.items()}, points=points)
