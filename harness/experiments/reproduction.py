"""What makes ``python -m harness reproduce`` a reproduction: it recomputes into a folder of its own (never
the committed ``results/reproduce``, whose records would otherwise count as finished runs), ends with a
comparison of every table cell against the committed results, and replaces them only when asked
(``--update-results``)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.records import load_records
from harness.reporting.comparison import compare, markdown

RESULTS = Path("results")
COPIED = ("README.md", "sweep.json", "tables", "figures", "runs")


def committed_folder(sweep_name: str) -> Path:
    """Where the committed results of a sweep live: results/reproduce for the default grid (``quick``),
    results/<name> for the others (e.g. results/binary-quick)."""
    return RESULTS / ("reproduce" if sweep_name == "quick" else sweep_name)


def check_out_dir(out_dir: Path | None) -> None:
    """Refuse an output folder inside the committed results: their records are references, not a cache."""
    if out_dir is None:
        return
    resolved, results = Path(out_dir).resolve(), RESULTS.resolve()
    if resolved == results or results in resolved.parents:
        raise HarnessError(f"--out {out_dir} lies in {RESULTS}/: a reproduction recomputes into its own folder "
                           "(default out/<sweep name>); --update-results copies it there afterwards")


def append_comparison(readme: Path, records: list[dict[str, Any]], committed: Path) -> str:
    """Append the cell-by-cell comparison with ``committed`` to the reproduction's README; return its last line."""
    old = load_records(Path(committed) / "runs")
    if not old:
        text = f"No committed results in {committed}/ to compare with."
    else:
        text = markdown(compare(old, records))
    with open(readme, "a") as handle:
        handle.write(f"\n## Against the committed results ({committed}/)\n\n"
                     "Test accuracy in %, mean ± std over seeds; 'within noise' means the two means differ by "
                     "at most two standard errors of their difference (at least half a point); 'identical "
                     "records' counts the seeds whose reproduced record equals the committed one to the bit "
                     "(metrics and details, SLIM's curated subset among them).\n\n"
                     f"{text}\n")
    return text.splitlines()[-1]


def update_results(out_dir: Path, committed: Path) -> Path:
    """Replace ``committed`` with the reproduction's README, sweep summary, tables, figures and records."""
    committed.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source, target = Path(out_dir) / name, committed / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if source.is_dir():
            # a run's own pictures, predictions and weights stay out (figures/runs holds the first seed's
            # pictures): the records, query logs and Figure 4 data are the reference, at a size a repository
            # can hold
            skipped = ("*.log", "*.lock", ".*") + (("*.png", "*.npz", "*.safetensors") if name == "runs" else ())
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(*skipped))
        elif source.exists():
            shutil.copy2(source, target)
    return committed
