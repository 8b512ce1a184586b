"""The annotation server (harness.annotation.server) through Flask's test client and as a real waitress server,
recorded answers as SLIM's oracle, annotators' agreement and merge, and the Label Studio round trip."""
from __future__ import annotations

import base64
import contextlib
import fcntl
import http.client
import io
import json
import logging
import multiprocessing
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from harness.annotation.label_studio import LABEL_CONFIG, annotator_name, export_tasks, import_export
from harness.annotation.server import (
    AnnotationTask,
    AnswerStore,
    Query,
    create_app,
    is_loopback,
    looked_at,
    open_listener,
    overlay,
    plain_words,
    png,
    served_hosts,
    start,
)
from harness.cli import main
from harness.core.errors import HarnessError
from simulated_oracle import Answer, QueryLogEntry, RecordedOracle, agreement, load_log, merge_majority, save_log
from simulated_oracle.oracle import summarize_log

PASS = "0123456789abcdef"
IDS = [7, 3, 11]
TOKEN = "s3cret-token-for-tests"
HOST = "127.0.0.1:8765"  # the address the test client calls the app by
SUGGESTED = {7: (Answer.YES, 0.75), 3: (Answer.NO, 0.25)}  # the simulated oracle's answers and AIoU; 11: no mask


def make_task(attention: str = PASS, ids=tuple(IDS)) -> AnnotationTask:
    rng = np.random.default_rng(0)
    queries = []
    for i in ids:
        image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        cam = rng.random((8, 8))
        queries.append(Query(i, "waterbird" if i % 2 else "landbird", "Is the model looking at the bird?",
                             png(image), png(overlay(image, cam)), f"toy/val/{i} sha256:{i:016x}",
                             *SUGGESTED.get(i, (None, None))))
    return AnnotationTask(title="toy val", attention=attention, queries=queries)


class Client:
    """A Flask test client that calls the app by the address it serves (its Host header), unless told."""

    def __init__(self, app, host: str = HOST) -> None:
        self.flask, self.base = app.test_client(), f"http://{host}"

    def get(self, path, **kwargs):
        return self.flask.get(self.base + path, **kwargs)

    def post(self, path, **kwargs):
        return self.flask.post(self.base + path, **kwargs)


def app_of(task, store):
    return create_app(task, store, token=TOKEN, hosts=served_hosts("127.0.0.1", 8765))


@pytest.fixture
def server(tmp_path):
    task = make_task()
    store = AnswerStore(tmp_path / "logs", task)
    return task, store, Client(app_of(task, store))


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
    assert listed["queries"][0]["question"] == "Is the model looking at the bird?"
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
    # one line per answer, in the order given: the simulated oracle's format plus who, the pass, when, the image
    stamps = [row.pop("answered_at") for row in rows]
    assert rows == [
        {"instance_id": 3, "aiou": None, "true_answer": None, "answer": "no", "flipped": False, "seconds": 4.25,
         "empty_map": False, "who": "ann", "attention": PASS, "image": "toy/val/3 sha256:0000000000000003"},
        {"instance_id": 7, "aiou": None, "true_answer": None, "answer": "yes", "flipped": False, "seconds": 2.0,
         "empty_map": False, "who": "ann", "attention": PASS, "image": "toy/val/7 sha256:0000000000000007"},
    ]
    times = [datetime.fromisoformat(stamp) for stamp in stamps]
    assert all(t.tzinfo is not None for t in times) and times[0] <= times[1]
    assert abs((datetime.now(UTC) - times[1]).total_seconds()) < 60
    assert [e.answer for e in load_log(tmp_path / "logs" / "ann.jsonl")] == [Answer.NO, Answer.YES]
    state = client.get("/api/answers/ann").get_json()
    assert state["answers"] == {"3": {"answer": "no", "seconds": 4.25}, "7": {"answer": "yes", "seconds": 2.0}}


def test_changing_an_answer_appends_a_line_that_carries_the_total_time(server, tmp_path):
    _, store, client = server
    post(client, "ann", {"instance_id": 11, "answer": "yes", "seconds": 3.0})
    post(client, "ann", {"instance_id": 11, "answer": "not_sure", "seconds": 1.5})
    rows = log_rows(tmp_path / "logs" / "ann.jsonl")
    assert [(r["answer"], r["seconds"]) for r in rows] == [("yes", 3.0), ("not_sure", 4.5)]
    assert store.answers("ann")[11].answer is Answer.NOT_SURE and store.answers("ann")[11].seconds == 4.5
    oracle = RecordedOracle.from_file(tmp_path / "logs" / "ann.jsonl")  # the last line is the answer in force
    assert oracle.query([11]) == [Answer.NOT_SURE] and oracle.total_seconds == 4.5


def test_resuming_reads_the_log_back(server, tmp_path):
    task, _, client = server
    post(client, "ann", {"instance_id": 3, "answer": "yes", "seconds": 1.0})
    fresh = Client(app_of(task, AnswerStore(tmp_path / "logs", task)))  # a restarted server
    assert fresh.get("/api/answers/ann").get_json()["answers"] == {"3": {"answer": "yes", "seconds": 1.0}}
    post(fresh, "ann", {"instance_id": 7, "answer": "no", "seconds": 2.0})
    assert [row["instance_id"] for row in log_rows(tmp_path / "logs" / "ann.jsonl")] == [3, 7]


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
    # JSON values of every other type in every field (a list or object as the answer was a 500)
    {"instance_id": 3, "answer": ["yes"], "seconds": 1}, {"instance_id": 3, "answer": {"yes": 1}, "seconds": 1},
    {"instance_id": 3, "answer": None, "seconds": 1}, {"instance_id": 3, "answer": 1, "seconds": 1},
    {"instance_id": [3], "answer": "yes", "seconds": 1}, {"instance_id": {"id": 3}, "answer": "yes", "seconds": 1},
    {"instance_id": 3.0, "answer": "yes", "seconds": 1}, {"instance_id": None, "answer": "yes", "seconds": 1},
    {"instance_id": -3, "answer": "yes", "seconds": 1}, {"instance_id": 2 ** 70, "answer": "yes", "seconds": 1},
    {"instance_id": 3, "answer": "yes", "seconds": [1]}, {"instance_id": 3, "answer": "yes", "seconds": {}},
    {"instance_id": 3, "answer": "yes", "seconds": None}, {"instance_id": 3, "answer": "yes", "seconds": True},
    {"instance_id": 3, "answer": "yes", "seconds": 1, "who": "bob"}, {"": 1}, [[[]]], 3.5, True,
])
def test_bad_bodies_get_400_and_change_nothing(server, tmp_path, body):
    _, _, client = server
    post(client, "ann", {"instance_id": 3, "answer": "yes", "seconds": 1.0})
    before = (tmp_path / "logs" / "ann.jsonl").read_bytes()
    response = post(client, "ann", body)
    assert response.status_code == 400 and response.get_json()["error"]
    assert (tmp_path / "logs" / "ann.jsonl").read_bytes() == before


@pytest.mark.parametrize("raw", ['{"instance_id": 3, "answer": "yes", "seconds": NaN}',
                                 '{"instance_id": 3, "answer": "yes", "seconds": Infinity}',
                                 '{"instance_id": 3, "answer": "yes", "seconds": 1e999}',
                                 '{"instance_id": 3, "answer": "yes", "seconds": 1', b'\xff\xfe{}'])
def test_non_finite_numbers_and_broken_json_get_400(server, tmp_path, raw):
    response = server[2].post("/api/answers/ann", data=raw, content_type="application/json")
    assert response.status_code == 400 and not (tmp_path / "logs").exists()


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


@pytest.mark.parametrize("who", ["..", "../etc", ".hidden", "a b", "x" * 65, "é", "@x", "a+b"])
def test_bad_annotator_names_are_refused(server, tmp_path, who):
    _, _, client = server
    response = post(client, who, {"instance_id": 3, "answer": "yes", "seconds": 1.0})
    assert response.status_code in (400, 404)
    assert client.get(f"/api/answers/{who}").status_code in (400, 404)
    assert not (tmp_path / "logs").exists() and not list(tmp_path.glob("*.jsonl"))


def test_token_is_required_when_no_host_is_served(tmp_path):
    task = make_task()
    client = Client(create_app(task, AnswerStore(tmp_path, task), token="s3cret"))  # bound wider than loopback
    assert client.get("/").status_code == 403 and client.get("/image/3/plain.png?token=wrong").status_code == 403
    assert client.get("/?token=s3cret").status_code == 200
    assert client.get("/api/queries", headers={"X-Token": "s3cret"}).status_code == 200
    assert post(client, "ann", {"instance_id": 3, "answer": "yes", "seconds": 1}).status_code == 403
    assert not list(tmp_path.glob("*.jsonl"))
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    assert served_hosts("0.0.0.0", 8765) == frozenset() and served_hosts("192.168.1.4", 80) == frozenset()
    assert served_hosts("127.0.0.1", 8765) == {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"}
    assert served_hosts("::1", 80) == {"127.0.0.1:80", "localhost:80", "[::1]:80", "127.0.0.1", "localhost", "[::1]"}


@pytest.mark.parametrize("host", ["evil.example:8765", "evil.example", "127.0.0.1:9999", "localhost",
                                  "127.0.0.2:8765", "localhost.evil.example:8765", "0.0.0.0:8765"])
def test_requests_naming_another_host_get_403_unless_they_carry_the_token(tmp_path, host):
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 sends Host evil.example;
    it must neither read the queries and images nor write an answer."""
    task = make_task()
    client = Client(app_of(task, AnswerStore(tmp_path, task)), host=host)
    for path in ("/", "/api/queries", "/api/answers/ann", "/image/3/plain.png", "/favicon.ico"):
        response = client.get(path)
        assert response.status_code == 403 and b"bird" not in response.data and response.mimetype != "image/png"
    assert post(client, "ann", {"instance_id": 3, "answer": "yes", "seconds": 1}).status_code == 403
    assert not list(tmp_path.glob("*.jsonl"))
    assert client.get(f"/api/queries?token={TOKEN}").status_code == 200
    assert post(client, "ann", {"instance_id": 3, "answer": "yes", "seconds": 1},
                headers={"X-Token": TOKEN}).status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LOCALHOST:8765"])
def test_the_served_address_by_any_loopback_name_needs_no_token(tmp_path, host):
    task = make_task()
    client = Client(app_of(task, AnswerStore(tmp_path, task)), host=host)
    assert client.get("/").status_code == 200 and client.get("/api/queries").status_code == 200
    origin = {"Origin": f"http://{host.lower()}"}
    assert post(client, "ann", {"instance_id": 3, "answer": "yes", "seconds": 1}, headers=origin).status_code == 200
    # a page of another origin (a cross-site form or fetch) may not write, even to the right Host
    response = post(client, "ann", {"instance_id": 3, "answer": "no", "seconds": 1},
                    headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and [r["answer"] for r in log_rows(tmp_path / "ann.jsonl")] == ["yes"]


def test_access_log_lines_never_show_the_token(server, caplog):
    _, _, client = server
    with caplog.at_level(logging.INFO, logger="harness.annotation.server.access"):
        client.get(f"/image/3/plain.png?token={TOKEN}&x=1")
        client.get("/api/queries", headers={"X-Token": TOKEN})
        client.get("/?token=wrong-one")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == ['127.0.0.1 "GET /image/3/plain.png?token=redacted&x=1" 200', '127.0.0.1 "GET /api/queries" 200',
                     '127.0.0.1 "GET /?token=redacted" 200']
    assert not any(TOKEN in line or "wrong-one" in line for line in lines)


def test_favicon_is_served_and_inline(server):
    response = server[2].get("/favicon.ico")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml" and response.data.startswith(b"<svg")
    page = server[2].get("/").data.decode()
    assert '<link rel="icon" href="data:image/svg+xml,' in page


def test_a_log_for_another_attention_pass_is_refused(tmp_path):
    other = make_task("ffffffffffffffff")
    AnswerStore(tmp_path, other).record("ann", 3, Answer.YES, 1.0)
    task = make_task()
    client = Client(app_of(task, AnswerStore(tmp_path, task)))
    response = client.get("/api/answers/ann")
    assert response.status_code == 400 and "attention pass ffffffffffffffff" in response.get_json()["error"]


@pytest.mark.parametrize("line", [b"\xff\xfe not text\n", b'{"instance_id": 3}\n', b"[1, 2]\n",
                                  b'{"instance_id": 3, "aiou": null, "true_answer": null, "answer": "yes", '
                                  b'"flipped": false, "seconds": NaN, "who": "ann", '
                                  b'"attention": "0123456789abcdef"}\n'])
def test_a_damaged_log_is_a_400_naming_it_not_a_500(server, tmp_path, line):
    _, _, client = server
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "ann.jsonl").write_bytes(line)
    for response in (client.get("/api/answers/ann"), post(client, "ann", {"instance_id": 3, "answer": "yes",
                                                                           "seconds": 1})):
        assert response.status_code == 400 and "ann.jsonl" in response.get_json()["error"]
    assert (tmp_path / "logs" / "ann.jsonl").read_bytes() == line


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
            "created_at": "2024-05-01T10:00:00Z",
            "result": [{"from_name": "answer", "to_name": "overlay", "type": "choices",
                        "value": {"choices": [choice]}}]}


def test_label_studio_round_trip(tmp_path):
    task = make_task()
    tasks_path, config_path = export_tasks(task, tmp_path / "ls")
    tasks = json.loads(tasks_path.read_text())
    assert [t["data"]["instance_id"] for t in tasks] == IDS and tasks[0]["data"]["attention"] == PASS
    assert tasks[0]["data"]["overlay"].startswith("data:image/png;base64,")
    assert base64.b64decode(tasks[1]["data"]["image"].split(",", 1)[1]) == task.queries[1].image
    assert [t["data"]["image_id"] for t in tasks] == [q.image_id for q in task.queries]
    assert tasks[0]["data"]["question"] == "Is the model looking at the bird?"
    # the simulated oracle's answer as a pre-annotation: 7 "yes" (AIoU .75), 3 "no" (.25), 11 none (no mask)
    assert [(t["predictions"][0]["result"][0]["value"]["choices"], t["predictions"][0]["score"]) for t in tasks[:2]] \
        == [(["Yes"], 0.75), (["No"], 0.25)]
    assert "predictions" not in tasks[2]
    assert tasks[0]["predictions"][0]["result"][0] | {"value": None} == {
        "from_name": "answer", "to_name": "overlay", "type": "choices", "value": None}
    assert config_path.read_text() == LABEL_CONFIG and '<Choice value="Not sure" hotkey="s"/>' in LABEL_CONFIG
    # what Label Studio's JSON export adds: annotations per task (two users, one cancelled, one redone)
    tasks[0]["annotations"] = [ls_annotation("Yes", 1), ls_annotation("No", 2, cancelled=True)]
    tasks[1]["annotations"] = [ls_annotation("No", 1, 2.0), ls_annotation("Not sure", 1, 6.0),
                               ls_annotation("No", {"id": 2, "email": "bo.b@lab.org"})]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    written = import_export(export, tmp_path / "logs")
    assert [p.name for p in written] == ["bo.b@lab.org.jsonl", "user1.jsonl"]
    user1 = load_log(tmp_path / "logs" / "user1.jsonl")
    assert [(e.instance_id, e.answer, e.seconds, e.who, e.image) for e in user1] == [
        (7, Answer.YES, 3.5, "user1", task.queries[0].image_id), (3, Answer.NOT_SURE, 6.0, "user1",
                                                                   task.queries[1].image_id)]
    assert user1[0].answered_at == "2024-05-01T10:00:00+00:00"
    RecordedOracle(user1).check_attention(PASS, "toy")
    assert [e.answer for e in load_log(tmp_path / "logs" / "bo.b@lab.org.jsonl")] == [Answer.NO]


def test_label_studio_images_as_local_files(tmp_path):
    task = make_task()
    (tmp_path / "root").mkdir()  # Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
    tasks_path, _ = export_tasks(task, tmp_path / "root" / "project", files_root=tmp_path / "root")
    tasks = json.loads(tasks_path.read_text())
    assert tasks[1]["data"]["image"] == "/data/local-files/?d=project/images/3-image.png"
    assert tasks[1]["data"]["overlay"] == "/data/local-files/?d=project/images/3-overlay.png"
    assert (tmp_path / "root" / "project" / "images" / "3-overlay.png").read_bytes() == task.queries[1].overlay
    assert sorted(p.name for p in (tmp_path / "root" / "project" / "images").iterdir()) == sorted(
        f"{i}-{kind}.png" for i in IDS for kind in ("image", "overlay"))
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(HarnessError, match="is not inside --label-studio-files"):
        export_tasks(task, tmp_path / "root" / "project", files_root=tmp_path / "elsewhere")
    with pytest.raises(HarnessError, match="is not a folder"):
        export_tasks(task, tmp_path / "root" / "project", files_root=tmp_path / "missing")


def ls_export(tmp_path, tasks) -> str:
    path = tmp_path / "export.json"
    path.write_bytes(tasks if isinstance(tasks, bytes) else json.dumps(tasks).encode())
    return str(path)


def ls_task(*annotations, **data):
    return {"data": {"instance_id": 3, "attention": PASS, **data}, "annotations": list(annotations)}


@pytest.mark.parametrize(("tasks", "message"), [
    (b"\xff" + json.dumps([ls_task()]).encode(), "is not UTF-8 text (byte 0)"),
    ([{"data": "x", "annotations": []}], "task 1: data is 'x', but must be an object"),
    ([ls_task("x")], "task 1 annotation 1: must be a JSON object, got 'x'"),
    ([{"data": {"instance_id": 3, "attention": PASS}, "annotations": "x"}], "annotations is 'x', but must be a list"),
    (["x"], "task 1: must be a JSON object"),
    ([ls_task(ls_annotation("Yes", 1, lead_time="abc"))], "lead_time is 'abc', but must be a number of seconds >= 0"),
    ([ls_task(ls_annotation("Yes", 1, lead_time=-5))], "lead_time is -5, but must be a number of seconds >= 0"),
    ([ls_task(ls_annotation("Yes", 1, lead_time=True))], "lead_time is True"),
    ([ls_task({**ls_annotation("Yes", 1), "result": [{"from_name": "answer", "type": "choices"}]})],
     "result 1: value is None, but must be an object"),
    ([ls_task({**ls_annotation("Yes", 1), "result": "Yes"})], "result is 'Yes', but must be a list of results"),
    ([ls_task({**ls_annotation("Yes", 1), "result": ["Yes"]})], "result 1: must be a JSON object"),
    ([ls_task({**ls_annotation("Yes", 1), "result": [{"from_name": "answer", "type": "choices",
                                                      "value": {"choices": [["Yes"]]}}]})], "expected one 'answer'"),
    ([ls_task({**ls_annotation("Yes", 1), "was_cancelled": "no"})], "was_cancelled is 'no', but must be true or false"),
    ([ls_task({**ls_annotation("Yes", 1), "created_at": "yesterday"})], "created_at is 'yesterday'"),
    ([ls_task(ls_annotation("Yes", True))], "names no Label Studio user"),
    ([ls_task(instance_id=3.0)], "has no instance_id and attention"),
    ({"tasks": []}, "must be a JSON list of tasks"),
])
def test_label_studio_import_refuses_malformed_exports_in_one_line(tmp_path, capsys, tasks, message):
    export = ls_export(tmp_path, tasks)
    assert main(["annotations", "import-label-studio", export, "--out", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "logs").exists()


def test_label_studio_users_who_share_a_local_part_keep_two_logs(tmp_path):
    export = ls_export(tmp_path, [ls_task(ls_annotation("Yes", {"id": 1, "email": "alice@x.org"}),
                                          ls_annotation("No", {"id": 2, "email": "alice@y.org"}))])
    written = import_export(export, tmp_path / "logs")
    assert [p.name for p in written] == ["alice@x.org.jsonl", "alice@y.org.jsonl"]
    assert [load_log(p)[0].answer for p in written] == [Answer.YES, Answer.NO]
    # names that had to change end in a hash of the original: different users, different logs
    names = {annotator_name({"email": e}) for e in ("a+b@c", "a_b@c", "a b@c", "x" * 80 + "@c", "x" * 80 + "@d")}
    assert len(names) == 5 and all(len(n) <= 64 for n in names)
    assert annotator_name({"email": "a+b@c"}).startswith("a_b@c-") and annotator_name(7) == "user7"
    assert annotator_name({"id": 4}) == "user4" and annotator_name({"email": "_x@y"}).startswith("u_x@y-")


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
    with pytest.raises(HarnessError, match="is a file: give a folder"):
        import_export(bad, bad)
    with pytest.raises(HarnessError, match="names no Label Studio user"):
        annotator_name(None)


@pytest.fixture
def toy_runs(tmp_path, monkeypatch):
    """Runs of the toy benchmark through the runner (a one-epoch reference model, no figures)."""
    from conftest import FAST_MODEL, make_toy_benchmark

    import harness.engine.context

    bench = make_toy_benchmark(n_train=64)
    erm_defaults = harness.engine.context.run_hparams
    monkeypatch.setattr(harness.engine.context, "run_hparams", lambda *a: dict(erm_defaults(*a), epochs=1))
    monkeypatch.setattr("harness.experiments.runner.load_benchmark", lambda *a, **k: bench)

    def config(method="slim-val", **overrides):
        from harness.experiments.runner import make_config

        return make_config(dataset="toy", method=method, arch="resnet18",
                           overrides={**FAST_MODEL, "figures": False, **overrides}, device="cpu")

    return config


def test_recorded_answers_give_the_simulated_runs_numbers(toy_runs, tmp_path, capsys):
    """The noise-free simulated answers, replayed as a person's log, give the same run (toy benchmark); the
    queries `annotate` shows are the ones the run asks."""
    from harness.annotation.server import build_task
    from harness.experiments.runner import execute, make_config

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running(task, folder, host="127.0.0.1"):
    """``start`` on a free port, the server running in a thread: yields (port, token, what it printed)."""
    printed = io.StringIO()
    server = start(task, folder, open_listener(host, free_port()), host, out=printed)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server.port, server.token, printed.getvalue()
    finally:
        server.stop()
        thread.join(10)
        assert not thread.is_alive()


def send(port, method, path, body=None, host=None):
    """(status, body) of one request over a real connection, with the Host header ``host`` if given."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", **({"Host": host} if host else {})}
        connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_answers_for_another_attention_pass_are_refused_before_the_reference_model_trains(toy_runs, tmp_path,
                                                                                          monkeypatch):
    from harness.engine.context import RunContext
    from harness.experiments.runner import execute

    def reference_model(self):
        raise AssertionError("the reference model was asked for")

    monkeypatch.setattr(RunContext, "reference_model", reference_model)
    save_log([human(i, "yes", attention="f" * 16) for i in range(64)], tmp_path / "other.jsonl")
    with pytest.raises(HarnessError, match="were given for attention pass ffffffffffffffff, but this run's is"):
        execute(toy_runs(oracle=f"answers:{tmp_path / 'other.jsonl'}"), tmp_path, show_progress=False)


def test_serve_prints_the_url_it_serves_under_waitress(tmp_path, capfd):
    task = make_task()
    with running(task, tmp_path / "logs") as (port, token, printed):
        assert printed.splitlines() == [
            f"3 queries (toy val); answers go to {tmp_path / 'logs'}/<name>.jsonl", f"open http://127.0.0.1:{port}/",
            f"(from another address or through a tunnel: http://127.0.0.1:{port}/?token={token})"]
        status, page = send(port, "GET", "/")
        assert status == 200 and b'id="start-form"' in page
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/api/queries")
        assert connection.getresponse().getheader("Server") == "slim-harness annotate"  # waitress's ident
        connection.close()
        # DNS rebinding against the real server: another name for 127.0.0.1 reads and writes nothing
        assert send(port, "GET", "/api/queries", host=f"evil.example:{port}")[0] == 403
        assert send(port, "POST", "/api/answers/ann", {"instance_id": 3, "answer": "yes", "seconds": 1},
                    host=f"evil.example:{port}")[0] == 403
        assert not (tmp_path / "logs" / "ann.jsonl").exists()
        assert send(port, "GET", f"/api/queries?token={token}", host=f"evil.example:{port}")[0] == 200
    assert len(token) >= 20
    captured = capfd.readouterr()
    assert "development server" not in captured.out + captured.err


def test_bound_wider_every_url_needs_the_token(tmp_path):
    with running(make_task(), tmp_path, host="0.0.0.0") as (port, token, printed):
        assert printed.splitlines()[-1] == f"open http://0.0.0.0:{port}/?token={token}"
        for host in (f"127.0.0.1:{port}", f"0.0.0.0:{port}", f"localhost:{port}"):
            assert send(port, "GET", "/api/queries", host=host)[0] == 403
        assert send(port, "GET", f"/api/queries?token={token}")[0] == 200


def test_two_servers_on_one_log_folder_lose_no_answer(tmp_path):
    """Two `annotate` servers on one log folder, one annotator answering through both at once: every
    acknowledged answer is a line on disk, and each instance's time is the sum of all its answers'."""
    task = make_task(ids=range(24))
    folder = tmp_path / "logs"
    with running(task, folder) as (first, _, _), running(task, folder) as (second, _, _):
        def answer(k):
            body = {"instance_id": k % 24, "answer": ("yes", "no", "not_sure")[k % 3], "seconds": 1.0}
            status, data = send(first if k % 2 else second, "POST", "/api/answers/ann", body)
            return json.loads(data) if status == 200 else None

        with ThreadPoolExecutor(8) as pool:
            acknowledged = [a for a in pool.map(answer, range(96)) if a is not None]
    lines = log_rows(folder / "ann.jsonl")
    assert len(acknowledged) == 96 and len(lines) == 96
    assert sorted((r["instance_id"], r["answer"], r["seconds"]) for r in lines) == sorted(
        (a["instance_id"], a["answer"], a["seconds"]) for a in acknowledged)
    for instance in range(24):  # answered 4 times, 1 s each: the lines carry 1, 2, 3, 4 s in the order written
        assert [r["seconds"] for r in lines if r["instance_id"] == instance] == [1.0, 2.0, 3.0, 4.0]


def test_answers_and_reads_wait_for_the_lock_of_the_log(tmp_path):
    """An answer is appended under an exclusive lock and a read takes a shared one: while another process
    (here another open file) holds the log, an answer waits; while one is written, a read waits."""
    store = AnswerStore(tmp_path, make_task())
    store.record("ann", 3, Answer.YES, 1.0)
    read = []
    for held, waiting, lines in ((fcntl.LOCK_SH, lambda: store.record("ann", 3, Answer.NO, 2.0), 1),
                                 (fcntl.LOCK_EX, lambda: read.append(store.answers("ann")), 2)):
        with open(store.path("ann"), "rb") as log:
            fcntl.flock(log, held)
            worker = threading.Thread(target=waiting)
            worker.start()
            worker.join(0.5)
            assert worker.is_alive() and len(log_rows(store.path("ann"))) == lines and not read
        worker.join(10)
    assert [(r["answer"], r["seconds"]) for r in log_rows(store.path("ann"))] == [("yes", 1.0), ("no", 3.0)]
    assert read[0][3].answer is Answer.NO


def _answer_many(folder, offset, go):
    store = AnswerStore(folder, make_task(ids=range(10)))
    go.wait(30)
    for k in range(40):
        store.record("ann", (k + offset) % 10, Answer.YES, 0.5)


def test_processes_appending_to_one_log_keep_every_line_whole(tmp_path):
    context = multiprocessing.get_context("fork")
    go = context.Event()  # all start answering at once
    workers = [context.Process(target=_answer_many, args=(tmp_path, offset, go)) for offset in (0, 5, 7)]
    for worker in workers:
        worker.start()
    go.set()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    entries = load_log(tmp_path / "ann.jsonl")  # every line parses
    assert len(entries) == 120
    for instance in range(10):  # 12 answers of 0.5 s each, no update lost
        assert [e.seconds for e in entries if e.instance_id == instance] == [0.5 * n for n in range(1, 13)]


@pytest.fixture
def no_work(monkeypatch):
    """`annotate` with build_task (the reference model, the attention pass) failing the test if it starts."""
    def build_task(*args, **kwargs):
        raise AssertionError("the run's work started")

    monkeypatch.setattr("harness.annotation.server.build_task", build_task)


ANNOTATE = ["annotate", "--dataset", "waterbirds-synth", "--method", "slim-val", "--quiet"]


@pytest.mark.parametrize("port", ["99999", "0", "-1", "65536"])
def test_annotate_refuses_a_port_out_of_range_before_any_work(tmp_path, capsys, no_work, port):
    assert main([*ANNOTATE, "--out", str(tmp_path), "--port", port]) == 2
    assert capsys.readouterr().err == f"error: --port {port}: must be a whole number in [1, 65535]\n"


def test_annotate_refuses_a_taken_port_and_a_log_dir_that_is_a_file_before_any_work(tmp_path, capsys, no_work):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main([*ANNOTATE, "--out", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot serve on 127.0.0.1 port {port}: Address already in use") and \
        err.count("\n") == 1
    (tmp_path / "file").write_text("x")
    assert main([*ANNOTATE, "--out", str(tmp_path), "--port", str(free_port()), "--log-dir",
                 str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"error: log folder {tmp_path / 'file'} is a file, not a folder: give " \
                                      "--log-dir a folder\n"
    assert main([*ANNOTATE, "--out", str(tmp_path), "--label-studio-files", str(tmp_path)]) == 2
    assert "--label-studio-files: only with --label-studio" in capsys.readouterr().err


def test_annotate_refuses_methods_that_ask_nothing(tmp_path, capsys):
    assert main(["annotate", "--dataset", "waterbirds-synth", "--method", "erm", "--out", str(tmp_path)]) == 2
    assert "asks no attention questions: annotate slim-tr or slim-val" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "classes", "info", "label", "asked", "shown"), [
    ("waterbirds-synth", ["landbird", "waterbird"], {}, 1, "bird", "waterbird"),
    ("waterbirds", ["landbird", "waterbird"], {"options": {}}, 0, "bird", "landbird"),
    ("celeba-synth", ["not_blond", "blond"], {}, 0, "hair", "not blond"),
    ("celeba", ["not_Blond_Hair", "Blond_Hair"], {"options": {}}, 0, "hair", "not blond hair"),
    ("celeba", ["not_Gray_Hair", "Gray_Hair"], {"options": {"target": "Gray_Hair"}}, 1, "hair", "gray hair"),
    ("celeba", ["not_Eyeglasses", "Eyeglasses"], {"options": {"target": "Eyeglasses"}}, 0, "eyeglasses",
     "not eyeglasses"),
    ("isic-synth", ["benign", "malignant"], {}, 1, "lesion", "malignant"),
    ("nico-synth", ["trefoil", "quatrefoil"], {}, 1, "quatrefoil", "quatrefoil"),
    ("imagenet9", ["dog", "wheeled_vehicle"], {"options": {}}, 1, "wheeled vehicle", "wheeled vehicle"),
    ("imagenet9-synth", ["class0", "class3"], {}, 1, "object", "class3"),
])
def test_questions_name_what_the_model_should_look_at_in_plain_words(name, classes, info, label, asked, shown):
    from conftest import make_toy_benchmark

    benchmark = replace(make_toy_benchmark(n_train=8), name=name, class_names=classes, info=info)
    assert looked_at(benchmark, classes[label]) == asked and plain_words(classes[label]) == shown
