"""Command line: ``python -m harness <command>`` (also installed as ``slim-harness``).

The module imports only what builds the parser; each command imports the modules it runs when it runs
(torch alone takes seconds to import), so ``--help`` and a mistyped option answer at once. A test holds
this: building the parser imports no torch.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from tabulate import tabulate

from harness.core.disk import as_disk_full
from harness.core.errors import HarnessError
from harness.core.records import load_records, read_record
from harness.core.registry import METHODS
from harness.data.sizes import REAL_IMAGE_SIZE, SCALES
from harness.experiments.executors import check_jobs, make_executor
from harness.plugins import load_plugins
from harness.reporting.summaries import metrics_report, run_summary

# Choices of modules that import torch, repeated here for the parser (tests/test_cli.py holds them equal).
TABLE_FORMATS = ("markdown", "latex", "csv")  # harness.reporting.tables.FORMATS
BENCH_SIZES = ("small", "paper")  # harness.checks.bench.SIZES
BENCH_SECTIONS = ("train", "attention", "slim", "stem", "data", "cache")  # harness.checks.bench.SECTIONS
GPU_CHECK_SECTIONS = ("tests", "agreement", "bench")  # harness.checks.gpu_check


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="a name from `python -m harness datasets`")
    p.add_argument("--method", required=True, help="a name from `python -m harness methods`")
    p.add_argument("--arch", default=None,
                   help="efficientnet_lite0/1/2, resnet18/34/50, vit_tiny/small/base (default efficientnet_lite0; "
                        "resnet50 on real data at --scale paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", choices=SCALES, default="tiny", help="synthetic preset size (default tiny)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the generated data (synthetic presets)")
    p.add_argument("--data-root", help="folder of a real dataset (layouts: `datasets`), or of your metadata.csv "
                                       "for --dataset csv")
    p.add_argument("--image-size", type=int,
                   help=f"real datasets: decode and resize to this size (default {REAL_IMAGE_SIZE})")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. target=Blond_Hair; a synthetic preset's difficulty knob, e.g. "
                        "texture_contrast=0.2 (repeatable)")
    p.add_argument("--weights",
                   help="local pretrained weights file (timm .safetensors or weights-only .pth); "
                        "without it: --set pretrained=imagenet|standin|none")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a hyperparameter, e.g. --set epochs=5 (repeatable)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--out", type=Path, default=Path("out"), help="output folder (default ./out)")
    _add_cache_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_cache_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", type=Path,
                   help="machine-wide cache: stand-in weights and the real datasets' decoded images, tens of GB "
                        "for CelebA (default $SLIM_HARNESS_CACHE, else ~/.cache/slim-harness)")


def _config(args: argparse.Namespace) -> dict:
    from harness.engine.hparams_registry import parse_override
    from harness.experiments.runner import make_config

    overrides = dict(parse_override(o) for o in args.overrides)
    if args.weights:
        if not Path(args.weights).is_file():
            raise HarnessError(f"weights file not found: {args.weights}")
        overrides["pretrained"] = str(Path(args.weights).resolve())
    for key in ("budget", "subset_frac"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    oracle = getattr(args, "oracle", None)
    if oracle is not None:
        overrides["oracle"] = _oracle_setting(oracle)
    return make_config(
        dataset=args.dataset, method=args.method, arch=args.arch, seed=args.seed, scale=args.scale,
        data_seed=args.data_seed, data_root=args.data_root, image_size=args.image_size,
        data_options=dict(o.split("=", 1) for o in _checked_options(args.data_option)),
        overrides=overrides, device=args.device,
    )


def _oracle_setting(spec: str) -> str:
    """--oracle: 'simulated', or 'answers:PATH' with PATH made absolute (an existing file)."""
    if spec == "simulated":
        return spec
    if not spec.startswith("answers:"):
        raise HarnessError(f"--oracle {spec!r}: use 'simulated' or 'answers:PATH' (a log of people's answers)")
    path = Path(spec.removeprefix("answers:"))
    if not path.is_file():
        raise HarnessError(f"--oracle answers file not found: {path}")
    return f"answers:{path.resolve()}"


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.experiments.runner import execute

    path = execute(_config(args), args.out, show_progress=not args.quiet, save_model=args.save_model)
    print(run_summary(read_record(path)))
    print(path)  # the last line: scripts read the record's path from it
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from harness.experiments.predictions import recompute

    metrics, differing = recompute(args.record)
    print(metrics_report(metrics))
    if differing:
        print(f"error: {len(differing)} metric value(s) recomputed from the saved predictions differ from the "
              f"record: {'; '.join(differing)}", file=sys.stderr)
        return 1
    print(f"every metric equals the record's ({args.record})")
    return 0


def _cmd_annotate(args: argparse.Namespace) -> int:
    from harness.annotation.label_studio import export_tasks
    from harness.annotation.server import build_task, check_log_folder, open_listener, serve

    if args.label_studio_files is not None and args.label_studio is None:
        raise HarnessError("--label-studio-files: only with --label-studio DIR")
    config = _config(args)
    if args.label_studio:
        task = build_task(config, args.out, show_progress=not args.quiet)
        for path in export_tasks(task, args.label_studio, files_root=args.label_studio_files):
            print(path)
        return 0
    if args.log_dir is not None:
        check_log_folder(args.log_dir)
    with open_listener(args.host, args.port) as listener:  # a bad or taken port fails before any work
        task = build_task(config, args.out, show_progress=not args.quiet)
        serve(task, args.log_dir or args.out / "annotations" / task.attention, listener, args.host)
    return 0


def _read_logs(paths: list[Path]) -> list:
    from simulated_oracle import load_answers

    return [load_answers(path) for path in paths]


def _cmd_agreement(args: argparse.Namespace) -> int:
    from simulated_oracle import agreement

    report = agreement(_read_logs(args.logs), [str(p) for p in args.logs])
    print(f"consistency (share of the most frequent answer, paper Table 6): {100 * report['consistency']:.1f}% "
          f"over {report['instances']} instances ({report['unanimous']} unanimous)")
    rows = [(name, a["answers"], f"{a['seconds_mean']:.1f} +- {a['seconds_std']:.1f}")
            for name, a in report["annotators"].items()]
    print(tabulate(rows, headers=["log", "answers", "seconds per answer"], tablefmt="simple"))
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    """The merged log goes to ``--out``, its folder created if need be."""
    from simulated_oracle import merge_majority, save_log

    if args.out.is_dir():
        raise HarnessError(f"--out {args.out} is a folder: give the merged log's file name")
    save_log(merge_majority(_read_logs(args.logs), [str(p) for p in args.logs]), args.out)
    print(args.out)
    return 0


def _cmd_import_label_studio(args: argparse.Namespace) -> int:
    from harness.annotation.label_studio import import_export

    for path in import_export(args.export, args.out):
        print(path)
    return 0


def _checked_options(options: list[str]) -> list[str]:
    for o in options:
        if "=" not in o:
            raise HarnessError(f"--data-option {o!r} is not of the form key=value")
    return options


def _cmd_hparams(args: argparse.Namespace) -> int:
    """Every setting a run of the method uses by default, and where each value comes from."""
    from harness.engine.hparams_registry import hparam_table

    rows = [(key, repr(value), source) for key, value, source in
            hparam_table(args.method, args.dataset, args.scale, args.arch)]
    print(tabulate(rows, headers=["setting", "value", "from"], tablefmt="simple"))
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    rows = [(name, METHODS.get(name).title, METHODS.get(name).__module__) for name in METHODS]
    print(tabulate(rows, headers=["method", "shown as", "module"], tablefmt="simple"))
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from harness.data.catalog import list_datasets

    rows = [(e.name, e.description, e.needs) for e in list_datasets()]
    print(tabulate(rows, headers=["dataset", "what it is", "what it needs"], tablefmt="simple",
                   maxcolwidths=[None, 60, 60]))
    return 0


def _add_sweep_options(p: argparse.ArgumentParser, out_default: str | None, cpu_jobs: str = "1") -> None:
    p.add_argument("--out", type=Path, default=Path(out_default) if out_default else None,
                   help=f"output folder (default {out_default or 'out/<sweep name>'}); "
                        "starting again there resumes")
    p.add_argument("--executor", choices=("local", "submitit"), default="local",
                   help="local worker processes (default) or submitit jobs (the file's [submitit] table)")
    p.add_argument("--jobs", type=int, help=f"runs at a time (default: one per GPU, else {cpu_jobs})")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a hyperparameter of every run, e.g. --set epochs=1 (repeatable)")
    _add_cache_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--rerun-stale", action="store_true",
                   help="rerun the finished runs that another code version made (a resumed sweep refuses to "
                        "add runs beside them otherwise)")
    _add_allow_mixed(p)


def _add_allow_mixed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-mixed", action="store_true",
                   help="keep runs of other code versions and average them with this version's in one table "
                        "cell (the tables' index lists such cells)")


def _stale_policy(args: argparse.Namespace) -> str:
    return "rerun" if args.rerun_stale else "keep" if args.allow_mixed else "refuse"


def _sweep(args: argparse.Namespace, source: str, out_dir: Path | None):
    """Expand and run a sweep file; returns (spec, out folder, outcome)."""
    from harness.engine.hparams_registry import parse_override
    from harness.experiments.sweep_file import expand, load_sweep
    from harness.experiments.sweeps import run_sweep

    spec = load_sweep(source)
    out_dir = out_dir or Path("out") / spec.name
    overrides = dict(parse_override(o) for o in args.overrides)
    configs = expand(spec, device=args.device, extra_overrides=overrides)
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
    from harness.reporting.tables import write_tables

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
    from harness.reporting.tables import write_tables
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
    from harness.reporting.tables import write_tables

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


def _cmd_regression(args: argparse.Namespace) -> int:
    from harness.experiments.regression import run_regression

    check_jobs(args.jobs)
    return run_regression(config=args.config, baseline_path=args.baseline, update=args.update_baseline,
                          out_dir=args.out, jobs=args.jobs, show_progress=not args.quiet,
                          command=args.command_line)


def _cmd_bench(args: argparse.Namespace) -> int:
    from harness.checks.bench import run_bench

    return run_bench(args)


def _cmd_gpu_check(args: argparse.Namespace) -> int:
    from harness.checks.gpu_check import run_check

    return run_check(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate one configuration, write its record")
    _add_run_options(run)
    run.add_argument("--budget", type=int, help="SLIM: attention queries (total over classes)")
    run.add_argument("--subset-frac", type=float, help="SLIM: curated subset size as a share of the split")
    run.add_argument("--oracle", help="SLIM: 'simulated' (default) or 'answers:PATH', a log of people's answers "
                                      "(python -m harness annotate)")
    run.add_argument("--save-model", action="store_true",
                     help="also save the final weights as OUT/runs/<run id>.model.safetensors")
    run.set_defaults(func=_cmd_run)

    evaluate = sub.add_parser("evaluate", help="recompute a record's metrics from its saved predictions")
    evaluate.add_argument("record", type=Path, help="a run record, OUT/runs/<run id>.json")
    evaluate.set_defaults(func=_cmd_evaluate)

    annotate = sub.add_parser("annotate", help="SLIM: serve the run's attention questions to a person (web page)")
    _add_run_options(annotate)
    annotate.add_argument("--budget", type=int, help="attention queries (total over classes)")
    annotate.add_argument("--log-dir", type=Path,
                          help="where each annotator's <name>.jsonl goes (default <out>/annotations/<pass id>)")
    annotate.add_argument("--host", default="127.0.0.1",
                          help="interface to bind (default 127.0.0.1; any other adds a random token to the URL)")
    annotate.add_argument("--port", type=int, default=8765)
    annotate.add_argument("--label-studio", type=Path, metavar="DIR",
                          help="write Label Studio tasks and labelling config to DIR instead of serving")
    annotate.add_argument("--label-studio-files", type=Path, metavar="ROOT",
                          help="with --label-studio: write the images as PNG files under DIR/images and refer to "
                               "them as Label Studio local files below ROOT (its "
                               "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT), instead of data URLs")
    annotate.set_defaults(func=_cmd_annotate)

    annotations = sub.add_parser("annotations", help="annotators' logs: agreement, majority merge, Label Studio")
    tools = annotations.add_subparsers(dest="tool", required=True)
    agree = tools.add_parser("agreement", help="consistency of several annotators (paper Table 6)")
    agree.add_argument("logs", nargs="+", type=Path)
    agree.set_defaults(func=_cmd_agreement)
    merge = tools.add_parser("merge", help="one log of the majority answer per instance (ties: not sure)")
    merge.add_argument("logs", nargs="+", type=Path)
    merge.add_argument("--out", type=Path, required=True, help="the merged log to write")
    merge.set_defaults(func=_cmd_merge)
    ls_import = tools.add_parser("import-label-studio", help="a Label Studio JSON export -> one log per annotator")
    ls_import.add_argument("export", type=Path)
    ls_import.add_argument("--out", type=Path, required=True, help="folder of the <annotator>.jsonl logs")
    ls_import.set_defaults(func=_cmd_import_label_studio)
    sub.add_parser("datasets", help="list every dataset and what it needs").set_defaults(func=_cmd_datasets)
    sub.add_parser("methods", help="list every registered method").set_defaults(func=_cmd_methods)
    hparams = sub.add_parser("hparams", help="every default setting of a method on a dataset, and its source")
    hparams.add_argument("--method", required=True, help="a name from `python -m harness methods`")
    hparams.add_argument("--dataset", required=True, help="a name from `python -m harness datasets`")
    hparams.add_argument("--scale", choices=SCALES, default="tiny")
    hparams.add_argument("--arch", default=None, help="the architecture (default: the dataset's and scale's)")
    hparams.set_defaults(func=_cmd_hparams)

    sweep = sub.add_parser("sweep", help="run every configuration of a sweep file (resumable)")
    sweep.add_argument("file", help="a sweep TOML file, or a shipped config: quick, paper, regression")
    _add_sweep_options(sweep, None)
    sweep.set_defaults(func=_cmd_sweep)

    reproduce = sub.add_parser("reproduce", help="run a sweep, then write its tables, figures and README")
    reproduce.add_argument("--config", default="quick", help="sweep file or shipped config (default quick)")
    _add_sweep_options(reproduce, None, cpu_jobs="one per core")
    reproduce.add_argument("--update-results", action="store_true",
                           help="replace the committed results (results/reproduce for quick, else "
                                "results/<sweep name>) with this reproduction (on purpose only)")
    reproduce.set_defaults(func=_cmd_reproduce)

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
            _add_allow_mixed(p)
        p.set_defaults(func={"tables": _cmd_tables, "figures": _cmd_figures, "figure4": _cmd_figure4,
                             "premise": _cmd_premise}[name])

    regression = sub.add_parser("regression", help="compare worst-group/average accuracy with the baseline")
    regression.add_argument("--config", default="regression", help="sweep file (default: shipped regression)")
    regression.add_argument("--baseline", type=Path, default=Path("results/regression/baseline.json"))
    regression.add_argument("--update-baseline", action="store_true",
                            help="rewrite the baseline from this run (intentional changes only)")
    regression.add_argument("--out", type=Path,
                            help="keep the runs here (default: a temporary folder; "
                                 "an existing folder resumes)")
    regression.add_argument("--jobs", type=int, help="runs at a time (default: one per core)")
    _add_cache_option(regression)
    regression.add_argument("--quiet", action="store_true", help="no progress bars")
    regression.set_defaults(func=_cmd_regression)

    bench = sub.add_parser("bench", help="time ours beside plain PyTorch references")
    bench.add_argument("--size", choices=BENCH_SIZES, default=None, help="small (CPU default) or paper (GPU default)")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--sections", default=",".join(BENCH_SECTIONS),
                       help=f"comma list of {', '.join(BENCH_SECTIONS)}")
    bench.add_argument("--compile", action="store_true", help="also time torch.compile (default on CUDA)")
    bench.add_argument("--out", type=Path, help="also write the report to this markdown file")
    bench.set_defaults(func=_cmd_bench)
    gpu_check = sub.add_parser("gpu-check", help="the gpu tests, the bench and a run against the CPU's, on one GPU",
                               description="Every CUDA path of the harness, checked and timed on one GPU in one "
                                           "command (harness/checks/gpu_check.py).")
    gpu_check.add_argument("--out", type=Path, help="write the report (markdown) here too")
    gpu_check.add_argument("--device", default="auto", help="auto (default), cuda or cpu")
    gpu_check.add_argument("--sections", default=",".join(GPU_CHECK_SECTIONS),
                           help=f"comma list of {', '.join(GPU_CHECK_SECTIONS)}")
    gpu_check.add_argument("--quick", action="store_true", help="CI sizes (under a minute on two CPU cores); no (c)")
    gpu_check.add_argument("--budget", type=float, default=300.0,
                           help="seconds; a section that would start later is skipped and listed (default 300)")
    gpu_check.add_argument("--records", default="results/reproduce/runs",
                           help="committed CPU records to compare (c) with (default results/reproduce/runs)")
    gpu_check.add_argument("--cpu-bf16", action="store_true",
                           help="without CUDA: also run (c) on the CPU under bf16 autocast (slow: minutes)")
    gpu_check.add_argument("--commit", help="the commit this tree is at, for the report (default: git's, if any)")
    gpu_check.add_argument("--work", type=Path, help="keep the runs of (c) here (default: a temporary folder)")
    gpu_check.set_defaults(func=_cmd_gpu_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = "python -m harness " + shlex.join(argv)
    if getattr(args, "cache_dir", None) is not None:  # what the variable says, for this process and its workers
        os.environ["SLIM_HARNESS_CACHE"] = str(args.cache_dir.resolve())
    try:
        load_plugins()
        return args.func(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        full = as_disk_full(exc, getattr(args, "out", None) or Path.cwd())  # a write outside harness.core.disk
        if full is None:
            raise
        print(f"error: {full}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
