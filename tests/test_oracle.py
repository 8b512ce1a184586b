"""The simulated attention oracle: answers by threshold, noise, time, budget, log and input checks."""
from __future__ import annotations

import numpy as np
import pytest

from harness.core.errors import HarnessError
from simulated_oracle import Answer, Oracle, QueryLogEntry, SimulatedOracle, load_log, oracle_seed, summarize_log
from simulated_oracle.oracle import MIN_SECONDS

WIDTH = 10


def graded_instances() -> tuple[np.ndarray, np.ndarray]:
    """Eleven (2, 10) instances; instance k has AIoU exactly k / 10.

    Row 0 is full attention (1.0) and row 1 none; instance k's mask covers the first k pixels of row 0.
    """
    n = WIDTH + 1
    attention = np.zeros((n, 2, WIDTH))
    attention[:, 0, :] = 1.0
    masks = np.zeros((n, 2, WIDTH), dtype=bool)
    for k in range(n):
        masks[k, 0, :k] = True
    return attention, masks


def make_oracle(**kwargs) -> SimulatedOracle:
    attention, masks = graded_instances()
    return SimulatedOracle(attention, masks, **kwargs)


def test_scores_are_the_constructed_aiou() -> None:
    oracle = make_oracle()
    np.testing.assert_allclose(oracle.attention_scores(range(11)), np.arange(11) / 10)
    assert oracle.used == 0 and oracle.log == []  # scoring is free


def test_answers_follow_threshold_without_noise() -> None:
    oracle = make_oracle(threshold=0.5, flip_prob=0.0, random_state=0)
    answers = oracle.query(list(range(11)))
    assert answers == [Answer.NO] * 5 + [Answer.YES] * 6  # AIoU 0.5 (instance 5) is YES: >= threshold
    assert make_oracle(threshold=0.75, flip_prob=0.0).query([7, 8]) == [Answer.NO, Answer.YES]


def test_not_sure_band_is_half_open() -> None:
    oracle = make_oracle(threshold=0.5, not_sure_band=0.2, flip_prob=0.0, random_state=0)
    answers = oracle.query(list(range(11)))
    # [0.3, 0.7) is NOT_SURE: instances 3, 4, 5, 6.
    assert answers == [Answer.NO] * 3 + [Answer.NOT_SURE] * 4 + [Answer.YES] * 4


def test_flip_prob_one_flips_every_yes_no_but_never_not_sure() -> None:
    oracle = make_oracle(threshold=0.5, not_sure_band=0.2, flip_prob=1.0, random_state=0)
    answers = oracle.query(list(range(11)))
    assert answers == [Answer.YES] * 3 + [Answer.NOT_SURE] * 4 + [Answer.NO] * 4
    assert [entry.flipped for entry in oracle.log] == [True] * 3 + [False] * 4 + [True] * 4
    assert oracle.summary()["flipped"] == 7


def test_same_seed_same_answers_times_and_log() -> None:
    ids = np.random.default_rng(5).integers(0, 11, 300)
    first, second = make_oracle(random_state=3), make_oracle(random_state=3)
    assert first.query(ids) == second.query(ids)
    assert first.log == second.log
    other = make_oracle(random_state=4)
    other.query(ids)
    assert [e.seconds for e in other.log] != [e.seconds for e in first.log]


def test_flip_rate_matches_flip_prob_and_logged_flips() -> None:
    n_answers, flip_prob = 4000, 0.05
    oracle = make_oracle(threshold=0.5, flip_prob=flip_prob, random_state=11)
    oracle.query(np.random.default_rng(0).integers(0, 11, n_answers))
    log = oracle.log
    disagreements = sum(entry.answer != entry.true_answer for entry in log)
    assert disagreements == sum(entry.flipped for entry in log) == oracle.summary()["flipped"]
    tolerance = 4 * np.sqrt(n_answers * flip_prob * (1 - flip_prob))  # 4 binomial standard deviations
    assert abs(disagreements - n_answers * flip_prob) <= tolerance
    assert all(entry.true_answer == (Answer.YES if entry.aiou >= 0.5 else Answer.NO) for entry in log)


def test_noise_seeded_by_seed_dataset_and_split_flips_at_the_nominal_rate_and_different_positions() -> None:
    # The seed is a CRC-32 of "seed/dataset/split" (worked out independently with zlib here).
    import zlib

    assert oracle_seed(0, "waterbirds-synth", "val") == zlib.crc32(b"0/waterbirds-synth/val")
    seeds = {oracle_seed(0, d, s) for d in ("waterbirds-synth", "celeba-synth") for s in ("train", "val")}
    assert len(seeds) == 4
    flip_prob, n_answers = 0.05, 40
    positions, total = {}, 0
    for dataset in ("waterbirds-synth", "celeba-synth", "isic-synth", "nico-synth"):
        for split in ("train", "val"):
            oracle = make_oracle(flip_prob=flip_prob, random_state=oracle_seed(0, dataset, split))
            oracle.query(np.arange(n_answers) % 11)
            positions[(dataset, split)] = tuple(oracle.summary()["flipped_positions"])
            total += oracle.summary()["flipped"]
            assert oracle.summary()["flip_rate"] == oracle.summary()["flipped"] / n_answers
    assert len(set(positions.values())) == len(positions)  # no two (dataset, split) flip the same positions
    # Over many seeds, the realised rate is the nominal one within 4 binomial standard deviations.
    for seed in range(50):
        oracle = make_oracle(flip_prob=flip_prob, random_state=oracle_seed(seed, "waterbirds-synth", "val"))
        oracle.query(np.arange(n_answers) % 11)
        total += oracle.summary()["flipped"]
    n = n_answers * (8 + 50)
    assert abs(total - n * flip_prob) <= 4 * np.sqrt(n * flip_prob * (1 - flip_prob))


def test_an_all_zero_map_is_answered_not_sure_and_counted() -> None:
    attention, masks = graded_instances()
    attention[3] = 0.0  # a map that shows nothing
    oracle = SimulatedOracle(attention, masks, flip_prob=1.0, random_state=0)
    assert oracle.true_answers([3, 7, 2]) == [Answer.NOT_SURE, Answer.YES, Answer.NO]
    assert oracle.query([3, 7]) == [Answer.NOT_SURE, Answer.NO]  # flips never touch NOT_SURE
    assert oracle.log[0].empty_map and not oracle.log[1].empty_map
    assert oracle.summary()["empty_maps"] == 1 and oracle.summary()["flip_rate"] == 1.0


def test_answer_times_match_configured_distribution() -> None:
    n_answers = 4000
    oracle = make_oracle(seconds_per_answer=4.5, seconds_std=1.4, random_state=2)
    oracle.query(np.zeros(n_answers, dtype=int))
    seconds = np.array([entry.seconds for entry in oracle.log])
    assert abs(seconds.mean() - 4.5) <= 4 * 1.4 / np.sqrt(n_answers)
    assert abs(seconds.std() - 1.4) <= 0.1
    assert oracle.total_seconds == pytest.approx(seconds.sum())
    assert oracle.summary()["seconds"] == pytest.approx(seconds.sum())


def test_answer_times_are_floored() -> None:
    oracle = make_oracle(seconds_per_answer=0.6, seconds_std=2.0, random_state=0)
    oracle.query(np.zeros(500, dtype=int))
    seconds = np.array([entry.seconds for entry in oracle.log])
    assert seconds.min() == MIN_SECONDS
    assert (seconds > MIN_SECONDS).any()


def test_budget_refusal_answers_nothing() -> None:
    oracle = make_oracle(budget=5, random_state=0)
    assert oracle.remaining == 5
    oracle.query([1, 2, 3])
    with pytest.raises(HarnessError, match=r"budget 5, used 3, asked 3"):
        oracle.query([4, 5, 6])
    assert oracle.used == 3 and len(oracle.log) == 3 and oracle.remaining == 2
    oracle.query([4, 5])
    assert oracle.remaining == 0
    assert oracle.query([]) == []
    with pytest.raises(HarnessError, match="budget"):
        oracle.query([0])
    with pytest.raises(HarnessError, match="budget 0, used 0, asked 1"):
        make_oracle(budget=0).query([0])
    assert make_oracle().remaining is None


def test_refused_query_does_not_consume_randomness() -> None:
    refused, plain = make_oracle(budget=4, random_state=9), make_oracle(budget=4, random_state=9)
    with pytest.raises(HarnessError):
        refused.query([0] * 5)
    assert refused.query([1, 2, 3, 4]) == plain.query([1, 2, 3, 4])
    assert refused.log == plain.log


def test_repeated_queries_are_charged() -> None:
    oracle = make_oracle(budget=10, random_state=0)
    oracle.query([7, 7, 7])
    oracle.query([7])
    assert oracle.used == 4 and oracle.remaining == 6
    assert [entry.instance_id for entry in oracle.log] == [7, 7, 7, 7]
    assert oracle.summary()["queries"] == 4


def test_log_round_trip_and_summary(tmp_path) -> None:
    oracle = make_oracle(threshold=0.5, not_sure_band=0.15, flip_prob=0.3, random_state=6)
    answers = oracle.query(np.random.default_rng(1).integers(0, 11, 60))
    path = tmp_path / "queries.jsonl"
    oracle.save_log(path)
    assert len(path.read_text().splitlines()) == 60
    loaded = load_log(path)
    assert loaded == oracle.log
    assert all(isinstance(entry, QueryLogEntry) and isinstance(entry.answer, Answer) for entry in loaded)
    summary = oracle.summary()
    assert summarize_log(loaded) == summary
    assert summary["queries"] == 60
    assert summary["yes"] == answers.count(Answer.YES)
    assert summary["no"] == answers.count(Answer.NO)
    assert summary["not_sure"] == answers.count(Answer.NOT_SURE) > 0
    assert summary["yes"] + summary["no"] + summary["not_sure"] == 60


def test_load_log_rejects_bad_files(tmp_path) -> None:
    with pytest.raises(HarnessError, match="does not exist"):
        load_log(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instance_id": 1}\n')
    with pytest.raises(HarnessError, match="line 1"):
        load_log(bad)


def test_callable_attention_is_asked_only_for_queried_ids() -> None:
    attention, masks = graded_instances()
    calls = []

    def provider(ids: np.ndarray) -> np.ndarray:
        calls.append(ids.tolist())
        return attention[ids].astype(np.float32)

    lazy = SimulatedOracle(provider, masks, flip_prob=0.2, random_state=8)
    eager = SimulatedOracle(attention, masks, flip_prob=0.2, random_state=8)
    ids = [9, 2, 2, 5]
    assert lazy.query(ids) == eager.query(ids)
    assert lazy.log == eager.log
    assert calls == [ids]


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (lambda ids: np.zeros((len(ids), 3, WIDTH)), "shape"),
        (lambda ids: np.full((len(ids), 2, WIDTH), np.nan), "NaN"),
        (lambda ids: np.full((len(ids), 2, WIDTH), 2.0), r"\[0, 1\]"),
    ],
)
def test_callable_attention_output_is_checked(output, message) -> None:
    _, masks = graded_instances()
    oracle = SimulatedOracle(output, masks, random_state=0)
    with pytest.raises(HarnessError, match=message):
        oracle.query([0, 1])
    assert oracle.used == 0


def test_query_does_not_modify_attention_or_masks() -> None:
    attention, masks = graded_instances()
    attention[:, 1, :] = 0.85  # strong attention off the mask, so thresholding in place would show
    before = attention.copy(), masks.copy()
    SimulatedOracle(attention, masks, random_state=0).query(list(range(11)))
    np.testing.assert_array_equal(attention, before[0])
    np.testing.assert_array_equal(masks, before[1])


def test_simulated_oracle_satisfies_protocol() -> None:
    assert isinstance(make_oracle(), Oracle)


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([11], "do not exist"),
        ([-1], "do not exist"),
        ([0.0, 1.0], "integers"),
        ([True], "integers"),
        (["3"], "integers"),
        ([[0, 1]], "flat"),
    ],
)
def test_query_rejects_bad_ids(ids, message) -> None:
    oracle = make_oracle(random_state=0)
    with pytest.raises(HarnessError, match=message):
        oracle.query(ids)
    assert oracle.used == 0


def test_numpy_integer_ids_are_accepted() -> None:
    assert len(make_oracle().query(np.array([1, 2], dtype=np.int32))) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"flip_prob": 1.1}, "flip_prob"),
        ({"flip_prob": -0.01}, "flip_prob"),
        ({"budget": -1}, "budget"),
        ({"budget": 2.5}, "budget"),
        ({"delta": 0.0}, "delta"),
        ({"not_sure_band": -0.1}, "not_sure_band"),
        ({"seconds_std": -1.0}, "seconds_std"),
        ({"seconds_per_answer": 0.0}, "seconds_per_answer"),
    ],
)
def test_constructor_rejects_bad_settings(kwargs, message) -> None:
    with pytest.raises(HarnessError, match=message):
        make_oracle(**kwargs)


def test_constructor_rejects_bad_arrays() -> None:
    attention, masks = graded_instances()
    with pytest.raises(HarnessError, match="shape"):
        SimulatedOracle(attention, masks[:-1])
    with pytest.raises(HarnessError, match="shape"):
        SimulatedOracle(attention, masks[:, :, :-1])
    with pytest.raises(HarnessError, match="boolean"):
        SimulatedOracle(attention, masks.astype(np.uint8))
    with pytest.raises(HarnessError, match=r"\[0, 1\]"):
        SimulatedOracle(attention * 2, masks)
    nan_attention = attention.copy()
    nan_attention[0, 0, 0] = np.nan
    with pytest.raises(HarnessError, match="NaN"):
        SimulatedOracle(nan_attention, masks)
