"""Plug-ins from another package: found through entry points alone (pip install is enough), run like the
shipped ones, checked by the same contract tests, and a broken one is one line naming its entry point.

A plug-in is "installed" the way pip leaves it: a module and a ``*.dist-info`` folder with ``METADATA`` and
``entry_points.txt``, in a folder on the path (this process's, or ``PYTHONPATH`` of a subprocess).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import demo_plugin
import pytest

from harness.cli import main
from harness.core.errors import HarnessError
from harness.core.registry import CAMS, DATASETS, METHODS
from harness.experiments.sweep_file import expand, parse_sweep
from harness.plugins import (
    ENTRY_POINT_GROUPS,
    entry_point_checks,
    load_entry_points,
    load_plugins,
    register_entry_point,
)

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "harness_demo_plugin"
FAST = ["--arch", "resnet18", "--set", "pretrained=none", "--set", "width=0.25", "--set", "depth=2",
        "--set", "epochs=2", "--device", "cpu", "--quiet"]


def install(site: Path, entry_points: dict[str, dict[str, str]], source: str | None = None) -> Path:
    """Write package ``harness_demo_plugin`` (``source``, default tests/demo_plugin.py) with ``entry_points``
    ({group: {name: attribute}}) into ``site``, as pip would; return ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{PACKAGE}.py").write_text(source or Path(demo_plugin.__file__).read_text())
    meta = site / f"{PACKAGE}-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {_target(value)}\n" for name, value in names.items()) + "\n"
        for group, names in entry_points.items()))
    return site


def _target(value: str) -> str:
    """An attribute of the demo package, or ``module:attribute`` as given."""
    return value if ":" in value else f"{PACKAGE}:{value}"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """``install(entry_points, source)`` puts the demo package on this process's path, for the next
    load_plugins() to find; what that registers is unregistered after the test."""
    before = {group: set(registry.names()) for group, registry in ENTRY_POINT_GROUPS.items()}

    def put(entry_points: dict[str, dict[str, str]], source: str | None = None) -> Path:
        site = install(tmp_path / "site", entry_points, source)
        monkeypatch.syspath_prepend(str(site))
        load_entry_points.cache_clear()
        return site

    yield put
    sys.modules.pop(PACKAGE, None)
    load_entry_points.cache_clear()
    for group, registry in ENTRY_POINT_GROUPS.items():
        for name in set(registry.names()) - before[group]:
            registry.unregister(name)


def test_an_installed_plugin_is_listed_and_runs(installed, capsys, tmp_path):
    installed(demo_plugin.ENTRY_POINTS)
    assert main(["methods"]) == 0
    assert any(line.split()[:1] == ["demo-erm"] and PACKAGE in line for line in capsys.readouterr().out.splitlines())
    assert main(["datasets"]) == 0
    assert "demo-shapes" in (listing := capsys.readouterr().out) and "aligned" in listing

    out = tmp_path / "out"
    assert main(["run", "--dataset", "demo-shapes", "--method", "demo-erm", "--data-option", "aligned=0.8",
                 "--out", str(out), *FAST]) == 0
    record = json.loads(Path(capsys.readouterr().out.splitlines()[-1]).read_text())
    assert (record["dataset"], record["method"], record["status"]) == ("demo-shapes", "demo-erm", "ok")
    assert record["config"]["data_options"] == {"aligned": "0.8"}
    assert {"aiou_worst", "group_acc"} <= set(record["metrics"]["test"])  # its masks give attention accuracy

    assert main(["run", "--dataset", "demo-shapes", "--method", "demo-erm", "--data-option", "colour=red",
                 "--out", str(out), *FAST]) == 2
    assert capsys.readouterr().err.strip() == "error: --data-option colour: dataset 'demo-shapes' accepts aligned"


def test_the_contract_tests_run_on_an_installed_plugin(tmp_path):
    """tests/test_contracts.py, unchanged, checks the plug-in's method, dataset and CAM variant in a process
    that finds them through the installed package's metadata alone."""
    site = install(tmp_path / "site", demo_plugin.ENTRY_POINTS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    tests = subprocess.run([sys.executable, "-m", "pytest", "tests/test_contracts.py", "-q", "-p", "no:cacheprovider",
                            "-rA", "-k", "demo"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert tests.returncode == 0, tests.stdout[-3000:]
    passed = [line for line in tests.stdout.splitlines() if line.startswith("PASSED")]
    for test_id in ("test_method_contract[demo-erm]", "test_dataset_contract[demo-shapes]",
                    "test_cam_contract[demo-absgrad-resnet18]", "test_cam_contract[demo-absgrad-vit_tiny]"):
        assert any(test_id in line for line in passed), f"{test_id} did not pass:\n{tests.stdout[-3000:]}"


@pytest.mark.parametrize(("points", "source", "expected"), [
    ({"slim_harness.methods": {"ghost": "harness_ghost:Method"}}, None,
     r"plug-in entry point 'ghost' = 'harness_ghost:Method' \(group slim_harness.methods, package "
     r"harness_demo_plugin\) failed to load: ModuleNotFoundError: No module named 'harness_ghost'"),
    ({"slim_harness.methods": {"demo-erm": "DemoERM"}}, "raise RuntimeError('no GPU here\\nsecond line')\n",
     r"'demo-erm' = 'harness_demo_plugin:DemoERM' .* failed to load: RuntimeError: no GPU here"),
], ids=["missing-module", "raises-on-import"])
def test_a_broken_plugin_is_one_line_naming_its_entry_point(installed, capsys, points, source, expected):
    installed(points, source)
    assert main(["methods"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and re.search(expected, line), line


def load(name: str, value: str, group: str) -> None:
    """Register entry point ``name = value`` of ``group`` in this process (no package metadata)."""
    register_entry_point(EntryPoint(name, value, group), ENTRY_POINT_GROUPS[group], entry_point_checks()[group])


@pytest.mark.parametrize(("name", "value", "group", "expected"), [
    ("demo-erm", "demo_plugin:DemoShapes", "slim_harness.methods",
     "DemoShapes is not a harness.engine.methods.Method subclass"),
    ("other-name", "demo_plugin:DemoERM", "slim_harness.methods",
     "the class is named 'demo-erm'; name the entry point 'demo-erm' too"),
    ("waterbirds", "demo_plugin:DemoShapes", "slim_harness.datasets",
     "the harness ships a dataset named 'waterbirds'"),
    ("without-load", "demo_plugin:WithoutLoad", "slim_harness.datasets", "WithoutLoad does not implement load"),
    ("demo-cam", "demo_plugin:ENTRY_POINTS", "slim_harness.cams", "a dict is not callable"),
    ("demo-module", "demo_plugin", "slim_harness.cams", "importing module demo_plugin registered no attention "
                                                        "method 'demo-module'"),
])
def test_an_entry_point_of_the_wrong_kind_or_name_is_refused(name, value, group, expected):
    with pytest.raises(HarnessError, match=f"plug-in entry point '{name}' = '{value}' \\(group {group}\\): "
                                           f"{re.escape(expected)}"):
        load(name, value, group)
    registry = ENTRY_POINT_GROUPS[group]
    assert name not in registry or registry.get(name).__module__.startswith("harness.")  # a shipped one stays


def test_a_plugin_cannot_take_a_shipped_name():
    """gradcam is the harness's own; a plug-in's CAM under that name is refused, the shipped one stays."""
    shipped = CAMS.get("gradcam")
    with pytest.raises(HarnessError, match="attention method 'gradcam' is already registered by "
                                           "harness.attention.cams.gradcam.gradcam; "
                                           "demo_plugin.AbsGradCAM cannot take"):
        load("gradcam", "demo_plugin:AbsGradCAM", "slim_harness.cams")
    assert CAMS.get("gradcam") is shipped


def test_an_entry_point_registers_under_its_name():
    try:
        load("demo-erm", "demo_plugin:DemoERM", "slim_harness.methods")
        load("demo-shapes", "demo_plugin:DemoShapes", "slim_harness.datasets")
        load("demo-absgrad", "demo_plugin:AbsGradCAM", "slim_harness.cams")
        assert METHODS.get("demo-erm") is demo_plugin.DemoERM
        assert DATASETS.get("demo-shapes") is demo_plugin.DemoShapes
        assert CAMS.get("demo-absgrad") is demo_plugin.AbsGradCAM
        load("demo-erm", "demo_plugin:DemoERM", "slim_harness.methods")  # loading it again changes nothing
    finally:
        METHODS.unregister("demo-erm")
        DATASETS.unregister("demo-shapes")
        CAMS.unregister("demo-absgrad")


def test_a_sweep_takes_a_plugin_dataset_that_reads_no_data_root(installed):
    installed(demo_plugin.ENTRY_POINTS)
    load_plugins()
    configs = expand(parse_sweep({"name": "t", "scale": "tiny", "datasets": ["demo-shapes"], "methods": ["demo-erm"],
                                  "archs": ["resnet18"], "seeds": [0, 1]}), device="cpu")
    assert [(c["dataset"], c["method"], c["seed"], c["data_root"]) for c in configs] == [
        ("demo-shapes", "demo-erm", 0, None), ("demo-shapes", "demo-erm", 1, None)]
