"""Datasets: the dataset interface (:mod:`~harness.data.dataset`) and the catalog that registers and loads
them, the synthetic presets and the real datasets (a package each, one home per dataset), the paper facts by
name, the containers every benchmark becomes, and the image cache.
"""
