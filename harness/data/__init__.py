"""Datasets: the containers every benchmark becomes, the catalog, the paper facts, the image cache, the synthetic
presets and the real layouts.
"""
