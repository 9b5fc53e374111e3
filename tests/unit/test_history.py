"""History from the change topic: every change kept once, and the listings as they stood on any date."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas import LISTING_CHANGE, make_serde
from stream_app.changes import listing_changes
from stream_app.history import HistoryStore
from stream_app.records import merge_event, remove_source

SERDE = make_serde(None)
ISIN = "INE144J01027"
DAY = 86_400_000


def event(source: str, run: str, attributes: dict[str, str]) -> dict[str, Any]:
    return {
        "content_hash": "h",
        "run_id": run,
        "isin": ISIN,
        "country_code": "IN",
        "source": source,
        "line": 2,
        "attributes": attributes,
        "published_at": 0,
    }


def days() -> tuple[list[tuple[bytes | None, bytes | None, int]], dict[int, dict[str, dict[str, str]] | None]]:
    """Five days of two sources: listed, amended, removed, brought back; the truth of each day."""
    record: dict[str, Any] | None = None
    encoded: list[tuple[bytes | None, bytes | None, int]] = []
    truth: dict[int, dict[str, dict[str, str]] | None] = {}

    def step(day: int, after: dict[str, Any] | None, run: str) -> None:
        nonlocal record
        for change in listing_changes(ISIN, record, after, run, day * DAY, day * DAY + 5_000):
            encoded.append((ISIN.encode(), SERDE.encode("changes", LISTING_CHANGE, change), len(encoded)))
        record = after
        truth[day] = None if after is None else {i["source"]: dict(i["attributes"]) for i in after["listings"]}

    step(1, merge_event(None, event("nse", "n1", {"name": "20 Microns"})), "n1")
    step(2, merge_event(record, event("bse", "b2", {"name": "20 MICRONS LTD"})), "b2")
    step(3, merge_event(record, event("nse", "n3", {"name": "20 Microns Limited"})), "n3")
    assert record is not None
    step(4, remove_source(record, "nse", 4 * DAY), "n4")
    assert record is not None
    step(5, remove_source(record, "bse", 5 * DAY), "b5")
    step(6, merge_event(record, event("nse", "n6", {"name": "20 Microns Limited"})), "n6")
    return encoded, truth


def test_as_of_every_day_is_that_days_listings(tmp_path: Path) -> None:
    records, truth = days()
    store = HistoryStore(tmp_path / "history.rdb", SERDE)
    assert store.apply(3, records).changes == len(records)
    for day, expected in truth.items():
        got = store.as_of(3, ISIN, day * DAY + 1)
        listings = None if got is None else {i["source"]: i["attributes"] for i in got["listings"]}
        assert listings == expected, day
    assert store.as_of(3, ISIN, DAY - 1) is None  # before it was ever listed
    ops = [(c["op"], c["source"]) for c in store.changes(3, ISIN)]
    assert ops == [
        ("LISTED", "nse"),
        ("LISTED", "bse"),
        ("AMENDED", "nse"),
        ("DELISTED", "nse"),
        ("DELISTED", "bse"),
        ("LISTED", "nse"),
    ]
    assert [c["op"] for c in store.changes(3, ISIN, source="bse")] == ["LISTED", "DELISTED"]
    again = store.as_of(3, ISIN, 6 * DAY + 1)
    assert again is not None and again["listings"][0]["first_seen_at"] == 6 * DAY  # listed anew


def test_known_at_restricts_to_what_had_been_recorded(tmp_path: Path) -> None:
    records, _ = days()
    store = HistoryStore(tmp_path / "history.rdb", SERDE)
    store.apply(0, records)
    # on day 3, as known at day 2 (before day 3's change was recorded): the old name
    early = store.as_of(0, ISIN, 3 * DAY + 1, known_at_ms=2 * DAY + 5_000)
    late = store.as_of(0, ISIN, 3 * DAY + 1)
    assert early is not None and late is not None
    names = {i["source"]: i["attributes"]["name"] for i in early["listings"]}
    assert names == {"nse": "20 Microns", "bse": "20 MICRONS LTD"}
    assert {i["source"]: i["attributes"]["name"] for i in late["listings"]}["nse"] == "20 Microns Limited"


def test_a_change_delivered_again_is_kept_once_and_offsets_resume(tmp_path: Path) -> None:
    records, _ = days()
    store = HistoryStore(tmp_path / "history.rdb", SERDE)
    store.apply(1, records[:3])
    assert store.offset(1) == 2
    # the topic read again from the start (a restore), and a copy of one change at a new offset
    copy = (records[1][0], records[1][1], len(records))
    assert store.apply(1, [*records, copy]).changes == len(records) - 3 + 1
    assert len(store.changes(1, ISIN)) == len(records)
    store.close()
    reopened = HistoryStore(tmp_path / "history.rdb", SERDE)
    assert reopened.offset(1) == len(records) and len(reopened.changes(1, ISIN)) == len(records)
    reopened.drop(1)
    assert reopened.offset(1) == -1 and reopened.changes(1, ISIN) == []
