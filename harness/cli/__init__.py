"""Command line: ``python -m harness <command>`` (also installed as ``slim-harness``).

The package builds the parser, one module per group of commands (``harness.cli.run_commands`` and the
others), and imports only what that needs; each command imports the modules it runs when it runs (torch
alone takes seconds to import), so ``--help`` and a mistyped option answer at once. A test holds this:
building the parser imports no torch.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from harness.cli.check_commands import add_check_commands
from harness.cli.report_commands import add_report_commands
from harness.cli.run_commands import add_run_commands
from harness.cli.sweep_commands import add_sweep_commands
from harness.core.disk import as_disk_full
from harness.core.errors import HarnessError
from harness.plugins import load_plugins


def build_parser() -> argparse.ArgumentParser:
    """Every command's parser, one group of commands per module, in the order ``--help`` lists them."""
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_commands(sub)
    add_sweep_commands(sub)
    add_report_commands(sub)
    add_check_commands(sub)
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
