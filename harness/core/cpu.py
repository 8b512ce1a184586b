"""One instruction-set level for every library's CPU float kernels, so a record is the same on any x86-64
machine that has that level.

Which kernel computes a float result on the CPU depends on the instruction sets of the machine: ATen's
vectorised loops (and its random number fill), oneDNN's convolutions, MKL's and OpenBLAS's matrix products,
numpy's SIMD loops, the code numba compiles for UMAP and faiss' distances each take the widest the CPU
offers, and 8 or 16 lanes, with or without FMA, round differently. A machine with AVX-512 then computes
other bits than one with AVX2 only, and SLIM's chaotic stages (UMAP, k-means) turn them into other subsets.
Each library reads its choice from the environment when it loads (or first runs), so :func:`pin`, called by
``import harness`` before any of them is imported, sets every such variable to one level:
``x86-64-v3`` (AVX2 + FMA, the CI machines' level) unless ``SLIM_HARNESS_CPU_LEVEL`` names another
(``x86-64-v2``, or ``native`` for no pin). Child processes (sweep workers, cluster jobs) inherit the
variables. MKL is pinned to its ``COMPATIBLE`` branch at every level: its ISA branches are honoured only on
Intel CPUs (on AMD they read back as AUTO), and only ``COMPATIBLE`` gives the same bits on both; it costs
about twice the time on MKL's matrix products (torch's linear layers: the ViTs feel it on the CPU).

A variable the user set to another value wins (it is their explicit choice) and the record says so; a
machine below the requested level is pinned at the highest level it has. :func:`report` (written into every
record's ``environment.cpu``) names the CPU, the level, the variables, and what each library reports it
runs, with the libraries whose report is not the level's (``deviations``: e.g. numpy imported before the
harness, so its dispatch was fixed before the pin). oneDNN's JIT kernels may still tune their blocking to
the cache sizes and vendor of the machine; what this pin cannot fix is measured in docs/reliability.md.

This module imports no numeric library at its top: it must run before they load.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.metadata
import os
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

LEVEL_ENV = "SLIM_HARNESS_CPU_LEVEL"  # the level asked for: x86-64-v3 (default), x86-64-v2 or native
PINNED_ENV = "SLIM_HARNESS_CPU_PINNED"  # the level whose values the harness put in the environment
DEFAULT_LEVEL = "x86-64-v3"
NATIVE = "native"
# numpy >= 2.4 names its x86 dispatch targets by level; older numpy by feature
NUMPY_LEVEL_NAMES = (2, 4)
# /proc/cpuinfo flags of each x86-64 level (psABI), cumulative
_V2_FLAGS = frozenset({"cx16", "lahf_lm", "popcnt", "pni", "ssse3", "sse4_1", "sse4_2"})
_V3_FLAGS = _V2_FLAGS | {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
_V4_FLAGS = _V3_FLAGS | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
MKL_BRANCHES = {1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2", 9: "AVX",
                10: "AVX2", 11: "AVX512_MIC", 12: "AVX512", 13: "AVX512_MIC_E1", 14: "AVX512_E1"}
MKL_CBWR_BRANCH = 1  # mkl_cbwr_get's argument for the branch in use


def _numpy_version() -> tuple[int, ...]:
    """numpy's version from its metadata (numpy itself must not be imported before the pin)."""
    try:
        return tuple(int(p) for p in importlib.metadata.version("numpy").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return (0,)


@dataclass(frozen=True)
class Level:
    """What pins one level: the machine flags it needs, each library's variable, and what the libraries then
    report (``numpy``: the dispatch targets allowed, by numpy's old and new names)."""

    name: str
    flags: frozenset[str]
    aten: str  # ATEN_CPU_CAPABILITY
    onednn: str  # ONEDNN_MAX_CPU_ISA
    openblas: str  # OPENBLAS_CORETYPE
    numba: str  # NUMBA_CPU_NAME (an LLVM CPU; NUMBA_CPU_FEATURES empty: that CPU's own features)
    faiss: str  # FAISS_SIMD_LEVEL (faiss >= 1.12 dispatches at run time) and FAISS_OPT_LEVEL (older faiss)
    faiss_module: str
    numpy_allowed: frozenset[str]
    numpy_above: tuple[str, ...] = field(default=())  # numpy targets above the level (NPY_DISABLE_CPU_FEATURES)
    numpy_above_legacy: tuple[str, ...] = field(default=())
    expected: dict[str, str] = field(default_factory=dict)  # library -> what it should report

    def variables(self) -> dict[str, str]:
        """Every environment variable of the pin, with its value for this level."""
        above = self.numpy_above if _numpy_version() >= NUMPY_LEVEL_NAMES else self.numpy_above_legacy
        return {
            "ATEN_CPU_CAPABILITY": self.aten,
            "ONEDNN_MAX_CPU_ISA": self.onednn,
            "MKL_CBWR": "COMPATIBLE",
            "OPENBLAS_CORETYPE": self.openblas,
            "NPY_DISABLE_CPU_FEATURES": " ".join(above),
            "NUMBA_CPU_NAME": self.numba,
            "NUMBA_CPU_FEATURES": "",
            "FAISS_SIMD_LEVEL": self.faiss,
            "FAISS_OPT_LEVEL": self.faiss_module,
        }


_AVX512_LEGACY = ("AVX512F", "AVX512CD", "AVX512_KNL", "AVX512_KNM", "AVX512_SKX", "AVX512_CLX", "AVX512_CNL",
                  "AVX512_ICL", "AVX512_SPR")
_V3_LEGACY = ("AVX", "F16C", "FMA3", "AVX2")
_V2_LEGACY = ("SSE3", "SSSE3", "SSE41", "POPCNT", "SSE42")
LEVELS = {
    "x86-64-v3": Level(
        "x86-64-v3", _V3_FLAGS, aten="avx2", onednn="AVX2", openblas="Haswell", numba="x86-64-v3",
        faiss="AVX2", faiss_module="AVX2",
        numpy_allowed=frozenset({"X86_V3", *_V2_LEGACY, *_V3_LEGACY}),
        numpy_above=("X86_V4", "AVX512_ICL", "AVX512_SPR"), numpy_above_legacy=_AVX512_LEGACY,
        expected={"torch": "AVX2", "onednn": "Intel AVX2", "mkl": "COMPATIBLE", "openblas": "Haswell",
                  "numba": "x86-64-v3", "faiss": "AVX2"}),
    "x86-64-v2": Level(
        "x86-64-v2", _V2_FLAGS, aten="default", onednn="SSE41", openblas="Nehalem", numba="x86-64-v2",
        faiss="NONE", faiss_module="generic",
        numpy_allowed=frozenset(_V2_LEGACY),
        numpy_above=("X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR"),
        numpy_above_legacy=_V3_LEGACY + _AVX512_LEGACY,
        expected={"torch": "DEFAULT", "onednn": "Intel SSE4.1", "mkl": "COMPATIBLE", "openblas": "Nehalem",
                  "numba": "x86-64-v2", "faiss": "NONE"}),
}
VARIABLES = tuple(LEVELS[DEFAULT_LEVEL].variables())
WATCHED_LIBRARIES = ("torch", "numpy", "scipy", "sklearn", "numba", "faiss")

_state: dict[str, Any] = {}


def machine_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def machine_level(flags: frozenset[str]) -> str:
    """The highest x86-64 level the flags make up (x86-64-v4 is AVX-512's: nothing pins it)."""
    for name, needed in (("x86-64-v4", _V4_FLAGS), ("x86-64-v3", _V3_FLAGS), ("x86-64-v2", _V2_FLAGS)):
        if needed <= flags:
            return name
    return "x86-64" if platform.machine() in ("x86_64", "AMD64") else platform.machine()


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what the platform says)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def pin() -> dict[str, Any]:
    """Put the level's variables into ``os.environ`` (once per process) and return what was decided.

    A variable already set to another value than the harness would set stays (the user's choice) and is
    listed under ``user_set``; one inherited from a parent the harness pinned counts as the harness's."""
    if _state:
        return _state
    requested = os.environ.get(LEVEL_ENV, DEFAULT_LEVEL)
    flags = machine_flags()
    _state.update(requested=requested, machine_level=machine_level(flags), set={}, user_set={},
                  loaded_before=[name for name in WATCHED_LIBRARIES if name in sys.modules], error=None)
    if requested not in (*LEVELS, NATIVE):
        _state["error"] = (f"{LEVEL_ENV}={requested!r}: choose {', '.join(LEVELS)} or {NATIVE} (no pin)")
        requested = DEFAULT_LEVEL
    # the level asked for, or the highest below it the machine has; none on a machine below x86-64-v2 or not x86
    order = list(LEVELS)  # highest first
    below = order[order.index(requested):] if requested in LEVELS else []
    level = next((name for name in below if LEVELS[name].flags <= flags), None)
    _state["level"] = level or NATIVE
    inherited = LEVELS.get(os.environ.get(PINNED_ENV, ""))
    harness_values = inherited.variables() if inherited else {}
    if level is None:
        for name, value in harness_values.items():  # a parent's pin is not this process's choice
            if os.environ.get(name) == value:
                del os.environ[name]
        os.environ.pop(PINNED_ENV, None)
        return _state
    for name, value in LEVELS[level].variables().items():
        current = os.environ.get(name)
        if current is not None and current != value and current != harness_values.get(name):
            _state["user_set"][name] = current
        else:
            os.environ[name] = value
            _state["set"][name] = value
    os.environ[PINNED_ENV] = level
    return _state


def check() -> None:
    """Refuse a misspelt ``SLIM_HARNESS_CPU_LEVEL`` (the pin, at import, fell back to the default)."""
    if pin()["error"]:
        raise HarnessError(pin()["error"])


def report() -> dict[str, Any]:
    """``environment.cpu`` of a record: the CPU, the level pinned, the variables, what each library reports
    it runs, and the libraries whose report differs from the level's."""
    state = pin()
    libraries = library_report()
    expected = LEVELS[state["level"]].expected if state["level"] in LEVELS else {}
    deviations = {name: libraries.get(name) for name, value in expected.items() if libraries.get(name) != value}
    if state["level"] in LEVELS:
        allowed = LEVELS[state["level"]].numpy_allowed
        if not set(libraries["numpy"]) <= allowed:
            deviations["numpy"] = libraries["numpy"]
    return {"model": cpu_model(), "machine_level": state["machine_level"], "level": state["level"],
            "requested": state["requested"], "variables": {name: os.environ.get(name) for name in VARIABLES},
            "user_set": dict(state["user_set"]), "loaded_before_pin": list(state["loaded_before"]),
            "libraries": libraries, "deviations": deviations}


@functools.cache
def library_report() -> dict[str, Any]:
    """What each library says it runs in this process (fixed once it has loaded, so asked once)."""
    import faiss  # imported here to ask it: each report below loads its library if the run did not
    import numba.core.registry
    import numpy
    import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS, which scikit-learn uses)
    import torch
    from threadpoolctl import threadpool_info

    codegen = numba.core.registry.cpu_target.target_context.codegen()
    multiarray = numpy._core._multiarray_umath if hasattr(numpy, "_core") else numpy.core._multiarray_umath
    openblas = {Path(info["filepath"]).parent.name: info.get("architecture") for info in threadpool_info()
                if info["internal_api"] == "openblas"}
    simd = getattr(faiss, "SIMDConfig", None)
    return {
        "torch": torch.backends.cpu.get_cpu_capability(),
        "onednn": onednn_isa(),
        "mkl": mkl_branch(),
        "openblas": _single(openblas),
        "openblas_by_library": openblas,
        "numpy": [f for f in multiarray.__cpu_dispatch__ if multiarray.__cpu_features__.get(f)],
        "numba": codegen.magic_tuple()[1],
        "numba_features": codegen.magic_tuple()[2],
        "faiss": simd.get_level_name() if simd is not None else faiss.get_compile_options().strip(),
    }


def _single(values: dict[str, Any]) -> Any:
    """The one value every library reports, or None when they differ (then the per-library dict says)."""
    distinct = set(values.values())
    return distinct.pop() if len(distinct) == 1 else None


def mkl_branch() -> str | None:
    """MKL's conditional-numerical-reproducibility branch in torch (MKL is linked into libtorch_cpu)."""
    import torch

    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    code = get(MKL_CBWR_BRANCH)
    return MKL_BRANCHES.get(code, str(code))


def onednn_isa() -> str | None:
    """The ISA oneDNN says it runs ("Intel AVX2"), from its verbose header, printed on the first convolution
    run with verbose on (torch exposes no other way); None where the header was printed before."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return None
    with tempfile.TemporaryFile() as captured, _stdout_to(captured), \
            torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        torch.nn.functional.conv2d(torch.zeros(4, 16, 32, 32), torch.zeros(32, 16, 3, 3))  # a shape torch gives oneDNN
        _flush_c_stdout()
        captured.seek(0)
        text = captured.read().decode(errors="replace")
    marker = ",isa:"
    return next((line.split(marker, 1)[1].strip() for line in text.splitlines() if marker in line), None)


@contextlib.contextmanager
def _stdout_to(handle) -> Any:
    """File descriptor 1 (where the C libraries print) goes to ``handle`` within the block."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(handle.fileno(), 1)
        yield
    finally:
        _flush_c_stdout()
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdout() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)
