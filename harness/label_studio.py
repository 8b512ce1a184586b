"""Label Studio round trip for the attention questions: export a task's queries as Label Studio tasks, and
read Label Studio's JSON export back as one query log per annotator (the format ``harness.annotate``
writes, so ``run --oracle answers:LOG``, ``annotations agreement`` and ``merge`` take them alike).

Each exported task's data holds the plain image and the GradCAM overlay as PNG data URLs, the question,
the class, the instance id and the attention pass's identity; ``label_config.xml`` is the labelling
interface: both images and a single-choice ``answer`` control with Yes / No / Not sure (hotkeys y, n, s).
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from harness.annotate import AnnotationTask
from harness.errors import HarnessError
from harness.records import atomic_write_bytes, atomic_write_json
from simulated_oracle import Answer, QueryLogEntry, save_log

CHOICES = {"Yes": Answer.YES, "No": Answer.NO, "Not sure": Answer.NOT_SURE}
HOTKEYS = {"Yes": "y", "No": "n", "Not sure": "s"}
CONTROL = "answer"

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


def export_tasks(task: AnnotationTask, folder: Path) -> tuple[Path, Path]:
    """Write ``folder/tasks.json`` (import it into a Label Studio project) and ``folder/label_config.xml``
    (that project's labelling interface); return both paths."""
    folder = Path(folder)
    tasks = [{"data": {"image": data_url(q.image), "overlay": data_url(q.overlay), "question": q.question,
                       "class_name": q.class_name, "instance_id": q.instance_id, "attention": task.attention}}
             for q in task.queries]
    atomic_write_json(folder / "tasks.json", tasks)
    atomic_write_bytes(folder / "label_config.xml", LABEL_CONFIG.encode())
    return folder / "tasks.json", folder / "label_config.xml"


def annotator_name(completed_by: Any) -> str:
    """A log name for Label Studio's ``completed_by``: ``user<id>`` for a user id, else the e-mail's local
    part (or the id) of a user object, reduced to the characters a name may hold."""
    if isinstance(completed_by, dict):
        raw = str(completed_by.get("email", "")).split("@")[0] or f"user{completed_by.get('id', '')}"
    elif isinstance(completed_by, int) and not isinstance(completed_by, bool):
        raw = f"user{completed_by}"
    else:
        raise HarnessError(f"annotation completed_by {completed_by!r} names no Label Studio user")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", raw).lstrip("._-")[:40]
    if not name:
        raise HarnessError(f"annotation completed_by {completed_by!r} gives no usable annotator name")
    return name


def _answer_of(annotation: dict[str, Any], where: str) -> Answer:
    picked = [item["value"]["choices"] for item in annotation.get("result", [])
              if isinstance(item, dict) and item.get("from_name") == CONTROL and item.get("type") == "choices"]
    if len(picked) != 1 or len(picked[0]) != 1 or picked[0][0] not in CHOICES:
        raise HarnessError(f"{where}: expected one '{CONTROL}' choice of {', '.join(CHOICES)}, got {picked}")
    return CHOICES[picked[0][0]]


def import_export(path: Path, folder: Path) -> list[Path]:
    """Read a Label Studio JSON export of :func:`export_tasks`' tasks; write ``folder/<annotator>.jsonl``
    per annotator (their latest non-cancelled annotation of each task, ``lead_time`` as its seconds)."""
    path = Path(path)
    try:
        tasks = json.loads(path.read_text())
    except FileNotFoundError:
        raise HarnessError(f"Label Studio export {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise HarnessError(f"Label Studio export {path} is not JSON: {exc}") from None
    if not isinstance(tasks, list):
        raise HarnessError(f"Label Studio export {path} must be a JSON list of tasks (the JSON export format)")
    logs: dict[str, dict[int, QueryLogEntry]] = {}
    for number, item in enumerate(tasks, start=1):
        where = f"{path} task {number}"
        data = item.get("data", {}) if isinstance(item, dict) else {}
        instance_id, attention = data.get("instance_id"), data.get("attention")
        if not isinstance(instance_id, int) or not isinstance(attention, str):
            raise HarnessError(f"{where} has no instance_id and attention in its data: it was not exported "
                               "by `python -m harness annotate --label-studio`")
        for annotation in item.get("annotations", []):
            if annotation.get("was_cancelled"):
                continue
            who = annotator_name(annotation.get("completed_by"))
            seconds = float(annotation.get("lead_time") or 0.0)
            logs.setdefault(who, {})[instance_id] = QueryLogEntry(
                instance_id, None, None, _answer_of(annotation, where), False, seconds, who=who, attention=attention)
    if not logs:
        raise HarnessError(f"Label Studio export {path} holds no annotation")
    written = []
    for who, entries in sorted(logs.items()):
        save_log(list(entries.values()), Path(folder) / f"{who}.jsonl")
        written.append(Path(folder) / f"{who}.jsonl")
    return written
