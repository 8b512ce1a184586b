"""Every table into files, one per table and (arch, scale), and the index that lists them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from harness.core.errors import HarnessError
from harness.reporting.tables.budgeted import table4, table7, table8, table_diagnostics
from harness.reporting.tables.captions import failed_footer
from harness.reporting.tables.cells import get_style, markdown_escape, slug
from harness.reporting.tables.convergence import table_convergence
from harness.reporting.tables.paper import table2, table3, table5
from harness.reporting.tables.selection import Record, check_records, mixed_version_cells, setups
from harness.reporting.tables.versus_paper import table_versus_paper

log = logging.getLogger(__name__)


TABLES: tuple[tuple[str, str, Callable[..., str | None]], ...] = (
    ("table2_binary", "Table 2 (binary tasks)", table2),
    ("table3_multiclass", "Table 3 (multi-class tasks)", table3),
    ("versus_paper", "Tables 2 and 3 beside the paper's", table_versus_paper),
    ("table4_slim_cost", "Table 4 (SLIM's cost)", table4),
    ("table5_aiou", "Table 5 (attention accuracy)", table5),
    ("table7_budget", "Table 7 (SLIM vs annotation budget)", table7),
    ("table8_subset_frac", "Table 8 (SLIM vs subset fraction)", table8),
    ("slim_diagnostics", "SLIM stage diagnostics", table_diagnostics),
    ("training_curves", "Training curves (convergence)", table_convergence),
)


def write_tables(records: Iterable[Record], out_dir: Path, fmt: str = "markdown", *,
                 allow_mixed: bool = False) -> list[Path]:
    """Write every table with data, one file per table and (arch, scale); markdown adds an index README.md.

    Tables without any value are skipped; the index (markdown) or the log (latex, csv) says which. A cell whose
    runs come from two code versions is a HarnessError before anything is written, unless ``allow_mixed``:
    then the index lists those cells and each is logged as a warning.
    """
    style = get_style(fmt)
    records = check_records(records)
    mixed = mixed_version_cells(records)
    if mixed and not allow_mixed:
        more = f" (and {len(mixed) - 1} more cell(s))" if len(mixed) > 1 else ""
        raise HarnessError(f"table cell {mixed[0]} mixes code versions{more}: rerun the stale runs (sweep "
                           "--rerun-stale) or pass --allow-mixed to average them anyway")
    for line in mixed:
        log.warning("cell of mixed code versions (--allow-mixed): %s", line)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = {"markdown": ".md", "latex": ".tex", "csv": ".csv"}[fmt]
    written: list[Path] = []
    index: list[str] = []
    for arch, scale in setups(records):
        for stem, title, build in TABLES:
            text = build(records, arch, scale, fmt)
            if text is None:
                note = f"{title}, arch {arch}, scale {scale}: skipped, no run gives it a value"
                log.info(note)
                index.append(f"- {markdown_escape(note)}")
                continue
            path = out_dir / f"{stem}_{slug(arch)}_{slug(scale)}{suffix}"
            path.write_text(text)
            written.append(path)
            index.append(
                f"- [{title}, arch {markdown_escape(arch)}, scale {markdown_escape(scale)}]({path.name})"
            )
    if fmt == "markdown":
        failed = failed_footer([r for r in records if r["status"] != "ok"], style)
        lines = [
            "# Result tables",
            "",
            f"Built from {len(records)} run records.",
            "",
            *(index or ["- no records"]),
            *(["", "Cells that average runs of different code versions (--allow-mixed):", ""]
              + [f"- {markdown_escape(line)}" for line in mixed] if mixed else []),
        ]
        readme = out_dir / "README.md"
        readme.write_text("\n".join(lines + ([""] + failed if failed else [])) + "\n")
        written.append(readme)
    return written
