"""A reproduction recomputes into its own folder, compares cell by cell, and rewrites results/ only on purpose."""
import json
import math

import pytest

from harness.core.errors import HarnessError
from harness.experiments.reproduction import (
    append_comparison,
    check_out_dir,
    committed_folder,
    display_path,
    update_results,
)
from harness.experiments.sweep_file import CONFIG_DIR
from harness.reporting.comparison import compare, markdown, within_noise


def record(method, seed, worst, avg, dataset="waterbirds-synth", data_version="4.aaaaaaaa"):
    return {"run_id": f"{method}{seed}{worst}", "status": "ok", "dataset": dataset, "method": method,
            "arch": "resnet18", "seed": seed, "scale": "tiny",
            "config": {"hparams": {}, "data_version": data_version},
            "metrics": {"test": {"worst_group_acc": worst, "avg_acc": avg}}}


def test_an_output_folder_inside_results_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for inside in ("results", "results/reproduce", "results/x/y"):
        with pytest.raises(HarnessError, match="recomputes into its own folder"):
            check_out_dir(tmp_path / inside)
    check_out_dir(tmp_path / "out" / "quick")  # fine
    assert committed_folder("quick").as_posix() == "results/reproduce"
    assert committed_folder("binary-quick").as_posix() == "results/binary-quick"


def test_within_noise_by_hand():
    # means .50 and .60, stds .10 and .10, 3 seeds each: 2 * sqrt(.01/3 + .01/3) = .163 >= .10 -> noise
    assert within_noise((0.5, 0.1, 3), (0.6, 0.1, 3))
    # the same means with no spread: the floor of half a point decides
    assert not within_noise((0.5, 0.0, 3), (0.6, 0.0, 3))
    assert within_noise((0.5, 0.0, 3), (0.504, 0.0, 3))
    assert 2 * math.sqrt(0.01 / 3 * 2) == pytest.approx(0.1633, abs=1e-4)


def test_compare_lists_every_cell_with_its_verdict():
    old = [record("erm", s, w, 0.9) for s, w in enumerate((0.40, 0.42, 0.44))]
    new = [record("erm", s, w, 0.9) for s, w in enumerate((0.40, 0.42, 0.44))] + [record("jtt", 0, 0.7, 0.8)]
    rows = compare(old, new)
    erm = next(r for r in rows if r["method"] == "ERM")
    assert erm["committed_worst"][0] == pytest.approx(0.42) and erm["worst_within_noise"] is True
    jtt = next(r for r in rows if r["method"] == "JTT")
    assert jtt["committed_worst"] is None and jtt["worst_within_noise"] is None
    text = markdown(rows)
    assert text.splitlines()[-1] == ("1 of 1 cells agree within seed noise on both columns; "
                                     "1 cells exist on one side only; 3 of 3 records are identical to the "
                                     "committed ones.")


def test_a_cell_whose_preset_changed_is_marked_and_not_counted_as_agreeing():
    # the same numbers, but the isic preset was redefined between the two runs: not a reproduction of it
    old = [record("erm", s, 0.4, 0.9, dataset=d) for s in range(3) for d in ("waterbirds-synth", "isic-synth")]
    new = [record("erm", s, 0.4, 0.9, dataset="waterbirds-synth") for s in range(3)]
    new += [record("erm", s, 0.4, 0.9, dataset="isic-synth", data_version="4.bbbbbbbb") for s in range(3)]
    rows = {r["dataset"]: r for r in compare(old, new)}
    assert rows["isic-synth"]["data_changed"] and not rows["waterbirds-synth"]["data_changed"]
    assert rows["isic-synth"]["worst_within_noise"] is True  # the numbers are still compared and shown
    text = markdown(list(rows.values()))
    assert "| isic-synth | ERM | resnet18 |  | 40.0 ± 0.0 (n=3) | 40.0 ± 0.0 (n=3) | yes |" in text
    assert text.splitlines()[-1] == ("1 of 1 cells agree within seed noise on both columns; 1 cells are on a "
                                     "preset whose data changed (another data version), not counted; 3 of 3 "
                                     "records are identical to the committed ones.")
    # real datasets carry no data version: never marked
    for rec in old + new:
        rec["config"].pop("data_version")
    assert not any(r["data_changed"] for r in compare(old, new))


def test_records_that_differ_inside_agreeing_means_are_counted_and_named():
    """Issue 31: 101 of 102 SLIM records differed on another machine, yet the cells agreed within SLIM's seed
    spread. The comparison pairs records by cell and seed and counts those identical to the bit."""
    def slim(seed, worst, subset, seconds=1.0):
        rec = record("slim-val", seed, worst, 0.9)
        rec["config"]["hparams"] = {"budget": 24, "subset_frac": 0.15}
        rec["details"] = {"kept": 100, "subset_sha256": subset, "attention_space": {"seconds": seconds}}
        return rec

    old = [slim(s, w, f"rows{s}") for s, w in enumerate((0.2, 0.5, 0.8))] + [record("erm", 0, 0.4, 0.9)]
    new = [slim(0, 0.2, "rows0", seconds=9.0),  # only its wall-clock time differs: identical
           slim(1, 0.8, "rows1"),  # another worst-group accuracy
           slim(2, 0.5, "other")]  # another curated subset: the mean is the same as before
    new[1]["details"]["new_fact"] = 1  # a detail only one code version writes is no difference
    erm = record("erm", 0, 0.4, 0.9)
    erm["metrics"]["test"]["aiou_avg"] = 0.31  # a metric the committed record lacks: it differs
    rows = {r["method"]: r for r in compare(old, new + [erm])}
    assert (rows["SLIM_Val"]["records_paired"], rows["SLIM_Val"]["differing_seeds"]) == (3, [1, 2])
    assert rows["SLIM_Val"]["worst_within_noise"] and rows["ERM"]["differing_seeds"] == [0]
    text = markdown(list(rows.values()))
    assert text.splitlines()[-5:] == [
        "",
        "- waterbirds-synth / ERM / resnet18: seeds 0 (1 of 1 records)",
        "- waterbirds-synth / SLIM_Val / resnet18 / 24 / 0.15: seeds 1, 2 (2 of 3 records)",
        "",
        "2 of 2 cells agree within seed noise on both columns; 1 of 4 records are identical to the committed ones "
        "(2 agreeing cells hold records that differ)."]
    assert "| yes | 1 / 3 |" in text and "| yes | 0 / 1 |" in text


def test_the_readme_gets_the_comparison_and_update_copies_the_reproduction(tmp_path):
    committed = tmp_path / "results" / "reproduce"
    (committed / "runs").mkdir(parents=True)
    (committed / "runs" / "a.json").write_text(json.dumps(record("erm", 0, 0.2, 0.9)))
    (committed / "runs" / "bad.json").write_text("null")
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "b.json").write_text(json.dumps(record("erm", 0, 0.6, 0.9)))
    (out / "runs" / "b.predictions.npz").write_bytes(b"npz")
    (out / "runs" / "b.model.safetensors").write_bytes(b"weights")
    (out / "runs" / "b").mkdir()
    (out / "runs" / "b" / "queries.jsonl").write_text("{}\n")
    (out / "runs" / "b" / "cam_gallery.png").write_bytes(b"png")
    (out / "figures").mkdir()
    (out / "figures" / "bars.png").write_bytes(b"png")
    (out / "README.md").write_text("# reproduction\n")
    last = append_comparison(out / "README.md", [record("erm", 0, 0.6, 0.9)], committed)
    assert last.startswith("0 of 1 cells agree")
    assert "| waterbirds-synth | ERM | resnet18 |" in (out / "README.md").read_text()
    update_results(out, committed)
    assert sorted(p.name for p in (committed / "runs").iterdir()) == ["b", "b.json"]  # no predictions, weights
    assert [p.name for p in (committed / "runs" / "b").iterdir()] == ["queries.jsonl"]  # its pictures stay out
    assert (committed / "figures" / "bars.png").exists()
    assert (committed / "README.md").read_text().startswith("# reproduction")


def test_a_shipped_sweep_file_is_named_from_the_repository_root(tmp_path, monkeypatch):
    """The reproduction README names the sweep file as a reader finds it in the repository, wherever the
    command ran (its configs folder sits three levels below the root: harness/experiments/configs)."""
    monkeypatch.chdir(tmp_path)
    assert display_path(str(CONFIG_DIR / "quick.toml")) == "harness/experiments/configs/quick.toml"
    assert display_path(str(tmp_path / "mine.toml")) == "mine.toml"

