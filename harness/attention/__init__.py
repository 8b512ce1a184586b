"""Attention: class activation maps (one module per variant), the cached attention pass, map post-processing,
AIoU accuracy (paper Table 5) and galleries.
"""
