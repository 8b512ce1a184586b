"""Label Studio round trip for the attention questions: export a task's queries as Label Studio tasks, and
read Label Studio's JSON export back as one query log per annotator (the format ``harness.annotation.server``
writes, so ``run --oracle answers:LOG``, ``annotations agreement`` and ``merge`` take them alike).

Each exported task's data holds the plain image and the GradCAM overlay (PNG data URLs, or with
``files_root`` PNG files served by Label Studio's local-files storage), the question, the class, the
instance id, the image's identity and the attention pass's identity; where the split has object masks,
its ``predictions`` hold the simulated oracle's noise-free answer as a pre-annotation (score: the AIoU).
``label_config.xml`` is the labelling interface: both images and a single-choice ``answer`` control with
Yes / No / Not sure (hotkeys y, n, s).

The import checks every field it reads (:func:`import_export`); each annotator's log is named after their
whole e-mail address (or ``user<id>``), so two people who share the part before the @ keep two logs.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.annotation.server import NAME_PATTERN, AnnotationTask, Query
from harness.core.errors import HarnessError
from harness.core.records import atomic_write_bytes, atomic_write_json
from simulated_oracle import Answer, QueryLogEntry, save_log

CHOICES = {"Yes": Answer.YES, "No": Answer.NO, "Not sure": Answer.NOT_SURE}
HOTKEYS = {"Yes": "y", "No": "n", "Not sure": "s"}
CONTROL = "answer"
SUGGESTION_MODEL = "simulated oracle (noise-free; yes when AIoU >= 0.5)"
LOCAL_FILES_URL = "/data/local-files/?d="  # how Label Studio serves a file below its local-files document root

LABEL_CONFIG = """<View>
  <Header value="$question"/>
  <Text name="class_name" value="class: $class_name"/>
  <View style="display: flex; gap: 1em">
    <Image name="overlay" value="$overlay"/>
    <Image name="image" value="$image"/>
  </View>
  <Choices name="{control}" toName="overlay" choice="single" showInLine="true" required="true">
{choices}
  </Choices>
</View>
""".format(control=CONTROL, choices="\n".join(f'    <Choice value="{c}" hotkey="{HOTKEYS[c]}"/>' for c in CHOICES))


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def choice_result(answer: Answer) -> list[dict[str, Any]]:
    """A Label Studio ``result`` picking ``answer`` in the ``answer`` control."""
    label = next(label for label, value in CHOICES.items() if value is answer)
    return [{"from_name": CONTROL, "to_name": "overlay", "type": "choices", "value": {"choices": [label]}}]


def export_tasks(task: AnnotationTask, folder: Path, *, files_root: Path | None = None) -> tuple[Path, Path]:
    """Write ``folder/tasks.json`` (import it into a Label Studio project) and ``folder/label_config.xml``
    (that project's labelling interface); return both paths. With ``files_root`` the images are written to
    ``folder/images/`` and referred to as local files below ``files_root``, which must hold ``folder``."""
    folder = Path(folder)
    images = _image_writer(folder, files_root)
    tasks = []
    for q in task.queries:
        entry: dict[str, Any] = {"data": {
            "image": images(q, "image", q.image), "overlay": images(q, "overlay", q.overlay), "question": q.question,
            "class_name": q.class_name, "instance_id": q.instance_id, "image_id": q.image_id,
            "attention": task.attention}}
        if q.suggested is not None:
            entry["predictions"] = [{"model_version": SUGGESTION_MODEL, "score": q.aiou,
                                     "result": choice_result(q.suggested)}]
        tasks.append(entry)
    atomic_write_json(folder / "tasks.json", tasks)
    atomic_write_bytes(folder / "label_config.xml", LABEL_CONFIG.encode())
    return folder / "tasks.json", folder / "label_config.xml"


def _image_writer(folder: Path, files_root: Path | None) -> Callable[[Query, str, bytes], str]:
    """How an image goes into a task: a data URL, or a PNG file under ``folder/images`` and its local-files URL."""
    if files_root is None:
        return lambda query, kind, png: data_url(png)
    root, images = Path(files_root).resolve(), (folder / "images").resolve()
    if not root.is_dir():
        raise HarnessError(f"--label-studio-files {files_root} is not a folder")
    if not images.is_relative_to(root):
        raise HarnessError(f"--label-studio {folder} is not inside --label-studio-files {files_root}: Label Studio "
                           "serves local files only below its document root")

    def write(query: Query, kind: str, png: bytes) -> str:
        path = images / f"{query.instance_id}-{kind}.png"
        atomic_write_bytes(path, png)
        return LOCAL_FILES_URL + path.relative_to(root).as_posix()

    return write


def annotator_name(completed_by: Any) -> str:
    """A log name for Label Studio's ``completed_by``: a user object's whole e-mail address, else
    ``user<id>``; characters a name may not hold become '_', and a name that had to change or be cut
    short ends in a hash of the original, so two different users never share a log."""
    if isinstance(completed_by, dict):
        email, user_id = completed_by.get("email"), completed_by.get("id")
        raw = email if isinstance(email, str) and email else (f"user{user_id}" if _is_id(user_id) else None)
    else:
        raw = f"user{completed_by}" if _is_id(completed_by) else None
    if raw is None:
        raise HarnessError(f"annotation completed_by {completed_by!r} names no Label Studio user")
    name = re.sub(r"[^A-Za-z0-9_.@-]", "_", raw)
    if NAME_PATTERN.fullmatch(name) and name == raw:
        return name
    suffix = "-" + hashlib.sha256(raw.encode()).hexdigest()[:8]
    name = "u" + name if not name[:1].isalnum() else name
    return name[: 64 - len(suffix)] + suffix


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _field(container: dict[str, Any], key: str, accepts: Callable[[Any], bool], what: str, where: str) -> Any:
    value = container.get(key)
    if not accepts(value):
        raise HarnessError(f"{where}: {key} is {_short(value)}, but must be {what}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _seconds(annotation: dict[str, Any], where: str) -> float:
    """``lead_time`` (seconds spent), 0 when Label Studio recorded none."""
    lead_time = _field(annotation, "lead_time", lambda v: v is None or (
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0),
        "a number of seconds >= 0", where)
    return float(lead_time or 0.0)


def _answer_of(annotation: dict[str, Any], where: str) -> Answer:
    results = _field(annotation, "result", lambda v: isinstance(v, list), "a list of results", where)
    picked = []
    for number, item in enumerate(results, start=1):
        if not isinstance(item, dict):
            raise HarnessError(f"{where} result {number}: must be a JSON object, got {_short(item)}")
        if item.get("from_name") == CONTROL and item.get("type") == "choices":
            value = _field(item, "value", lambda v: isinstance(v, dict), "an object", f"{where} result {number}")
            picked.append(_field(value, "choices", lambda v: isinstance(v, list), "a list", f"{where} result {number}"))
    if len(picked) != 1 or len(picked[0]) != 1 or not isinstance(picked[0][0], str) or picked[0][0] not in CHOICES:
        raise HarnessError(f"{where}: expected one '{CONTROL}' choice of {', '.join(CHOICES)}, got {_short(picked)}")
    return CHOICES[picked[0][0]]


def read_export(path: Path) -> list[Any]:
    """The tasks of a Label Studio JSON export, or a HarnessError saying why the file is not one."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
        tasks = json.loads(text)
    except FileNotFoundError:
        raise HarnessError(f"Label Studio export {path} does not exist") from None
    except IsADirectoryError:
        raise HarnessError(f"Label Studio export {path} is a folder, not a JSON file") from None
    except UnicodeDecodeError as exc:
        raise HarnessError(f"Label Studio export {path} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise HarnessError(f"Label Studio export {path} is not JSON: {exc}") from None
    if not isinstance(tasks, list):
        raise HarnessError(f"Label Studio export {path} must be a JSON list of tasks (the JSON export format)")
    return tasks


def import_export(path: Path, folder: Path) -> list[Path]:
    """Read a Label Studio JSON export of :func:`export_tasks`' tasks; write ``folder/<annotator>.jsonl``
    per annotator (their latest non-cancelled annotation of each task, ``lead_time`` as its seconds).
    Every field read is checked first: nothing is written unless the whole export is valid."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise HarnessError(f"--out {folder} is a file: give a folder for the annotators' logs")
    logs: dict[str, dict[int, QueryLogEntry]] = {}
    for number, item in enumerate(read_export(path), start=1):
        where = f"{path} task {number}"
        if not isinstance(item, dict):
            raise HarnessError(f"{where}: must be a JSON object, got {_short(item)}")
        data = _field(item, "data", lambda v: isinstance(v, dict), "an object", where)
        instance_id, attention = data.get("instance_id"), data.get("attention")
        if not _is_id(instance_id) or not isinstance(attention, str) or not attention:
            raise HarnessError(f"{where} has no instance_id and attention in its data: it was not exported "
                               "by `python -m harness annotate --label-studio`")
        image = data.get("image_id")
        image = image if isinstance(image, str) and image.strip() else None  # tasks exported before it have none
        annotations = _field(item, "annotations", lambda v: v is None or isinstance(v, list), "a list", where)
        for count, annotation in enumerate(annotations or [], start=1):
            at = f"{where} annotation {count}"
            if not isinstance(annotation, dict):
                raise HarnessError(f"{at}: must be a JSON object, got {_short(annotation)}")
            if _field(annotation, "was_cancelled", lambda v: v is None or isinstance(v, bool), "true or false", at):
                continue
            who = annotator_name(annotation.get("completed_by"))
            logs.setdefault(who, {})[instance_id] = QueryLogEntry(
                instance_id, None, None, _answer_of(annotation, at), False, _seconds(annotation, at), who=who,
                attention=attention, answered_at=_timestamp(annotation, at), image=image)
    if not logs:
        raise HarnessError(f"Label Studio export {path} holds no annotation")
    written = []
    for who, entries in sorted(logs.items()):
        save_log(list(entries.values()), folder / f"{who}.jsonl")
        written.append(folder / f"{who}.jsonl")
    return written


def _timestamp(annotation: dict[str, Any], where: str) -> str | None:
    """When the annotation was made: Label Studio's ``created_at`` (ISO 8601 with a time zone), if it says."""
    created = annotation.get("created_at")
    if created is None:
        return None
    try:
        parsed = datetime.fromisoformat(created) if isinstance(created, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise HarnessError(f"{where}: created_at is {_short(created)}, but must be an ISO 8601 time with its zone")
    return parsed.isoformat()
