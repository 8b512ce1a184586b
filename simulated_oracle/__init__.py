"""Attention accuracy (AIoU) and a simulated attention-correctness oracle standing in for SLIM's human."""
from __future__ import annotations

import harness  # noqa: F401  (first: pins the CPU kernels before numpy and torch load, harness.core.cpu)
from harness.data.masks import box_mask
from simulated_oracle.aiou import aiou, aiou_batch, attention_accuracy
from simulated_oracle.oracle import (
    Answer,
    Oracle,
    QueryLogEntry,
    SimulatedOracle,
    load_log,
    oracle_seed,
    parse_log,
    save_log,
    summarize_log,
)
from simulated_oracle.recorded import RecordedOracle, agreement, load_answers, merge_majority

__all__ = [
    "Answer",
    "Oracle",
    "QueryLogEntry",
    "RecordedOracle",
    "SimulatedOracle",
    "aiou",
    "agreement",
    "aiou_batch",
    "attention_accuracy",
    "box_mask",
    "load_answers",
    "load_log",
    "merge_majority",
    "oracle_seed",
    "parse_log",
    "save_log",
    "summarize_log",
]
