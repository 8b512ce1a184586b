"""The commands that run a sweep: sweep and reproduce."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from harness.cli.options import add_allow_mixed, add_cache_option
from harness.experiments.executors import make_executor


def add_sweep_commands(sub: argparse._SubParsersAction) -> None:
    """The parsers of sweep and reproduce."""
    sweep = sub.add_parser("sweep", help="run every configuration of a sweep file (resumable)")
    sweep.add_argument("file", help="a sweep TOML file, or a shipped config: quick, paper, regression")
    add_sweep_options(sweep, None)
    sweep.set_defaults(func=_cmd_sweep)

    reproduce = sub.add_parser("reproduce", help="run a sweep, then write its tables, figures and README")
    reproduce.add_argument("--config", default="quick", help="sweep file or shipped config (default quick)")
    add_sweep_options(reproduce, None, cpu_jobs="one per core")
    reproduce.add_argument("--update-results", action="store_true",
                           help="replace the committed results (results/reproduce for quick, else "
                                "results/<sweep name>) with this reproduction (on purpose only)")
    reproduce.set_defaults(func=_cmd_reproduce)


def add_sweep_options(p: argparse.ArgumentParser, out_default: str | None, cpu_jobs: str = "1") -> None:
    p.add_argument("--out", type=Path, default=Path(out_default) if out_default else None,
                   help=f"output folder (default {out_default or 'out/<sweep name>'}); "
                        "starting again there resumes")
    p.add_argument("--executor", choices=("local", "submitit"), default="local",
                   help="local worker processes (default) or submitit jobs (the file's [submitit] table)")
    p.add_argument("--jobs", type=int, help=f"runs at a time (default: one per GPU, else {cpu_jobs})")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a hyperparameter of every run, e.g. --set epochs=1 (repeatable)")
    for key in ("datasets", "methods"):
        p.add_argument(f"--{key}", type=lambda text: [name for name in text.split(",") if name],
                       metavar="NAME[,NAME]", help=f"run only the file's runs of these {key} (the same runs: "
                                                  "the whole file later resumes from them)")
    add_cache_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--rerun-stale", action="store_true",
                   help="rerun the finished runs that another code version made (a resumed sweep refuses to "
                        "add runs beside them otherwise)")
    add_allow_mixed(p)


def _stale_policy(args: argparse.Namespace) -> str:
    return "rerun" if args.rerun_stale else "keep" if args.allow_mixed else "refuse"


def _sweep(args: argparse.Namespace, source: str, out_dir: Path | None):
    """Expand and run a sweep file; returns (spec, out folder, outcome)."""
    from harness.engine.hparams_registry import parse_override
    from harness.experiments.sweep_file import expand, load_sweep, only
    from harness.experiments.sweeps import run_sweep

    spec = load_sweep(source)
    out_dir = out_dir or Path("out") / spec.name
    overrides = dict(parse_override(o) for o in args.overrides)
    configs = only(only(expand(spec, device=args.device, extra_overrides=overrides), "dataset", args.datasets),
                   "method", args.methods)
    executor = make_executor(args.executor, out_dir=out_dir, jobs=args.jobs, device=args.device,
                             submitit_options=spec.submitit, show_progress=not args.quiet)
    try:
        outcome = run_sweep(configs, out_dir, executor, name=spec.name, show_progress=not args.quiet,
                            stale=_stale_policy(args))
    finally:
        executor.close()
    return spec, out_dir, outcome


def _sweep_exit(outcome) -> int:
    if outcome.failed:
        print(f"error: {len(outcome.failed)} run(s) failed; start the same command again to retry them",
              file=sys.stderr)
        return 1
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from harness.experiments.sweeps import stage_report, sweep_records
    from harness.reporting.tables.index import write_tables

    _, out_dir, outcome = _sweep(args, args.file, args.out)
    print(f"stage times:\n{stage_report(outcome.stage_seconds)}")
    written = write_tables(sweep_records(out_dir, outcome.run_ids), out_dir / "tables", "markdown",
                           allow_mixed=args.allow_mixed)
    print(f"{len(outcome.run_ids)} runs in {out_dir / 'runs'}; tables: {written[-1] if written else 'none'}")
    return _sweep_exit(outcome)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    """Recompute the grid into a fresh folder (never results/), draw tables and figures, compare every table
    cell with the committed results, and with ``--update-results`` replace results/reproduce with it."""
    from harness.experiments.reproduction import (
        append_comparison,
        check_out_dir,
        committed_folder,
        update_results,
        write_reproduction_readme,
    )
    from harness.experiments.sweeps import stage_report, sweep_records
    from harness.reporting.figures import collect_run_figures, write_figures
    from harness.reporting.tables.index import write_tables
    from slim.analysis import write_figure4  # a plug-in's own code, loaded by the command that needs it

    started = time.monotonic()
    check_out_dir(args.out)
    if args.jobs is None and args.executor == "local" and _on_cpu(args.device):
        args.jobs = os.cpu_count() or 1  # one single-threaded run per core
    spec, out_dir, outcome = _sweep(args, args.config, args.out)
    records = sweep_records(out_dir, outcome.run_ids)
    stage_seconds = dict(outcome.stage_seconds)
    clock = time.monotonic()
    tables = [p for fmt in ("markdown", "latex")
              for p in write_tables(records, out_dir / "tables", fmt, allow_mixed=args.allow_mixed)]
    stage_seconds["tables"] = time.monotonic() - clock
    clock = time.monotonic()
    figures = write_figures(records, out_dir / "figures")
    figures += collect_run_figures(out_dir / "runs", out_dir / "figures")
    figures += write_figure4(out_dir / "runs", out_dir / "figures")
    stage_seconds["figures"] = time.monotonic() - clock
    readme = write_reproduction_readme(
        out_dir, spec=spec, outcome=outcome, records=records, stage_seconds=stage_seconds,
        wall_seconds=time.monotonic() - started, command=args.command_line,
        device=args.device, outputs=tables + figures,
    )
    committed = committed_folder(spec.name)
    summary = append_comparison(readme, records, committed)
    print(f"stage times (tables and figures included):\n{stage_report(stage_seconds)}")
    print(summary)
    print(f"reproduction written to {out_dir} (summary: {readme})")
    if args.update_results:
        print(f"results rewritten: {update_results(out_dir, committed)}")
    return _sweep_exit(outcome)


def _on_cpu(device: str) -> bool:
    import torch

    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())
