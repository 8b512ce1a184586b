"""SLIM (Xuan et al., ECCV 2024): spuriousness mitigation with minimal human annotations.

The data construction pipeline (paper Sec. 4) is split into stages, each usable on its own:
``slim.space`` (attention space), ``slim.annotation`` (what to ask, asking), ``slim.expansion`` (label
spreading, screening), ``slim.clustering`` (core / environment clusters, the elbow rule),
``slim.sampling`` (eqs. 3-6); ``slim.pipeline`` chains them and ``slim.methods`` registers SLIM_Tr and
SLIM_Val. ``slim.analysis`` reproduces the neighbour-consistency study of Fig. 4.
"""
from __future__ import annotations

from slim import methods  # noqa: F401  (registers slim-tr and slim-val)
from slim.sampling import allocate

__all__ = ["allocate"]
