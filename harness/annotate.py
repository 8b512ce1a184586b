"""A person in the loop: the attention-correctness questions of a SLIM run (paper Sec. 4.2, stage 3) on a
local web page, answered into the query-log format the simulated oracle writes.

:func:`build_task` computes the queries exactly as the run would (the same cached reference model,
attention pass, attention space and :class:`slim.annotation.AnnotationSampler`, through
``_Slim.prepare``); :func:`create_app` serves them with Flask. Each annotator's answers go to their own
log, ``<folder>/<name>.jsonl``, rewritten atomically after every answer with one line per answered
instance (its latest answer; changing an answer adds the seconds spent on it again), so killing the
server loses nothing and starting again resumes. ``python -m harness run --oracle answers:LOG`` then runs
SLIM on those answers (``simulated_oracle.recorded.RecordedOracle``).

Safe by default: the server binds 127.0.0.1, wants a random token in every request when bound wider,
serves images by instance id only, and answers a malformed request with a 400 that changes nothing.
"""
from __future__ import annotations

import hmac
import io
import ipaddress
import math
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.methods import get_method
from harness.runner import make_context
from simulated_oracle import Answer, QueryLogEntry, load_log, save_log
from simulated_oracle.recorded import attention_of

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")  # an annotator's name, also their log's file name
MAX_SECONDS = 3600.0  # longest plausible time on one answer
DISPLAY_SIZE = 256  # images are enlarged (nearest neighbour) to at least this many pixels a side
OVERLAY_ALPHA = 0.45  # as harness.gallery draws CAMs
PAGE = Path(__file__).with_name("static") / "annotate.html"


@dataclass(frozen=True)
class Query:
    """One question: an instance of the split, its class, and the PNGs shown (plain and with GradCAM)."""

    instance_id: int
    class_name: str
    image: bytes
    overlay: bytes

    @property
    def question(self) -> str:
        return f"Is the model looking at the {self.class_name} (not its surroundings)?"


@dataclass(frozen=True)
class AnnotationTask:
    """The queries of one SLIM run, in the order it asks them, and the attention pass they come from."""

    title: str
    attention: str  # harness.attention.attention_identity of the pass
    queries: list[Query]

    def query(self, instance_id: int) -> Query | None:
        return next((q for q in self.queries if q.instance_id == instance_id), None)


def build_task(config: dict[str, Any], out_dir: Path, *, show_progress: bool = True) -> AnnotationTask:
    """The queries a SLIM run of ``config`` would ask, with its caches under ``out_dir/cache`` (as ``run``)."""
    method = get_method(config["method"])(config["hparams"])
    if not hasattr(method, "prepare"):  # SLIM_Tr and SLIM_Val (slim.methods) prepare their queries
        raise HarnessError(f"method {config['method']!r} asks no attention questions: annotate slim-tr or slim-val")
    ctx = make_context(config, Path(out_dir), show_progress=show_progress)
    inputs = method.prepare(ctx)
    ids = inputs.query_ids()
    maps = inputs.attention.maps(ids, inputs.split.image_size)
    images = inputs.split.images[ids].permute(0, 2, 3, 1).numpy()
    names = ctx.benchmark.class_names
    queries = [Query(int(i), names[int(inputs.labels[i])], png(image), png(overlay(image, cam)))
               for i, image, cam in zip(ids, images, maps, strict=True)]
    title = (f"{ctx.benchmark.name} {inputs.split_name} split: {method.title} queries "
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
        raise HarnessError(f"annotator name {name!r} must be 1-40 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit")
    return name


class AnswerStore:
    """Each annotator's answers to ``task``, kept in ``folder/<name>.jsonl`` (see the module docstring)."""

    def __init__(self, folder: Path, task: AnnotationTask) -> None:
        self.folder = Path(folder)
        self.task = task
        self._order = {q.instance_id: k for k, q in enumerate(task.queries)}
        self._answers: dict[str, dict[int, QueryLogEntry]] = {}
        self._lock = threading.Lock()

    def path(self, who: str) -> Path:
        return self.folder / f"{check_name(who)}.jsonl"

    def answers(self, who: str) -> dict[int, QueryLogEntry]:
        """``who``'s latest answer per instance, read from their log the first time (resuming)."""
        with self._lock:
            return dict(self._load(who))

    def record(self, who: str, instance_id: int, answer: Answer, seconds: float) -> QueryLogEntry:
        """Set ``who``'s answer to ``instance_id`` and rewrite their log atomically."""
        if instance_id not in self._order:
            raise HarnessError(f"instance {instance_id} is not one of the queries")
        with self._lock:
            answers = self._load(who)
            before = answers.get(instance_id)
            total = seconds + (before.seconds if before else 0.0)
            entry = QueryLogEntry(instance_id, None, None, answer, False, float(total), who=who,
                                  attention=self.task.attention)
            updated = {**answers, instance_id: entry}
            save_log(sorted(updated.values(), key=lambda e: self._order[e.instance_id]), self.path(who))
            answers[instance_id] = entry  # only once the file holds it
            return entry

    def _load(self, who: str) -> dict[int, QueryLogEntry]:
        if who not in self._answers:
            path = self.path(who)
            entries = load_log(path) if path.is_file() else []
            if entries:
                attention_of(entries, str(path))
                if entries[0].attention != self.task.attention:
                    raise HarnessError(f"{path} holds answers for attention pass {entries[0].attention}, not "
                                       f"{self.task.attention}: use another name or --log-dir")
                unknown = [e.instance_id for e in entries if e.instance_id not in self._order]
                if unknown:
                    raise HarnessError(f"{path} answers instances {unknown[:5]} that are not queries here")
            self._answers[who] = {e.instance_id: e for e in entries}
        return self._answers[who]


def create_app(task: AnnotationTask, store: AnswerStore, *, token: str | None = None):
    """The Flask app serving ``task`` (see the module docstring); ``token``, when set, is required as the
    ``token`` query parameter or ``X-Token`` header of every request."""
    from flask import Flask, Response, abort, jsonify, request

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 4096

    def bad(message: str, status: int = 400):
        return jsonify(error=message), status

    @app.before_request
    def check_token():
        if token is None:
            return None
        given = request.args.get("token") or request.headers.get("X-Token") or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            return bad("a valid token is required", 403)
        return None

    @app.after_request
    def headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/")
    def page():
        return Response(PAGE.read_text(), mimetype="text/html")

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
            instance_id, given, seconds = _parse_answer(body, task)
            entry = store.record(who, instance_id, given, seconds)
        except HarnessError as exc:
            return bad(str(exc))
        return jsonify(instance_id=entry.instance_id, answer=entry.answer.value, seconds=entry.seconds,
                       answered=len(store.answers(who)), total=len(task.queries))

    @app.get("/image/<int:instance_id>/<any(plain, overlay):kind>.png")
    def image(instance_id: int, kind: str):
        query = task.query(instance_id)
        if query is None:
            abort(404)
        return Response(query.image if kind == "plain" else query.overlay, mimetype="image/png")

    return app


def _parse_answer(body: object, task: AnnotationTask) -> tuple[int, Answer, float]:
    """(instance id, answer, seconds) of a POSTed answer, or HarnessError saying what is wrong with it."""
    fields = {"instance_id", "answer", "seconds"}
    if not isinstance(body, dict) or set(body) != fields:
        raise HarnessError(f"the body must be a JSON object with exactly {sorted(fields)}")
    instance_id, given, seconds = body["instance_id"], body["answer"], body["seconds"]
    if isinstance(instance_id, bool) or not isinstance(instance_id, int) or task.query(instance_id) is None:
        raise HarnessError(f"instance_id {instance_id!r} is not one of the queries")
    if given not in {a.value for a in Answer}:
        raise HarnessError(f"answer {given!r} is not one of {', '.join(a.value for a in Answer)}")
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds)
            or not 0 <= seconds <= MAX_SECONDS):
        raise HarnessError(f"seconds {seconds!r} must be a number in [0, {MAX_SECONDS:g}]")
    return instance_id, Answer(given), float(seconds)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(task: AnnotationTask, folder: Path, *, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve ``task`` until interrupted; off the loopback interface every URL needs a random token."""
    from werkzeug.serving import run_simple

    token = None if is_loopback(host) else secrets.token_urlsafe(16)
    app = create_app(task, AnswerStore(folder, task), token=token)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/" + (f"?token={token}" if token else "")
    print(f"{len(task.queries)} queries ({task.title}); answers go to {folder}/<name>.jsonl\nopen {url}",
          flush=True)
    run_simple(host, port, app, threaded=True)
