"""What makes ``python -m harness reproduce`` a reproduction: it recomputes into a folder of its own (never
the committed ``results/reproduce``, whose records would otherwise count as finished runs), ends with a
comparison of every table cell against the committed results, and replaces them only when asked
(``--update-results``); and the README a reproduction writes beside its results: when, how, on what."""
from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path
from typing import Any

import torch

from harness.core.errors import HarnessError
from harness.core.records import load_records, now_iso
from harness.experiments.sweep_file import CONFIG_DIR, SweepSpec
from harness.experiments.sweeps import SweepOutcome
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


def machine_description(device: str) -> str:
    """CPU model and core count, and the GPU when the sweep used one."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    if device != "cpu" and torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return f"{text}; GPU: {torch.cuda.device_count()} x {', '.join(names)}"
    return f"{text}; no GPU used"


def display_path(source: str) -> str:
    """``source`` relative to the repository (shipped configs) or the working directory when under one."""
    path = Path(source).resolve()
    for base in (CONFIG_DIR.parents[2], Path.cwd()):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return source


def write_reproduction_readme(out_dir: Path, *, spec: SweepSpec, outcome: SweepOutcome,
                              records: list[dict[str, Any]], stage_seconds: dict[str, float],
                              wall_seconds: float, command: str, device: str, outputs: list[Path]) -> Path:
    """OUT/README.md: when, how and on what the results were made, stage times, and links to them."""
    ok = sum(r.get("status") == "ok" for r in records)
    links = [p.relative_to(out_dir) for p in outputs if p.is_relative_to(out_dir)]
    per_run = sum(link.parent.name == "runs" for link in links)
    lines = [
        f"# Reproduction: {spec.name}",
        "",
        *([spec.description.strip(), ""] if spec.description.strip() else []),
        f"- date: {now_iso()}",
        f"- command: `{command}`",
        f"- machine: {machine_description(device)}",
        f"- software: python {platform.python_version()}, torch {torch.__version__}",
        f"- sweep file: {display_path(spec.source)}",
        f"- runs: {len(outcome.run_ids)} ({ok} ok, {len(outcome.failed)} failed); "
        f"{len(outcome.skipped)} were finished by an earlier start and not rerun",
        f"- wall time of this start: {wall_seconds / 60:.1f} min",
        "",
        "## Time per stage (this start)",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *(f"| {stage} | {seconds:.1f} |" for stage, seconds in stage_seconds.items()),
        f"| total | {sum(stage_seconds.values()):.1f} |",
        "",
        "## Outputs",
        "",
        *(f"- [{link}]({link})" for link in links if link.parent.name != "runs"),
        "",
        f"Figures the runs drew (attention spaces, elbow curves): {per_run} files in `figures/runs/`. "
        "Run records (one JSON file per run, named by its config hash) are in `runs/`.",
    ]
    if outcome.failed:
        lines += ["", "## Failed runs", ""]
        lines += [f"- {o.label} (`{o.run_id}`): {o.error}" for o in outcome.failed]
    path = Path(out_dir) / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
