"""Sweep files: grid expansion, config hashing, resume after kill -9, a failing run mid-sweep."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness import cli
from harness.core.errors import HarnessError
from harness.core.records import record_path
from harness.core.versions import code_version, current_version
from harness.engine.hparams_registry import default_hparams
from harness.experiments.executors import LocalExecutor
from harness.experiments.runner import make_config, run_id
from harness.experiments.sweep_file import expand, load_sweep, parse_sweep
from harness.experiments.sweeps import (
    TimeLeft,
    claim_owner,
    claim_path,
    claim_run,
    format_duration,
    is_finished,
    release_run,
    run_sweep,
    sweep_records,
)
from harness.reporting.tables.index import write_tables

ROOT = Path(__file__).resolve().parents[1]
FAST = {"epochs": 1, "pretrained": "none", "width": 0.25}  # ERM trains its own 1-epoch model: seconds


pytestmark = pytest.mark.usefixtures("one_thread")


def grid(**changes) -> dict:
    raw = {"name": "t", "scale": "tiny", "datasets": ["waterbirds-synth"], "methods": ["erm"],
           "archs": ["resnet18"], "seeds": [0, 1], "overrides": dict(FAST)}
    raw.update(changes)
    return raw


def toml_text(raw: dict) -> str:
    """TOML for the test grids: top-level scalars and lists, tables of scalars and of tables of scalars."""
    def value(v):
        return str(v).lower() if isinstance(v, bool) else json.dumps(v)

    lines, tables = [], []
    for key, entry in raw.items():
        if not isinstance(entry, dict):
            lines.append(f"{key} = {value(entry)}")
            continue
        tables.append(f"[{key}]")
        tables += [f"{k} = {value(v)}" for k, v in entry.items() if not isinstance(v, dict)]
        for name, sub in ((k, v) for k, v in entry.items() if isinstance(v, dict)):
            tables += [f'[{key}."{name}"]', *(f"{k} = {value(v)}" for k, v in sub.items())]
    return "\n".join(lines + tables) + "\n"


# ------------------------------------------------------------------------------------------ expansion


def test_expansion_counts_and_slim_sweeps_at_defaults():
    raw = grid(datasets=["waterbirds-synth", "isic-synth"], methods=["erm", "slim-tr", "slim-val"],
               archs=["resnet18", "vit_tiny"], seeds=[0, 1, 2], overrides={})
    tr = default_hparams("slim-tr", "waterbirds-synth", "tiny")
    val = default_hparams("slim-val", "waterbirds-synth", "tiny")
    raw["slim_sweeps"] = {
        "datasets": ["waterbirds-synth"], "archs": ["resnet18"], "seeds": [0, 1],
        # slim-tr's fraction list holds its default: that run is the main grid's, not a new one (the default
        # budget is a share of the split, None in the config, so a listed budget is always a new run)
        "budget": {"slim-tr": [10, 30], "slim-val": [4, 28]},
        "subset_frac": {"slim-tr": [tr["subset_frac"], 0.2], "slim-val": [0.15]},
    }
    configs = expand(parse_sweep(raw), device="cpu")
    # main grid 2 datasets x 3 methods x 2 archs x 3 seeds = 36; sweeps on 1 dataset x 1 arch x 2 seeds:
    # slim-tr 2 budgets + 1 new fraction, slim-val 2 budgets + 1 fraction -> (3 + 3) * 2 = 12
    assert len(configs) == 36 + 12
    assert len({run_id(c) for c in configs}) == len(configs)
    counts = Counter(c["method"] for c in configs)
    assert counts == {"erm": 12, "slim-tr": 12 + 6, "slim-val": 12 + 6}
    tr_settings = {(c["hparams"]["budget"], c["hparams"]["subset_frac"]) for c in configs
                   if c["method"] == "slim-tr" and c["dataset"] == "waterbirds-synth"
                   and c["arch"] == "resnet18" and c["seed"] == 0}
    b, f = tr["budget"], tr["subset_frac"]
    assert b is None
    assert tr_settings == {(b, f), (10, f), (30, f), (b, 0.2)}  # one axis moves at a time
    val_settings = {(c["hparams"]["budget"], c["hparams"]["subset_frac"]) for c in configs
                    if c["method"] == "slim-val" and c["seed"] == 1 and c["arch"] == "resnet18"
                    and c["dataset"] == "waterbirds-synth"}
    assert val_settings == {(val["budget"], val["subset_frac"]), (4, val["subset_frac"]),
                            (28, val["subset_frac"]), (val["budget"], 0.15)}
    # ERM (the reference models) first; per method, the default-setting runs before the sweep values
    methods = [c["method"] for c in configs]
    assert methods[:12] == ["erm"] * 12 and methods.index("slim-val") > methods.index("slim-tr")
    tr_runs = [c for c in configs if c["method"] == "slim-tr"]
    own = {ds: default_hparams("slim-tr", ds, "tiny") for ds in ("waterbirds-synth", "isic-synth")}
    defaults = [(c["hparams"]["budget"], c["hparams"]["subset_frac"])
                == (own[c["dataset"]]["budget"], own[c["dataset"]]["subset_frac"]) for c in tr_runs]
    assert defaults == [True] * 12 + [False] * 6
    # consecutive ERM runs differ in arch, so two workers pretrain / train different things first
    assert configs[0]["arch"] != configs[1]["arch"]


def test_override_precedence_and_device():
    raw = grid(datasets=["waterbirds-synth", "isic-synth"], methods=["erm", "gdro"],
               archs=["resnet18", "vit_tiny"], seeds=[0], overrides={"epochs": 3, "lr": 0.1},
               overrides_by_arch={"vit_tiny": {"epochs": 4}},
               overrides_by_dataset={"isic-synth": {"epochs": 5}},
               overrides_by_method={"gdro": {"epochs": 6}})
    configs = expand(parse_sweep(raw), device="cpu", extra_overrides={"lr": 0.5})
    epochs = {(c["dataset"], c["method"], c["arch"]): c["hparams"]["epochs"] for c in configs}
    assert epochs[("waterbirds-synth", "erm", "resnet18")] == 3
    assert epochs[("waterbirds-synth", "erm", "vit_tiny")] == 4
    assert epochs[("isic-synth", "erm", "vit_tiny")] == 5  # dataset beats arch
    assert epochs[("isic-synth", "gdro", "vit_tiny")] == 6  # method beats dataset
    assert {c["hparams"]["lr"] for c in configs} == {0.5}  # the command line's --set beats the file
    assert {c["device"] for c in configs} == {"cpu"}


def test_config_hash_is_stable_and_ignores_device():
    config = make_config(dataset="waterbirds-synth", method="erm", arch="resnet18", seed=3, overrides=dict(FAST),
                         device="cpu")

    def reversed_keys(obj):
        return {k: reversed_keys(v) for k, v in reversed(list(obj.items()))} if isinstance(obj, dict) else obj

    assert list(reversed_keys(config)) != list(config)
    assert run_id(reversed_keys(config)) == run_id(config)
    assert run_id({**config, "device": "cuda"}) == run_id(config)
    assert run_id({**config, "seed": 4}) != run_id(config)
    assert run_id({**config, "hparams": {**config["hparams"], "lr": 0.02}}) != run_id(config)
    # expanding the same file twice gives the same ids
    spec = parse_sweep(grid())
    assert [run_id(c) for c in expand(spec)] == [run_id(c) for c in expand(spec, device="cpu")]


@pytest.mark.parametrize("change, message", [
    ({"colour": "blue"}, "unknown key(s) colour"),
    ({"seeds": []}, "'seeds' must be a non-empty list"),
    ({"scale": "huge"}, "scale 'huge'"),
    ({"overrides_by_dataset": {"celeba-synth": {"epochs": 2}}}, "overrides_by_dataset names celeba-synth"),
    ({"slim_sweeps": {"datasets": ["waterbirds-synth"], "budget": {"erm": [1]}}},
     "only slim-tr and slim-val"),
    ({"slim_sweeps": {"datasets": ["waterbirds-synth"], "budget": {"slim-tr": {"isic-synth": [1]}}}},
     "gives no values for waterbirds-synth"),
])
def test_bad_sweep_files_fail_with_a_clear_message(change, message):
    with pytest.raises(HarnessError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_sweep(grid(**change), source="bad.toml")


def test_missing_inputs_fail_before_any_run(tmp_path):
    with pytest.raises(HarnessError, match=r"waterbirds is read from disk; add \[data.waterbirds\]"):
        expand(parse_sweep(grid(datasets=["waterbirds"])))
    binary = expand(load_sweep("binary-quick"), device="cpu")
    assert {(c["dataset"], c["scale"]) for c in binary} == {("waterbirds-synth", "quick"), ("isic-synth", "quick")}
    assert len(binary) == 2 * 6 * 3
    with pytest.raises(HarnessError, match="data folder of waterbirds not found"):
        missing_root = {"waterbirds": {"root": str(tmp_path / "nope")}}
        expand(parse_sweep(grid(datasets=["waterbirds"], data=missing_root)))
    with pytest.raises(HarnessError, match="pretrained weights file not found"):
        expand(parse_sweep(grid(overrides={"pretrained": str(tmp_path / "w.safetensors")})))
    with pytest.raises(HarnessError, match="unknown setting 'colour' for erm"):
        expand(parse_sweep(grid(overrides={"colour": 1})))


def test_shipped_configs():
    quick = load_sweep("quick")
    configs = expand(quick, device="cpu")
    assert {c["dataset"] for c in configs} == {"waterbirds-synth", "celeba-synth", "isic-synth", "nico-synth",
                                                "imagenet9-synth"}
    assert {c["method"] for c in configs} == {"erm", "jtt", "gdro", "dfr", "slim-tr", "slim-val"}
    # the default backbone from ImageNet at 64 px; the stand-in grid is its own file at 32 px
    assert {c["arch"] for c in configs} == {"efficientnet_lite0"} and len(quick.seeds) >= 3
    assert {c["image_size"] for c in configs} == {64} and {c["hparams"]["pretrained"] for c in configs} == {"imagenet"}
    standin = expand(load_sweep("standin"), device="cpu")
    assert {c["arch"] for c in standin} == {"resnet18", "vit_tiny"} and {c["image_size"] for c in standin} == {32}
    assert {c["hparams"]["pretrained"] for c in standin} == {"standin"}
    swept = {c["dataset"] for c in configs if c["method"] == "slim-tr"
             and c["hparams"]["budget"] != default_hparams("slim-tr", c["dataset"], "tiny")["budget"]}
    assert swept == {"waterbirds-synth", "celeba-synth", "isic-synth"}
    regression = expand(load_sweep("regression"), device="cpu")
    assert {c["method"] for c in regression} == {"erm", "jtt", "gdro", "dfr", "slim-tr", "slim-val"}
    assert {"waterbirds-synth", "isic-synth"} <= {c["dataset"] for c in regression}
    binary = expand(load_sweep("binary-quick"), device="cpu")
    assert {(c["dataset"], c["scale"]) for c in binary} == {("waterbirds-synth", "quick"), ("isic-synth", "quick")}
    assert len(binary) == 2 * 6 * 3
    with pytest.raises(HarnessError, match="data folder of waterbirds not found"):
        expand(load_sweep("paper"))
    with pytest.raises(HarnessError, match="shipped configs: .*quick"):
        load_sweep("no-such-sweep")


@pytest.mark.parametrize(("seeds", "wrong"), [("[true]", "true"), ("[0, false]", "false"), ("[1.5]", "1.5"),
                                             ('["0"]', "'0'")])
def test_seeds_that_are_not_whole_numbers_are_refused_when_the_file_is_read(tmp_path, capsys, seeds, wrong):
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text(toml_text(grid()).replace("seeds = [0, 1]", f"seeds = {seeds}"))
    assert cli.main(["sweep", str(sweep_file), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (f"error: {sweep_file}: 'seeds' must be a non-empty list of integers; {wrong} "
                                       "is not one\n")
    assert not (tmp_path / "out").exists()  # before any work


def test_a_sweep_file_that_is_not_utf8_is_refused_in_one_line(tmp_path, capsys):
    sweep_file = tmp_path / "latin1.toml"
    text = 'description = "caf\u00e9"\n' + toml_text(grid())  # toml_text would escape the \u00e9
    sweep_file.write_bytes(text.encode("latin-1"))
    assert cli.main(["sweep", str(sweep_file), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    offset = sweep_file.read_bytes().index(b"\xe9")
    assert capsys.readouterr().err == (f"error: {sweep_file}: not UTF-8 text (byte 0xe9 at offset {offset}); TOML "
                                       "files are UTF-8\n")
    assert not (tmp_path / "out").exists()


def test_unreadable_failed_or_stale_records_count_as_unfinished(tmp_path):
    config = make_config(dataset="waterbirds-synth", method="erm", arch="resnet18", overrides=dict(FAST))
    rid = run_id(config)
    path = record_path(tmp_path, rid)
    path.parent.mkdir(parents=True)
    path.write_text('{"run_id": "' + rid + '", "status": "o')  # cut short
    assert not is_finished(tmp_path, rid)
    path.write_text(json.dumps({"run_id": rid, "status": "failed"}))
    assert not is_finished(tmp_path, rid)
    path.write_text(json.dumps({"run_id": "someone-else", "status": "ok"}))
    assert not is_finished(tmp_path, rid)
    path.write_text(json.dumps({"run_id": rid, "status": "ok"}))  # made before records carried a version
    assert not is_finished(tmp_path, rid)
    path.write_text(json.dumps({"run_id": rid, "status": "ok", "code_version": {"source_digest": "0" * 64}}))
    assert not is_finished(tmp_path, rid)
    path.write_text(json.dumps({"run_id": rid, "status": "ok", "code_version": code_version()}))
    assert is_finished(tmp_path, rid)


# ------------------------------------------------------------------------------------------- running


def test_resume_after_kill_9_recomputes_nothing(tmp_path):
    sweep_file = tmp_path / "grid.toml"
    sweep_file.write_text(toml_text(grid(seeds=[0, 1])))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "harness", "sweep", str(sweep_file), "--out", str(out),
               "--device", "cpu", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((out / "runs").glob("*.json")):
        assert first.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    finished = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert len(finished) == 1  # the second run was under way

    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "1 finished earlier (skipped), 0 failed earlier (retried), 1 new" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # not rewritten, so not recomputed

    spec = parse_sweep(grid(seeds=[0, 1]))
    configs = expand(spec, device="cpu")
    reference = tmp_path / "uninterrupted"
    run_sweep(configs, reference, LocalExecutor(jobs=1, device="cpu", threads=1, show_progress=False),
              log=lambda _: None, show_progress=False)
    ids = [run_id(c) for c in configs]
    resumed = {r["run_id"]: r for r in sweep_records(out, ids)}
    uninterrupted = {r["run_id"]: r for r in sweep_records(reference, ids)}
    assert set(resumed) == set(uninterrupted) == set(ids)
    for rid in ids:
        assert resumed[rid]["status"] == "ok"
        assert resumed[rid]["metrics"] == uninterrupted[rid]["metrics"]
        assert resumed[rid]["config"] == uninterrupted[rid]["config"]
    assert (out / "tables" / "README.md").is_file()


def test_a_failing_run_does_not_stop_the_sweep(tmp_path, capsys):
    # isic runs read an empty folder: they raise when loading their data
    (tmp_path / "empty").mkdir()
    raw = grid(datasets=["waterbirds-synth", "isic"], seeds=[0, 1], data={"isic": {"root": str(tmp_path / "empty")}})
    sweep_file = tmp_path / "grid.toml"
    sweep_file.write_text(toml_text(raw))
    out = tmp_path / "out"
    argv = ["sweep", str(sweep_file), "--out", str(out), "--device", "cpu", "--quiet"]
    assert cli.main(argv) == 1
    printed = capsys.readouterr()
    assert "2 run(s) failed" in printed.out and "start the same command again" in printed.err
    configs = expand(parse_sweep(raw), device="cpu")
    assert [c["dataset"] for c in configs] == ["waterbirds-synth", "isic"] * 2  # failures mid-sweep
    records = {r["run_id"]: r for r in sweep_records(out, [run_id(c) for c in configs])}
    for config in configs:
        record = records[run_id(config)]
        if config["dataset"] == "isic":
            assert record["status"] == "failed"
            assert "no isic layout found" in record["error"] and "Traceback" in record["traceback"]
            assert record["config"] == config and record["seed"] == config["seed"]
        else:
            assert record["status"] == "ok" and record["metrics"]["test"]["avg_acc"] >= 0
    ok_times = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")
                if json.loads(p.read_text())["status"] == "ok"}
    # a second start retries the failed runs (they fail again) and leaves the finished ones alone
    assert cli.main(argv) == 1
    assert "2 finished earlier (skipped), 2 failed earlier (retried), 0 new" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in ok_times} == ok_times


def test_reproduce_writes_tables_figures_and_a_readme(tmp_path, capsys):
    sweep_file = tmp_path / "grid.toml"
    sweep_file.write_text(toml_text(grid(seeds=[0], description="one ERM run")))
    out = tmp_path / "results"
    assert cli.main(["reproduce", "--config", str(sweep_file), "--out", str(out), "--jobs", "1", "--device", "cpu",
                     "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "erm (shared reference models)" in printed and "figures" in printed and "total" in printed
    readme = (out / "README.md").read_text()
    for expected in ("# Reproduction: t", "one ERM run", "- date: ", "--jobs 1", "cores", "no GPU used",
                     "| erm (shared reference models) |", "| tables |", "[tables/README.md](tables/README.md)"):
        assert expected in readme
    assert (out / "tables" / "README.md").is_file() and list((out / "tables").glob("*.tex"))
    assert (out / "cache" / ".gitignore").read_text() == "*\n"


def test_claims_are_exclusive_and_a_dead_sweeps_claim_is_taken_over(tmp_path):
    from harness.core.tempfiles import HOST

    assert claim_run(tmp_path, "r1") and claim_owner(tmp_path, "r1")["pid"] == os.getpid()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for rid, pid, host in (("r2", int(gone.stdout), HOST), ("r3", 1, HOST), ("r4", 1, "elsewhere")):
        claim_path(tmp_path, rid).write_text(json.dumps({"host": host, "pid": pid}))
    assert claim_run(tmp_path, "r2")  # its process is dead: stale
    assert not claim_run(tmp_path, "r3")  # pid 1 lives
    assert not claim_run(tmp_path, "r4")  # another host's claim cannot be checked: honoured
    release_run(tmp_path, "r3")
    assert claim_path(tmp_path, "r3").exists()  # not ours
    release_run(tmp_path, "r1")
    assert not claim_path(tmp_path, "r1").exists()


def test_a_second_sweep_on_the_same_folder_leaves_claimed_runs_to_the_first(tmp_path):
    sweep_file = tmp_path / "grid.toml"
    sweep_file.write_text(toml_text(grid(seeds=[0, 1], overrides={**FAST, "epochs": 6})))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "harness", "sweep", str(sweep_file), "--out", str(out), "--device", "cpu",
               "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while len(list((out / "claims").glob("*.claim"))) < 2:
        assert first.poll() is None and time.monotonic() < deadline, "the first sweep claimed nothing"
        time.sleep(0.05)
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    first_out, _ = first.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert first_out.count("  ok     waterbirds-synth/erm") == 2
    assert "  ok     " not in second.stdout  # it ran nothing itself
    # the second started while the first had finished `skipped` runs and was running the others
    skipped = int(re.search(r"(\d) finished earlier \(skipped\)", second.stdout)[1])
    assert skipped < 2
    assert f"waiting for {2 - skipped} run(s) that another sweep on this folder is running" in second.stdout
    assert f"{2 - skipped} run(s) were run by another sweep on this folder" in second.stdout
    assert not list((out / "claims").glob("*.claim"))  # released
    assert all(is_finished(out, rid) for rid in json.loads((out / "sweep.json").read_text())["run_ids"])


def test_variants_repeat_the_runs_of_the_methods_that_have_the_settings():
    """2 seeds x (ERM once: it has no SLIM setting; SLIM_Val three times: as configured, authors', ablation)."""
    raw = grid(methods=["erm", "slim-val"], variants=[{}, {"slim_variant": "authors"},
                                                        {"slim_ablation": "random_subset"}])
    configs = expand(parse_sweep(raw), device="cpu")
    by_method = {m: [c for c in configs if c["method"] == m] for m in ("erm", "slim-val")}
    assert len(by_method["erm"]) == 2 and len(by_method["slim-val"]) == 6
    kinds = {(c["hparams"]["slim_variant"], c["hparams"]["slim_ablation"]) for c in by_method["slim-val"]}
    assert kinds == {("paper", "none"), ("authors", "none"), ("paper", "random_subset")}
    with pytest.raises(HarnessError, match="variants"):
        parse_sweep(grid(variants={"slim_variant": "authors"}))
    with pytest.raises(HarnessError, match="slim_ablation"):
        parse_sweep(grid(variants=[{"slim_ablation": "nonsense"}]))


def test_a_variant_can_be_limited_to_some_methods():
    """The random subset only for SLIM_Val: SLIM_Tr runs as configured, SLIM_Val twice, per seed."""
    raw = grid(methods=["slim-tr", "slim-val"],
               variants=[{}, {"slim_ablation": "random_subset", "methods": ["slim-val"]}])
    configs = expand(parse_sweep(raw), device="cpu")
    kinds = sorted((c["method"], c["hparams"]["slim_ablation"]) for c in configs)
    assert kinds == sorted([("slim-tr", "none")] * 2 + [("slim-val", "none"), ("slim-val", "random_subset")] * 2)
    with pytest.raises(HarnessError, match="methods"):
        parse_sweep(grid(methods=["slim-tr"], variants=[{"slim_ablation": "random_subset", "methods": ["slim-val"]}]))


def test_time_left_estimates_each_method_from_its_own_finished_runs(monkeypatch):
    """Two ERM runs took 10 s each and one JTT run 30 s, in 25 s of wall time (two at a time: 50 / 25 = 2);
    one ERM and two JTT runs are left: (10 + 30 + 30) / 2 = 35 s."""
    from harness.experiments.executors import RunOutcome

    configs = [{"method": m, "id": i} for i, m in enumerate(["erm", "erm", "erm", "jtt", "jtt", "jtt"])]
    monkeypatch.setattr("harness.experiments.sweeps.run_id", lambda c: f"r{c['id']}")
    clock = iter([0.0, 25.0, 25.0, 25.0])
    monkeypatch.setattr("harness.experiments.sweeps.time.monotonic", lambda: next(clock))
    left = TimeLeft(configs)
    left.finished(RunOutcome("r0", "a", "ok", 10.0))
    left.finished(RunOutcome("r1", "b", "ok", 10.0))
    assert left.finished(RunOutcome("r3", "c", "ok", 30.0)) == "3/6 done, 3 left, about 35 s to go"
    assert format_duration(5400) == "1.5 h" and format_duration(600) == "10 min"


def test_time_left_takes_the_median_run_so_the_runs_that_build_shared_stages_do_not_inflate_it(monkeypatch):
    """The first two ERM runs on a dataset also compute its frozen stem (900 s), the next three take 200 s:
    five runs left (two ERM, three of a method not seen yet) take the median 200 s each; 1 run at a time
    (2,500 s of runs in 2,500 s of wall time): 1,000 s, shown as 17 min (the mean, 500 s, would say 42 min)."""
    from harness.experiments.executors import RunOutcome

    configs = [{"method": "erm", "id": i} for i in range(7)] + [{"method": "jtt", "id": 7 + i} for i in range(3)]
    monkeypatch.setattr("harness.experiments.sweeps.run_id", lambda c: f"r{c['id']}")
    clock = iter([0.0, *[2500.0] * 5])
    monkeypatch.setattr("harness.experiments.sweeps.time.monotonic", lambda: next(clock))
    left = TimeLeft(configs)
    for i, seconds in enumerate((900.0, 900.0, 200.0, 200.0)):
        left.finished(RunOutcome(f"r{i}", "a", "ok", seconds))
    assert left.finished(RunOutcome("r4", "a", "ok", 200.0)) == "5/10 done, 5 left, about 17 min to go"
# -------------------------------------------------------------------------------------- code versions


def made_by_an_earlier_version(out: Path, rid: str) -> None:
    """Rewrite a record as one an earlier commit made (another source digest)."""
    path = record_path(out, rid)
    record = json.loads(path.read_text())
    record["code_version"] = {"source_digest": "0" * 64, "files": 1, "git_commit": None}
    path.write_text(json.dumps(record))


def test_a_sweep_resumed_on_another_code_version_refuses_reruns_or_keeps_its_runs(tmp_path):
    configs = expand(parse_sweep(grid(seeds=[0, 1])), device="cpu")
    first, second = (run_id(c) for c in configs)
    out = tmp_path / "out"
    executor = LocalExecutor(jobs=1, device="cpu", threads=1, show_progress=False)
    run_sweep(configs[:1], out, executor, log=lambda _: None, show_progress=False)
    clean = json.loads(record_path(out, first).read_text())
    assert clean["code_version"]["source_digest"] == current_version()
    made_by_an_earlier_version(out, first)

    this = f"source {current_version()[:12]}"
    with pytest.raises(HarnessError) as refused:
        run_sweep(configs, out, executor, log=lambda _: None, show_progress=False)
    assert str(refused.value) == (
        f"sweep: 1 finished run(s) were made by another code version (1 by source 000000000000; this is {this}), "
        "and 1 run(s) would be made beside them: start again with --rerun-stale to rerun them, or --allow-mixed "
        "to keep them and mix versions")
    assert not record_path(out, second).exists()  # refused before any work

    lines = []
    kept = run_sweep(configs, out, executor, log=lines.append, show_progress=False, stale="keep")
    assert kept.skipped == [first] and kept.completed == [second]
    assert lines[0] == (f"sweep: 1 finished run(s) were made by another code version (1 by source 000000000000; "
                        f"this is {this}): kept")
    records = sweep_records(out, [first, second])
    with pytest.raises(HarnessError, match=re.escape(
            f"table cell waterbirds-synth/ERM (arch resnet18, scale tiny): source 000000000000 (seeds 0); {this} "
            "(seeds 1) mixes code versions: rerun the stale runs (sweep --rerun-stale) or pass --allow-mixed")):
        write_tables(records, tmp_path / "tables")
    assert not (tmp_path / "tables").exists()
    write_tables(records, tmp_path / "tables", allow_mixed=True)
    assert ("- waterbirds-synth/ERM (arch resnet18, scale tiny): source 000000000000 (seeds 0); "
            f"{this} (seeds 1)") in (tmp_path / "tables" / "README.md").read_text()

    lines.clear()
    rerun = run_sweep(configs, out, executor, log=lines.append, show_progress=False, stale="rerun")
    assert rerun.skipped == [second] and rerun.completed == [first]
    assert "1 of another code version (rerun), 0 new" in lines[1]
    again = json.loads(record_path(out, first).read_text())
    assert again["code_version"] == code_version() and again["metrics"] == clean["metrics"]
    write_tables(sweep_records(out, [first, second]), tmp_path / "tables2")  # one version: no refusal


def test_sweep_and_tables_commands_take_the_version_options(tmp_path, capsys):
    sweep_file = tmp_path / "grid.toml"
    sweep_file.write_text(toml_text(grid(seeds=[0])))
    out = tmp_path / "out"
    argv = ["sweep", str(sweep_file), "--out", str(out), "--device", "cpu", "--quiet"]
    assert cli.main(argv) == 0
    (rid,) = [p.stem for p in (out / "runs").glob("*.json")]
    made_by_an_earlier_version(out, rid)
    sweep_file.write_text(toml_text(grid(seeds=[0, 1])))
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: t: 1 finished run(s) were made by another code version")
    assert cli.main(["tables", "--runs", str(out), "--out", str(tmp_path / "tables")]) == 0  # one version so far
    assert cli.main([*argv, "--allow-mixed"]) == 0
    tables = ["tables", "--runs", str(out), "--out", str(tmp_path / "tables")]
    assert cli.main(tables) == 2
    assert capsys.readouterr().err.startswith("error: table cell waterbirds-synth/ERM")
    assert cli.main([*tables, "--allow-mixed"]) == 0
    assert cli.main([*argv, "--rerun-stale"]) == 0
    assert cli.main(tables) == 0


def test_paper_size_draws_celeba_and_imagenet9_with_a_smaller_train_split_only():
    """The paper-size grid: every preset at the paper scale; celeba- and imagenet9-synth with a 17,000-image
    train split (their real ones are too large for a CPU), the other presets as the scale draws them."""
    configs = expand(load_sweep("paper-size"), device="cpu")
    by_dataset = {}
    for config in configs:
        by_dataset.setdefault(config["dataset"], set()).add(json.dumps(config["data_options"], sort_keys=True))
    assert {c["scale"] for c in configs} == {"paper"}
    assert by_dataset == {"waterbirds-synth": {"{}"}, "nico-synth": {"{}"}, "isic-synth": {"{}"},
                          "celeba-synth": {'{"train_size": 17000}'}, "imagenet9-synth": {'{"train_size": 17000}'}}


def test_the_premise_grid_moves_only_object_size_and_curates_at_least_100_val_images():
    """premise.toml (issue 33): six levels of the object's radius per preset, one of them the preset's own, all
    at the quick scale with a 1,000-image val split, so SLIM_Val's subset (subset_frac of val) holds >= 100;
    waterbirds-synth's levels share an 800-image train split (where ERM's gap lasts)."""
    from harness.data.synthetic import make_benchmark, preset_difficulty

    configs = expand(load_sweep("premise"), device="cpu")
    assert {c["scale"] for c in configs} == {"quick"}
    for dataset in ("waterbirds-synth", "nico-synth"):
        mine = [c for c in configs if c["dataset"] == dataset]
        levels = {json.dumps(c["data_options"], sort_keys=True) for c in mine}
        assert len(levels) == 6 and all(json.loads(level)["val_size"] == 1000 for level in levels)
        sized = {"val_size", "train_size"} if dataset == "waterbirds-synth" else {"val_size"}
        assert {k for level in levels for k in json.loads(level)} == sized | {"object_size"}
        assert all(json.loads(level).get("train_size", 800) == 800 for level in levels)
        sizes = sorted(tuple(json.loads(level).get("object_size", preset_difficulty(dataset).object_size))
                       for level in levels)
        assert list(preset_difficulty(dataset).object_size) in [list(s) for s in sizes]
        assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(sizes, sizes[1:], strict=False))
        val = len(make_benchmark(dataset, "quick", 0, image_size=16, sizes={"val": 1000}).splits["val"])
        assert min(c["hparams"]["subset_frac"] for c in mine if c["method"] == "slim-val") * val >= 100


def test_datasets_and_methods_options_run_the_files_own_runs_of_those_only(tmp_path, capsys):
    """``--datasets`` and ``--methods`` keep the file's runs of the named datasets and methods, unchanged (the
    same run ids, so the whole file later resumes from them), and name the sweep's own when asked for one it
    does not run."""
    from harness.experiments.sweep_file import only

    configs = expand(load_sweep("paper-size"), device="cpu")
    kept = only(configs, "dataset", ["nico-synth", "isic-synth"])
    assert kept == [c for c in configs if c["dataset"] in ("nico-synth", "isic-synth")]
    assert {c["dataset"] for c in kept} == {"nico-synth", "isic-synth"} and len(kept) == 100
    assert only(configs, "dataset", None) is configs
    assert {c["method"] for c in only(kept, "method", ["slim-val"])} == {"slim-val"}
    with pytest.raises(HarnessError, match="no runs of celeba; it runs waterbirds-synth, nico-synth"):
        only(configs, "dataset", ["celeba"])
    with pytest.raises(HarnessError, match="--methods: the sweep has no runs of slim; it runs erm, jtt"):
        only(configs, "method", ["slim"])
    sweep_file = tmp_path / "two.toml"
    sweep_file.write_text(toml_text(grid(datasets=["waterbirds-synth", "nico-synth"], methods=["erm", "dfr"],
                                         seeds=[0])))
    assert cli.main(["sweep", str(sweep_file), "--datasets", "nico-synth", "--methods", "erm",
                     "--out", str(tmp_path / "o"), "--quiet"]) == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "o" / "runs").glob("*.json")]
    assert [(r["dataset"], r["method"]) for r in records] == [("nico-synth", "erm")]


def test_premise_gap_runs_premises_waterbirds_levels_at_quicks_train_split():
    """premise-gap.toml (why premise.toml shrinks waterbirds-synth's train split): the same object sizes and val
    split, quick's own train split, ERM and DFR with premise.toml's settings."""
    def levels(configs):
        return {json.dumps({k: v for k, v in c["data_options"].items() if k != "train_size"}, sort_keys=True)
                for c in configs if c["dataset"] == "waterbirds-synth"}

    premise, gap = (expand(load_sweep(name), device="cpu") for name in ("premise", "premise-gap"))
    assert levels(gap) == levels(premise) and len(levels(gap)) == 6
    assert all("train_size" not in c["data_options"] for c in gap)
    assert {c["method"] for c in gap} == {"erm", "dfr"} and {c["seed"] for c in gap} == {0, 1, 2}
    same = {c["method"]: c["hparams"] for c in premise if c["dataset"] == "waterbirds-synth"}
    assert all(c["hparams"] == same[c["method"]] for c in gap)
