"""Options several commands share: a run's configuration, the cache folder, mixing code versions."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.core.errors import HarnessError
from harness.data.sizes import REAL_IMAGE_SIZE, SCALES


def add_run_options(p: argparse.ArgumentParser) -> None:
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
    add_cache_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_cache_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", type=Path,
                   help="machine-wide cache: stand-in weights and the real datasets' decoded images, tens of GB "
                        "for CelebA (default $SLIM_HARNESS_CACHE, else ~/.cache/slim-harness)")


def run_config(args: argparse.Namespace) -> dict:
    from harness.engine.hparams_registry import parse_override
    from harness.experiments.runner import make_config

    overrides = dict(parse_override(o) for o in args.overrides)
    if args.weights:
        if not Path(args.weights).is_file():
            raise HarnessError(f"weights file not found: {args.weights}")
        overrides["pretrained"] = str(Path(args.weights).resolve())
    # The options of the methods that ask attention queries on a budget (``Method.budgeted``), each a setting of
    # the run. They are the harness's, not a plug-in's: the parser is built before any plug-in is imported (the
    # plug-ins import torch, and --help answers at once).
    for key in ("budget", "subset_frac"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    oracle = getattr(args, "oracle", None)
    if oracle is not None:
        overrides["oracle"] = oracle_setting(oracle)
    return make_config(
        dataset=args.dataset, method=args.method, arch=args.arch, seed=args.seed, scale=args.scale,
        data_seed=args.data_seed, data_root=args.data_root, image_size=args.image_size,
        data_options=dict(o.split("=", 1) for o in checked_options(args.data_option)),
        overrides=overrides, device=args.device,
    )


def oracle_setting(spec: str) -> str:
    """--oracle: 'simulated', or 'answers:PATH' with PATH made absolute (an existing file)."""
    if spec == "simulated":
        return spec
    if not spec.startswith("answers:"):
        raise HarnessError(f"--oracle {spec!r}: use 'simulated' or 'answers:PATH' (a log of people's answers)")
    path = Path(spec.removeprefix("answers:"))
    if not path.is_file():
        raise HarnessError(f"--oracle answers file not found: {path}")
    return f"answers:{path.resolve()}"


def checked_options(options: list[str]) -> list[str]:
    for o in options:
        if "=" not in o:
            raise HarnessError(f"--data-option {o!r} is not of the form key=value")
    return options


def add_allow_mixed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-mixed", action="store_true",
                   help="keep runs of other code versions and average them with this version's in one table "
                        "cell (the tables' index lists such cells)")

