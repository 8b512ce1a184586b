"""Benchmarks and device checks: ``bench``, ``gpu-check`` and the agreement of a run with the CPU's.
"""
