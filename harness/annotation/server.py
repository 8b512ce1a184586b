"""A person in the loop: the attention-correctness questions of a SLIM run (paper Sec. 4.2, stage 3) on a
local web page, answered into the query-log format the simulated oracle writes.

:func:`build_task` computes the queries exactly as the run would (the same cached reference model,
attention pass, attention space and :class:`slim.annotation.AnnotationSampler`, through
``_Slim.prepare``); :func:`create_app` serves them (Flask, under the waitress WSGI server). Each
annotator's answers go to their own log, ``<folder>/<name>.jsonl``, a journal: every answer appends one
line (when it was given, the image shown, the total seconds spent on that instance so far), flushed and
fsynced under an exclusive ``flock`` of the log, and every read takes the lock and reads the file again.
So two servers or two tabs on one log lose no answer, killing the server loses none, and starting again
resumes; the last line of an instance is the answer in force
(:func:`simulated_oracle.recorded.load_answers`). ``python -m harness run --oracle answers:LOG`` then
runs SLIM on those answers (``simulated_oracle.recorded.RecordedOracle``).

Safe by default: the server binds 127.0.0.1 and answers only requests whose Host header names the address
it serves (a page elsewhere that resolves its own name to 127.0.0.1, DNS rebinding, gets 403) or that
carry its random token; bound wider, every request needs the token. Images are served by instance id
only, a malformed request gets a 400 that changes nothing, and access-log lines never show the token.
"""
from __future__ import annotations

import fcntl
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import math
import os
import re
import reprlib
import secrets
import socket
import sys
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np

from harness.core.errors import HarnessError
from harness.data.containers import Benchmark
from harness.data.facts import facts
from harness.engine.methods import get_method
from harness.experiments.runner import check_writable, make_context
from simulated_oracle import Answer, QueryLogEntry, SimulatedOracle, parse_log
from simulated_oracle.recorded import attention_of, latest_answers

# an annotator's name, also their log's file name (an e-mail address fits, e.g. from a Label Studio export)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MAX_SECONDS = 3600.0  # longest plausible time on one answer
DISPLAY_SIZE = 256  # images are enlarged (nearest neighbour) to at least this many pixels a side
OVERLAY_ALPHA = 0.45  # as harness.attention.gallery draws CAMs
PAGE = Path(__file__).with_name("static") / "annotate.html"
# the page's icon (the page also carries it inline, so a browser asks for nothing)
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" '
           b'fill="#2a7"/><circle cx="8" cy="8" r="3" fill="#fff"/></svg>')
GENERIC_CLASS = re.compile(r"class\d+")  # generated classes with no object name (imagenet9-synth)
access_log = logging.getLogger("harness.annotation.server.access")


@dataclass(frozen=True)
class Query:
    """One question: an instance of the split, its class in plain words, the question, the PNGs shown (plain
    and with GradCAM), the image's identity (:func:`image_identity`) and, where the split has object masks,
    the simulated oracle's noise-free answer and the AIoU it comes from (a pre-annotation for Label Studio;
    never shown on the page)."""

    instance_id: int
    class_name: str
    question: str
    image: bytes
    overlay: bytes
    image_id: str
    suggested: Answer | None = None
    aiou: float | None = None


@dataclass(frozen=True)
class AnnotationTask:
    """The queries of one SLIM run, in the order it asks them, and the attention pass they come from."""

    title: str
    attention: str  # harness.attention.passes.attention_identity of the pass
    queries: list[Query]

    def query(self, instance_id: object) -> Query | None:
        return next((q for q in self.queries if q.instance_id == instance_id), None)


def plain_words(name: str) -> str:
    """A class or attribute name as a labeller reads it: 'not_Blond_Hair' -> 'not blond hair'."""
    return name.replace("_", " ").strip().lower()


def looked_at(benchmark: Benchmark, class_name: str) -> str:
    """What the model should look at in an image of ``class_name``, in plain words: the dataset's object
    (``DatasetFacts.looked_at``: the bird, the hair, the lesion), else the class itself ('object' for classes
    named only by number). A CelebA target other than a hair colour is asked about in its own words."""
    target = (benchmark.info.get("options") or {}).get("target")
    if target is not None and not target.endswith("_Hair"):
        return plain_words(target)
    known = facts(benchmark.name)
    if known is not None and known.looked_at:
        return known.looked_at
    return "object" if GENERIC_CLASS.fullmatch(class_name) else plain_words(class_name.removeprefix("not_"))


def question(obj: str) -> str:
    return f"Is the model looking at the {obj}?"


def image_identity(benchmark: Benchmark, split: str, index: int, pixels: np.ndarray) -> str:
    """Which image a person saw: its file (relative to the data root) or place in a generated split, and
    the first 16 hex digits of the SHA-256 of its pixels."""
    files = (benchmark.info.get("files") or {}).get(split)
    where = files[index] if files else f"{benchmark.name}/{split}/{index}"
    return f"{where} sha256:{hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:16]}"


def build_task(config: dict[str, Any], out_dir: Path, *, show_progress: bool = True) -> AnnotationTask:
    """The queries a SLIM run of ``config`` would ask, with its caches under ``out_dir/cache`` (as ``run``)."""
    method = get_method(config["method"])(config["hparams"])
    if not hasattr(method, "prepare"):  # SLIM_Tr and SLIM_Val (slim.methods) prepare their queries
        raise HarnessError(f"method {config['method']!r} asks no attention questions: annotate slim-tr or slim-val")
    ctx = make_context(config, Path(out_dir), show_progress=show_progress)
    inputs = method.prepare(ctx)
    ids = inputs.query_ids()
    split, benchmark = inputs.split, ctx.benchmark
    maps = inputs.attention.maps(ids, split.image_size)
    images = split.images[ids].permute(0, 2, 3, 1).numpy()
    suggested: list[Answer | None] = [None] * len(ids)
    scores: list[float | None] = [None] * len(ids)
    if split.masks is not None:  # the noise-free simulated answer, for Label Studio's pre-annotations
        simulated = SimulatedOracle(maps, split.masks[ids].numpy())
        positions = np.arange(len(ids))
        suggested = list(simulated.true_answers(positions))
        scores = [float(s) for s in simulated.attention_scores(positions)]
    queries = []
    for k, (i, image, cam) in enumerate(zip(ids, images, maps, strict=True)):
        name = benchmark.class_names[int(inputs.labels[i])]
        queries.append(Query(int(i), plain_words(name), question(looked_at(benchmark, name)), png(image),
                             png(overlay(image, cam)), image_identity(benchmark, inputs.split_name, int(i), image),
                             suggested[k], scores[k]))
    title = (f"{benchmark.name} {inputs.split_name} split: {method.title} queries "
             f"({ctx.arch}, seed {ctx.seed})")
    return AnnotationTask(title=title, attention=inputs.identity, queries=queries)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """uint8 (H, W, 3) image under a CAM in [0, 1] drawn with the jet colour map: (1 - alpha) image + alpha jet."""
    from matplotlib import colormaps

    heat = colormaps["jet"](np.clip(cam, 0.0, 1.0))[..., :3] * 255.0
    return np.round((1.0 - alpha) * image.astype(np.float64) + alpha * heat).astype(np.uint8)


def png(image: np.ndarray, display: int = DISPLAY_SIZE) -> bytes:
    """PNG of a uint8 (H, W, 3) image, enlarged by the smallest whole factor that reaches ``display``."""
    from PIL import Image

    factor = max(1, math.ceil(display / max(image.shape[:2])))
    picture = Image.fromarray(image)
    if factor > 1:
        picture = picture.resize((image.shape[1] * factor, image.shape[0] * factor), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise HarnessError(f"annotator name {name!r} must be 1-64 letters, digits, '.', '_', '@' or '-', "
                           "starting with a letter or digit")
    return name


def check_log_folder(folder: Path) -> Path:
    """``folder`` created if need be and writable, or a HarnessError saying why not (before any work)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise HarnessError(f"log folder {folder} is a file, not a folder: give --log-dir a folder")
    check_writable(folder, "log folder")
    return folder


class AnswerStore:
    """Each annotator's answers to ``task``, journaled in ``folder/<name>.jsonl`` (see the module docstring).

    Nothing is cached: every read and every answer takes the log's ``flock`` (shared to read, exclusive to
    append) and reads the file, so any number of stores, threads or processes may share a folder.
    """

    def __init__(self, folder: Path, task: AnnotationTask) -> None:
        self.folder = Path(folder)
        self.task = task

    def path(self, who: str) -> Path:
        return self.folder / f"{check_name(who)}.jsonl"

    def answers(self, who: str) -> dict[int, QueryLogEntry]:
        """``who``'s answer in force per instance, read from their log (empty when they have none)."""
        path = self.path(who)
        try:
            log = open(path, "rb")
        except FileNotFoundError:
            return {}
        with log:
            fcntl.flock(log, fcntl.LOCK_SH)
            return self._read(log, path, who)

    def record(self, who: str, instance_id: int, answer: Answer, seconds: float) -> QueryLogEntry:
        """Append ``who``'s answer to ``instance_id`` to their log (its seconds added to the time they already
        spent on the instance) and return the line written, once it is on disk."""
        query = self.task.query(instance_id)
        if query is None:
            raise HarnessError(f"instance {instance_id} is not one of the queries")
        path = self.path(who)
        self.folder.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        with open(os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666), "r+b") as log:  # the umask applies
            fcntl.flock(log, fcntl.LOCK_EX)
            before = self._read(log, path, who).get(instance_id)
            spent = float(seconds + (before.seconds if before else 0.0))
            entry = QueryLogEntry(instance_id, None, None, answer, False, spent, who=who, attention=self.task.attention,
                                  answered_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                                  image=query.image_id)
            log.write(json.dumps(entry.to_json()).encode() + b"\n")
            log.flush()
            os.fsync(log.fileno())
        if created:  # the new file's name on disk too
            directory = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return entry

    def _read(self, log: Any, path: Path, who: str) -> dict[int, QueryLogEntry]:
        """The answers in force in the open, locked ``log``, after checking they belong to this task."""
        log.seek(0)
        entries = latest_answers(parse_log(log.read(), str(path)), str(path))
        if entries:
            attention_of(entries, str(path))
            if entries[0].attention != self.task.attention:
                raise HarnessError(f"{path} holds answers for attention pass {entries[0].attention}, not "
                                   f"{self.task.attention}: use another name or --log-dir")
            unknown = [e.instance_id for e in entries if self.task.query(e.instance_id) is None]
            if unknown:
                raise HarnessError(f"{path} answers instances {unknown[:5]} that are not queries here")
            others = sorted({e.who for e in entries} - {who})
            if others:
                raise HarnessError(f"{path} holds answers of {others}, not of {who!r}")
        return {e.instance_id: e for e in entries}


def served_hosts(host: str, port: int) -> frozenset[str]:
    """The Host headers a request to a loopback server may carry (its address and port, by any loopback
    name); empty for any other address, where every request needs the token."""
    if not is_loopback(host):
        return frozenset()
    names = ("127.0.0.1", "localhost", "[::1]")
    return frozenset(f"{name}:{port}" for name in names) | (frozenset(names) if port == 80 else frozenset())


def create_app(task: AnnotationTask, store: AnswerStore, *, token: str, hosts: Collection[str] = ()):
    """The Flask app serving ``task`` (see the module docstring). A request is served when it carries
    ``token`` (the ``token`` query parameter or ``X-Token`` header), or when its Host header is one of
    ``hosts`` and any Origin header it has is one of theirs; anything else gets 403."""
    from flask import Flask, Response, abort, jsonify, request

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 4096
    hosts = frozenset(h.lower() for h in hosts)
    origins = frozenset(f"http://{h}" for h in hosts)

    def bad(message: str, status: int = 400):
        return jsonify(error=message), status

    @app.before_request
    def check_origin():
        given = request.args.get("token") or request.headers.get("X-Token") or ""
        if hmac.compare_digest(given.encode(), token.encode()):
            return None
        origin = request.headers.get("Origin")
        if request.host.lower() in hosts and (origin is None or origin.lower() in origins):
            return None
        return bad("this server answers its own address, or requests with its token", 403)

    @app.after_request
    def headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        args = [(key, "redacted" if key == "token" else value) for key, value in request.args.items(multi=True)]
        target = request.path + (f"?{urlencode(args)}" if args else "")
        access_log.info('%s "%s %s" %s', request.remote_addr, request.method, target, response.status_code)
        return response

    @app.get("/")
    def page():
        return Response(PAGE.read_text(), mimetype="text/html")

    @app.get("/favicon.ico")
    def favicon():
        return Response(FAVICON, mimetype="image/svg+xml")

    @app.get("/api/queries")
    def queries():
        return jsonify(title=task.title, attention=task.attention,
                       queries=[{"instance_id": q.instance_id, "class_name": q.class_name, "question": q.question}
                                for q in task.queries])

    @app.get("/api/answers/<who>")
    def answers(who: str):
        try:
            given = store.answers(check_name(who))
        except HarnessError as exc:
            return bad(str(exc))
        return jsonify(log=str(store.path(who)), answers={str(i): {"answer": e.answer.value, "seconds": e.seconds}
                                                          for i, e in given.items()})

    @app.post("/api/answers/<who>")
    def answer(who: str):
        body = request.get_json(silent=True)
        try:
            check_name(who)
            instance_id, given, seconds = parse_answer(body, task)
            entry = store.record(who, instance_id, given, seconds)
            answered = len(store.answers(who))
        except HarnessError as exc:
            return bad(str(exc))
        return jsonify(instance_id=entry.instance_id, answer=entry.answer.value, seconds=entry.seconds,
                       answered=answered, total=len(task.queries))

    @app.get("/image/<int:instance_id>/<any(plain, overlay):kind>.png")
    def image(instance_id: int, kind: str):
        query = task.query(instance_id)
        if query is None:
            abort(404)
        return Response(query.image if kind == "plain" else query.overlay, mimetype="image/png")

    return app


ANSWER_FIELDS = {"instance_id": "one of the queries' ids", "answer": f"one of {', '.join(a.value for a in Answer)}",
                 "seconds": f"a number in [0, {MAX_SECONDS:g}]"}


def parse_answer(body: object, task: AnnotationTask) -> tuple[int, Answer, float]:
    """(instance id, answer, seconds) of a POSTed answer, or HarnessError saying what is wrong with it: any
    JSON value is either accepted or refused here, never an error further on."""
    if not isinstance(body, dict) or set(body) != set(ANSWER_FIELDS):
        raise HarnessError(f"the body must be a JSON object with exactly the fields {sorted(ANSWER_FIELDS)}")
    instance_id, given, seconds = body["instance_id"], body["answer"], body["seconds"]
    valid = {
        "instance_id": isinstance(instance_id, int) and not isinstance(instance_id, bool)
        and task.query(instance_id) is not None,
        "answer": isinstance(given, str) and given in {a.value for a in Answer},
        "seconds": isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds)
        and 0 <= seconds <= MAX_SECONDS,
    }
    wrong = next((key for key, ok in valid.items() if not ok), None)
    if wrong is not None:
        raise HarnessError(f"{wrong} {reprlib.repr(body[wrong])} must be {ANSWER_FIELDS[wrong]}")
    return instance_id, Answer(given), float(seconds)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_listener(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` and listening, or a HarnessError (a port outside 1-65535, one that
    is taken, a host that is not this machine's): called before any work, the port is then held."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise HarnessError(f"--port {port!r}: must be a whole number in [1, 65535]")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise HarnessError(f"--host {host!r}: {exc.strerror}") from None
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart right after a stop works
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise HarnessError(f"cannot serve on {host} port {port}: {exc.strerror} (another server there? "
                           "choose another --port)") from None
    return listener


def served_url(listener: socket.socket, host: str) -> str:
    """The URL of the page ``listener`` serves (with its real port)."""
    port = listener.getsockname()[1]
    return f"http://{host if ':' not in host else f'[{host}]'}:{port}/"


@dataclass
class Server:
    """A started annotation server (:func:`start`): the waitress server, its token, its loop's socket map."""

    waitress: Any
    token: str
    sockets: dict

    @property
    def port(self) -> int:
        return self.waitress.socket.getsockname()[1]

    def run(self) -> None:
        """Serve until interrupted (Ctrl-C stops its workers and returns) or stopped."""
        self.waitress.run()

    def stop(self) -> None:
        """Stop it from another thread: its workers first, then every socket, closed by its own loop (woken by
        its trigger) so that the loop ends without touching a closed socket."""
        from waitress.wasyncore import close_all

        self.waitress.task_dispatcher.shutdown()
        self.waitress.trigger.pull_trigger(lambda: close_all(self.sockets))


def start(task: AnnotationTask, folder: Path, listener: socket.socket, host: str, *, out=sys.stdout) -> Server:
    """The server of ``task`` on ``listener`` (waitress; not yet running), after printing the URL to open.
    Off the loopback interface the printed URL carries the token."""
    from waitress.server import create_server

    token = secrets.token_urlsafe(16)
    port = listener.getsockname()[1]
    hosts = served_hosts(host, port)
    app = create_app(task, AnswerStore(check_log_folder(folder), task), token=token, hosts=hosts)
    url = served_url(listener, host)
    print(f"{len(task.queries)} queries ({task.title}); answers go to {folder}/<name>.jsonl", file=out)
    if hosts:
        print(f"open {url}\n(from another address or through a tunnel: {url}?token={token})", file=out, flush=True)
    else:
        print(f"open {url}?token={token}", file=out, flush=True)
    sockets: dict = {}
    server = create_server(app, map=sockets, sockets=[listener], threads=8, ident="slim-harness annotate")
    return Server(server, token, sockets)


def serve(task: AnnotationTask, folder: Path, listener: socket.socket, host: str) -> None:
    """Serve ``task`` on ``listener`` (:func:`open_listener`) until interrupted, with access lines on stderr."""
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" is no news to an annotator
    server = start(task, folder, listener, host)
    try:
        server.run()
    finally:
        server.waitress.close()
