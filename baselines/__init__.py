"""Baselines the paper compares SLIM with: ERM, JTT, GroupDRO and DFR (importing registers them)."""
from baselines import dfr, erm, groupdro, jtt  # noqa: F401
