"""SLIM's data construction pipeline (paper Sec. 4, Fig. 2) on arrays: from F_A, F_Abar, class labels and
an oracle to the rows of a curated subset.

It reads no group or spurious labels: its only inputs are the reference model's attention-weighted and
inverse-attention-weighted features, the class labels, and the oracle's answers (an ablation alone may read
the :class:`Truth` it is given, and says so). Every setting lives in :data:`DEFAULT_SETTINGS` (the run's
hparams may override any of them). ``slim_variant="authors"`` runs the authors' code instead
(:class:`slim.authors.AuthorsCurator`); :func:`make_curator` returns the variant's curator.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from harness.core.errors import HarnessError
from harness.engine.settings import AUTO, NON_NEGATIVE, NONE, Setting, count, fraction
from simulated_oracle import Oracle
from slim.ablations import ABLATIONS, Truth, ablation
from slim.annotation import AnnotationSampler, ask
from slim.authors import AuthorsCurator
from slim.clustering import Disentangler
from slim.curation import Curation, check_inputs, class_counts
from slim.expansion import AttentionLabelSpreading, Screening, nearest_yes_distance
from slim.sampling import SubgroupSampler, allocate
from slim.space import AttentionSpace
from slim.threads import single_threaded

DEFAULT_SETTINGS: dict[str, Any] = {
    # "paper" (the paper's equations, the default; this module) or "authors" (their public code, computed as
    # it computes: slim.authors); the stage settings below are the paper variant's
    "slim_variant": "paper",
    # stage 1, attention space (the authors' UMAP settings: n_neighbors=5, min_dist=0)
    "umap_neighbors": 5, "umap_min_dist": 0.0, "umap_pca_dims": "auto", "umap_fit_sample": "auto",
    # stage 4, expansion: label spreading on the symmetric k-NN graph, alpha as in Zhou et al. 2003
    "spread_neighbors": 7, "spread_alpha": 0.99,
    # stage 5, screening: per class the top (1 - quantile) share with score > threshold
    "screen_quantile": 0.5, "screen_threshold": 0.0,
    # stage 6, disentangling: elbow over k_min..k_max on PCA-reduced features
    "cluster_k_min": 2, "cluster_k_max": 5, "cluster_pca_dims": 50,
    # stages 6-7 over each class's kept instances, the subset split equally over classes ("class"), or over
    # the whole kept set at once ("all", the paper's literal reading, which can leave a class out)
    "curation_scope": "class",
    # a stage replaced (slim.ablations): by ground truth (declared in the record's labels_used) or a uniform draw
    "slim_ablation": "none",
}
VARIANTS = ("paper", "authors")
# the type and range of each of DEFAULT_SETTINGS (paper Sec. 3), part of the methods' settings schema
STAGE_SETTINGS: dict[str, Setting] = {
    "slim_variant": Setting(str, choices=VARIANTS),
    "umap_neighbors": count(2), "umap_min_dist": NON_NEGATIVE, "umap_pca_dims": count(2, None, AUTO, NONE),
    "umap_fit_sample": count(10, None, AUTO, NONE), "spread_neighbors": count(1),
    "spread_alpha": fraction(open_low=True, open_high=True), "screen_quantile": Setting(float, 0.0, 1.0, words=(NONE,)),
    "screen_threshold": fraction(), "cluster_k_min": count(1, not_above="cluster_k_max"), "cluster_k_max": count(1),
    "cluster_pca_dims": count(1, None, NONE), "curation_scope": Setting(str, choices=("class", "all")),
    "slim_ablation": Setting(str, choices=tuple(ABLATIONS)),
}


def settings_from(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline settings: defaults, overridden by any of the same keys in ``hparams``."""
    return resolve({key: hparams.get(key, default) for key, default in DEFAULT_SETTINGS.items()})


def resolve(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` over the defaults; an unknown variant or ablation fails."""
    variant = settings.get("slim_variant", "paper")
    if variant not in VARIANTS:
        raise HarnessError(f"slim_variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    ablation(settings.get("slim_ablation", "none"))
    return {**DEFAULT_SETTINGS, **settings}


def make_space(settings: Mapping[str, Any], random_state: int) -> AttentionSpace:
    return AttentionSpace(n_neighbors=settings["umap_neighbors"], min_dist=settings["umap_min_dist"],
                          pca_dims=_none_or(settings["umap_pca_dims"]),
                          fit_sample=_none_or(settings["umap_fit_sample"]), random_state=random_state)


def _none_or(value: Any) -> Any:
    """Command-line overrides arrive as strings: 'none' means None."""
    return None if isinstance(value, str) and value.lower() == "none" else value


class SlimCurator:
    """The paper variant: runs the stages in order: space, annotation sampling, oracle, expansion,
    screening, disentangling, consistency-weighted sampling. ``budget`` is the attention budget (total or
    per class), ``subset_size`` the number of rows of the curated subset.

    Every stage runs single-threaded (:func:`slim.threads.single_threaded`), so the same inputs give the
    same curation whatever the thread count.
    """

    def __init__(self, budget: int | Mapping[int, int], subset_size: int, *,
                 settings: Mapping[str, Any] | None = None, random_state: int = 0) -> None:
        self.budget = budget
        self.subset_size = subset_size
        self.settings = resolve(settings or {})
        self.random_state = random_state

    def space(self) -> AttentionSpace:
        """Stage 1's projection of F_A (unfitted)."""
        return make_space(self.settings, self.random_state)

    def env_space(self) -> None:
        """The paper variant clusters F_Abar itself: no projection of it."""
        return None

    def curate(self, fa: np.ndarray, fabar: np.ndarray, labels: np.ndarray, oracle: Oracle, *,
               embedding: np.ndarray | None = None, space_mode: dict[str, Any] | None = None,
               env_embedding: np.ndarray | None = None, truth: Truth | None = None) -> Curation:
        """Curate the split whose rows ``fa``, ``fabar`` and ``labels`` describe; ``oracle`` answers row ids.

        A precomputed attention space (``embedding``, with its ``space_mode``) skips stage 1
        (``env_embedding`` is not used by this variant). ``truth`` is read only by the ablations that need
        it (``slim.ablations.Ablation.needs_truth``).
        """
        check_inputs(fa, fabar, labels, self.subset_size, self.settings["slim_ablation"], truth)
        with single_threaded():
            return self._curate(np.asarray(fa), np.asarray(fabar), np.asarray(labels), oracle, embedding,
                                space_mode, truth)

    def _curate(self, fa: np.ndarray, fabar: np.ndarray, labels: np.ndarray, oracle: Oracle,
                embedding: np.ndarray | None, space_mode: dict[str, Any] | None, truth: Truth | None) -> Curation:
        s, rs = self.settings, self.random_state
        row = ablation(s["slim_ablation"])
        if embedding is None:
            space = self.space()
            embedding, space_mode = space.fit_transform(fa), space.mode_
        elif len(embedding) != len(fa):
            raise HarnessError(f"attention space has {len(embedding)} rows, F_A has {len(fa)}")
        sampler = self.sampler(embedding, labels)
        answers = ask(oracle, sampler.query_ids_)
        spreading = AttentionLabelSpreading(n_neighbors=s["spread_neighbors"], alpha=s["spread_alpha"])
        scores = spreading.fit_transform(embedding, labels, sampler.query_ids_, answers)
        screening = Screening(quantile=_none_or(s["screen_quantile"]), threshold=s["screen_threshold"])
        keep = row.screened(screening.fit_predict(scores, labels, nearest_yes_distance(
            embedding, sampler.query_ids_, answers, labels)), truth)
        notes = list(spreading.warnings_)
        for c in np.unique(labels):  # screening never empties a class: the subset must represent every class
            if not keep[labels == c].any():
                keep[labels == c] = True
                notes.append(f"class {c}: screening kept no instance, so the class is kept unscreened")
        kept_share = {int(c): float(keep[labels == c].mean()) for c in np.unique(labels)}
        scopes = self._scopes(np.flatnonzero(keep), labels, int(self.subset_size))
        disentangler = Disentangler(k_range=(s["cluster_k_min"], s["cluster_k_max"]),
                                    pca_dims=_none_or(s["cluster_pca_dims"]), random_state=rs)
        core, env, quotas, parts, repeats = {}, {}, {}, [], 0
        for scope, (rows, scope_size) in scopes.items():
            disentangler.fit(fa[rows], fabar[rows])
            core[scope], env[scope] = disentangler.core_, disentangler.env_
            scope_quotas = allocate(core[scope].labels, core[scope].distances, env[scope].labels,
                                    env[scope].distances, scope_size)
            draw = SubgroupSampler(random_state=rs, pick=row.pick).fit(
                np.hstack([core[scope].points, env[scope].points]), core[scope].labels, env[scope].labels,
                scope_quotas)
            quotas.update({(scope, c, e): q for (c, e), q in scope_quotas.items()})
            parts.append(rows[draw.indices_])
            repeats += draw.repeats_
        indices = np.concatenate(parts)
        replaced = row.replaced_subset(indices, scopes, len(labels), truth, rs)
        if replaced is not None:
            indices, repeats = replaced, len(replaced) - len(np.unique(replaced))
        return Curation(
            embedding=embedding, space_mode=dict(space_mode or {}), settings=dict(s), budgets=sampler.budgets_,
            query_ids=sampler.query_ids_, answers=answers, scores=scores, spread_status=spreading.status_,
            unreached=spreading.unreached_, unreached_scores=spreading.priors_, keep=keep,
            cutoffs=screening.cutoffs_, kept_share=kept_share, core=core, env=env,
            scope_rows={scope: rows for scope, (rows, _) in scopes.items()}, quotas=quotas,
            indices=indices, repeats=repeats, subset_classes=class_counts(labels, indices), warnings=notes,
        )

    def sampler(self, embedding: np.ndarray, labels: np.ndarray) -> AnnotationSampler:
        """Stage 2 alone, fitted: the instances ``curate`` asks the oracle about (``query_ids_``)."""
        return AnnotationSampler(self.budget, random_state=self.random_state).fit(embedding, labels)

    def query_ids(self, embedding: np.ndarray, labels: np.ndarray, env_embedding: np.ndarray | None = None
                  ) -> np.ndarray:
        """The rows ``curate`` asks the oracle about, in asking order (what ``annotate`` shows a person)."""
        return self.sampler(embedding, labels).query_ids_

    def _scopes(self, kept_rows: np.ndarray, labels: np.ndarray, size: int) -> dict[str, tuple[np.ndarray, int]]:
        """Where stages 6-7 run: each class's kept rows with an equal share of the subset (remainder to the
        lower class ids), or the whole kept set with all of it."""
        scope = self.settings["curation_scope"]
        if scope == "all":
            return {"all": (kept_rows, size)}
        if scope != "class":
            raise HarnessError(f"curation_scope must be 'class' or 'all', got {scope!r}")
        classes = np.unique(labels[kept_rows])
        share, extra = divmod(size, len(classes))
        return {f"class {c}": (kept_rows[labels[kept_rows] == c], share + (i < extra))
                for i, c in enumerate(classes) if share + (i < extra) > 0}


def make_curator(budget: int | Mapping[int, int], subset_size: int, *, settings: Mapping[str, Any] | None = None,
                 random_state: int = 0) -> SlimCurator | AuthorsCurator:
    """The curator of ``settings["slim_variant"]``: :class:`SlimCurator` (paper) or
    :class:`slim.authors.AuthorsCurator` (the authors' code)."""
    resolved = resolve(settings or {})
    kind = AuthorsCurator if resolved["slim_variant"] == "authors" else SlimCurator
    return kind(budget, subset_size, settings=resolved, random_state=random_state)
