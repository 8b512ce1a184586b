"""The instruction-set pin (harness.core.cpu): the knobs change results, the pin sets them before the libraries
load, a user's choice wins and is recorded, and a run pinned by the harness equals one capped from outside.

What these tests can show depends on the machine. Capping works downwards only, so a test can compare a
level with a lower one, never with one the machine lacks. On this project's machines (AMD EPYC Zen 3: AVX2
+ FMA, no AVX-512) the default level, x86-64-v3, is the machine's own: there a run pinned at x86-64-v3 and
an unpinned run use the same kernels anyway, and their equality proves nothing about the pin. What does
prove it is the same comparison one level down: pinned at x86-64-v2, the harness must compute exactly what
a process capped at x86-64-v2 from outside computes, while an unpinned process (AVX2) computes other bits.
That shows the pin reaches every library that matters before it loads. On a machine with AVX-512 the
x86-64-v3 case becomes the real one. What no test here can show is that a *different* CPU of the same level
(another vendor, other cache sizes) computes the same bits: that needs two machines (docs/reliability.md).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from test_threads import comparable

from harness.core import cpu

ROOT = Path(__file__).resolve().parents[1]
LEVEL_ORDER = ("x86-64-v2", "x86-64-v3", "x86-64-v4")
MACHINE = cpu.machine_level(cpu.machine_flags())
NUMPY_BY_LEVEL_NAME = tuple(int(p) for p in np.__version__.split(".")[:2]) >= (2, 4)
# What caps each library at a level, from each library's documentation, written out here and not read from
# harness.core.cpu: a variable the pin forgot would make the capped and the pinned run differ.
OUTSIDE_CAPS = {
    "x86-64-v3": {
        "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE",
        "OPENBLAS_CORETYPE": "Haswell", "NUMBA_CPU_NAME": "x86-64-v3", "NUMBA_CPU_FEATURES": "",
        "FAISS_SIMD_LEVEL": "AVX2", "FAISS_OPT_LEVEL": "AVX2",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR" if NUMPY_BY_LEVEL_NAME else
        "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"},
    "x86-64-v2": {
        "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE",
        "OPENBLAS_CORETYPE": "Nehalem", "NUMBA_CPU_NAME": "x86-64-v2", "NUMBA_CPU_FEATURES": "",
        "FAISS_SIMD_LEVEL": "NONE", "FAISS_OPT_LEVEL": "generic",
        "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR" if NUMPY_BY_LEVEL_NAME else
        "AVX F16C FMA3 AVX2 AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL "
        "AVX512_SPR"},
}


def machine_has(level: str) -> bool:
    return MACHINE in LEVEL_ORDER and LEVEL_ORDER.index(MACHINE) >= LEVEL_ORDER.index(level)


needs_v3 = pytest.mark.skipif(not machine_has("x86-64-v3"), reason=f"needs an x86-64-v3 machine, this is {MACHINE}")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment less every variable of the pin (pytest's own process is pinned)."""
    env = {k: v for k, v in os.environ.items() if k not in (*cpu.VARIABLES, cpu.PINNED_ENV, cpu.LEVEL_ENV)}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def python(code: str, env: dict[str, str], timeout: int = 300) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


# Each library's computation, on inputs numpy's generator draws the same on any CPU (the harness is not
# imported): variable -> (a value one level down, the value of x86-64-v3, the code computing ``out``)
TORCH = "import torch\ntorch.set_num_threads(1)\n"
KNOB_PROBES = {
    "ATEN_CPU_CAPABILITY": ("default", "avx2", TORCH + """
x = torch.from_numpy(rng.standard_normal(100003).astype(np.float32))
out = torch.softmax(x, 0).numpy()"""),
    "ONEDNN_MAX_CPU_ISA": ("SSE41", "AVX2", TORCH + """
x = torch.from_numpy(rng.standard_normal((4, 16, 32, 32)).astype(np.float32))
w = torch.from_numpy(rng.standard_normal((32, 16, 3, 3)).astype(np.float32))
out = torch.nn.functional.conv2d(x, w).numpy()"""),
    "MKL_CBWR": ("COMPATIBLE", "AUTO", TORCH + """
a = torch.from_numpy(rng.standard_normal((257, 129)).astype(np.float32))
b = torch.from_numpy(rng.standard_normal((129, 65)).astype(np.float32))
out = (a @ b).numpy()"""),
    "OPENBLAS_CORETYPE": ("Nehalem", "Haswell", """
out = rng.standard_normal((257, 129)) @ rng.standard_normal((129, 65))"""),
    "NPY_DISABLE_CPU_FEATURES": ("X86_V3 AVX2 FMA3", "", """
out = np.exp(rng.standard_normal(100003).astype(np.float32))"""),
    "NUMBA_CPU_NAME": ("x86-64-v2", "x86-64-v3", """
import numba
@numba.njit(fastmath=True)
def dot(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s
out = np.float64(dot(rng.standard_normal(100003), rng.standard_normal(100003)))"""),
    "FAISS_SIMD_LEVEL": ("NONE", "AVX2", """
import faiss
index = faiss.IndexFlatL2(37)
index.add(rng.standard_normal((1000, 37)).astype(np.float32))
out = index.search(rng.standard_normal((50, 37)).astype(np.float32), 5)[0]"""),
}


@needs_v3
@pytest.mark.parametrize("variable", list(KNOB_PROBES))
def test_capping_a_library_from_outside_changes_its_bits(variable):
    """Each variable of the pin matters: the same computation in an unpinned process gives other bits when
    the variable caps its library one level lower (why the pin must set every one of them)."""
    low, high, code = KNOB_PROBES[variable]
    script = ("import hashlib\nimport numpy as np\nrng = np.random.default_rng(0)\n" + code +
              "\nprint(hashlib.sha256(np.ascontiguousarray(out).tobytes()).hexdigest())")
    extra = {"NUMBA_CPU_FEATURES": ""} if variable == "NUMBA_CPU_NAME" else {}
    capped, uncapped = (python(script, clean_env(**extra, **{variable: value})) for value in (low, high))
    assert capped != uncapped


def report_of(env: dict[str, str], before: str = "") -> dict:
    return json.loads(python(f"{before}import json\nimport harness.core.cpu\n"
                             "print(json.dumps(harness.core.cpu.report()))", env))


@needs_v3
@pytest.mark.parametrize("level", ["x86-64-v3", "x86-64-v2"])
def test_every_library_reports_the_pinned_level(level):
    report = report_of(clean_env(**{cpu.LEVEL_ENV: level}))
    expected = cpu.LEVELS[level].expected
    assert report["level"] == level and report["deviations"] == {} and report["user_set"] == {}
    assert {name: report["libraries"][name] for name in expected} == expected
    assert set(report["libraries"]["numpy"]) <= ({"X86_V3"} if level == "x86-64-v3" else set())
    assert set(report["libraries"]["openblas_by_library"]) >= {"numpy.libs", "scipy.libs"}
    assert report["variables"] == OUTSIDE_CAPS[level]
    assert report["model"] == cpu.cpu_model() and report["machine_level"] == MACHINE


@needs_v3
def test_a_users_setting_wins_and_the_record_says_so():
    report = report_of(clean_env(ATEN_CPU_CAPABILITY="default"))
    assert report["user_set"] == {"ATEN_CPU_CAPABILITY": "default"}
    assert report["libraries"]["torch"] == "DEFAULT" and report["deviations"] == {"torch": "DEFAULT"}


@needs_v3
def test_a_library_loaded_before_the_harness_is_named_as_a_deviation():
    report = report_of(clean_env(**{cpu.LEVEL_ENV: "x86-64-v2"}), before="import numpy\n")
    assert report["loaded_before_pin"] == ["numpy"]
    assert report["deviations"]["numpy"] == ["X86_V3"]  # numpy fixed its dispatch at import, before the pin


@needs_v3
def test_a_child_takes_its_own_level_over_its_pinned_parents():
    """Sweep workers inherit the parent's pinned variables; those are the harness's, not the user's, so a
    child asked for another level replaces them (and 'native' removes them)."""
    parent = clean_env(**cpu.LEVELS["x86-64-v3"].variables(), **{cpu.PINNED_ENV: "x86-64-v3"})
    child = report_of({**parent, cpu.LEVEL_ENV: "x86-64-v2"})
    assert child["level"] == "x86-64-v2" and child["user_set"] == {} and child["deviations"] == {}
    native = report_of({**parent, cpu.LEVEL_ENV: "native"})
    assert native["level"] == "native" and native["variables"] == dict.fromkeys(cpu.VARIABLES)


def test_a_misspelt_level_stops_a_run_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--dataset", "waterbirds-synth", "--method", "erm",
                           "--out", str(tmp_path)], cwd=ROOT, env=clean_env(**{cpu.LEVEL_ENV: "x86-64-v9"}),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and not list(tmp_path.iterdir())
    assert done.stderr.strip().splitlines() == [
        "error: SLIM_HARNESS_CPU_LEVEL='x86-64-v9': choose x86-64-v3, x86-64-v2 or native (no pin)"]


@needs_v3
def test_numbas_disk_cache_keys_on_the_pinned_target(tmp_path):
    """UMAP's kernels are cached on disk (slim.space.enable_umap_kernel_cache); a kernel compiled for one
    level must not be loaded under another: numba keys its cache index on (triple, CPU name, features)."""
    module = tmp_path / "kernel.py"
    module.write_text("import numba\n\n\n@numba.njit(cache=True, fastmath=True)\ndef dot(a, b):\n    s = 0.0\n"
                      "    for i in range(a.shape[0]):\n        s += a[i] * b[i]\n    return s\n")
    code = ("import harness\nimport numpy as np\nimport kernel\nx = np.linspace(0, 1, 1001)\nkernel.dot(x, x)\n"
            "print(sum(kernel.dot.stats.cache_hits.values()), sum(kernel.dot.stats.cache_misses.values()))")

    def hits_and_misses(level: str) -> str:
        env = clean_env(**{cpu.LEVEL_ENV: level, "NUMBA_CACHE_DIR": str(tmp_path / "numba")})
        return python(code, {**env, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})

    assert hits_and_misses("x86-64-v3") == "0 1"  # compiled and stored
    assert hits_and_misses("x86-64-v2") == "0 1"  # another target: compiled, not loaded
    assert hits_and_misses("x86-64-v3") == "1 0"  # each target finds its own
    assert hits_and_misses("x86-64-v2") == "1 0"


def probe_run(tmp_path: Path, name: str, env: dict[str, str]) -> subprocess.Popen:
    """tests/cpu_pin_probe.py (a tiny SLIM_Val run on the toy benchmark) in a child process with ``env``."""
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "cpu_pin_probe.py"), str(tmp_path / name)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def outputs(folder: Path) -> tuple[dict, dict[str, str], dict]:
    """The run's record (less timings and machine facts), the sha256 of every float array it cached (the
    reference model's weights, the attention maps and features, the attention space) and its environment."""
    (record,) = (json.loads(p.read_text()) for p in (folder / "runs").glob("*.json"))
    assert record["status"] == "ok", record["error"]
    arrays = {}
    for path in sorted((folder / "cache").rglob("*.safetensors")):
        with safe_open(str(path), framework="numpy") as tensors:
            arrays.update({f"{path.relative_to(folder)}:{key}": hashlib.sha256(tensors.get_tensor(key).tobytes())
                           .hexdigest() for key in tensors.keys()})  # noqa: SIM118  (safe_open is no dict)
    assert len(arrays) >= 4
    return comparable(record), arrays, record["environment"]["cpu"]


@needs_v3
@pytest.mark.parametrize("level", ["x86-64-v2", "x86-64-v3"])
def test_a_run_pinned_by_the_harness_equals_one_capped_from_outside(tmp_path, level):
    """A tiny SLIM_Val run (its ERM reference model, attention pass, attention space, curation and last-layer
    fit): pinned by the harness alone, and capped from outside at the same level, it gives the same record
    and the same cached arrays to the bit. Below the machine's level (x86-64-v2 here) an unpinned run must
    then differ, or the comparison could not have seen a missing pin (see the module docstring). The first
    run goes alone, so that the others find UMAP's kernels for the level compiled in numba's cache."""
    pinned = probe_run(tmp_path, "pinned", clean_env(**{cpu.LEVEL_ENV: level}))
    output, _ = pinned.communicate(timeout=900)
    assert pinned.returncode == 0, output[-3000:]
    others = {"capped": clean_env(**OUTSIDE_CAPS[level], **{cpu.LEVEL_ENV: level})}
    below_machine = LEVEL_ORDER.index(level) < LEVEL_ORDER.index(MACHINE)
    if below_machine:
        others["unpinned"] = clean_env(**{cpu.LEVEL_ENV: "native"})
    processes = {name: probe_run(tmp_path, name, env) for name, env in others.items()}
    for process in processes.values():
        output, _ = process.communicate(timeout=900)
        assert process.returncode == 0, output[-3000:]
    pinned, capped = outputs(tmp_path / "pinned"), outputs(tmp_path / "capped")
    assert pinned[2]["level"] == capped[2]["level"] == level and pinned[2]["deviations"] == {}
    assert pinned[0] == capped[0]
    assert pinned[1] == capped[1]
    if below_machine:
        unpinned = outputs(tmp_path / "unpinned")
        assert unpinned[2]["level"] == "native"
        assert unpinned[1] != pinned[1]
