"""The settings schema: every setting has a type and a range, checked before any work, one line each."""
from __future__ import annotations

from itertools import product

import pytest

from harness.cli import main
from harness.core.errors import HarnessError
from harness.core.registry import METHODS
from harness.data.catalog import list_datasets
from harness.data.sizes import SCALES
from harness.engine.hparams_registry import _EXTRA_KEYS, default_hparams, model_hparams, run_hparams
from harness.engine.settings import SETTINGS, Setting, check_hparams, schema
from harness.experiments.sweep_file import parse_sweep
from harness.models.families import ARCHS


def test_every_setting_of_every_method_has_a_schema_entry():
    keys = set(_EXTRA_KEYS) | {key for method in METHODS for key in METHODS.get(method).extra_settings}
    for method, entry, scale, arch in product(METHODS, list_datasets(), SCALES, ARCHS):
        keys |= set(default_hparams(method, entry.name, scale)) | set(model_hparams(arch, entry.name, scale))
    assert sorted(keys - set(schema())) == []
    for method, scale in product(METHODS, SCALES):  # and every default is in its own range
        check_hparams(run_hparams(method, "waterbirds-synth", scale, "resnet18"))


def test_methods_declare_their_settings_and_may_share_one_only_alike():
    """A method's own settings are checked by the schema it declares (``Method.settings_schema``); two methods
    that declare one setting differently are an error naming the setting."""
    from harness.engine.methods import Method

    assert schema()["jtt_epochs"] == METHODS.get("jtt").settings_schema["jtt_epochs"]
    assert "jtt_epochs" not in SETTINGS  # the shared schema names no method's setting

    class Clash(Method):
        name, title = "demo-clash", "Clash"
        settings_schema = {"jtt_epochs": Setting(float, 0.0)}

    METHODS.register()(Clash)
    try:
        with pytest.raises(HarnessError, match="method demo-clash declares setting 'jtt_epochs' as a number >= 0"):
            schema()
    finally:
        METHODS.unregister("demo-clash")


def test_types_and_ranges_by_hand():
    whole = Setting(int, 1)
    assert whole.accepts(1) and whole.accepts(10**6)
    assert not any(whole.accepts(v) for v in (0, -1, 2.5, 2.0, True, "3", float("nan")))
    unit = Setting(float, 0.0, 1.0, open_low=True)
    assert unit.accepts(1) and unit.accepts(0.5) and unit.accepts(1.0)
    assert not any(unit.accepts(v) for v in (0, 0.0, 1.0001, 5, "abc", float("inf"), False))
    assert Setting(int, 2, words=("auto", "none")).accepts("auto") and not Setting(int, 2).accepts("auto")
    assert Setting(str, choices=("sgd", "adamw")).accepts("sgd") and not Setting(str, choices=("sgd",)).accepts(1)
    assert Setting(bool).accepts(False) and not Setting(bool).accepts(0)
    assert unit.describe() == "a number in (0, 1]"
    assert Setting(int, 16, 2048).describe() == "a whole number in [16, 2048]"
    with pytest.raises(HarnessError, match="cluster_k_min=4 is above cluster_k_max=3"):
        run_hparams("slim-tr", "waterbirds-synth", "tiny", "resnet18", {"cluster_k_min": 4, "cluster_k_max": 3})


def _one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


# the probes: each refused in one line before any work (no output folder is even made)
BAD_SETTINGS = [
    ("erm", "epochs=abc", "epochs='abc': must be a whole number >= 1"),
    ("erm", "lr=abc", "lr='abc': must be a number > 0"),
    ("erm", "lr=-1", "lr=-1: must be a number > 0"),
    ("erm", "batch_size=0", "batch_size=0: must be a whole number >= 1"),
    ("erm", "width=abc", "width='abc': must be a number in (0, 4]"),
    ("erm", "width=-1", "width=-1: must be a number in (0, 4]"),
    ("erm", "epochs=0", "epochs=0: must be a whole number >= 1"),
    ("erm", "epochs=-1", "epochs=-1: must be a whole number >= 1"),
    ("erm", "epochs=2.5", "epochs=2.5: must be a whole number >= 1"),
    ("erm", "augment=maybe", "augment='maybe': must be true or false"),
    ("erm", "optimizer=bogus", "optimizer='bogus': must be one of 'sgd', 'adamw'"),
    ("slim-val", "subset_frac=abc", "subset_frac='abc': must be a number in (0, 1]"),
    ("slim-val", "subset_frac=5", "subset_frac=5: must be a number in (0, 1]"),
    ("slim-tr", "budget=0", "budget=0: must be a whole number >= 1"),
    ("slim-tr", "umap_pca_dims=abc", "umap_pca_dims='abc': must be a whole number >= 2 or 'auto' or 'none'"),
    ("dfr", "dfr_num_retrains=abc", "dfr_num_retrains='abc': must be a whole number >= 1"),
]


@pytest.mark.parametrize(("method", "setting", "message"), BAD_SETTINGS)
def test_bad_settings_are_refused_in_one_line_before_any_work(capsys, tmp_path, method, setting, message):
    out = tmp_path / "out"
    err = _one_line_error(capsys, ["run", "--dataset", "waterbirds-synth", "--method", method, "--set", setting,
                                   "--out", str(out)])
    assert err == f"error: setting {message}"
    assert not out.exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--data-root", "/tmp"], "--data-root: for the real datasets only; waterbirds-synth is generated"),
    (["--data-option", "target=x"], "--data-option target: waterbirds-synth is generated and takes only its "
                                    "difficulty knobs (object_size, distinctness,"),
    (["--data-option", "noise=-1"], "--data-option for waterbirds-synth: difficulty knob 'noise' must be a "
                                    "non-negative number, got -1.0"),
    (["--data-option", "noise=loud"], "--data-option noise='loud': must be a number"),
    (["--data-option", "object_size=0.3"], "--data-option object_size='0.3': must be two numbers low,high"),
])
def test_real_dataset_options_on_a_generated_preset_are_refused(capsys, tmp_path, flags, message):
    """A generated preset takes no root, and as data options only its difficulty knobs, each in range."""
    out = tmp_path / "out"
    err = _one_line_error(capsys, ["run", "--dataset", "waterbirds-synth", "--method", "erm", *flags,
                                   "--out", str(out)])
    assert err.startswith(f"error: {message}")
    assert not out.exists()


def test_a_generated_preset_renders_at_the_image_size_given(capsys, tmp_path):
    """--image-size is not ignored on a generated preset: it renders at that size (and 0 is refused)."""
    from harness.data.catalog import load_benchmark

    assert load_benchmark("waterbirds-synth", scale="tiny", image_size=48).image_size == 48
    err = _one_line_error(capsys, ["run", "--dataset", "waterbirds-synth", "--method", "erm", "--image-size", "0",
                                   "--out", str(tmp_path / "out")])
    assert err.startswith("error: --image-size 0: must be a whole number")


@pytest.mark.parametrize("size", ["0", "-5", "4096"])
def test_image_size_out_of_range_is_refused(capsys, tmp_path, size):
    err = _one_line_error(capsys, ["run", "--dataset", "waterbirds", "--data-root", str(tmp_path), "--method", "erm",
                                   "--image-size", size, "--out", str(tmp_path / "out")])
    assert err == f"error: --image-size {size}: must be a whole number in [16, 2048]"


def test_jobs_0_is_refused(capsys, tmp_path):
    for command in (["sweep", "quick"], ["reproduce"], ["regression"]):
        err = _one_line_error(capsys, [*command, "--jobs", "0", "--out", str(tmp_path / "out")])
        assert err == "error: --jobs must be at least 1, got 0"


GRID = {"name": "t", "datasets": ["waterbirds-synth"], "methods": ["slim-tr"], "archs": ["resnet18"], "seeds": [0]}


@pytest.mark.parametrize(("change", "message"), [
    ({"data_seed": "abc"}, "data_seed='abc': must be a whole number >= 0"),
    ({"data_seed": -1}, "data_seed=-1: must be a whole number >= 0"),
    ({"overrides": {"epochs": "abc"}}, "[overrides] epochs='abc': must be a whole number >= 1"),
    ({"overrides_by_method": {"slim-tr": {"subset_frac": 2.0}}},
     "[overrides_by_method.slim-tr] subset_frac=2.0: must be a number in (0, 1]"),
    ({"slim_sweeps": {"datasets": ["waterbirds-synth"], "budget": {"slim-tr": [10, 0]}}},
     "[slim_sweeps.budget.slim-tr] budget=0: must be a whole number >= 1"),
])
def test_bad_sweep_values_are_refused_when_the_file_is_read(change, message):
    with pytest.raises(HarnessError) as caught:
        parse_sweep({**GRID, **change}, source="grid.toml")
    assert str(caught.value) == f"grid.toml: {message}"
