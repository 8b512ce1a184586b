"""The commands that check the harness itself: regression, bench and gpu-check."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options import add_cache_option
from harness.experiments.executors import check_jobs

# Choices of modules that import torch, repeated here for the parser (tests/test_cli.py holds them equal).
BENCH_SIZES = ("small", "paper")  # harness.checks.bench.SIZES
BENCH_SECTIONS = ("train", "attention", "slim", "stem", "data", "generated", "cache")  # harness.checks.bench.SECTIONS
GPU_CHECK_SECTIONS = ("tests", "agreement", "bench")  # harness.checks.gpu_check


def add_check_commands(sub: argparse._SubParsersAction) -> None:
    """The parsers of regression, bench and gpu-check."""
    regression = sub.add_parser("regression", help="compare worst-group/average accuracy with the baseline")
    regression.add_argument("--config", default="regression", help="sweep file (default: shipped regression)")
    regression.add_argument("--baseline", type=Path, default=Path("results/regression/baseline.json"))
    regression.add_argument("--update-baseline", action="store_true",
                            help="rewrite the baseline from this run (intentional changes only)")
    regression.add_argument("--out", type=Path,
                            help="keep the runs here (default: a temporary folder; "
                                 "an existing folder resumes)")
    regression.add_argument("--jobs", type=int, help="runs at a time (default: one per core)")
    add_cache_option(regression)
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

