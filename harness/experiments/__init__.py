"""Runs and grids of runs: one run, its predictions, sweep files, executors, the regression, the reproduction,
calibration and the premise map.
"""
