"""``--allow-shrink`` (or ``allow_shrink = true``, with ``max_delete_fraction = 1``) accepts a real
shrink, never another doubt about the read: each doubt alone still holds the deletions back."""

from __future__ import annotations

import pytest

from producer.reading import ColumnBy
from producer.safety import Baseline, ReadFacts, SafetyPolicy, doubts
from tests.unit.test_safety import facts as clean_read

LAST = Baseline(run_id="r1", rows=1000, invalid=10, distinct=990, column="ISIN")
LENIENT = SafetyPolicy(max_delete_fraction=1.0, allow_shrink=True)


def facts(**changes: object) -> ReadFacts:
    """test_safety's clean read, at 300 rows: a shrink of 70% against LAST, accepted by the policy."""
    return clean_read(**{"rows": 300, "valid": 297, "invalid": 3, "distinct": 297, **changes})


def test_the_shrink_alone_is_accepted() -> None:
    assert doubts(facts(), LAST, LENIENT) == []
    assert doubts(facts(), LAST, SafetyPolicy()) != []


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"framing": "close"}, "truncated"),
        ({"last_line_bad": True}, "truncated"),
        ({"kept_overflow": True}, "kept from deletion"),
        ({"unreadable": 30}, "could not be read"),
        ({"column": "items[*].isin", "column_by": ColumnBy.NAMED}, "the ISIN column is"),
        ({"column_by": ColumnBy.CONTENT}, "found by its values alone"),
        ({"invalid": 60, "valid": 240, "distinct": 240}, "invalid ISIN"),  # 20% against 1%
    ],
)
def test_every_other_doubt_still_holds_deletions_back(changes: dict[str, object], said: str) -> None:
    found = doubts(facts(**changes), LAST, LENIENT)
    assert found and any(said in doubt for doubt in found), found
