"""The premise map (issue 33): minority shares, levels, the paper's level, and the command on toy records."""
from __future__ import annotations

import json

import pytest
from matplotlib.colors import to_hex
from matplotlib.image import imread

from harness import cli
from harness.core.errors import HarnessError
from harness.data.synthetic import group_names
from harness.experiments.premise import (
    dataset_levels,
    kept_shares,
    minority_share,
    paper_crossing,
    premise_figure,
    row_label,
    row_labels,
    write_premise,
)

GROUPS = ("landbird/land", "landbird/water", "waterbird/land", "waterbird/water")


def record(method: str, seed: int, *, worst: float, options: dict | None = None, share: tuple = (0.2, 0.4),
           aiou_worst: float = 0.2, variant: str = "paper", ablation: str = "none", kept: list | None = None,
           dataset: str = "waterbirds-synth") -> dict:
    """A toy ok record of waterbirds-synth (tiny): ``share`` is ERM's correct attention on the two minority
    groups (landbird/water, waterbird/land); the majority groups are at 0.9, which the share must not read."""
    hparams = {"slim_variant": variant, "slim_ablation": ablation, "budget": 8, "subset_frac": 0.1} \
        if method.startswith("slim") else {}
    correct = dict(zip(GROUPS, (0.9, share[0], share[1], 0.9), strict=True))
    rec = {
        "run_id": f"{method}-{seed}-{json.dumps(options)}-{variant}-{ablation}", "status": "ok", "dataset": dataset,
        "method": method, "arch": "efficientnet_lite0", "seed": seed, "scale": "tiny", "created": "2026-12-07",
        "config": {"data_options": options or {}, "hparams": hparams},
        "metrics": {"test": {"worst_group_acc": worst, "avg_acc": 0.9, "weighted_avg_acc": 0.95,
                             "aiou_worst": aiou_worst, "aiou_avg": 0.4, "group_attention_correct": correct}},
        "details": {},
    }
    if method.startswith("slim"):
        rec["details"] = {"subset_size": 120, "diagnostics": {
            "expansion": {"auroc": 0.7},
            "screening": {"kept_share_by_group": kept or [0.8, 0.2, 0.4, 0.9]},
            "disentangling": {"env_nmi_spurious": 0.45}, "curation": {"min_group_share": 0.05}}}
    return rec


def toy_sweep() -> list[dict]:
    """Two levels x two seeds: texture_contrast 0.2 (ERM attends well) and the preset as shipped (0.5)."""
    records = []
    for seed, erm_worst in ((0, 0.6), (1, 0.7)):
        records += [
            record("erm", seed, worst=erm_worst, share=(0.2, 0.4), aiou_worst=0.15),
            record("erm", seed, worst=erm_worst - 0.1, options={"texture_contrast": 0.2}, share=(0.6, 0.8),
                   aiou_worst=0.35),
            record("slim-val", seed, worst=0.7),
            record("slim-val", seed, worst=0.8, options={"texture_contrast": 0.2}),
            record("slim-val", seed, worst=0.5, ablation="random_subset"),
            record("dfr", seed, worst=0.85),
        ]
    return records


def table_rows(text: str) -> list[list[str]]:
    """The cells of every body row of the markdown tables in ``text``."""
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| level")]


def test_minority_share_reads_only_the_minority_groups():
    """waterbirds-synth's minority groups are landbird/water and waterbird/land: (0.2 + 0.4) / 2."""
    assert minority_share(record("erm", 0, worst=0.5, share=(0.2, 0.4))) == pytest.approx(0.3)
    assert minority_share({**record("erm", 0, worst=0.5), "metrics": {"test": {}}}) is None
    # screening's kept shares: minority (0.2 + 0.4) / 2, the others (0.8 + 0.9) / 2, the least-kept group 0.2,
    # no group dropped whole
    assert kept_shares(record("slim-val", 0, worst=0.5)) == pytest.approx((0.3, 0.85, 0.2, 0))
    # waterbird/land kept at 0 and landbird/land absent from the split (None): one group dropped, of three present
    assert kept_shares(record("slim-val", 0, worst=0.5, kept=[None, 0.2, 0.0, 0.9])) == pytest.approx(
        (0.1, 0.9, 0.0, 1))


def test_row_labels_name_the_variant_and_ablation():
    assert row_label(record("slim-val", 0, worst=0.5)) == "SLIM_Val"
    assert row_label(record("slim-val", 0, worst=0.5, variant="authors")) == "SLIM_Val (authors)"
    assert row_label(record("slim-val", 0, worst=0.5, ablation="group_balanced_subset")) == \
        "SLIM_Val: group balanced subset"
    assert row_label(record("dfr", 0, worst=0.5)) == "DFR"


def test_rows_put_slims_paper_variant_first_and_its_reference_rows_last():
    records = [record("slim-val", 0, worst=0.5, ablation="random_subset"), record("dfr", 0, worst=0.5),
               record("slim-val", 0, worst=0.5, ablation="group_balanced_subset"),
               record("slim-val", 0, worst=0.5, variant="authors"), record("slim-val", 0, worst=0.5),
               record("erm", 0, worst=0.5)]
    assert row_labels(records) == ["ERM", "SLIM_Val", "SLIM_Val (authors)", "SLIM_Val: group balanced subset",
                                   "SLIM_Val: random subset", "DFR"]


def test_levels_are_ordered_by_erm_share_and_labelled_by_their_knobs():
    levels = dataset_levels(toy_sweep(), "waterbirds-synth")
    assert [level.label for level in levels] == ["texture_contrast=0.5 (preset)", "texture_contrast=0.2"]
    assert [level.erm_stat(minority_share).mean for level in levels] == pytest.approx([0.3, 0.7])
    assert [level.is_default for level in levels] == [True, False]


def test_level_labels_keep_the_knobs_third_decimal():
    """premise.toml's radii 0.165 and 0.235 must not print as 0.17 and 0.23 (two decimals, rounded)."""
    records = [record("erm", 0, worst=0.5, options={"object_size": [0.10, 0.165]}),
               record("erm", 0, worst=0.5, options={"object_size": [0.15, 0.235]}, share=(0.5, 0.5))]
    assert [level.label for level in dataset_levels(records, "waterbirds-synth")] == [
        "object_size=0.1,0.165", "object_size=0.15,0.235"]


def test_a_split_size_every_level_shares_is_not_a_knob():
    """premise.toml draws every level with a 1,000-image val split: the level with no difficulty knob is still the
    preset's own, and the labels name the knobs only."""
    sized = [{**r, "config": {**r["config"], "data_options": {**r["config"]["data_options"], "val_size": 1000}}}
             for r in toy_sweep()]
    levels = dataset_levels(sized, "waterbirds-synth")
    assert [level.label for level in levels] == ["texture_contrast=0.5 (preset)", "texture_contrast=0.2"]
    assert [level.is_default for level in levels] == [True, False]


def test_the_papers_level_is_interpolated_where_erms_worst_group_aiou_reaches_it():
    """ERM's worst-group AIoU is .15 at a share of .3 and .35 at .7: the paper's .25 lies half-way, at .5."""
    share, text = paper_crossing(dataset_levels(toy_sweep(), "waterbirds-synth"), "waterbirds-synth")
    assert share == pytest.approx(0.5)
    assert "AIoU worst 0.25" in text and "50 %" in text
    lifted = [{**r, "metrics": {"test": {**r["metrics"]["test"], "aiou_worst": 0.4}}} for r in toy_sweep()]
    share, text = paper_crossing(dataset_levels(lifted, "waterbirds-synth"), "waterbirds-synth")
    assert share is None and "outside the swept range" in text and "0.40-0.40" in text
    assert paper_crossing(dataset_levels(toy_sweep(), "waterbirds-synth"), "nico-synth") == (None, "")


def test_premise_command_writes_the_figure_and_table_from_records_alone(tmp_path, capsys):
    runs = tmp_path / "sweep" / "runs"
    runs.mkdir(parents=True)
    for rec in toy_sweep():
        (runs / f"{rec['run_id']}.json").write_text(json.dumps(rec))
    assert cli.main(["premise", "--runs", str(tmp_path / "sweep")]) == 0
    out = tmp_path / "sweep" / "premise"
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / f"premise_efficientnet_lite0_tiny.{suffix}") for suffix in ("png", "md")]
    image = imread(out / "premise_efficientnet_lite0_tiny.png")
    assert image.shape[0] > 300 and image.shape[1] > 1000 and image[..., :3].std() > 0.05  # drawn, not blank
    table = (out / "premise_efficientnet_lite0_tiny.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| level "))
    assert [cell.strip() for cell in header.split("|")[5:-1]] == [
        "ERM worst", "SLIM_Val worst", "SLIM_Val: random subset worst", "DFR worst"]
    accuracy_table, comparison = table.split("Where each SLIM row wins")
    accuracy = table_rows(accuracy_table)
    # level, ERM's minority share, AIoU worst / avg, gap (0.95 - worst), then the rows' worst-group accuracy
    assert accuracy == [
        ["texture_contrast=0.5 (preset)", "30.0 ± 0.0", ".15 ± .00 / .40 ± .00", "30.0 ± 5.0",
         "65.0 ± 5.0", "70.0 ± 0.0", "50.0 ± 0.0", "85.0 ± 0.0"],
        ["texture_contrast=0.2", "70.0 ± 0.0", ".35 ± .00 / .40 ± .00", "40.0 ± 5.0",
         "55.0 ± 5.0", "80.0 ± 0.0", "–", "–"],  # the random subset and DFR ran at the preset only
    ]
    assert "50 %" in table  # the paper's level
    # SLIM_Val minus the random subset (0.7 - 0.5) and minus DFR (0.7 - 0.85), at the one level all three ran
    assert [cells for cells in table_rows(comparison) if cells[1] != "slim-val"][0] == [
        "texture_contrast=0.5 (preset)", "30.0 ± 0.0", "+20.0 ± 0.0 (2/2)", "-15.0 ± 0.0 (0/2)"]
    diagnostics = [cells[1:] for cells in table_rows(table) if cells[1] == "slim-val"]
    # AUROC, kept minority (0.2 + 0.4) / 2, other (0.8 + 0.9) / 2 and least (0.2), no group dropped, the
    # environment clusters' NMI, the subset's smallest group, its size
    assert diagnostics == [["slim-val", ".70 ± .00", "30.0 ± 0.0", "85.0 ± 0.0", "20.0 ± 0.0", "0.0 ± 0.0",
                            ".45 ± .00",
                            "5.0 ± 0.0", "120"]] * 2


def test_the_gap_under_15_points_is_marked(tmp_path):
    records = [record("erm", 0, worst=0.85), record("erm", 0, worst=0.5, options={"texture_contrast": 0.2})]
    png, md = write_premise(records, tmp_path)
    # the cells: level, share, AIoU, gap
    gaps = [cells[3] for cells in table_rows(md.read_text()) if cells[0].startswith("texture")]
    assert gaps == ["10.0 †", "45.0"]  # 0.95 - 0.85 and 0.95 - 0.5
    assert imread(png).shape[1] < 1000  # no SLIM run: the accuracy panel alone, no empty diagnostic panels


def test_records_without_a_synthetic_erm_run_are_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(HarnessError, match="nothing to place on the premise axis"):
        write_premise([record("dfr", 0, worst=0.5)], tmp_path)
    (tmp_path / "a.json").write_text(json.dumps(record("dfr", 0, worst=0.5)))
    assert cli.main(["premise", "--runs", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("error: no ERM run of a synthetic preset")


def test_each_slim_row_is_compared_with_the_random_subset_and_dfr_paired_over_seeds(tmp_path):
    """Three levels (ERM minority share 30, 50, 70 %), two seeds; differences worked out by hand."""
    levels = ((None, (0.2, 0.4)), ({"texture_contrast": 0.2}, (0.4, 0.6)), ({"texture_contrast": 0.1}, (0.6, 0.8)))
    worst = {  # row: per level, per seed (None: not run there)
        ("slim-val", "paper", "none"): ((0.5, 0.6), (0.7, 0.8), (0.8, 0.8)),
        ("slim-val", "authors", "none"): ((0.9, 0.9), (0.9, 0.9), (0.9, 0.9)),
        ("slim-tr", "paper", "none"): ((0.7, 0.7), (0.5, 0.5), None),
        ("slim-val", "paper", "random_subset"): ((0.6, 0.6), (0.6, 0.6), (0.7, 0.75)),
        ("dfr", "paper", "none"): ((0.9, 0.9), (0.82, 0.82), (0.8, 0.85)),
    }
    records = []
    for i, (options, share) in enumerate(levels):
        for seed in (0, 1):
            records.append(record("erm", seed, worst=0.5, options=options, share=share, aiou_worst=0.1 * i))
            for (method, variant, ablation), values in worst.items():
                if values[i] is not None:
                    records.append(record(method, seed, worst=values[i][seed], options=options, variant=variant,
                                          ablation=ablation))
    text = write_premise(records, tmp_path)[1].read_text()
    block = text[text.index("Where each SLIM row wins"):]
    header = next(line for line in block.splitlines() if line.startswith("| level "))
    names = [cell.strip() for cell in header.split("|")[3:-1]]
    body = [cells[2:] for cells in table_rows(block.split("\n\n", 2)[1])]
    columns = {name: [row[j] for row in body] for j, name in enumerate(names)}
    random, dfr = "SLIM_Val: random subset", "DFR"
    assert columns[f"SLIM_Val − {random}"] == ["-5.0 ± 5.0 (0/2)", "+15.0 ± 5.0 (2/2)", "+7.5 ± 2.5 (2/2)"]
    # against DFR a seed wins when within 3 points: at 70 % seed 0 (0.0) does, seed 1 (-5.0) does not
    assert columns[f"SLIM_Val − {dfr}"] == ["-35.0 ± 5.0 (0/2)", "-7.0 ± 5.0 (1/2)", "-2.5 ± 2.5 (1/2)"]
    assert columns[f"SLIM_Tr − {random}"] == ["+10.0 ± 0.0 (2/2)", "-10.0 ± 0.0 (0/2)", "–"]
    sentences = [line[2:] for line in block.splitlines() if line.startswith("- ")]
    assert f"SLIM_Val beats {random} at every level from a minority share of 50 % on (2 of 3 levels)." in sentences
    assert f"SLIM_Val comes within 3 points of {dfr} at every level from a minority share of 70 % on " \
           "(1 of 3 levels)." in sentences
    assert f"SLIM_Val (authors) beats {random} at every level compared (3)." in sentences
    assert f"SLIM_Val (authors) comes within 3 points of {dfr} at every level compared (3)." in sentences
    assert f"SLIM_Tr beats {random} at 1 of 2 levels, not at the highest share compared." in sentences
    assert f"SLIM_Tr comes within 3 points of {dfr} at no level compared." in sentences


def test_a_row_keeps_its_colour_in_every_datasets_panel():
    """waterbirds-synth has a SLIM_Tr row that nico-synth lacks: SLIM_Val and DFR must not change colour between
    the two accuracy panels (each panel's own colour cycle shifted them by one before)."""
    groups = group_names("nico-synth")
    nico = [{**r, "dataset": "nico-synth", "run_id": "nico-" + r["run_id"],
             "metrics": {"test": {**r["metrics"]["test"], "group_attention_correct": dict.fromkeys(groups, 0.5)}}}
            for r in toy_sweep()]
    for r in nico:
        if r["details"]:
            r["details"] = json.loads(json.dumps(r["details"]))  # its own copy, 36 groups
            r["details"]["diagnostics"]["screening"]["kept_share_by_group"] = [0.5] * len(groups)
    figure = premise_figure(toy_sweep() + [record("slim-tr", 0, worst=0.4)] + nico, "efficientnet_lite0", "tiny")
    waterbirds_panel, nico_panel = (ax for ax in figure.axes if "accuracy along" in ax.get_title())

    def colours(ax):
        handles, labels = ax.get_legend_handles_labels()
        return {label: to_hex(handle.lines[0].get_color()) for handle, label in zip(handles, labels, strict=True)
                if hasattr(handle, "lines")}  # the rows' error bars, not the marks and the dotted average

    waterbirds, nico = colours(waterbirds_panel), colours(nico_panel)
    assert "SLIM_Tr" in waterbirds and "SLIM_Tr" not in nico
    assert {label: waterbirds[label] for label in nico} == nico
    assert len(set(waterbirds.values())) == len(waterbirds)  # and no two rows share one


def test_the_stage_table_has_both_variants_and_counts_the_groups_screening_drops(tmp_path):
    """The authors' variant keeps none of two groups in seed 0 and of one in seed 1: 1.5 groups dropped, the least
    kept at 0; the paper variant's row (no group dropped) comes first."""
    records = [record("erm", seed, worst=0.5) for seed in (0, 1)]
    records += [record("slim-val", seed, worst=0.6) for seed in (0, 1)]
    records += [record("slim-val", 0, worst=0.1, variant="authors", kept=[0.8, 0.0, 0.0, 0.9]),
                record("slim-val", 1, worst=0.2, variant="authors", kept=[0.8, 0.0, 0.4, 0.9])]
    text = write_premise(records, tmp_path)[1].read_text()
    stages = [cells[1:7] for cells in table_rows(text) if cells[1].startswith("slim-val")]
    # method, AUROC, kept minority, other, least, dropped
    assert stages == [["slim-val", ".70 ± .00", "30.0 ± 0.0", "85.0 ± 0.0", "20.0 ± 0.0", "0.0 ± 0.0"],
                      ["slim-val (authors)", ".70 ± .00", "10.0 ± 10.0", "85.0 ± 0.0", "0.0 ± 0.0", "1.5 ± 0.5"]]
