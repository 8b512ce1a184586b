"""The same inputs give the same SLIM curation whatever the thread count: two processes, 1 and 2 threads
(OpenMP, BLAS, numba and torch), curate a fixed synthetic split from the attention space on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def curate_with_threads(threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{name: str(threads) for name in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")})
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "slim_threads_probe.py"), str(threads)],
                         env=env, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout)


def test_curation_is_identical_with_one_and_two_threads():
    one, two = curate_with_threads(1), curate_with_threads(2)
    assert one["subset_size"] == 80 and one["queries"] == 20
    assert one == two
