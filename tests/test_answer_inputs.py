"""People's answers logs where they enter (``run --oracle answers:LOG``, ``--set oracle=...``, ``annotations
agreement`` and ``merge``): one schema, every field checked, one line and exit 2 before any work."""
from __future__ import annotations

import json
import math

import pytest

from harness.cli import main
from harness.core.errors import HarnessError
from harness.experiments.runner import make_config
from simulated_oracle import Answer, QueryLogEntry, RecordedOracle, load_answers, load_log, save_log

PASS = "0123456789abcdef"


def line(**fields) -> str:
    """One answers-log line: a person's answer to instance 3, with ``fields`` changed (None: left out)."""
    row = {"instance_id": 3, "aiou": None, "true_answer": None, "answer": "yes", "flipped": False, "seconds": 2.0,
           "who": "ann", "attention": PASS, **fields}
    return json.dumps({k: v for k, v in row.items() if v is not ...}, allow_nan=True)


BAD_LINES = [  # (what the line holds, a part of the one-line error)
    (b"\xff\xfe" + line().encode(), "is not UTF-8 text (byte 0)"),
    (line(seconds=-1000), "seconds is -1000, but must be a finite number >= 0"),
    (line(seconds=math.nan), "NaN is not a number a log may hold"),
    (line(seconds=math.inf), "Infinity is not a number a log may hold"),
    (line(seconds="2"), "seconds is '2', but must be a finite number >= 0"),
    (line(seconds=None), "seconds is None"),
    (line(instance_id=131.9), "instance_id is 131.9, but must be a whole number >= 0"),
    (line(instance_id=131.0), "instance_id is 131.0"),
    (line(instance_id=-1), "instance_id is -1"),
    (line(instance_id=True), "instance_id is True"),
    (line(answer="YES"), "answer is 'YES', but must be one of ['no', 'not_sure', 'yes']"),
    (line(answer=["yes"]), "answer is ['yes']"),
    (line(answer=...), "missing field(s) 'answer'"),
    (line(aiou=...), "missing field(s) 'aiou'"),
    (line(aiou=1.5), "aiou is 1.5, but must be a number in [0, 1] or null"),
    (line(extra=1), "unknown field(s) 'extra'"),
    (line(who=5), "who is 5, but must be a non-empty string"),
    (line(who=""), "who is ''"),
    (line(flipped="no"), "flipped is 'no', but must be true or false"),
    (line(answered_at="yesterday"), "answered_at is 'yesterday', but must be an ISO 8601 time with its time zone"),
    (line(answered_at="2024-05-01T10:00:00"), "answered_at is '2024-05-01T10:00:00'"),
    ("[1, 2]", "a line must be a JSON object, got list"),
    ('{"instance_id": 3,', "Expecting property name"),
]


def write(path, content) -> str:
    path.write_bytes(content if isinstance(content, bytes) else (content + "\n").encode())
    return str(path)


@pytest.mark.parametrize(("content", "message"), BAD_LINES)
def test_a_malformed_answers_log_is_refused_in_one_line(tmp_path, capsys, content, message):
    good = write(tmp_path / "good.jsonl", line(who="bob"))
    bad = write(tmp_path / "bad.jsonl", content)
    for command in (["annotations", "agreement", good, bad],
                    ["annotations", "merge", good, bad, "--out", str(tmp_path / "merged.jsonl")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: query log {bad} line 1 ") or err.startswith(f"error: query log {bad} is not")
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "merged.jsonl").exists()


def test_a_valid_line_reads_back_exactly():
    entry = QueryLogEntry.from_json(json.loads(line(instance_id=5, seconds=4, answered_at="2024-05-01T10:00:00Z",
                                                    image="birds/001.jpg sha256:00ff")))
    assert entry == QueryLogEntry(5, None, None, Answer.YES, False, 4.0, who="ann", attention=PASS,
                                  answered_at="2024-05-01T10:00:00Z", image="birds/001.jpg sha256:00ff")
    assert isinstance(entry.seconds, float)


def test_no_nan_reaches_a_record(tmp_path):
    """A NaN time would make the record's details.oracle.seconds a bare NaN (not JSON): it stops at the log."""
    with pytest.raises(HarnessError, match="NaN is not a number"):
        RecordedOracle.from_file(write(tmp_path / "nan.jsonl", line(seconds=math.nan)))


def test_the_last_line_of_an_instance_is_the_answer_in_force(tmp_path):
    path = write(tmp_path / "ann.jsonl", "\n".join([line(instance_id=3, answer="yes", seconds=1.0),
                                                    line(instance_id=5, answer="no", seconds=2.0),
                                                    line(instance_id=3, answer="no", seconds=3.5)]))
    assert [(e.instance_id, e.answer, e.seconds) for e in load_answers(path)] == [(3, Answer.NO, 3.5),
                                                                                 (5, Answer.NO, 2.0)]
    assert len(load_log(path)) == 3
    mixed = write(tmp_path / "mixed.jsonl", "\n".join([line(who="ann"), line(who="bob", answer="no")]))
    with pytest.raises(HarnessError, match="answers instance 3 as 'ann' and as 'bob': keep one log per annotator"):
        load_answers(mixed)


def slim_config(oracle: str) -> dict:
    return make_config(dataset="waterbirds-synth", method="slim-val", overrides={"oracle": oracle})


@pytest.mark.parametrize(("spec", "message"), [
    ("bogus", "unknown oracle 'bogus': use 'simulated' or 'answers:PATH'"),
    ("answers:", "unknown oracle 'answers:'"),
    ("answers:{missing}", "setting oracle='answers:{missing}': query log {missing} does not exist"),
    ("answers:{bad}", "setting oracle='answers:{bad}': query log {bad} line 1 is not a valid entry: seconds is -5"),
    ("answers:{empty}", "setting oracle='answers:{empty}': answers file {empty} hold no answer"),
    ("answers:{unnamed}", "answers that name no attention pass"),
])
def test_the_oracle_setting_is_checked_when_the_run_is_configured(tmp_path, spec, message):
    """``make_config`` (every run and sweep goes through it before any work) reads the answers file."""
    paths = {"missing": tmp_path / "missing.jsonl", "bad": write(tmp_path / "bad.jsonl", line(seconds=-5)),
             "empty": write(tmp_path / "empty.jsonl", b""), "unnamed": write(tmp_path / "unnamed.jsonl",
                                                                           line(attention=...))}
    with pytest.raises(HarnessError) as refused:
        slim_config(spec.format(**paths))
    assert message.format(**paths) in str(refused.value)
    assert slim_config(f"answers:{write(tmp_path / 'good.jsonl', line())}")["hparams"]["oracle"].endswith("good.jsonl")


@pytest.mark.parametrize("flag", [["--set", "oracle=bogus"], ["--oracle", "answers:{bad}"],
                                  ["--set", "oracle=answers:{bad}"], ["--oracle", "answers:{missing}"]])
def test_run_refuses_a_bad_oracle_before_any_work(tmp_path, capsys, monkeypatch, flag):
    def execute(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr("harness.experiments.runner.execute", execute)
    paths = {"bad": write(tmp_path / "bad.jsonl", line(instance_id=131.9)), "missing": tmp_path / "missing.jsonl"}
    out = tmp_path / "out"
    assert main(["run", "--dataset", "waterbirds-synth", "--method", "slim-val", "--out", str(out),
                 *[part.format(**paths) for part in flag]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and not out.exists()


def test_merge_creates_the_folder_of_its_output_and_refuses_a_folder(tmp_path, capsys):
    a = write(tmp_path / "a.jsonl", line(who="a"))
    b = write(tmp_path / "b.jsonl", line(who="b", answer="no"))
    out = tmp_path / "new" / "deeper" / "merged.jsonl"
    assert main(["annotations", "merge", a, b, "--out", str(out)]) == 0
    assert [(e.answer, e.who) for e in load_log(out)] == [(Answer.NOT_SURE, "a+b")]
    assert main(["annotations", "merge", a, b, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.endswith(f"error: --out {tmp_path} is a folder: give the merged log's file name\n")


def test_agreement_reads_the_answers_in_force(tmp_path, capsys):
    """A person who changed an answer counts once, with their last answer."""
    a = write(tmp_path / "a.jsonl", "\n".join([line(who="a", answer="no"), line(who="a", answer="yes")]))
    b = write(tmp_path / "b.jsonl", line(who="b"))
    assert main(["annotations", "agreement", a, b]) == 0
    assert "100.0% over 1 instances (1 unanimous)" in capsys.readouterr().out
    save_log(load_answers(a), tmp_path / "c.jsonl")
    assert [e.answer for e in load_log(tmp_path / "c.jsonl")] == [Answer.YES]
