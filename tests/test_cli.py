"""The command line turns bad input into one-line errors (exit 2), never a traceback, and answers --help
without importing torch."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_real import make_waterbirds_fixture

from harness.cli import build_parser, main
from harness.cli.check_commands import BENCH_SECTIONS, BENCH_SIZES, GPU_CHECK_SECTIONS
from harness.cli.report_commands import TABLE_FORMATS

ROOT = Path(__file__).resolve().parent.parent


def _error_of(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_unknown_dataset_and_method(capsys, tmp_path):
    err = _error_of(capsys, ["run", "--dataset", "mnist", "--method", "erm", "--out", str(tmp_path)])
    assert "unknown dataset 'mnist'" in err
    err = _error_of(capsys, ["run", "--dataset", "waterbirds-synth", "--method", "magic", "--out", str(tmp_path)])
    assert "unknown method 'magic'" in err and "slim-tr" in err


def test_missing_weights_file(capsys, tmp_path):
    err = _error_of(capsys, ["run", "--dataset", "waterbirds-synth", "--method", "erm",
                             "--weights", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path)])
    assert "weights file not found" in err and "nope.safetensors" in err


def test_output_path_that_is_a_file(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = _error_of(capsys, ["run", "--dataset", "waterbirds-synth", "--method", "erm", "--out", str(blocker / "out")])
    assert "cannot create output folder" in err


def test_bad_overrides_and_options(capsys, tmp_path):
    err = _error_of(capsys, ["run", "--dataset", "waterbirds-synth", "--method", "erm", "--set", "epochs",
                             "--out", str(tmp_path)])
    assert "key=value" in err
    err = _error_of(capsys, ["run", "--dataset", "waterbirds-synth", "--method", "erm", "--set", "lrr=0.1",
                             "--out", str(tmp_path)])
    assert "unknown setting 'lrr'" in err
    err = _error_of(capsys, ["run", "--dataset", "waterbirds", "--method", "erm", "--out", str(tmp_path)])
    assert "--data-root" in err
    err = _error_of(capsys, ["run", "--dataset", "waterbirds", "--method", "erm", "--data-root",
                             str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert "missing" in err


def test_datasets_lists_every_preset_and_real_dataset(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("waterbirds-synth", "celeba-synth", "isic-synth", "nico-synth", "imagenet9-synth",
                 "waterbirds", "celeba", "isic", "nico", "imagenet9"):
        assert name in out
    assert "metadata.csv" in out and "list_attr_celeba.txt" in out


def test_seeds_outside_what_every_stage_takes(capsys, tmp_path):
    """A seed above 2**63 made torch.manual_seed raise 'Overflow when unpacking long long' mid-run (a
    traceback); a negative one reached scikit-learn's RandomState, which refuses it. Both stop first now."""
    for flag, seed in (("--seed", "99999999999999999999"), ("--seed", "-1"), ("--data-seed", "2147483648")):
        err = _error_of(capsys, ["run", "--dataset", "waterbirds-synth", "--method", "erm", flag, seed,
                                 "--out", str(tmp_path)])
        assert err == f"error: {flag} {int(seed)}: must be a whole number in [0, 2147483647]"
    assert not list(tmp_path.iterdir())  # nothing was started
    assert main(["hparams", "--method", "erm", "--dataset", "waterbirds-synth"]) == 0  # seed 0 passes


def test_hparams_of_an_unknown_arch(capsys, tmp_path):
    """`hparams --arch nosuch` printed a table for it and exited 0; `run --arch nosuch` failed only once
    the data was loaded."""
    err = _error_of(capsys, ["hparams", "--method", "erm", "--dataset", "waterbirds-synth", "--arch", "nosuch"])
    assert err.startswith("error: unknown arch 'nosuch'; choose from resnet18,")
    err = _error_of(capsys, ["run", "--dataset", "waterbirds-synth", "--method", "erm", "--arch", "nosuch",
                             "--out", str(tmp_path)])
    assert err.startswith("error: unknown arch 'nosuch'")


def subcommands() -> list[str]:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return list(action.choices)


@pytest.mark.parametrize("command", [[], *([name] for name in subcommands()), ["annotations", "merge"]],
                         ids=lambda command: " ".join(command) or "python -m harness")
def test_help_imports_no_torch(command):
    """--help answers before torch (seconds to import) is imported: `-X importtime` lists every import."""
    help_run = subprocess.run([sys.executable, "-X", "importtime", "-m", "harness", *command, "--help"],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert help_run.returncode == 0 and help_run.stdout.startswith("usage: python -m harness")
    imported = {line.rsplit("|", 1)[-1].strip() for line in help_run.stderr.splitlines() if "|" in line}
    assert "harness.cli" in imported and not imported & {"torch", "numpy", "timm", "sklearn"}


def test_the_parser_repeats_the_choices_of_modules_it_does_not_import():
    from harness.checks import bench
    from harness.reporting.tables import cells

    assert TABLE_FORMATS == cells.FORMATS
    from harness.checks import gpu_check

    assert BENCH_SIZES == tuple(bench.SIZES) and BENCH_SECTIONS == bench.SECTIONS
    assert GPU_CHECK_SECTIONS == gpu_check.SECTIONS


def test_bad_bench_sections_are_one_line_before_any_work(capsys):
    err = _error_of(capsys, ["bench", "--sections", "data,nope", "--device", "cpu"])
    assert err == ("error: unknown bench section(s) 'nope'; choose from train, attention, slim, stem, data, generated, "
                   "cache")
    assert capsys.readouterr().out == ""


def test_cache_dir_holds_the_decoded_images_of_a_real_dataset(tmp_path, monkeypatch, capsys):
    """--cache-dir does what $SLIM_HARNESS_CACHE does (and wins over it): the image cache goes there."""
    monkeypatch.setenv("SLIM_HARNESS_CACHE", str(tmp_path / "from-the-variable"))
    root = tmp_path / "waterbird_complete95_forest2water2"
    make_waterbirds_fixture(root)
    assert main(["run", "--dataset", "waterbirds", "--data-root", str(root), "--image-size", "32", "--method", "erm",
                 "--arch", "resnet18", "--set", "pretrained=none", "--set", "width=0.25", "--set", "epochs=1",
                 "--set", "batch_size=8", "--device", "cpu", "--quiet", "--out", str(tmp_path / "out"),
                 "--cache-dir", str(tmp_path / "scratch")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(".json")
    assert any((tmp_path / "scratch" / "images").iterdir())
    assert not (tmp_path / "from-the-variable").exists()
