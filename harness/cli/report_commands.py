"""The commands that write from run records: tables, figures, figure4 and premise."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.options import add_allow_mixed
from harness.core.errors import HarnessError
from harness.core.records import load_records

TABLE_FORMATS = ("markdown", "latex", "csv")  # harness.reporting.tables.cells.FORMATS (imports numpy)


def add_report_commands(sub: argparse._SubParsersAction) -> None:
    """The parsers of tables, figures, figure4 and premise."""
    for name, what in (("tables", "paper-style result tables"), ("figures", "sweep plots and run figures"),
                       ("figure4", "paper Fig. 4 (neighbour consistency) averaged over SLIM runs"),
                       ("premise", "worst-group accuracy against ERM's correct attention on minority groups "
                                   "(a premise sweep)")):
        p = sub.add_parser(name, help=f"write {what} from run records")
        p.add_argument("--runs", type=Path, default=Path("out"),
                       help="a sweep's output folder or a folder of run records (default ./out)")
        p.add_argument("--out", type=Path, help=f"where to write them (default <runs folder>/../{name})")
        if name == "tables":
            p.add_argument("--format", choices=TABLE_FORMATS, default="markdown")
            add_allow_mixed(p)
        p.set_defaults(func={"tables": _cmd_tables, "figures": _cmd_figures, "figure4": _cmd_figure4,
                             "premise": _cmd_premise}[name])


def _runs_folder(path: Path) -> Path:
    """The folder of <run_id>.json records: ``path/runs`` when it exists (a sweep's output), else ``path``."""
    if (path / "runs").is_dir():
        return path / "runs"
    if not path.is_dir():
        raise HarnessError(f"runs folder {path} does not exist")
    return path


def _load_run_records(runs: Path) -> list[dict]:
    def skipped(path: Path, kind: str) -> None:
        print(f"warning: skipped {path}: {kind}, not a run record (a JSON object)", file=sys.stderr)

    records = load_records(runs, on_skip=skipped)
    if not records:
        raise HarnessError(f"no run records (*.json) in {runs}")
    return records


def _cmd_tables(args: argparse.Namespace) -> int:
    from harness.reporting.tables.index import write_tables

    runs = _runs_folder(args.runs)
    written = write_tables(_load_run_records(runs), args.out or runs.parent / "tables", args.format,
                           allow_mixed=args.allow_mixed)
    for path in written:
        print(path)
    return 0


def _cmd_figures(args: argparse.Namespace) -> int:
    from harness.reporting.figures import collect_run_figures, write_figures
    from slim.analysis import write_figure4  # a plug-in's own code, loaded by the command that needs it

    runs = _runs_folder(args.runs)
    out = args.out or runs.parent / "figures"
    written = write_figures(_load_run_records(runs), out) + collect_run_figures(runs, out)
    written += write_figure4(runs, out)
    for path in written:
        print(path)
    return 0


def _cmd_figure4(args: argparse.Namespace) -> int:
    from slim.analysis import write_figure4  # a plug-in's own code, loaded by the command that needs it

    runs = _runs_folder(args.runs)
    written = write_figure4(runs, args.out or runs.parent / "figure4")
    if not written:
        raise HarnessError(f"no SLIM run in {runs} saved Fig. 4 curves (figure4.json; runs with figures=true)")
    for path in written:
        print(path)
    return 0


def _cmd_premise(args: argparse.Namespace) -> int:
    from harness.experiments.premise import write_premise

    runs = _runs_folder(args.runs)
    for path in write_premise(_load_run_records(runs), args.out or runs.parent / "premise"):
        print(path)
    return 0

