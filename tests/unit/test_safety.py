"""When a run may publish deletions (producer/safety.py), and the exact distinct count behind it."""

from __future__ import annotations

from pathlib import Path

from producer.distinct import DistinctCounter
from producer.reading import ColumnBy
from producer.safety import Baseline, ReadFacts, SafetyPolicy, doubts

POLICY = SafetyPolicy()
LAST = Baseline(run_id="r1", rows=1000, invalid=10, distinct=990, column="ISIN")


def facts(**changes: object) -> ReadFacts:
    base: dict[str, object] = {
        "rows": 1000,
        "valid": 990,
        "invalid": 10,
        "unreadable": 0,
        "distinct": 990,
        "column": "ISIN",
        "column_by": ColumnBy.HEADER,
        "framing": "content-length",
        "end_proven": False,
        "last_line_bad": False,
    }
    base.update(changes)
    return ReadFacts(**base)  # type: ignore[arg-type]


def test_a_clean_read_against_its_last_run_has_no_doubt() -> None:
    assert doubts(facts(), LAST, POLICY) == []
    assert doubts(facts(distinct=941), LAST, POLICY) == []  # 4.9% fewer: under the 5% default


def test_shrink_is_measured_in_distinct_isins() -> None:
    found = doubts(facts(distinct=940), LAST, POLICY)
    assert len(found) == 1 and "50 (5.1%) fewer" in found[0] and "--allow-shrink" in found[0]
    assert doubts(facts(distinct=940), LAST, SafetyPolicy(allow_shrink=True)) == []
    assert doubts(facts(distinct=940), LAST, SafetyPolicy(max_delete_fraction=0.1)) == []


def test_another_column_than_last_time_is_a_doubt_unless_configured() -> None:
    found = doubts(facts(column="Underlying ISIN", column_by=ColumnBy.NAMED), LAST, POLICY)
    assert len(found) == 1 and "'Underlying ISIN'" in found[0] and "'ISIN'" in found[0]
    assert doubts(facts(column="Underlying ISIN", column_by=ColumnBy.CONFIGURED), LAST, POLICY) == []


def test_a_column_found_by_values_alone_holds_deletions_back() -> None:
    found = doubts(
        facts(column="bytes 10-21", column_by=ColumnBy.CONTENT), Baseline("r1", 1000, 10, 990, "bytes 10-21"), POLICY
    )
    assert len(found) == 1 and "values alone" in found[0]


def test_unreadable_rows_over_the_threshold() -> None:
    assert doubts(facts(unreadable=10), LAST, POLICY) == []  # 1.0%: not over
    found = doubts(facts(unreadable=11), None, POLICY)  # even without a last run
    assert len(found) == 1 and "11 of 1000 rows (1.1%)" in found[0]


def test_a_jump_of_invalid_isins_but_not_a_steady_share() -> None:
    steady = Baseline("r1", 1000, 300, 700, "ISIN")  # a list with many placeholder rows every day
    assert doubts(facts(invalid=310, valid=690, distinct=690), steady, POLICY) == []
    found = doubts(facts(invalid=40, valid=960, distinct=960), LAST, POLICY)
    assert len(found) == 1 and "4.0% of the rows have an invalid ISIN, against 1.0%" in found[0]


def test_truncation_evidence() -> None:
    assert doubts(facts(framing="chunked"), None, POLICY) == []
    assert doubts(facts(framing="close", end_proven=True), None, POLICY) == []  # a zip proves its end
    assert "connection closed" in doubts(facts(framing="close"), None, POLICY)[0]
    assert "last line" in doubts(facts(last_line_bad=True), None, POLICY)[0]


def test_distinct_counter_is_exact_across_spilled_buckets(tmp_path: Path) -> None:
    # ISIN-shaped values built from a counter; valid check digits do not matter to the counter
    values = [f"XS{n:09d}{n % 10}" for n in range(200_000)]
    counter = DistinctCounter(str(tmp_path), flush_at=1000)
    try:
        for start in range(0, len(values), 2000):
            counter.add_many(values[start : start + 2000])
        counter.add_many(values[:5000])  # repeats are not counted twice
        spilled = len(list(Path(counter._dir).iterdir()))
        assert counter.count() == len(values)
    finally:
        counter.close()
    assert spilled > 0, "the test must cross the spill threshold"
    assert list(tmp_path.iterdir()) == []
