"""Command line: ``python -m harness <command>`` (also installed as ``slim-harness``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.hparams_registry import SCALES, parse_override


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="a name from `python -m harness datasets`")
    p.add_argument("--method", required=True, help="erm, jtt, gdro, dfr, slim-tr or slim-val")
    p.add_argument("--arch", default="resnet18", help="resnet18/34/50, vit_tiny/small/base (default resnet18)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", choices=SCALES, default="tiny", help="synthetic preset size (default tiny)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the generated data (synthetic presets)")
    p.add_argument("--data-root", help="folder of a real dataset in its published layout")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. target=Blond_Hair (repeatable)")
    p.add_argument("--weights", help="local pretrained weights file (timm .safetensors/.pth) instead of the stand-in")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a hyperparameter, e.g. --set epochs=5 (repeatable)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--out", type=Path, default=Path("out"), help="output folder (default ./out)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.runner import execute, make_config

    overrides = dict(parse_override(o) for o in args.overrides)
    if args.weights:
        if not Path(args.weights).is_file():
            raise HarnessError(f"weights file not found: {args.weights}")
        overrides["pretrained"] = str(Path(args.weights).resolve())
    for key in ("budget", "subset_frac"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    config = make_config(
        dataset=args.dataset, method=args.method, arch=args.arch, seed=args.seed, scale=args.scale,
        data_seed=args.data_seed, data_root=args.data_root,
        data_options=dict(o.split("=", 1) for o in _checked_options(args.data_option)),
        overrides=overrides, device=args.device,
    )
    path = execute(config, args.out, show_progress=not args.quiet)
    print(path)
    return 0


def _checked_options(options: list[str]) -> list[str]:
    for o in options:
        if "=" not in o:
            raise HarnessError(f"--data-option {o!r} is not of the form key=value")
    return options


def _cmd_datasets(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from harness.datasets import list_datasets

    rows = [(e.name, e.description, e.needs) for e in list_datasets()]
    print(tabulate(rows, headers=["dataset", "what it is", "what it needs"], tablefmt="simple",
                   maxcolwidths=[None, 60, 60]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate one configuration, write its record")
    _add_run_options(run)
    run.add_argument("--budget", type=int, help="SLIM: attention queries (total over classes)")
    run.add_argument("--subset-frac", type=float, help="SLIM: curated subset size as a share of the split")
    run.set_defaults(func=_cmd_run)
    sub.add_parser("datasets", help="list every dataset and what it needs").set_defaults(func=_cmd_datasets)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
