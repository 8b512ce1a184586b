"""Baselines the paper compares SLIM with: ERM, JTT, GroupDRO and DFR (importing registers them)."""
import harness  # noqa: F401  (first: pins the CPU kernels before numpy and torch load, harness.core.cpu)
from baselines import dfr, erm, groupdro, jtt  # noqa: F401
