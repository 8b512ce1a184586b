"""``python -m harness gpu-check``: every CUDA path of the harness, checked and timed on one GPU in one command.

(a) tests: the tests marked ``gpu`` (tests/test_gpu.py: every CUDA branch of training, attention extraction,
    SLIM's stages, the image cache, last-layer retraining, the stem cache), in a pytest subprocess;
(b) bench: :mod:`harness.checks.bench` at the paper's sizes, each ratio against a plain reference measured in the
    same run, with the targets (ERM step >= 0.95x a plain compiled timm loop; CAMs >= 20x the grad-cam
    package and >= 0.9x forward-only inference; SLIM's stages after attention < 30 s at CelebA's size; the
    real-data path >= 0.8x GPU-resident) and the peak GPU memory of each section;
(c) agreement: ERM and SLIM_Val of the default preset (waterbirds-synth, tiny, seed 0) on the GPU, in bf16
    (the default) and in float32, against a float32 CPU run of the same configuration made alongside, within
    what the precision allows (:mod:`harness.checks.agreement`); the committed record is compared with that CPU run.

It is sized for a short lease of a GPU machine (planned for about 5 minutes on an H100 from a cold start; the
estimates in PAPER_SECONDS are not yet measured there): SLIM's stages
and the CPU run of (c) are CPU work, so they run in two processes beside the GPU sections, and a section that
would start after ``--budget`` seconds is skipped and listed. The report (markdown: date, command, device,
versions, then each section) is printed and written to ``--out`` after every section, so a run cut short
keeps what it measured. Without CUDA it runs on the CPU at small sizes and says so: the gpu tests with
``--gpu-tests-on-cpu``, the bench at its small sizes, and in (c) a float32 CPU run beside the committed
record (shown, not judged: a record made by older code may differ), and with ``--cpu-bf16`` a CPU run under
bf16 autocast, the GPU's precision, judged against it (a measured stand-in for the GPU; slow on CPUs without
bf16 units). ``--quick`` shrinks everything for CI (under a minute on two cores) and leaves (c) out.

Exit status: 0 when every test passed and every judged agreement holds; 1 otherwise (targets missed are
reported, not failed: they are to be explained); 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata as metadata
import multiprocessing
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate

from harness.checks.agreement import FLIP_RATE, Comparison, curation_rows, flip_model_rows, seed_envelope, unjudged
from harness.checks.bench import SIZES, bench_attention, bench_data, bench_slim, bench_stem, bench_train
from harness.core.errors import HarnessError
from harness.core.records import environment, read_record
from harness.core.threads import pinned_threads
from harness.engine.evaluation import predict_logits
from harness.experiments.runner import execute, make_config, make_context, resolve_device, run_id
from harness.models.precision import forced_precision

SECTIONS = ("tests", "agreement", "bench")
TESTS_SECONDS = 240.0  # the most the gpu tests may take (a hang must not eat the lease)
SOURCE = Path(__file__).resolve().parents[2]
GPU_TESTS = SOURCE / "tests" / "test_gpu.py"
# --quick on the CPU: the bench's small sizes shrunk again (CI runs it)
QUICK = dict(SIZES["small"], width=0.25, depth=2, batch=16, n=32, slim=(1500, 32))
# (c): the default preset's first cell of the reproduction (results/reproduce), ERM and SLIM_Val
AGREEMENT = dict(dataset="waterbirds-synth", scale="tiny", seed=0)
AGREEMENT_METHODS = ("erm", "slim-val")
# seconds each bench part takes at the paper's sizes on an H100 (estimates): a part that would end after the
# budget is skipped
PAPER_SECONDS = {"train": 150, "attention": 40, "stem": 10, "data": 20}
TARGETS = {  # what the bench should show on a GPU at the paper's sizes (the issue's)
    "train": ("ERM step vs a plain timm loop, torch.compile'd", 0.95, ">="),
    "package": ("CAMs vs the grad-cam package's GradCAM, batched", 20.0, ">="),
    "inference": ("CAMs vs forward-only inference", 0.9, ">="),
    "slim": ("SLIM's stages after attention, seconds", 30.0, "<"),
    "data": ("real-data path vs GPU-resident", 0.8, ">="),
}


@dataclass
class Section:
    title: str
    body: list[str] = field(default_factory=list)
    failed: bool = False
    seconds: float = 0.0

    def markdown(self) -> str:
        return "\n".join([f"## {self.title} ({self.seconds:.0f} s)", "", *self.body, ""])


def number(cell: str) -> float:
    """A bench table's cell ("1,234", "0.95x", "12.3") as a float."""
    return float(cell.replace(",", "").rstrip("x"))


def markdown_table(table: list[list[str]]) -> str:
    return tabulate(table[1:], headers=table[0], tablefmt="github", disable_numparse=True)


# ---- the report -----------------------------------------------------------------------------------------------
class Report:
    """The header and the sections so far, printed as they come and rewritten to ``out`` after each."""

    def __init__(self, header: list[str], out: Path | None) -> None:
        self.header, self.out, self.sections = header, out, []
        print("\n".join(header), flush=True)
        self.write()

    def add(self, section: Section) -> None:
        self.sections.append(section)
        print(section.markdown(), flush=True)
        self.write()

    def text(self) -> str:
        return "\n".join([*self.header, *(s.markdown() for s in self.sections)]) + "\n"

    def write(self) -> None:
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text(self.text())


def header(args: argparse.Namespace, device: torch.device) -> list[str]:
    env = environment(str(device))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        where = (f"{props.name} (compute capability {props.major}.{props.minor}, {props.total_memory / 2**30:.0f} "
                 f"GiB), CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    else:
        where = (f"CPU only ({platform.processor() or platform.machine()}, {env['cpu_count']} cores, one torch "
                 f"thread): no CUDA device, so everything runs on the CPU at small sizes")
    versions = ", ".join([*(f"{k} {env[k]}" for k in ("python", "torch", "timm", "numpy", "sklearn")),
                          *(f"{name} {metadata.version(name)}" for name in ("umap-learn", "grad-cam"))])
    return [f"# GPU check {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", "",
            f"Command: `{args.command_line}`  ",
            f"Device: {where}  ",
            f"Software: {versions}; {env['platform']}  ",
            f"Code: commit {args.commit or env['git_commit'] or 'unknown (no git checkout here)'}  ",
            f"Mode: {'quick (CI sizes)' if args.quick else 'full'}, sections {', '.join(args.sections)}, "
            f"budget {args.budget:.0f} s", ""]


# ---- (a) the tests marked gpu ----------------------------------------------------------------------------------
def run_tests(device: torch.device, quick: bool, timeout: float) -> Section:
    section = Section("(a) Tests marked gpu")
    if not GPU_TESTS.is_file():
        section.body.append(f"Not run: {GPU_TESTS} is not beside this harness (an installed copy without tests).")
        return section
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", str(GPU_TESTS), "-m", "gpu", "-q", "-p", "no:cacheprovider",
                   f"--junitxml={junit}"]
        if device.type != "cuda":
            command.append("--gpu-tests-on-cpu")
        if quick:  # whole runs of methods: tests/test_slim_methods.py and the others cover them on the CPU
            command += ["-k", "not methods_run_on_the_device"]
        try:
            done = subprocess.run(command, cwd=SOURCE, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            section.failed = True
            section.body.append(f"Did not finish within {timeout:.0f} s.")
            return section
        if not junit.is_file():
            section.failed = True
            section.body += ["pytest wrote no results:", "", "```", (done.stdout + done.stderr)[-3000:], "```"]
            return section
        outcomes = junit_outcomes(junit)
    counts = {kind: sum(1 for _, k, _ in outcomes if k == kind) for kind in ("passed", "failed", "skipped")}
    section.failed = counts["failed"] > 0 or done.returncode not in (0, 5)
    where = "on the GPU" if device.type == "cuda" else "on the CPU (--gpu-tests-on-cpu), small sizes"
    section.body.append(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped, {where}"
                        + ("; whole method runs left out (--quick)" if quick else "") + ".")
    for name, kind, message in outcomes:
        if kind != "passed":
            section.body.append(f"- {kind}: `{name}`: {message}")
    return section


def junit_outcomes(path: Path) -> list[tuple[str, str, str]]:
    """(test name, passed / failed / skipped, first line of the message) of each test case in a JUnit file."""
    outcomes = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        kind, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                kind = "skipped" if child.tag == "skipped" else "failed"
                text = (child.get("message") or child.text or "").strip()
                message = text.splitlines()[0][:300] if text else ""
        outcomes.append((case.get("name", "?"), kind, message))
    return outcomes


# ---- (b) the bench ----------------------------------------------------------------------------------------------
def bench_sizes(size: str) -> dict[str, Any]:
    """The bench's sizes: "paper", "small" (harness.checks.bench.SIZES) or "quick" (:data:`QUICK`)."""
    return QUICK if size == "quick" else SIZES[size]


def row_value(table: list[list[str]], match: str, column: int) -> float | None:
    """The number in ``column`` of the first row of ``table`` with a cell containing ``match``."""
    for row in table[1:]:
        if any(match in cell for cell in row):
            return number(row[column])
    return None


def targets(tables: dict[str, list[list[str]]], judged: bool) -> list[list[str]]:
    """The targets table: each target's measured value beside its goal, met or not (judged on a GPU only)."""
    measured: dict[str, list[tuple[str, float | None]]] = {key: [] for key in TARGETS}
    if "train" in tables:
        for arch in dict.fromkeys(row[0] for row in tables["train"][1:]):
            rows = [row for row in tables["train"][1:] if row[0] == arch]
            compiled = any("compile" in row[1] for row in rows)
            best = max(number(row[3]) for row in rows if row[1].startswith("ours"))
            measured["train"].append((f"{arch}, the better of ours eager and compiled" if compiled else
                                      f"{arch}, eager against the plain eager loop (not compiled here)", best))
    if "attention" in tables:
        for arch in dict.fromkeys(row[0] for row in tables["attention"][1:]):
            sub = [tables["attention"][0], *[row for row in tables["attention"][1:] if row[0] == arch]]
            measured["package"].append((arch, row_value(sub, "package GradCAM, batched", 3)))
            measured["inference"].append((arch, row_value(sub, "forward-only inference", 3)))
    if "slim" in tables:
        measured["slim"].append(("total", row_value(tables["slim"], "total", 1)))
    if "data" in tables:
        for match in ("moved whole", "streamed"):
            measured["data"].append((match, row_value(tables["data"], match, 2)))
    rows = [["target", "case", "measured", "goal", "met"]]
    for key, (what, goal, sense) in TARGETS.items():
        for case, value in measured[key]:
            met = "-" if value is None or not judged else \
                ("yes" if (value >= goal if sense == ">=" else value < goal) else "NO")
            rows.append([what, case, "-" if value is None else f"{value:g}", f"{sense} {goal:g}", met])
    return rows


def run_bench(device: torch.device, size: str, deadline: float, slim_job: AsyncResult | None) -> Section:
    cfg = bench_sizes(size)
    section = Section(f"(b) Bench at the {size} sizes")
    section.body.append(f"Sizes: {cfg}")
    cuda = device.type == "cuda"
    tables: dict[str, list[list[str]]] = {}
    parts: list[tuple[str, Callable[[], list[list[str]]]]] = [
        # on the GPU the first (CNN) architecture is also timed compiled against the plain compiled loop; the
        # second eager only (compiling ViT-B twice would take minutes of the lease)
        ("train", lambda: bench_train(dict(cfg, archs=cfg["archs"][:1]), device, cuda)
         + bench_train(dict(cfg, archs=cfg["archs"][1:]), device, False)[1:]),
        ("attention", lambda: bench_attention(cfg, device)),
        ("stem", lambda: bench_stem(cfg, device)),
        ("data", lambda: bench_data(cfg, device)),
    ]
    for name, run in parts:
        if time.monotonic() + (PAPER_SECONDS[name] if size == "paper" else 0) > deadline:
            section.body += [f"### {name}", "", f"Skipped: it would end after the budget (--budget; about "
                                                f"{PAPER_SECONDS[name]} s at the paper's sizes).", ""]
            continue
        started = time.monotonic()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        try:
            tables[name] = run()
        except Exception:  # a broken section is reported and the others still run
            section.failed = True
            section.body += [f"### {name}", "", "```", traceback.format_exc()[-2000:], "```", ""]
            continue
        peak = f"; peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB" if cuda else ""
        section.body += [f"### {name} ({time.monotonic() - started:.0f} s{peak})", "", markdown_table(tables[name]), ""]
    slim_note = "in a process of its own beside the GPU sections (CPU work, single-threaded)"
    try:
        if slim_job is not None:
            tables["slim"] = slim_job.get(timeout=max(1.0, deadline - time.monotonic()))
        elif time.monotonic() <= deadline:
            slim_note = "in this process"
            tables["slim"] = bench_slim(cfg)
    except multiprocessing.TimeoutError:
        section.body += ["### slim", "", "Did not finish within the budget (--budget): the stages take longer than "
                                         "the check ran.", ""]
    except Exception:
        section.failed = True
        section.body += ["### slim", "", "```", traceback.format_exc()[-2000:], "```", ""]
    if "slim" in tables:
        section.body += [f"### slim ({slim_note})", "", markdown_table(tables["slim"]), ""]
    judged = cuda and size == "paper"
    title = "### targets" + ("" if judged else " (shown, not judged: they are for a GPU at the paper's sizes)")
    section.body += [title, "", markdown_table(targets(tables, judged)), ""]
    return section


# ---- (c) agreement ----------------------------------------------------------------------------------------------
def agreement_configs(device: str) -> list[dict[str, Any]]:
    return [make_config(method=method, device=device, **AGREEMENT) for method in AGREEMENT_METHODS]


def run_configs(configs: list[dict[str, Any]], out_dir: Path, precision: str | None = None) -> list[dict[str, Any]]:
    """Run ``configs`` into ``out_dir`` (its own cache: nothing shared with another precision), forcing
    ``precision`` if given; their records, in order."""
    records = []
    for config in configs:
        if precision is None:
            path = execute(config, out_dir, cache_dir=out_dir / "cache", show_progress=False)
        else:
            with forced_precision(precision):
                path = execute(config, out_dir, cache_dir=out_dir / "cache", show_progress=False)
        records.append(read_record(path))
    return records


def erm_test_predictions(config: dict[str, Any], out_dir: Path, precision: str | None = None) -> torch.Tensor:
    """Test predictions of the ERM model cached by :func:`run_configs` in ``out_dir`` (the reference f_r)."""
    def predict() -> torch.Tensor:
        ctx = make_context(config, out_dir, cache_dir=out_dir / "cache", show_progress=False)
        model, _ = ctx.reference_model()
        return predict_logits(model, ctx.benchmark.splits["test"], ctx.device).argmax(1)

    if precision is None:
        return predict()
    with forced_precision(precision):
        return predict()


def committed(records_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The record of ``config`` in ``records_dir`` (by its run id: the device is not part of it), if any."""
    path = records_dir / f"{run_id(config)}.json"
    return read_record(path) if path.is_file() else None


def comparison_table(label: str, rows: list[Comparison]) -> list[list[str]]:
    verdict = {True: "yes", False: "NO", None: "-"}
    return [[label, r.what, r.reference, r.value, f"{r.change:+d}", "-" if r.allowed is None else str(r.allowed),
             verdict[r.ok]] for r in rows]


def compare_runs(reference: list[dict[str, Any]], candidate: list[dict[str, Any]], label: str, rate: float | None,
                 envelopes: dict[str, dict[str, int]]) -> list[list[str]]:
    """Table rows comparing each record of ``candidate`` with the same method's in ``reference``: ERM by the
    flip model at ``rate``, SLIM_Val by its curation and the seed envelope; ``rate`` None: shown, not judged."""
    rows = []
    for ref, new in zip(reference, candidate, strict=True):
        method = ref["method"]
        compared = flip_model_rows(ref, new, rate or 0.0) if method == "erm" else \
            curation_rows(ref, new, envelopes.get(method), rate or 0.0)
        rows += comparison_table(f"{label}: {method}", compared if rate is not None else unjudged(compared))
    return rows


def agreement_modes(device: torch.device, cpu_bf16: bool) -> list[tuple[str, str, str | None, str]]:
    """The runs (c) compares with the CPU's float32 one: (label, folder, precision forced or None for the
    device's own, precision). On the GPU its default bf16 and float32; on the CPU the bf16 stand-in if asked."""
    if device.type == "cuda":
        return [("GPU bf16", "gpu-bf16", None, "bf16"), ("GPU fp32", "gpu-fp32", "fp32", "fp32")]
    return [("CPU bf16 (stand-in)", "cpu-bf16", "bf16", "bf16")] if cpu_bf16 else []


def run_agreement(device: torch.device, args: argparse.Namespace, work: Path, cpu_job: AsyncResult | None) -> Section:
    section = Section("(c) Agreement with the CPU: ERM and SLIM_Val, waterbirds-synth tiny seed 0, defaults")
    records_dir = Path(args.records)
    cpu_configs = agreement_configs("cpu")
    stored = {seed: [committed(records_dir, make_config(method=method, device="cpu", **dict(AGREEMENT, seed=seed)))
                     for method in AGREEMENT_METHODS] for seed in (0, 1, 2)}
    envelopes = {method: seed_envelope(stored[0][i], [stored[s][i] for s in (1, 2) if stored[s][i]])
                 for i, method in enumerate(AGREEMENT_METHODS) if stored[0][i] and (stored[1][i] or stored[2][i])}
    table = [["run", "quantity", "CPU float32", "this run", "change", "allowed", "ok"]]
    notes = []
    configs, modes = agreement_configs(device.type), agreement_modes(device, args.cpu_bf16)
    runs = {label: run_configs(configs, work / folder, forced) for label, folder, forced, _ in modes}
    try:
        cpu = cpu_job.get(timeout=max(1.0, args.deadline - time.monotonic())) if cpu_job else \
            run_configs(cpu_configs, work / "cpu-fp32")
    except multiprocessing.TimeoutError:
        section.failed = True
        section.body.append("The CPU run to compare with did not finish within the budget (--budget).")
        return section
    if device.type == "cuda":
        notes.append("CPU float32: the same configuration run on this machine's CPU in this check (one thread), "
                     "beside the GPU sections.")
    reference = erm_test_predictions(cpu_configs[0], work / "cpu-fp32") if runs else None
    for label, folder, forced, precision in modes:
        table += compare_runs(cpu, runs[label], label, FLIP_RATE[precision], envelopes)
        changed = int((erm_test_predictions(configs[0], work / folder, forced) != reference).sum())
        notes.append(f"ERM's test predictions, {label} against the CPU's float32: {changed} of {len(reference)} "
                     f"differ (flip rate {changed / len(reference):.2%}; the tolerance allows for "
                     f"{FLIP_RATE[precision]:.1%}).")
    if all(stored[0]):
        same = [old["metrics"] == new["metrics"] for old, new in zip(stored[0], cpu, strict=True)]
        notes.append(f"The committed records in {records_dir} against this code's CPU run: "
                     + ", ".join(f"{m} {'equal' if eq else 'DIFFERENT'}" for m, eq in zip(AGREEMENT_METHODS, same,
                                                                                        strict=True))
                     + " (every metric; shown below, not judged: a stale record is not the GPU's fault).")
        table += compare_runs(cpu, stored[0], "committed record", None, envelopes)
    else:
        notes.append(f"No committed record of this configuration in {records_dir}.")
    section.failed = any(row[-1] == "NO" for row in table[1:])
    section.body += [*(f"- {note}" for note in notes), "",
                     "Allowed changes: ERM by the flip model (3 standard deviations of a binomial count of flipped "
                     f"predictions, flip rate {FLIP_RATE['bf16']:.0%} for bf16, {FLIP_RATE['fp32']:.1%} for float32 "
                     "on the GPU); SLIM_Val's queries and subset size exactly, its accuracies within the committed "
                     "seeds' envelope (its curation is discrete); see harness/checks/agreement.py.", "",
                     markdown_table(table), ""]
    return section


# ---- main -------------------------------------------------------------------------------------------------------
def cpu_reference(configs: list[dict[str, Any]], out_dir: str) -> list[dict[str, Any]]:
    """(c)'s CPU float32 runs, in a process of their own (see :func:`main`)."""
    return run_configs(configs, Path(out_dir))


def check_args(args: argparse.Namespace) -> argparse.Namespace:
    """The options harness.cli parsed (``--help`` needs no torch), checked; sections as a list."""
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        raise HarnessError(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.budget <= 0:
        raise HarnessError(f"--budget must be positive, got {args.budget:g}")
    return args


def run_check(args: argparse.Namespace) -> int:
    """``python -m harness gpu-check``."""
    args = check_args(args)
    device = resolve_device(args.device)
    started = time.monotonic()
    args.deadline = started + args.budget
    cuda = device.type == "cuda"
    size = "quick" if args.quick else "paper" if cuda else "small"
    report = Report(header(args, device), args.out)
    # On the GPU, the CPU work that needs no GPU (SLIM's stages at CelebA's size, the CPU run of (c)) starts
    # first, in processes of its own, and runs beside the GPU sections.
    pool = multiprocessing.get_context("spawn").Pool(2) if cuda and {"bench", "agreement"} & set(args.sections) \
        else None
    # on the CPU one thread, as every run of the harness uses (two on a loaded two-core machine are slower)
    with tempfile.TemporaryDirectory() as tmp, contextlib.nullcontext() if cuda else pinned_threads():
        work = args.work or Path(tmp)
        try:
            slim_job = pool.apply_async(bench_slim, (bench_sizes(size),)) \
                if pool and "bench" in args.sections else None
            cpu_job = pool.apply_async(cpu_reference, (agreement_configs("cpu"), str(work / "cpu-fp32"))) \
                if pool and "agreement" in args.sections and not args.quick else None
            for name in (s for s in SECTIONS if s in args.sections):
                report.add(run_section(name, device, size, args, work, slim_job, cpu_job))
        finally:
            if pool is not None:
                pool.terminate()  # what is still running past the budget is not waited for
    failed = [s.title for s in report.sections if s.failed]
    report.add(Section("Summary", [f"Total {time.monotonic() - started:.0f} s; "
                                   + (f"FAILED: {'; '.join(failed)}" if failed else "no failure") + "."],
                       seconds=time.monotonic() - started))
    return 1 if failed else 0


def run_section(name: str, device: torch.device, size: str, args: argparse.Namespace, work: Path,
                slim_job: AsyncResult | None, cpu_job: AsyncResult | None) -> Section:
    """One section, timed; an error inside it is reported as the section's failure."""
    if name == "agreement" and args.quick:
        return Section("(c) Agreement with the CPU", ["Not run with --quick: the runs of the default preset take "
                                                      "minutes on a small CPU."])
    if time.monotonic() > args.deadline:
        return Section(name, [f"Not run: out of time (--budget {args.budget:.0f} s)."], failed=True)
    clock = time.monotonic()
    try:
        if name == "tests":
            section = run_tests(device, args.quick, min(TESTS_SECONDS, max(60.0, args.deadline - clock)))
        elif name == "agreement":
            section = run_agreement(device, args, work, cpu_job)
        else:
            section = run_bench(device, size, args.deadline, slim_job)
    except Exception:
        section = Section(name, ["```", traceback.format_exc()[-3000:], "```"], failed=True)
    section.seconds = time.monotonic() - clock
    return section
