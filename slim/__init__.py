"""SLIM (Xuan et al., ECCV 2024): spuriousness mitigation with minimal human annotations.

The data construction pipeline (paper Sec. 4) is split into stages, each usable on its own:
``slim.space`` (attention space), ``slim.annotation`` (what to ask, asking), ``slim.expansion`` (label
spreading, screening), ``slim.clustering`` (core / environment clusters, the elbow rule),
``slim.sampling`` (eqs. 3-6); ``slim.pipeline`` chains them and ``slim.methods`` registers SLIM_Tr and
SLIM_Val. ``slim.analysis`` reproduces the neighbour-consistency study of Fig. 4; ``slim.diagnostics``
measures every stage against ground truth where a split has it. ``slim_variant="paper"`` (default) follows
the paper's equations (``slim.pipeline``), ``"authors"`` computes what the authors' public code computes
(``slim.authors``); both return a ``slim.curation.Curation``. ``slim_ablation`` replaces one stage
(``slim.ablations``). The stages run single-threaded (``slim.threads``), so a curation does not depend on
the thread count.
"""
from __future__ import annotations

import harness  # noqa: F401  (first: pins the CPU kernels before numpy and torch load, harness.core.cpu)
from slim import methods  # noqa: F401  (registers slim-tr and slim-val)
from slim.sampling import allocate

__all__ = ["allocate"]
