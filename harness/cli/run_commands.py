"""The commands of one run and of its annotations: run, evaluate, annotate, annotations, datasets, methods and
hparams."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from harness.cli.options import add_run_options, run_config
from harness.core.errors import HarnessError
from harness.core.records import read_record
from harness.core.registry import METHODS
from harness.data.sizes import SCALES
from harness.reporting.summaries import metrics_report, run_summary


def add_run_commands(sub: argparse._SubParsersAction) -> None:
    """The parsers of run, evaluate, annotate, annotations, datasets, methods and hparams."""
    run = sub.add_parser("run", help="train and evaluate one configuration, write its record")
    add_run_options(run)
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
    add_run_options(annotate)
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


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.experiments.runner import execute

    path = execute(run_config(args), args.out, show_progress=not args.quiet, save_model=args.save_model)
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
    config = run_config(args)
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
