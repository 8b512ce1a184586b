"""The annotation server (harness.annotate) through Flask's test client, recorded answers as SLIM's oracle,
annotators' agreement and merge, and the Label Studio round trip."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from harness.annotate import AnnotationTask, AnswerStore, Query, create_app, is_loopback, overlay, png
from harness.cli import main
from harness.errors import HarnessError
from harness.label_studio import LABEL_CONFIG, annotator_name, export_tasks, import_export
from simulated_oracle import Answer, QueryLogEntry, RecordedOracle, agreement, load_log, merge_majority, save_log
from simulated_oracle.oracle import summarize_log

PASS = "0123456789abcdef"
IDS = [7, 3, 11]


def make_task(attention: str = PASS) -> AnnotationTask:
    rng = np.random.default_rng(0)
    queries = []
    for i in IDS:
        image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        cam = rng.random((8, 8))
        queries.append(Query(i, "waterbird" if i % 2 else "landbird", png(image), png(overlay(image, cam))))
    return AnnotationTask(title="toy val", attention=attention, queries=queries)


@pytest.fixture
def server(tmp_path):
    task = make_task()
    store = AnswerStore(tmp_path / "logs", task)
    return task, store, create_app(task, store).test_client()


def post(client, who, body, **kwargs):
    return client.post(f"/api/answers/{who}", json=body, **kwargs)


def log_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_page_queries_and_images(server):
    task, _, client = server
    page = client.get("/")
    assert page.status_code == 200 and b'id="start-form"' in page.data
    listed = client.get("/api/queries").get_json()
    assert [q["instance_id"] for q in listed["queries"]] == IDS and listed["attention"] == PASS
    assert listed["queries"][0]["question"] == "Is the model looking at the waterbird (not its surroundings)?"
    for kind, expected in (("plain", task.queries[1].image), ("overlay", task.queries[1].overlay)):
        response = client.get(f"/image/3/{kind}.png")
        assert response.status_code == 200 and response.mimetype == "image/png" and response.data == expected
    # 8x8 images are enlarged by a whole factor to reach 256 pixels: 8 * 32
    assert Image.open(io.BytesIO(task.queries[0].image)).size == (256, 256)


def test_answering_writes_the_query_log_format(server, tmp_path):
    _, store, client = server
    response = post(client, "ann", {"instance_id": 3, "answer": "no", "seconds": 4.25})
    assert response.status_code == 200 and response.get_json()["answered"] == 1
    assert post(client, "ann", {"instance_id": 7, "answer": "yes", "seconds": 2}).status_code == 200
    rows = log_rows(tmp_path / "logs" / "ann.jsonl")
    # written in query order (7 before 3), one line each, in the simulated oracle's format plus who/attention
    assert rows == [
        {"instance_id": 7, "aiou": None, "true_answer": None, "answer": "yes", "flipped": False, "seconds": 2.0,
         "empty_map": False, "who": "ann", "attention": PASS},
        {"instance_id": 3, "aiou": None, "true_answer": None, "answer": "no", "flipped": False, "seconds": 4.25,
         "empty_map": False, "who": "ann", "attention": PASS},
    ]
    assert [e.answer for e in load_log(tmp_path / "logs" / "ann.jsonl")] == [Answer.YES, Answer.NO]
    state = client.get("/api/answers/ann").get_json()
    assert state["answers"] == {"7": {"answer": "yes", "seconds": 2.0}, "3": {"answer": "no", "seconds": 4.25}}


def test_changing_an_answer_keeps_one_line_and_adds_the_time(server, tmp_path):
    _, _, client = server
    post(client, "ann", {"instance_id": 11, "answer": "yes", "seconds": 3.0})
    post(client, "ann", {"instance_id": 11, "answer": "not_sure", "seconds": 1.5})
    rows = log_rows(tmp_path / "logs" / "ann.jsonl")
    assert len(rows) == 1 and rows[0]["answer"] == "not_sure" and rows[0]["seconds"] == 4.5


def test_resuming_reads_the_log_back(server, tmp_path):
    task, _, client = server
    post(client, "ann", {"instance_id": 3, "answer": "yes", "seconds": 1.0})
    fresh = create_app(task, AnswerStore(tmp_path / "logs", task)).test_client()  # a restarted server
    assert fresh.get("/api/answers/ann").get_json()["answers"] == {"3": {"answer": "yes", "seconds": 1.0}}
    post(fresh, "ann", {"instance_id": 7, "answer": "no", "seconds": 2.0})
    assert [row["instance_id"] for row in log_rows(tmp_path / "logs" / "ann.jsonl")] == [7, 3]


def test_annotators_get_separate_logs(server, tmp_path):
    _, _, client = server
    post(client, "alice", {"instance_id": 3, "answer": "yes", "seconds": 1.0})
    post(client, "bob", {"instance_id": 3, "answer": "no", "seconds": 1.0})
    assert log_rows(tmp_path / "logs" / "alice.jsonl")[0]["answer"] == "yes"
    assert log_rows(tmp_path / "logs" / "bob.jsonl")[0]["answer"] == "no"
    assert client.get("/api/answers/carol").get_json()["answers"] == {}


@pytest.mark.parametrize("body", [
    None, [], "yes", {"instance_id": 3, "answer": "yes"},
    {"instance_id": 3, "answer": "yes", "seconds": 1, "extra": 1},
    {"instance_id": 3, "answer": "maybe", "seconds": 1}, {"instance_id": 3, "answer": "YES", "seconds": 1},
    {"instance_id": "3", "answer": "yes", "seconds": 1}, {"instance_id": True, "answer": "yes", "seconds": 1},
    {"instance_id": 4, "answer": "yes", "seconds": 1}, {"instance_id": 3, "answer": "yes", "seconds": -1},
    {"instance_id": 3, "answer": "yes", "seconds": 1e9}, {"instance_id": 3, "answer": "yes", "seconds": "1"},
])
def test_bad_bodies_get_400_and_change_nothing(server, tmp_path, body):
    _, _, client = server
    post(client, "ann", {"instance_id": 3, "answer": "yes", "seconds": 1.0})
    before = (tmp_path / "logs" / "ann.jsonl").read_bytes()
    response = post(client, "ann", body)
    assert response.status_code == 400 and response.get_json()["error"]
    assert (tmp_path / "logs" / "ann.jsonl").read_bytes() == before


def test_non_json_and_oversized_bodies_are_refused(server, tmp_path):
    _, _, client = server
    assert client.post("/api/answers/ann", data="instance_id=3", content_type="text/plain").status_code == 400
    assert client.post("/api/answers/ann", data="{" + " " * 10_000 + "}",
                       content_type="application/json").status_code == 413
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("url", ["/image/4/plain.png", "/image/-3/plain.png", "/image/3/mask.png",
                                 "/image/3/../../../etc/passwd", "/image/..%2f..%2fetc%2fpasswd/plain.png",
                                 "/static/../tests/test_annotate.py", "/annotate.html"])
def test_unknown_ids_and_path_traversal_are_404(server, url):
    assert server[2].get(url).status_code == 404


@pytest.mark.parametrize("who", ["..", "../etc", ".hidden", "a b", "x" * 41, "é"])
def test_bad_annotator_names_are_refused(server, tmp_path, who):
    _, _, client = server
    response = post(client, who, {"instance_id": 3, "answer": "yes", "seconds": 1.0})
    assert response.status_code in (400, 404)
    assert client.get(f"/api/answers/{who}").status_code in (400, 404)
    assert not (tmp_path / "logs").exists() and not list(tmp_path.glob("*.jsonl"))


def test_token_is_required_when_set(tmp_path):
    task = make_task()
    client = create_app(task, AnswerStore(tmp_path, task), token="s3cret").test_client()
    assert client.get("/").status_code == 403 and client.get("/image/3/plain.png?token=wrong").status_code == 403
    assert client.get("/?token=s3cret").status_code == 200
    assert client.get("/api/queries", headers={"X-Token": "s3cret"}).status_code == 200
    assert post(client, "ann", {"instance_id": 3, "answer": "yes", "seconds": 1}).status_code == 403
    assert not list(tmp_path.glob("*.jsonl"))
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")


def test_a_log_for_another_attention_pass_is_refused(tmp_path):
    other = make_task("ffffffffffffffff")
    AnswerStore(tmp_path, other).record("ann", 3, Answer.YES, 1.0)
    task = make_task()
    client = create_app(task, AnswerStore(tmp_path, task)).test_client()
    response = client.get("/api/answers/ann")
    assert response.status_code == 400 and "attention pass ffffffffffffffff" in response.get_json()["error"]


def test_overlay_blends_the_jet_map():
    image = np.full((2, 2, 3), 100, np.uint8)
    cam = np.array([[0.0, 1.0], [0.5, 0.5]])
    out = overlay(image, cam, alpha=0.5)
    # jet(0) = (0, 0, 0.5), jet(1) = (0.5, 0, 0) in [0, 1]
    assert out[0, 0].tolist() == [50, 50, 114] and out[0, 1].tolist() == [114, 50, 50]


def human(i, answer, who="ann", seconds=2.0, attention=PASS):
    return QueryLogEntry(i, None, None, Answer(answer), False, seconds, who=who, attention=attention)


def test_recorded_oracle_answers_charges_and_refuses():
    oracle = RecordedOracle([human(3, "yes"), human(7, "no", seconds=3.0), human(11, "not_sure")], budget=3)
    assert oracle.query([7, 3]) == [Answer.NO, Answer.YES]
    assert oracle.used == 2 and oracle.remaining == 1 and oracle.total_seconds == 5.0
    with pytest.raises(HarnessError, match="budget exceeded"):
        oracle.query([11, 3])
    with pytest.raises(HarnessError, match=r"no answer for instances \[5\]"):
        RecordedOracle([human(3, "yes")]).query([3, 5])
    oracle.check_attention(PASS, "here")
    with pytest.raises(HarnessError, match="another reference model, split"):
        oracle.check_attention("0" * 16, "waterbirds val")
    with pytest.raises(HarnessError, match="more than once"):
        RecordedOracle([human(3, "yes"), human(3, "no")])
    with pytest.raises(HarnessError, match="name no attention pass"):
        RecordedOracle([QueryLogEntry(3, 0.4, Answer.NO, Answer.NO, False, 1.0)])
    summary = summarize_log(oracle.log)
    assert summary["kind"] == "human" and summary["annotators"] == ["ann"] and summary["queries"] == 2


def test_agreement_is_the_mean_share_of_the_most_frequent_answer():
    a = [human(1, "yes", "a", 2.0), human(2, "no", "a", 4.0), human(3, "yes", "a", 3.0)]
    b = [human(1, "yes", "b"), human(2, "yes", "b"), human(3, "yes", "b")]
    c = [human(1, "yes", "c"), human(2, "not_sure", "c")]
    report = agreement([a, b, c], ["a", "b", "c"])
    # instance 1: 3/3, instance 2: 1/3 (three different answers), instance 3: 2/2 -> mean 7/9
    assert report["consistency"] == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert report["instances"] == 3 and report["unanimous"] == 2
    assert report["annotators"]["a"] == {"answers": 3, "seconds_mean": 3.0,
                                         "seconds_std": pytest.approx(np.sqrt(2 / 3))}
    with pytest.raises(HarnessError, match="at least two"):
        agreement([a], ["a"])
    with pytest.raises(HarnessError, match="different attention passes"):
        agreement([a, [human(1, "yes", "d", attention="f" * 16)]], ["a", "d"])


def test_merge_takes_the_majority_and_ties_are_not_sure():
    a = [human(1, "yes", "a", 1.0), human(2, "no", "a", 1.0)]
    b = [human(1, "yes", "b", 2.0), human(2, "yes", "b", 2.0)]
    c = [human(1, "no", "c", 4.0)]
    merged = merge_majority([a, b, c], ["a", "b", "c"])
    assert [(e.instance_id, e.answer, e.seconds, e.who) for e in merged] == [
        (1, Answer.YES, 7.0, "a+b+c"), (2, Answer.NOT_SURE, 3.0, "a+b")]
    assert summarize_log(merged)["annotators"] == ["a", "b", "c"]
    assert RecordedOracle(merged).query([2]) == [Answer.NOT_SURE]


def test_cli_agreement_and_merge(tmp_path, capsys):
    save_log([human(1, "yes", "a"), human(2, "no", "a")], tmp_path / "a.jsonl")
    save_log([human(1, "yes", "b"), human(2, "yes", "b")], tmp_path / "b.jsonl")
    assert main(["annotations", "agreement", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]) == 0
    assert "consistency (share of the most frequent answer, paper Table 6): 75.0% over 2" in capsys.readouterr().out
    assert main(["annotations", "merge", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"),
                 "--out", str(tmp_path / "m.jsonl")]) == 0
    assert [e.answer for e in load_log(tmp_path / "m.jsonl")] == [Answer.YES, Answer.NOT_SURE]
    assert main(["annotations", "agreement", str(tmp_path / "a.jsonl"), str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["run", "--dataset", "waterbirds-synth", "--method", "slim-val", "--oracle", "person"]) == 2
    assert "use 'simulated' or 'answers:PATH'" in capsys.readouterr().err


def ls_annotation(choice, user, lead_time=3.5, cancelled=False):
    return {"id": 1, "completed_by": user, "lead_time": lead_time, "was_cancelled": cancelled,
            "result": [{"from_name": "answer", "to_name": "overlay", "type": "choices",
                        "value": {"choices": [choice]}}]}


def test_label_studio_round_trip(tmp_path):
    task = make_task()
    tasks_path, config_path = export_tasks(task, tmp_path / "ls")
    tasks = json.loads(tasks_path.read_text())
    assert [t["data"]["instance_id"] for t in tasks] == IDS and tasks[0]["data"]["attention"] == PASS
    assert tasks[0]["data"]["overlay"].startswith("data:image/png;base64,")
    assert base64.b64decode(tasks[1]["data"]["image"].split(",", 1)[1]) == task.queries[1].image
    assert config_path.read_text() == LABEL_CONFIG and '<Choice value="Not sure" hotkey="s"/>' in LABEL_CONFIG
    # what Label Studio's JSON export adds: annotations per task (two users, one cancelled, one redone)
    tasks[0]["annotations"] = [ls_annotation("Yes", 1), ls_annotation("No", 2, cancelled=True)]
    tasks[1]["annotations"] = [ls_annotation("No", 1, 2.0), ls_annotation("Not sure", 1, 6.0),
                               ls_annotation("No", {"id": 2, "email": "bo.b@lab.org"})]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    written = import_export(export, tmp_path / "logs")
    assert [p.name for p in written] == ["bo.b.jsonl", "user1.jsonl"]
    user1 = load_log(tmp_path / "logs" / "user1.jsonl")
    assert [(e.instance_id, e.answer, e.seconds, e.who) for e in user1] == [
        (7, Answer.YES, 3.5, "user1"), (3, Answer.NOT_SURE, 6.0, "user1")]
    RecordedOracle(user1).check_attention(PASS, "toy")
    assert [e.answer for e in load_log(tmp_path / "logs" / "bo.b.jsonl")] == [Answer.NO]


def test_label_studio_import_refuses_foreign_files(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps([{"data": {"image": "a.png"}, "annotations": []}]))
    with pytest.raises(HarnessError, match="no instance_id and attention"):
        import_export(bad, tmp_path)
    bad.write_text(json.dumps([{"data": {"instance_id": 1, "attention": PASS},
                                "annotations": [ls_annotation("Perhaps", 1)]}]))
    with pytest.raises(HarnessError, match="expected one 'answer' choice"):
        import_export(bad, tmp_path)
    bad.write_text("{")
    with pytest.raises(HarnessError, match="is not JSON"):
        import_export(bad, tmp_path)
    assert annotator_name({"email": "a+b@c"}) == "a_b"
    with pytest.raises(HarnessError, match="names no Label Studio user"):
        annotator_name(None)


@pytest.fixture
def toy_runs(tmp_path, monkeypatch):
    """Runs of the toy benchmark through the runner (a one-epoch reference model, no figures)."""
    from conftest import FAST_MODEL, make_toy_benchmark

    import harness.context

    bench = make_toy_benchmark(n_train=64)
    erm_defaults = harness.context.default_hparams
    monkeypatch.setattr(harness.context, "default_hparams", lambda *a: dict(erm_defaults(*a), epochs=1))
    monkeypatch.setattr("harness.runner.load_benchmark", lambda *a, **k: bench)

    def config(method="slim-val", **overrides):
        from harness.runner import make_config

        return make_config(dataset="toy", method=method, arch="resnet18",
                           overrides={**FAST_MODEL, "figures": False, **overrides}, device="cpu")

    return config


def test_recorded_answers_give_the_simulated_runs_numbers(toy_runs, tmp_path, capsys):
    """The noise-free simulated answers, replayed as a person's log, give the same run (toy benchmark); the
    queries `annotate` shows are the ones the run asks."""
    from harness.annotate import build_task
    from harness.runner import execute, make_config

    simulated = json.loads(execute(toy_runs(oracle_flip_prob=0.0), tmp_path, show_progress=False).read_text())
    truth = load_log(tmp_path / "runs" / simulated["run_id"] / "queries.jsonl")
    assert all(e.answer == e.true_answer for e in truth)
    task = build_task(toy_runs(), tmp_path, show_progress=False)
    assert [q.instance_id for q in task.queries] == [e.instance_id for e in truth]
    store = AnswerStore(tmp_path / "people", task)
    for entry in reversed(truth):  # answered in any order, the log is in query order
        store.record("ann", entry.instance_id, entry.answer, 2.0)
    human = json.loads(execute(toy_runs(oracle=f"answers:{store.path('ann')}"), tmp_path,
                               show_progress=False).read_text())
    assert human["metrics"] == simulated["metrics"] and human["model_selection"] == simulated["model_selection"]
    assert human["details"]["oracle"] == {"kind": "human", "queries": len(truth), "seconds": 2.0 * len(truth),
                                          "yes": simulated["details"]["oracle"]["yes"],
                                          "no": simulated["details"]["oracle"]["no"],
                                          "not_sure": simulated["details"]["oracle"]["not_sure"], "flipped": 0,
                                          "annotators": ["ann"]}
    assert human["cost"]["annotation_seconds"] == 2.0 * len(truth)
    # a changed answer is the one replayed
    flipped = Answer.NO if truth[0].answer is Answer.YES else Answer.YES
    store.record("ann", truth[0].instance_id, flipped, 1.0)
    assert RecordedOracle.from_file(store.path("ann")).query([truth[0].instance_id]) == [flipped]
    # answers missing for a query, or given for another split, are refused
    save_log(load_log(store.path("ann"))[1:], tmp_path / "short.jsonl")
    with pytest.raises(HarnessError, match="have no answer for instances"):
        execute(toy_runs(oracle=f"answers:{tmp_path / 'short.jsonl'}"), tmp_path, show_progress=False)
    with pytest.raises(HarnessError, match="another reference model, split or attention method"):
        execute(toy_runs("slim-tr", oracle=f"answers:{store.path('ann')}"), tmp_path, show_progress=False)
    with pytest.raises(HarnessError, match="unknown oracle 'person'"):
        execute(toy_runs(oracle="person"), tmp_path, show_progress=False)
    with pytest.raises(HarnessError, match="unknown setting 'oracle' for erm"):
        make_config(dataset="toy", method="erm", overrides={"oracle": "simulated"})
    # the CLI: Label Studio export of the same queries
    assert main(["annotate", "--dataset", "toy", "--method", "slim-val", "--arch", "resnet18", "--device", "cpu",
                 "--quiet", "--out", str(tmp_path), "--set", "pretrained=none", "--set", "width=0.25",
                 "--set", "depth=2", "--set", "figures=false", "--label-studio", str(tmp_path / "ls")]) == 0
    exported = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert [t["data"]["instance_id"] for t in exported] == [e.instance_id for e in truth]
    assert {t["data"]["attention"] for t in exported} == {task.attention}


def test_serve_binds_loopback_by_default_and_wants_a_token_when_wider(tmp_path, monkeypatch, capsys):
    from harness.annotate import serve

    calls = []
    monkeypatch.setattr("werkzeug.serving.run_simple", lambda host, port, app, **kw: calls.append((host, port, app)))
    serve(make_task(), tmp_path)
    assert calls[-1][:2] == ("127.0.0.1", 8765) and "open http://127.0.0.1:8765/\n" in capsys.readouterr().out
    assert calls[-1][2].test_client().get("/").status_code == 200
    serve(make_task(), tmp_path, host="0.0.0.0", port=9000)
    url = capsys.readouterr().out.split("open ")[1].strip()
    token = url.split("?token=")[1]
    assert url.startswith("http://0.0.0.0:9000/?token=") and len(token) >= 20
    client = calls[-1][2].test_client()
    assert client.get("/").status_code == 403 and client.get(f"/?token={token}").status_code == 200


def test_annotate_refuses_methods_that_ask_nothing(tmp_path, capsys):
    assert main(["annotate", "--dataset", "waterbirds-synth", "--method", "erm", "--out", str(tmp_path)]) == 2
    assert "asks no attention questions: annotate slim-tr or slim-val" in capsys.readouterr().err
