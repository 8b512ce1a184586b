"""Paper-style tables from hand-made run records; expected numbers are worked out by hand in comments."""

from __future__ import annotations

import csv

import pytest

from harness.core.errors import HarnessError
from harness.core.registry import METHODS
from harness.engine.hparams_registry import budget_from_share, default_hparams
from harness.engine.methods import Method
from harness.reporting.tables.budgeted import table4, table7, table8, table_diagnostics
from harness.reporting.tables.cells import Stat, format_number, format_stat, get_style, trim_number
from harness.reporting.tables.index import write_tables
from harness.reporting.tables.paper import table2, table3, table5

ARCH, SCALE = "resnet18", "tiny"
SPLIT_SIZE = 1000  # every hand-made SLIM record curated a split of 1000 rows, 2 classes
# Registry defaults at tiny scale for the synthetic presets (read, not assumed, so a change shows up here):
# the budget is the paper's share of the split.
TR_DEFAULT = default_hparams("slim-tr", "waterbirds-synth", SCALE)
TR_BUDGET = budget_from_share(TR_DEFAULT["budget_share"], SPLIT_SIZE, 2)
TR_FRAC = TR_DEFAULT["subset_frac"]

LABELS = {  # (train_group_labels, val_group_labels) each method uses
    "erm": (False, False),
    "jtt": (False, True),
    "dfr": (False, True),
    "gdro": (True, False),
    "slim-tr": (False, False),
    "slim-val": (False, False),
}


def make_record(
    method: str = "erm",
    dataset: str = "waterbirds-synth",
    seed: int = 0,
    worst: float | None = 0.8,
    avg: float | None = 0.9,
    *,
    weighted: float | None = None,
    split: str = "test",
    budget: int | None = None,
    frac: float | None = None,
    aiou: tuple[float, float] | None = None,
    extra_training: float = 0.0,
    status: str = "ok",
    label: str | None = None,
    arch: str = ARCH,
    scale: str = SCALE,
    created: str = "2024-01-01T00:00:00+00:00",
    slim_kind: tuple[str, str] = ("paper", "none"),
    diagnostics: dict | None = None,
) -> dict:
    """A record of the schema in harness/core/records.py with just the fields the tables read; a SLIM record
    without ``budget`` asked the registry's share of its split (config budget None)."""
    slim = method.startswith("slim")
    config_budget = budget
    if slim:
        defaults = default_hparams(method, dataset, scale)
        if budget is None:
            budget = budget_from_share(defaults["budget_share"], SPLIT_SIZE, 2)
        frac = defaults["subset_frac"] if frac is None else frac
    metrics: dict = {"val": {"worst_group_acc": 0.5, "avg_acc": 0.5}, split: {}}
    for key, value in (("worst_group_acc", worst), ("avg_acc", avg), ("weighted_avg_acc", weighted)):
        if value is not None:
            metrics[split][key] = value
    if aiou is not None:
        metrics[split].update(aiou_worst=aiou[0], aiou_avg=aiou[1])
    train_labels, val_labels = LABELS[method]
    rec = {
        "run_id": f"{method}-{dataset}-{seed}-{budget}-{frac}-{created}",
        "created": created,
        "status": status,
        "error": "CUDA out of memory\ntraceback..." if status == "failed" else None,
        "dataset": dataset,
        "method": method,
        "arch": arch,
        "seed": seed,
        "scale": scale,
        "config": {"hparams": {"budget": config_budget, "subset_frac": frac, "slim_variant": slim_kind[0],
                               "slim_ablation": slim_kind[1]} if slim else {"lr": 0.01}},
        "metrics": metrics,  # a failed run may have written some before failing
        "labels_used": {
            "train_group_labels": train_labels,
            "val_group_labels": val_labels,
            "attention_queries": budget if slim else 0,
            "attention_split": ("train" if method == "slim-tr" else "val") if slim else None,
        },
        "cost": {"annotation_fraction": 0.0, "extra_training_fraction": extra_training, "seconds": 1.0},
        "details": {
            "subset_size": 30,
            "subset_fraction": frac,
            "queries": budget,
            "query_fraction": budget / SPLIT_SIZE,
            "class_budgets": {"0": budget // 2, "1": budget - budget // 2},
            **({"diagnostics": diagnostics} if diagnostics else {}),
        }
        if slim
        else {},
    }
    if label is not None:
        rec["method_label"] = label
    return rec


def row(text: str, name: str) -> list[str]:
    """Cells of the markdown table row whose first cell is ``name``."""
    for cells in body(text):
        if cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r} in\n{text}")


def split_row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def header(text: str) -> list[str]:
    return split_row(next(line for line in text.splitlines() if line.startswith("|")))


def body(text: str) -> list[list[str]]:
    """Cells of every markdown table row below the header and its rule."""
    return [split_row(line) for line in text.splitlines() if line.startswith("|")][2:]


def column(text: str, name: str, col: str) -> str:
    return row(text, name)[header(text).index(col)]


WB = "Waterbirds (synth)"


def test_mean_std_over_seeds_and_single_seed():
    # worst 0.80, 0.84, 0.86: mean 83.33; deviations -3.33, 0.67, 2.67 -> var (11.11 + 0.44 + 7.11) / 3 = 6.22
    # -> population std 2.49 (the sample std would be 3.06, shown as 3.1).
    recs = [make_record("erm", seed=s, worst=w, avg=0.9) for s, w in enumerate((0.80, 0.84, 0.86))]
    recs.append(make_record("jtt", seed=0, worst=0.7, avg=0.75))
    text = table2(recs, ARCH, SCALE)
    assert column(text, "ERM", f"{WB} Worst").strip("*<u>/") == "83.3 ± 2.5"
    assert column(text, "ERM", f"{WB} Avg") == "**90.0 ± 0.0**"
    assert column(text, "JTT", f"{WB} Worst") == "<u>70.0</u>"  # one seed: no ± part
    assert "population std, ddof=0" in text.splitlines()[0]
    assert format_number(0.5349, "aiou") == ".53"
    assert format_stat(Stat(0.53, 0.02, 2), "aiou", get_style("markdown")) == ".53 ± .02"


def test_rows_follow_the_methods_declared_rank_not_their_names():
    """A plug-in method ranked before ERM (``Method.table_rank``) is the first row; one that declares no rank
    comes after the shipped methods, and neither is a row of the budget tables."""

    class First(Method):
        name, title, table_rank = "demo-first", "Demo first", -1

    class Unranked(Method):
        name, title = "demo-unranked", "Demo unranked"

    for cls in (First, Unranked):
        METHODS.register()(cls)
    try:
        recs = [make_record("erm"), make_record("gdro")]
        recs += [dict(make_record("erm", seed=1), method=cls.name, run_id=cls.name) for cls in (First, Unranked)]
        assert [cells[0] for cells in body(table2(recs, ARCH, SCALE))] == ["Demo first", "ERM", "GDRO",
                                                                           "Demo unranked"]
        assert table4(recs, ARCH, SCALE) is None
    finally:
        for cls in (First, Unranked):
            METHODS.unregister(cls.name)


def test_best_bold_second_underlined_ties_and_lone_values():
    recs = [
        make_record("erm", worst=0.60, avg=0.95),
        make_record("jtt", worst=0.70, avg=0.90),
        make_record("gdro", worst=0.70, avg=0.85),  # tied best with JTT
        make_record("dfr", worst=0.65, avg=0.80),
        make_record("gdro", dataset="celeba-synth", worst=0.5, avg=0.6),  # the only CelebA value
        make_record("erm", dataset="isic-synth", worst=0.8944, avg=0.7),  # shows as 89.4 ...
        make_record("jtt", dataset="isic-synth", worst=0.8941, avg=0.6),  # ... as does this: a tie
    ]
    text = table2(recs, ARCH, SCALE)
    worst = {name: column(text, name, f"{WB} Worst") for name in ("ERM", "JTT", "GDRO", "DFR")}
    assert worst == {"ERM": "60.0", "JTT": "**70.0**", "GDRO": "**70.0**", "DFR": "<u>65.0</u>"}
    avg = {name: column(text, name, f"{WB} Avg") for name in ("ERM", "JTT", "GDRO", "DFR")}
    assert avg == {"ERM": "**95.0**", "JTT": "<u>90.0</u>", "GDRO": "85.0", "DFR": "80.0"}
    assert column(text, "GDRO", "CelebA (synth) Worst") == "**50.0**"
    assert "<u>" not in "".join(row(text, n)[header(text).index("CelebA (synth) Worst")] for n in worst)
    assert column(text, "ERM", "ISIC (synth) Worst") == "**89.4**"
    assert column(text, "JTT", "ISIC (synth) Worst") == "**89.4**"


def test_missing_cells_show_a_dash_not_zero():
    recs = [
        make_record("erm", worst=0.6),
        make_record("erm", dataset="celeba-synth", worst=0.4),
        make_record("gdro", worst=0.9),
    ]
    text = table2(recs, ARCH, SCALE)
    assert row(text, "GDRO")[-2:] == ["–", "–"]
    assert "0.0" not in row(text, "GDRO")[-1]
    latex = table2(recs, ARCH, SCALE, "latex")
    assert "GDRO" in latex and " -- " in latex


def test_waterbirds_avg_is_the_weighted_average():
    recs = [
        make_record("erm", worst=0.6, avg=0.80, weighted=0.95),
        make_record("erm", dataset="celeba-synth", worst=0.5, avg=0.85, weighted=0.99),
    ]
    text = table2(recs, ARCH, SCALE)
    assert column(text, "ERM", f"{WB} Avg").strip("*") == "95.0"
    assert (
        column(text, "ERM", "CelebA (synth) Avg").strip("*") == "85.0"
    )  # the convention is Waterbirds' only
    assert "weighted by train group proportions" in text.splitlines()[0]
    plain = table2([make_record("erm", worst=0.6, avg=0.80)], ARCH, SCALE)
    assert column(plain, "ERM", f"{WB} Avg").strip("*") == "80.0"
    assert "weighted" not in plain.splitlines()[0]


def test_failed_records_are_excluded_and_listed():
    recs = [
        make_record("erm", worst=0.6),
        make_record("jtt", seed=3, worst=0.99, status="failed"),
    ]
    text = table2(recs, ARCH, SCALE)
    assert "99.0" not in text
    assert "| JTT" not in text
    footer = [line for line in text.splitlines() if line.startswith("Failed runs")]
    assert footer == ["Failed runs (excluded): waterbirds-synth/JTT/seed 3 (CUDA out of memory)"]
    assert table2([recs[1]], ARCH, SCALE) is None  # only failed runs: nothing to show


def test_latex_escaping_and_marks():
    recs = [
        make_record("erm", worst=0.6, label="A&B_c 50%", arch="vit_small"),
        make_record("gdro", worst=0.7, arch="vit_small"),
        make_record("slim-tr", worst=0.8, extra_training=0.1, arch="vit_small"),
    ]
    latex = table2(recs, "vit_small", SCALE, "latex")
    assert r"A\&B\_c 50\%" in latex
    assert r"SLIM\_Tr" in latex
    assert r"\textbf{80.0}" in latex and r"\underline{70.0}" in latex
    assert r"none $\diamond$" in latex and r"0.1$\times$" in latex
    assert latex.startswith(r"% Table 2 analogue (arch vit\_small, scale tiny)")
    assert r"\caption{" in latex and latex.rstrip().endswith(r"\end{table}")
    markdown = table2(recs, "vit_small", SCALE)
    assert "| A&B_c 50%" in markdown


def test_label_requirement_and_training_cost_columns():
    recs = [
        make_record("erm"),
        make_record("dfr", extra_training=0.05),
        make_record("gdro"),
        make_record("slim-tr", extra_training=0.1),
        make_record("slim-tr", dataset="celeba-synth", extra_training=0.2),
    ]
    text = table2(recs, ARCH, SCALE)
    assert row(text, "ERM")[1:3] == ["none", "0×"]
    assert row(text, "DFR")[1:3] == ["validation", "0.05×"]
    assert row(text, "GDRO")[1:3] == ["training", "0×"]
    assert row(text, "SLIM_Tr")[1:3] == ["none ◇", "0.1×-0.2×"]  # a range over datasets
    assert [r[0] for r in body(text)] == ["ERM", "SLIM_Tr", "DFR", "GDRO"]  # the paper's row order


def test_slim_rows_use_the_default_budget_and_subset_fraction():
    recs = [
        make_record("slim-tr", worst=0.90),  # defaults
        make_record("slim-tr", worst=0.50, budget=TR_BUDGET * 2),
        make_record("slim-tr", worst=0.40, frac=TR_FRAC * 2),
        make_record("slim-tr", seed=1, worst=0.30, budget=TR_BUDGET * 2, frac=TR_FRAC * 2),  # in no table
    ]
    text = table2(recs, ARCH, SCALE)
    assert column(text, "SLIM_Tr", f"{WB} Worst") == "**90.0**"

    budget = table7(recs, ARCH, SCALE)
    amounts = header(budget).index(f"{WB} Amount")
    assert [(r[amounts], r[amounts + 1]) for r in body(budget)] == [
        (f"{TR_BUDGET}†", "**90.0**"),
        (str(TR_BUDGET * 2), "<u>50.0</u>"),
    ]
    assert "30.0" not in budget and "40.0" not in budget

    fraction = table8(recs, ARCH, SCALE)
    props = header(fraction).index(f"{WB} Prop%")
    assert [(r[props], r[props + 1]) for r in body(fraction)] == [
        (f"{trim_number(100 * TR_FRAC)}†", "**90.0**"),
        (trim_number(200 * TR_FRAC), "<u>40.0</u>"),
    ]


def test_both_slim_variants_and_the_subsets_that_replace_slim_have_rows():
    """One row per SLIM variant and per subset of SLIM's size; the stage ablations stay out of Table 2."""
    recs = [
        make_record("slim-val", worst=0.60),
        make_record("slim-val", worst=0.50, slim_kind=("authors", "none")),
        make_record("slim-val", worst=0.70, slim_kind=("paper", "random_subset")),
        make_record("slim-val", worst=0.80, slim_kind=("paper", "group_balanced_subset")),
        make_record("slim-val", worst=0.95, slim_kind=("paper", "true_screening")),
    ]
    recs[3]["labels_used"]["val_group_labels"] = True  # what the ablation's record declares
    text = table2(recs, ARCH, SCALE)
    assert [r[0] for r in body(text)] == ["SLIM_Val", "SLIM_Val (authors' code)", "SLIM_Val: group balanced subset",
                                          "SLIM_Val: random subset"]
    assert column(text, "SLIM_Val (authors' code)", f"{WB} Worst") == "50.0"
    assert row(text, "SLIM_Val: group balanced subset")[1].startswith("validation")
    assert "95.0" not in text


def test_sweep_marks_are_ranked_within_each_method():
    recs = [
        make_record("slim-tr", worst=0.9),
        make_record("slim-tr", worst=0.8, budget=TR_BUDGET + 8),
        make_record("slim-val", worst=0.6),
        make_record("slim-val", worst=0.5, budget=4),
    ]
    text = table7(recs, ARCH, SCALE)
    worst = header(text).index(f"{WB} Worst")
    assert [(r[0], r[worst]) for r in body(text)] == [
        ("SLIM_Tr", "**90.0**"),
        ("", "<u>80.0</u>"),
        ("SLIM_Val", "<u>50.0</u>"),  # budget 4 sorts before the default
        ("", "**60.0**"),
    ]


def test_imagenet9_uses_mixed_rand_split():
    recs = [make_record("erm", dataset="imagenet9-synth", worst=0.3, avg=0.6, split="test")]
    recs[0]["metrics"]["test_mixed_rand"] = {"worst_group_acc": 0.25, "avg_acc": 0.55}
    recs.append(make_record("erm", dataset="nico-synth", worst=0.2, avg=0.7))
    text = table3(recs, ARCH, SCALE)
    assert column(text, "ERM", "ImageNet9 (synth) Worst").strip("*") == "25.0"
    assert column(text, "ERM", "NICO (synth) Worst").strip("*") == "20.0"
    assert "ImageNet9 (synth) uses the test_mixed_rand split" in text.splitlines()[0]
    assert table2(recs, ARCH, SCALE) is None  # no binary dataset


def test_table4_counts_and_shares():
    recs = [make_record("slim-tr", seed=s) for s in range(2)] + [make_record("slim-val")]
    text = table4(recs, ARCH, SCALE)
    share = trim_number(TR_BUDGET / 10)  # query_fraction = budget / 1000, in percent
    assert column(text, "SLIM_Tr", f"{WB} Att.") == f"{TR_BUDGET} ({share}% of train)"
    assert column(text, "SLIM_Tr", f"{WB} Training") == f"{trim_number(TR_FRAC)}×"
    assert column(text, "SLIM_Val", f"{WB} Att.").endswith("of val)")
    assert table4([make_record("erm")], ARCH, SCALE) is None


def test_table5_aiou():
    recs = [
        make_record("erm", seed=0, aiou=(0.20, 0.45)),
        make_record("erm", seed=1, aiou=(0.30, 0.49)),
        make_record("slim-tr", aiou=(0.51, 0.60)),
        make_record("gdro"),  # no AIoU: no row
    ]
    text = table5(recs, ARCH, SCALE)
    assert row(text, "ERM")[1:] == ["<u>.25 ± .05</u>", "<u>.47 ± .02</u>"]  # (.20+.30)/2, |.05| each
    assert row(text, "SLIM_Tr")[1:] == ["**.51**", "**.60**"]
    assert "| GDRO" not in text
    assert table5([make_record("erm")], ARCH, SCALE) is None


def test_newest_rerun_of_a_seed_counts():
    recs = [
        make_record("erm", seed=0, worst=0.5, created="2024-01-01T00:00:00+00:00"),
        make_record("erm", seed=0, worst=0.7, created="2024-02-01T00:00:00+00:00"),
    ]
    assert column(table2(recs, ARCH, SCALE), "ERM", f"{WB} Worst") == "**70.0**"


def test_write_tables_markdown_and_latex(tmp_path):
    recs = [
        make_record("erm", worst=0.6),
        make_record("slim-tr", worst=0.8),
        make_record("slim-tr", worst=0.7, budget=TR_BUDGET * 2),
        make_record("erm", worst=0.5, scale="quick"),
        make_record("jtt", status="failed"),
    ]
    written = write_tables(recs, tmp_path / "md", "markdown")
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "README.md",
            "table2_binary_resnet18_quick.md",
            "table2_binary_resnet18_tiny.md",
            "table4_slim_cost_resnet18_tiny.md",
            "table7_budget_resnet18_tiny.md",
            "table8_subset_frac_resnet18_tiny.md",
            "versus_paper_resnet18_quick.md",
            "versus_paper_resnet18_tiny.md",
        ]
    )
    readme = (tmp_path / "md" / "README.md").read_text()
    assert "(table2_binary_resnet18_tiny.md)" in readme
    assert "Table 5 (attention accuracy), arch resnet18, scale tiny: skipped" in readme
    assert "Failed runs (excluded): waterbirds-synth/JTT/seed 0" in readme
    quick = (tmp_path / "md" / "table2_binary_resnet18_quick.md").read_text()
    assert "scale quick" in quick.splitlines()[0] and "60.0" not in quick

    latex = write_tables(recs, tmp_path / "tex", "latex")
    assert sorted(p.name for p in latex) == sorted(
        n.replace(".md", ".tex") for n in names if n != "README.md"
    )
    assert all(p.read_text().startswith("% Table") for p in latex)


def test_csv_tables_hold_each_cell_as_mean_std_and_seeds(tmp_path):
    """ERM worst .6 and .8 over two seeds: mean 70, population std 10; JTT one seed: std 0. Text columns are
    the table's; no emphasis, no caption; a file per table beside the others' names, no index."""
    recs = [make_record("erm", seed=0, worst=0.6, avg=0.9), make_record("erm", seed=1, worst=0.8, avg=0.7),
            make_record("jtt", worst=0.5, avg=0.75)]
    written = write_tables(recs, tmp_path / "csv", "csv")
    assert [p.name for p in written] == ["table2_binary_resnet18_tiny.csv", "versus_paper_resnet18_tiny.csv"]
    with written[0].open(newline="") as f:
        rows = {row["Method"]: row for row in csv.DictReader(f)}
    erm, jtt = rows["ERM"], rows["JTT"]
    assert (erm["Spuriousness label"], jtt["Spuriousness label"]) == ("none", "validation")
    assert [float(erm[f"{WB} Worst{suffix}"]) for suffix in ("", " std", " seeds")] == pytest.approx([70, 10, 2])
    assert [float(erm[f"{WB} Avg{suffix}"]) for suffix in ("", " std", " seeds")] == pytest.approx([80, 10, 2])
    assert [float(jtt[f"{WB} Worst{suffix}"]) for suffix in ("", " std", " seeds")] == pytest.approx([50, 0, 1])
    assert "**" not in written[0].read_text()


def test_bad_input_raises_one_line_errors(tmp_path):
    with pytest.raises(HarnessError, match="unknown table format 'html'"):
        write_tables([make_record()], tmp_path, "html")
    broken = make_record()
    del broken["arch"]
    with pytest.raises(HarnessError, match="lacks arch"):
        table2([broken], ARCH, SCALE)
    no_budget = make_record("slim-tr")
    no_budget["config"] = {}
    with pytest.raises(HarnessError, match="lacks config.hparams budget"):
        table2([no_budget], ARCH, SCALE)
    assert write_tables([], tmp_path / "empty") == [tmp_path / "empty" / "README.md"]


def diagnostics(scale: float) -> dict:
    """Stage diagnostics of one run, every value ``scale`` times a fixed base."""
    return {
        "oracle": {"answer_accuracy": 0.9 * scale, "yes_share": 0.4 * scale, "base_rate": 0.5},
        "expansion": {"auroc": 0.6 * scale, "knn_vote_auroc": 0.8},
        "screening": {"kept_correct": 0.7 * scale},
        "disentangling": {"env_nmi_spurious": 0.5 * scale, "env_purity_spurious": 0.9},
        "curation": {"min_group_share": 0.1 * scale, "min_group_share_distinct": 0.1 * scale,
                     "random_min_group_share": 0.05, "balanced_min_group_share": 0.25},
    }


def test_slim_stage_diagnostics_table_rows_per_variant_and_ablation():
    recs = [
        make_record("slim-val", seed=0, worst=0.4, diagnostics=diagnostics(1.0)),
        make_record("slim-val", seed=1, worst=0.6, diagnostics=diagnostics(0.5)),
        make_record("slim-val", worst=0.9, slim_kind=("authors", "none"), diagnostics=diagnostics(1.0)),
        make_record("slim-val", worst=0.7, slim_kind=("paper", "random_subset"), diagnostics=diagnostics(1.0)),
        make_record("slim-val", worst=0.1, budget=99, diagnostics=diagnostics(1.0)),  # not the default budget
    ]
    text = table_diagnostics(recs, ARCH, SCALE)
    rows = body(text)
    assert [r[2:4] for r in rows] == [["authors", "none"], ["paper", "none"], ["paper", "random_subset"]]
    head = header(text)
    paper = rows[1]
    # seeds 0 and 1: oracle acc 0.9 and 0.45 -> mean 67.5, std 22.5; AUROC .6 and .3 -> .45 +- .15
    assert paper[head.index("Oracle acc")] == "67.5 ± 22.5" and paper[head.index("Exp. AUROC")] == ".45 ± .15"
    assert paper[head.index("kNN AUROC")] == ".80 ± .00" and paper[head.index("Worst")] == "50.0 ± 10.0"
    assert paper[head.index("Balanced")] == "25.0 ± 0.0"
    # variant and ablation runs stay out of the main tables: SLIM_Val's worst is the paper runs' 50.0
    assert column(table2(recs, ARCH, SCALE), "SLIM_Val", f"{WB} Worst").strip("*") == "50.0 ± 10.0"
    assert table_diagnostics([make_record("slim-val")], ARCH, SCALE) is None


def test_tables_command_skips_records_that_are_not_objects(tmp_path, capsys):
    import json

    from harness.cli import main

    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "a.json").write_text(json.dumps(make_record("erm", worst=0.6)))
    (runs / "b.json").write_text("null")
    (runs / "c.json").write_text("[1, 2]")
    assert main(["tables", "--runs", str(tmp_path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: skipped {runs / 'b.json'}: null, not a run record (a JSON object)",
                   f"warning: skipped {runs / 'c.json'}: an array, not a run record (a JSON object)"]
    assert "Built from 1 run records." in (tmp_path / "tables" / "README.md").read_text()
    (runs / "a.json").write_text("3")
    assert main(["tables", "--runs", str(tmp_path)]) == 2  # nothing left: the usual one-line error
    assert capsys.readouterr().err.splitlines()[-1] == f"error: no run records (*.json) in {runs}"


def test_runs_answered_by_people_are_rows_of_their_own_marked_and_footnoted():
    """A SLIM run whose record says people answered (details.oracle.kind "human") is not averaged with the
    simulated oracle's runs of the same seed: its own row, marked ‡, and a footer line naming the people."""
    simulated = make_record("slim-val", worst=0.70, created="2024-01-01T00:00:00+00:00")
    human = make_record("slim-val", worst=0.60, created="2024-02-01T00:00:00+00:00")  # newer, same seed
    human["details"]["oracle"] = {"kind": "human", "annotators": ["bob", "alice"]}
    simulated["details"]["oracle"] = {"kind": "simulated"}
    text = table2([simulated, human], ARCH, SCALE)
    assert column(text, "SLIM_Val", f"{WB} Worst") == "**70.0**"
    assert column(text, "SLIM_Val‡", f"{WB} Worst") == "<u>60.0</u>"
    footer = [line for line in text.splitlines() if line.startswith("‡")]
    assert footer == ["‡: attention answers given by people (the records' details.oracle.kind is human), not the "
                      "simulated oracle; annotators: alice, bob."]
    assert [r[0] for r in body(table7([simulated, human], ARCH, SCALE))] == ["SLIM_Val", "SLIM_Val‡"]
    latex = table2([simulated, human], ARCH, SCALE, "latex")
    assert r"SLIM\_Val$^\ddagger$" in latex and r"{\footnotesize $^\ddagger$: attention answers" in latex
    assert not [line for line in table2([simulated], ARCH, SCALE).splitlines() if "‡" in line]


def test_the_paper_comparison_puts_the_papers_own_number_beside_each_method_it_reports():
    """ERM worst 60 and 70 (mean 65.0) beside the paper's Waterbirds ERM 62.6 ± 0.3: +2.4 points; avg 90 beside
    97.3: -7.3. The authors'-code variant has no row in the paper: blank; a dataset without paper facts (the
    csv layout) has no rows."""
    from harness.reporting.tables.versus_paper import table_versus_paper

    recs = [make_record("erm", seed=0, worst=0.6, avg=0.9, weighted=0.9),
            make_record("erm", seed=1, worst=0.7, avg=0.9, weighted=0.9),
            make_record("slim-val", worst=0.5, slim_kind=("authors", "none")),
            make_record("erm", dataset="csv", worst=0.1)]
    text = table_versus_paper(recs, ARCH, SCALE)
    erm = next(cells for cells in body(text) if cells[:2] == [WB, "ERM"])
    assert erm[2:] == ["65.0 ± 5.0", "62.6 ± 0.3", "+2.4", "90.0 ± 0.0", "97.3 ± 1.0", "-7.3"]
    authors = next(cells for cells in body(text) if cells[1] == "SLIM_Val (authors' code)")
    assert authors[3] == authors[4] == "–"
    assert all(cells[0] == WB for cells in body(text))
    assert table_versus_paper([make_record("erm", dataset="csv")], ARCH, SCALE) is None


def test_training_curves_table_reads_each_runs_epoch_history():
    """Two ERM seeds with val_avg_acc curves .5 .9 .8 .85 and .6 .7 .9 .9: best 90 (both), last .85 and .9
    (mean 87.5, population std 2.5), range of the last three .1 and .2 (15.0 ± 5.0), selected epochs 2 and 3,
    train loss first (1 + 3) / 2 and last (.1 + .3) / 2. A method without history (DFR) has no row."""
    from harness.reporting.tables.convergence import table_convergence

    recs = []
    for seed, (curve, losses, chosen) in enumerate((((.5, .9, .8, .85), (1.0, .5, .2, .1), 2),
                                                     ((.6, .7, .9, .9), (3.0, 1.0, .5, .3), 3))):
        rec = make_record("erm", seed=seed)
        rec["details"] = {"history": [{"epoch": i + 1, "train_loss": loss, "val_avg_acc": acc}
                                      for i, (acc, loss) in enumerate(zip(curve, losses, strict=True))]}
        rec["model_selection"] = {"criterion": "val_avg_acc", "epoch": chosen}
        recs.append(rec)
    recs.append(make_record("dfr"))
    text = table_convergence(recs, ARCH, SCALE)
    assert body(text) == [[WB, "ERM", "val_avg_acc", "4", "2-3", "2.000", "0.200", "90.0 ± 0.0", "87.5 ± 2.5",
                           "15.0 ± 5.0"]]
    assert table_convergence([make_record("dfr")], ARCH, SCALE) is None
