"""The attention-correctness oracle SLIM asks (paper Sec. 4.2), and a simulated stand-in for the human.

SLIM shows an annotator a model's attention map and asks "is the model looking at the object?".
``Oracle`` is the interface SLIM calls, so a real annotator can replace the simulation later.
``SimulatedOracle`` answers from ground-truth masks: YES when the instance's AIoU reaches a
threshold, with human-like noise and time per answer taken from paper Table 6 (attention
answers on Waterbirds: 4.5 +- 1.4 s each, about 95% agreement between annotators).
"""
from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from harness.core.errors import HarnessError
from harness.core.records import atomic_write_bytes
from harness.data.masks import is_integer_scalar
from simulated_oracle.aiou import (
    DEFAULT_DELTA,
    RANGE_TOLERANCE,
    aiou_stack_unchecked,
    check_attention,
    check_delta,
    check_mask,
)

MIN_SECONDS = 0.5  # floor of a simulated answer time: nobody judges an attention map faster
AttentionProvider = Callable[[np.ndarray], np.ndarray]  # int64 ids (k,) -> attention maps (k, H, W)


class Answer(StrEnum):
    YES = "yes"
    NO = "no"
    NOT_SURE = "not_sure"


@dataclass(frozen=True)
class QueryLogEntry:
    """One answer: which instance, its AIoU, the noise-free answer, the answer given and its time.

    A person's answer (``harness.annotation.server``) has no AIoU and no noise-free answer (None), and says who gave
    it and for which attention pass (``attention``: the hash of that pass's cache key), so answers given for
    another reference model or split are refused (:class:`simulated_oracle.recorded.RecordedOracle`); when
    it was given (``answered_at``, ISO 8601 with its time zone) and which image was shown (``image``: its
    file or place in the split, and a hash of its pixels).
    """

    instance_id: int
    aiou: float | None
    true_answer: Answer | None
    answer: Answer
    flipped: bool
    seconds: float
    empty_map: bool = False  # the map was all zero: the answer is NOT_SURE
    who: str | None = None
    attention: str | None = None
    answered_at: str | None = None
    image: str | None = None

    def to_json(self) -> dict[str, Any]:
        row = {**asdict(self), "answer": self.answer.value,
               "true_answer": None if self.true_answer is None else self.true_answer.value}
        return {key: value for key, value in row.items() if value is not None or key in _ALWAYS}

    @classmethod
    def from_json(cls, row: Any) -> QueryLogEntry:
        """The entry of one log line, every field checked against :data:`LOG_SCHEMA` (a ValueError saying
        which field is wrong and why): no unknown field, no missing core field, no NaN, no fraction of an id."""
        if not isinstance(row, dict):
            raise ValueError(f"a line must be a JSON object, got {type(row).__name__}")
        unknown = sorted(set(row) - set(LOG_SCHEMA))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}")
        missing = [key for key in _ALWAYS + _REQUIRED if key not in row]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(map(repr, missing))}")
        for key, value in row.items():
            accepts, what = LOG_SCHEMA[key]
            if not (value is None and key not in _REQUIRED) and not accepts(value):
                raise ValueError(f"{key} is {value!r}, but must be {what}")
        values = {f.name: row[f.name] for f in fields(cls) if row.get(f.name) is not None}
        for key, convert in (("answer", Answer), ("true_answer", Answer), ("aiou", float), ("seconds", float)):
            if key in values:
                values[key] = convert(values[key])
        return cls(**{"aiou": None, "true_answer": None, **values})


_ALWAYS = ("aiou", "true_answer")  # written even when None, so every line has the same core fields
_REQUIRED = ("instance_id", "answer", "flipped", "seconds")  # never None


def _is_number(value: Any) -> bool:
    """A finite JSON number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


_ANSWERS = {answer.value for answer in Answer}
_TEXT = (lambda value: isinstance(value, str) and value.strip() != "", "a non-empty string")
# field -> (accepts a value, the values it accepts in words); None is allowed where the field is optional
LOG_SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "instance_id": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a whole number >= 0"),
    "aiou": (lambda v: _is_number(v) and 0 <= v <= 1 + RANGE_TOLERANCE, "a number in [0, 1] or null"),
    "true_answer": (lambda v: isinstance(v, str) and v in _ANSWERS, f"one of {sorted(_ANSWERS)} or null"),
    "answer": (lambda v: isinstance(v, str) and v in _ANSWERS, f"one of {sorted(_ANSWERS)}"),
    "flipped": (lambda v: isinstance(v, bool), "true or false"),
    "seconds": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "empty_map": (lambda v: isinstance(v, bool), "true or false"),
    "who": _TEXT,
    "attention": _TEXT,
    "answered_at": (_is_timestamp, "an ISO 8601 time with its time zone"),
    "image": _TEXT,
}


@runtime_checkable
class Oracle(Protocol):
    """What SLIM needs from whoever judges attention maps (a simulation or a person)."""

    def query(self, instance_ids: Sequence[int]) -> list[Answer]:
        """One answer per id, in order; every answer counts against the budget."""
        ...

    @property
    def budget(self) -> int | None: ...

    @property
    def used(self) -> int: ...

    @property
    def remaining(self) -> int | None: ...

    @property
    def log(self) -> list[QueryLogEntry]: ...

    @property
    def total_seconds(self) -> float: ...


def oracle_seed(seed: int, dataset: str, split: str) -> int:
    """The seed of a simulated oracle's noise: a stable hash (CRC-32) of (run seed, dataset, split), so two
    datasets or splits of one seed do not flip the same query positions (Python's ``hash`` of a string
    changes between processes; CRC-32 does not)."""
    return zlib.crc32(f"{int(seed)}/{dataset}/{split}".encode())


def summarize_log(entries: Sequence[QueryLogEntry]) -> dict[str, Any]:
    """Counts and time of a query log, for a run record's labels_used and cost: ``kind`` is "human" when
    people gave the answers (``annotators`` lists them), else "simulated"; ``flip_rate`` is the realised
    share of flipped answers among those that could flip (noise-free YES or NO)."""
    answers = [entry.answer for entry in entries]
    annotators = sorted({name for entry in entries if entry.who for name in entry.who.split("+")})
    flippable = sum(entry.true_answer is not None and entry.true_answer is not Answer.NOT_SURE for entry in entries)
    flipped = sum(entry.flipped for entry in entries)
    summary: dict[str, Any] = {
        "kind": "human" if annotators else "simulated",
        "queries": len(entries),
        "seconds": float(sum(entry.seconds for entry in entries)),
        "yes": answers.count(Answer.YES),
        "no": answers.count(Answer.NO),
        "not_sure": answers.count(Answer.NOT_SURE),
        "flipped": flipped,
    }
    if annotators:
        summary["annotators"] = annotators
    else:  # what only a simulation knows: its noise as realised, and the maps it found empty
        summary.update(flip_rate=flipped / flippable if flippable else 0.0,
                       flipped_positions=[i for i, entry in enumerate(entries) if entry.flipped],
                       empty_maps=sum(entry.empty_map for entry in entries))
    return summary


def save_log(entries: Sequence[QueryLogEntry], path: str | Path) -> None:
    """Write a query log atomically as JSON lines, one answer per line (read it back with ``load_log``)."""
    lines = "".join(json.dumps(entry.to_json()) + "\n" for entry in entries)
    atomic_write_bytes(Path(path), lines.encode())


def load_log(path: str | Path) -> list[QueryLogEntry]:
    """Read a query log written by ``save_log`` (JSON lines), every line checked (:data:`LOG_SCHEMA`); a
    HarnessError names the file and line of the first problem."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"query log {path} does not exist")
    return parse_log(path.read_bytes(), str(path))


def parse_log(data: bytes, what: str) -> list[QueryLogEntry]:
    """The entries of a query log's bytes (``what`` names it in errors): UTF-8 JSON lines, blank lines skipped."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HarnessError(f"query log {what} is not UTF-8 text (byte {exc.start}): not a query log") from None
    entries = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(QueryLogEntry.from_json(json.loads(line, parse_constant=_refuse_constant)))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise HarnessError(f"query log {what} line {line_number} is not a valid entry: {exc}") from None
    return entries


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a log may hold")


class BudgetedLog:
    """The budget and query log every oracle keeps (subclasses set ``_budget`` and ``_log``)."""

    _budget: int | None
    _log: list[QueryLogEntry]

    @property
    def budget(self) -> int | None:
        return self._budget

    @property
    def used(self) -> int:
        return len(self._log)

    @property
    def remaining(self) -> int | None:
        return None if self._budget is None else self._budget - self.used

    @property
    def log(self) -> list[QueryLogEntry]:
        return list(self._log)

    def charge(self, asked: int) -> None:
        """A HarnessError if ``asked`` more answers would exceed the budget."""
        if self._budget is not None and self.used + asked > self._budget:
            raise HarnessError(
                f"attention query budget exceeded: budget {self._budget}, used {self.used}, asked {asked}"
            )


class SimulatedOracle(BudgetedLog):
    """Answers attention-correctness queries from ground-truth masks, like a noisy, slow human.

    ``attention`` is an (N, H, W) array in [0, 1] or a callable mapping an int64 array of ids to
    their (k, H, W) maps (so maps can be computed lazily); ``masks`` is bool (N, H, W); ids are 0..N-1.
    The noise-free answer is YES when AIoU >= ``threshold`` and NO otherwise, except NOT_SURE for AIoU in
    [threshold - not_sure_band, threshold + not_sure_band) when the band is positive, and NOT_SURE for a
    map that is zero everywhere (it shows nothing to judge: its AIoU would be 0 and a plain NO would
    blame the model for a map that does not exist; ``QueryLogEntry.empty_map`` counts them). A YES/NO answer
    is then flipped with probability ``flip_prob``; each answer takes a normal(``seconds_per_answer``,
    ``seconds_std``) time floored at MIN_SECONDS. All randomness comes from one generator seeded by
    ``random_state``.

    Every answer is charged against ``budget``, repeats of an instance included (a person asked twice
    spends the time twice, and may answer differently). A query that would exceed the budget raises
    HarnessError and answers, charges and logs nothing.
    """

    def __init__(
        self,
        attention: np.ndarray | AttentionProvider,
        masks: np.ndarray,
        *,
        threshold: float = 0.5,
        delta: float = DEFAULT_DELTA,
        not_sure_band: float = 0.0,
        flip_prob: float = 0.05,
        seconds_per_answer: float = 4.5,
        seconds_std: float = 1.4,
        budget: int | None = None,
        random_state: int | None = None,
    ) -> None:
        masks = np.asarray(masks)
        if masks.dtype != bool or masks.ndim != 3:
            raise HarnessError(
                f"oracle masks must be a boolean (N, H, W) array, got {masks.dtype} {masks.shape}"
            )
        if callable(attention):
            self._provider: AttentionProvider | None = attention
            self._attention = None
        else:
            self._provider = None
            self._attention = check_attention(attention, ndim=3, what="oracle attention maps")
            check_mask(masks, self._attention.shape, what="oracle masks")
        check_delta(delta)
        _check_fraction("threshold", threshold)
        _check_fraction("flip_prob", flip_prob)
        _check_non_negative("not_sure_band", not_sure_band)
        _check_non_negative("seconds_std", seconds_std)
        _check_non_negative("seconds_per_answer", seconds_per_answer, positive=True)
        if budget is not None and (not is_integer_scalar(budget) or budget < 0):
            raise HarnessError(f"oracle budget must be a non-negative integer or None, got {budget!r}")
        self._masks = masks
        self._threshold = float(threshold)
        self._delta = float(delta)
        self._not_sure_band = float(not_sure_band)
        self._flip_prob = float(flip_prob)
        self._seconds_mean = float(seconds_per_answer)
        self._seconds_std = float(seconds_std)
        self._budget = None if budget is None else int(budget)
        self._rng = np.random.default_rng(random_state)
        self._log: list[QueryLogEntry] = []
        self._total_seconds = 0.0

    @property
    def num_instances(self) -> int:
        return len(self._masks)

    @property
    def total_seconds(self) -> float:
        return self._total_seconds

    def attention_scores(self, instance_ids: Sequence[int]) -> np.ndarray:
        """AIoU of the given instances (free: nothing is charged or logged)."""
        return self._assess(self._check_ids(instance_ids))[0]

    def true_answers(self, instance_ids: Sequence[int]) -> list[Answer]:
        """The noise-free answers to the given ids (free: nothing is charged, logged or drawn)."""
        scores, empty = self._assess(self._check_ids(instance_ids))
        return [self._true_answer(float(score), bool(blank)) for score, blank in zip(scores, empty, strict=True)]

    def _assess(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(AIoU, map is all zero) of validated ids."""
        if self._provider is None:
            attention = self._attention[ids]
        else:
            provided = self._provider(ids.copy())
            attention = check_attention(provided, ndim=3, what="attention provider output")
        masks = check_mask(self._masks[ids], attention.shape, what="masks of the queried ids")
        empty = ~attention.any(axis=(1, 2))
        return aiou_stack_unchecked(attention, masks, self._delta), empty

    def query(self, instance_ids: Sequence[int]) -> list[Answer]:
        """Answer each id in order, charging and logging every answer (see the class docstring)."""
        ids = self._check_ids(instance_ids)
        self.charge(len(ids))
        scores, empty = self._assess(ids)
        flip_draws = self._rng.random(len(ids)) < self._flip_prob
        seconds = np.maximum(self._rng.normal(self._seconds_mean, self._seconds_std, len(ids)), MIN_SECONDS)
        answers = []
        for instance_id, score, blank, flip, time in zip(ids, scores, empty, flip_draws, seconds, strict=True):
            truth = self._true_answer(float(score), bool(blank))
            flipped = bool(flip) and truth is not Answer.NOT_SURE
            given = (Answer.NO if truth is Answer.YES else Answer.YES) if flipped else truth
            entry = QueryLogEntry(int(instance_id), float(score), truth, given, flipped, float(time), bool(blank))
            self._log.append(entry)
            self._total_seconds += float(time)
            answers.append(given)
        return answers

    def summary(self) -> dict[str, int | float]:
        return summarize_log(self._log)

    def save_log(self, path: str | Path) -> None:
        """Write the query log as JSON lines, one answer per line (read it back with ``load_log``)."""
        save_log(self._log, path)

    def _true_answer(self, score: float, empty: bool = False) -> Answer:
        if empty:
            return Answer.NOT_SURE
        band = self._not_sure_band
        if band > 0 and self._threshold - band <= score < self._threshold + band:
            return Answer.NOT_SURE
        return Answer.YES if score >= self._threshold else Answer.NO

    def _check_ids(self, instance_ids: Sequence[int]) -> np.ndarray:
        ids = np.asarray(instance_ids)
        if ids.ndim != 1:
            raise HarnessError(f"instance ids must be a flat sequence, got shape {ids.shape}")
        if ids.size == 0:
            return ids.astype(np.int64)
        if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
            raise HarnessError(f"instance ids must be integers, got {ids.dtype} values such as {ids[0]!r}")
        unknown = ids[(ids < 0) | (ids >= self.num_instances)]
        if unknown.size:
            raise HarnessError(
                f"instance ids {unknown[:5].tolist()} do not exist "
                f"(the oracle has ids 0..{self.num_instances - 1})"
            )
        return ids.astype(np.int64)


def _is_real(value: object) -> bool:
    is_number = isinstance(value, (int, float, np.integer, np.floating))
    return is_number and not isinstance(value, (bool, np.bool_))


def _check_fraction(name: str, value: float) -> None:
    if not (_is_real(value) and 0.0 <= float(value) <= 1.0):
        raise HarnessError(f"oracle {name} must be in [0, 1], got {value!r}")


def _check_non_negative(name: str, value: float, *, positive: bool = False) -> None:
    """Finite and >= 0 (> 0 when ``positive``)."""
    if not (_is_real(value) and np.isfinite(value) and (value > 0 if positive else value >= 0)):
        bound = "> 0" if positive else ">= 0"
        raise HarnessError(f"oracle {name} must be a finite number {bound}, got {value!r}")
