"""The command line turns bad input into one-line errors (exit 2), never a traceback."""
from harness.cli import main


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
