"""Answers people gave beforehand (``python -m harness annotate``), replayed as SLIM's oracle, and what
several annotators' logs say together: their consistency (paper Table 6) and a majority merge.

A person's log is a journal: one line per answer given (see :class:`QueryLogEntry`), each naming who
answered, the attention pass it was given for, when, and the image shown; an answer changed later is a
later line for the same instance, and the last line of an instance is the answer in force
(:func:`load_answers`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.errors import HarnessError
from simulated_oracle.oracle import Answer, BudgetedLog, QueryLogEntry, load_log


def attention_of(entries: Sequence[QueryLogEntry], what: str) -> str:
    """The attention pass all ``entries`` were answered for; HarnessError when they name none or several."""
    passes = {entry.attention for entry in entries}
    if None in passes or not passes:
        raise HarnessError(f"{what} has answers that name no attention pass: it was not written by "
                           "`python -m harness annotate` (or its Label Studio import)")
    if len(passes) > 1:
        raise HarnessError(f"{what} mixes answers given for {len(passes)} attention passes: {sorted(passes)}")
    return passes.pop()


def latest_answers(entries: Sequence[QueryLogEntry], what: str) -> list[QueryLogEntry]:
    """Each instance's last entry (the answer in force), in the order instances first appear; HarnessError
    when a later entry for an instance names another annotator (two people's answers in one log)."""
    latest: dict[int, QueryLogEntry] = {}
    for entry in entries:
        before = latest.get(entry.instance_id)
        if before is not None and before.who != entry.who:
            raise HarnessError(f"{what} answers instance {entry.instance_id} as {before.who!r} and as {entry.who!r}: "
                               "keep one log per annotator (`annotations merge` combines them)")
        latest[entry.instance_id] = entry
    return list(latest.values())


def load_answers(path: str | Path) -> list[QueryLogEntry]:
    """A person's answers log (or a merged one), every line checked: the answer in force per instance."""
    return latest_answers(load_log(path), f"answers file {path}")


class RecordedOracle(BudgetedLog):
    """The :class:`simulated_oracle.Oracle` of recorded answers: ``query`` looks each id up.

    ``entries`` hold at most one answer per instance. Asking for an instance nobody answered raises
    HarnessError, as does a query beyond ``budget``; each answer is charged and logged with the seconds
    the person took. ``check_attention`` refuses answers given for another attention pass.
    """

    def __init__(self, entries: Sequence[QueryLogEntry], *, budget: int | None = None,
                 source: str = "recorded answers") -> None:
        if not entries:
            raise HarnessError(f"{source} hold no answer")
        counts = Counter(entry.instance_id for entry in entries)
        repeated = sorted(i for i, n in counts.items() if n > 1)
        if repeated:
            raise HarnessError(f"{source} answer instances {repeated[:5]} more than once")
        self.attention = attention_of(entries, source)
        self.source = source
        self._answers = {entry.instance_id: entry for entry in entries}
        self._budget = budget
        self._log: list[QueryLogEntry] = []

    @classmethod
    def from_file(cls, path: str | Path, *, budget: int | None = None) -> RecordedOracle:
        return cls(load_answers(path), budget=budget, source=f"answers file {path}")

    def check_attention(self, expected: str, what: str) -> None:
        """HarnessError unless the answers were given for the attention pass ``expected`` (``what``)."""
        if self.attention != expected:
            raise HarnessError(
                f"{self.source} were given for attention pass {self.attention}, but this run's is {expected} "
                f"({what}): they judge another reference model, split or attention method; annotate again"
            )

    @property
    def total_seconds(self) -> float:
        return float(sum(entry.seconds for entry in self._log))

    def query(self, instance_ids: Sequence[int]) -> list[Answer]:
        ids = [int(i) for i in instance_ids]
        self.charge(len(ids))
        missing = [i for i in ids if i not in self._answers]
        if missing:
            raise HarnessError(f"{self.source} have no answer for instances {missing[:5]} "
                               f"({len(missing)} of the {len(ids)} queried): annotate them first")
        entries = [self._answers[i] for i in ids]
        self._log.extend(entries)
        return [entry.answer for entry in entries]


def _by_instance(logs: Sequence[Sequence[QueryLogEntry]], names: Sequence[str]) -> dict[int, list[Answer]]:
    """{instance: the answers of the logs that answered it}, after checking the logs go together."""
    if len(logs) < 2:
        raise HarnessError(f"agreement and merging need at least two annotators' logs, got {len(logs)}")
    passes = {attention_of(log, name) for log, name in zip(logs, names, strict=True)}
    if len(passes) > 1:
        raise HarnessError(f"the logs were answered for different attention passes ({sorted(passes)}): "
                           "they did not judge the same queries")
    answers: dict[int, list[Answer]] = {}
    for log in logs:
        for entry in log:
            answers.setdefault(entry.instance_id, []).append(entry.answer)
    return answers


def agreement(logs: Sequence[Sequence[QueryLogEntry]], names: Sequence[str]) -> dict[str, Any]:
    """Consistency of several annotators (paper Table 6): per instance answered by at least two, the share
    of its answers that are its most frequent one, averaged over those instances; with each annotator's
    count and mean +- std seconds per answer."""
    answers = _by_instance(logs, names)
    shared = {i: a for i, a in answers.items() if len(a) >= 2}
    if not shared:
        raise HarnessError("no instance was answered by two annotators: nothing to compare")
    consensus = [Counter(a).most_common(1)[0][1] / len(a) for a in shared.values()]
    unanimous = sum(len(set(a)) == 1 for a in shared.values())
    people = {}
    for log, name in zip(logs, names, strict=True):
        seconds = np.array([entry.seconds for entry in log])
        people[name] = {"answers": len(log), "seconds_mean": float(seconds.mean()) if len(log) else 0.0,
                        "seconds_std": float(seconds.std()) if len(log) else 0.0}
    return {"consistency": float(np.mean(consensus)), "instances": len(shared), "unanimous": unanimous,
            "annotators": people}


def merge_majority(logs: Sequence[Sequence[QueryLogEntry]], names: Sequence[str]) -> list[QueryLogEntry]:
    """One log of the most frequent answer per instance (a tie between answers gives NOT_SURE), in the
    order instances first appear; ``who`` joins the annotators with '+', ``seconds`` is their total."""
    answers = _by_instance(logs, names)
    seconds: Counter[int] = Counter()
    who: dict[int, list[str]] = {}
    for log in logs:
        for entry in log:
            seconds[entry.instance_id] += entry.seconds
            who.setdefault(entry.instance_id, []).append(entry.who or "?")
    attention = attention_of(logs[0], names[0])
    merged = []
    for instance_id, given in answers.items():
        ranked = Counter(given).most_common()
        tie = len(ranked) > 1 and ranked[0][1] == ranked[1][1]
        merged.append(QueryLogEntry(instance_id, None, None, Answer.NOT_SURE if tie else ranked[0][0], False,
                                    float(seconds[instance_id]), who="+".join(sorted(set(who[instance_id]))),
                                    attention=attention))
    return merged
