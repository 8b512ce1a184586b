"""The code version of a record: a digest of the packages' source files (git or not), and tables that keep
two versions out of one cell while the committed records (made before versions existed) stay as they were."""
from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.core.records import load_records
from harness.core.versions import PACKAGES, code_version, package_folders, source_digest
from harness.reporting.tables.index import write_tables

ROOT = Path(__file__).resolve().parents[1]


def package(root: Path) -> Path:
    folder = root / "pkg"
    files = {"__init__.py": "", "a.py": "A = 1\n", "sub/b.py": "B = 2\n", "configs/c.toml": "x = 1\n"}
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_the_source_digest_follows_every_source_file_and_nothing_else(tmp_path):
    folder = package(tmp_path / "one")
    digest, count = source_digest([folder])
    assert count == 4 and len(digest) == 64
    copied = tmp_path / "elsewhere" / "pkg"
    shutil.copytree(folder, copied)
    assert source_digest([copied]) == (digest, 4)  # where the package lies does not matter (sdist, wheel)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0compiled")
    (folder / "notes.txt").write_text("not source")
    assert source_digest([folder]) == (digest, 4)
    (folder / "sub" / "b.py").write_text("B = 3\n")
    assert source_digest([folder])[0] != digest  # an uncommitted edit is another version
    (folder / "sub" / "b.py").write_text("B = 2\n")
    assert source_digest([folder])[0] == digest
    (folder / "sub" / "b.py").rename(folder / "b.py")
    assert source_digest([folder])[0] != digest  # so is a moved file
    (folder / "b.py").rename(folder / "sub" / "b.py")
    (folder / "configs" / "c.toml").write_text("x = 2\n")
    assert source_digest([folder])[0] != digest  # shipped configs are source too


def test_the_code_version_is_this_checkouts_packages_and_commit():
    version = code_version()
    assert [f.name for f in package_folders()] == list(PACKAGES)
    assert all(f.parent == ROOT for f in package_folders())
    assert (version["source_digest"], version["files"]) == source_digest([ROOT / name for name in PACKAGES])
    assert version["files"] == sum(1 for name in PACKAGES for p in (ROOT / name).rglob("*")
                                   if p.suffix in (".py", ".toml") and "__pycache__" not in p.parts)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert version["git_commit"] == (head.stdout.strip() or None)


@pytest.mark.parametrize("folder", ["diagnostics", "binary-quick"])  # made before versions were recorded
def test_committed_records_without_a_version_give_the_same_tables_as_records_of_one_version(tmp_path, folder):
    records = load_records(ROOT / "results" / folder / "runs")
    assert records and not any("code_version" in r for r in records)  # made before versions were recorded
    versioned = copy.deepcopy(records)
    for record in versioned:
        record["code_version"] = code_version()
    for fmt in ("markdown", "latex"):
        old = write_tables(records, tmp_path / "old" / fmt, fmt)
        new = write_tables(versioned, tmp_path / "new" / fmt, fmt)
        assert [p.name for p in old] == [p.name for p in new]
        for a, b in zip(old, new, strict=True):
            assert a.read_bytes() == b.read_bytes(), a.name
    one_changed = [dict(r) for r in records]
    erm = next(r for r in one_changed if r["method"] == "erm" and r["status"] == "ok")
    erm["code_version"] = code_version()  # one run of an ERM cell made by this code, the others unknown
    with pytest.raises(HarnessError, match=rf"table cell {erm['dataset']}/ERM \(arch {erm['arch']}, scale "
                                           rf"{erm['scale']}\): source \w{{12}} \(seeds {erm['seed']}\); "
                                           r"unknown version \(seeds [\d, ]+\) mixes code versions"):
        write_tables(one_changed, tmp_path / "mixed")
