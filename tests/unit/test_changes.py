"""Listing changes between two records, and their ids."""

from __future__ import annotations

from schemas import LISTING_CHANGE, make_serde
from stream_app.changes import backfill_changes, change_id, listing_changes
from stream_app.records import merge_event, remove_source

ISIN = "INE144J01027"


def event(source: str, run: str, attributes: dict[str, str], at: int = 1_000) -> dict[str, object]:
    return {
        "content_hash": f"{source}-{sorted(attributes.items())}",
        "run_id": run,
        "isin": ISIN,
        "country_code": "IN",
        "source": source,
        "line": 2,
        "attributes": attributes,
        "published_at": at,
    }


def test_listed_amended_and_delisted_per_source() -> None:
    first = merge_event(None, event("nse", "r1", {"symbol": "20MICRONS", "series": "EQ"}))
    (listed,) = listing_changes(ISIN, None, first, "r1", 10, 11)
    assert (listed["op"], listed["before"], listed["after"]) == (
        "LISTED",
        None,
        {"symbol": "20MICRONS", "series": "EQ"},
    )
    assert (listed["slot"], listed["recorded_at"], listed["changed"]) == (10, 11, ["series", "symbol"])

    amended = merge_event(first, event("nse", "r2", {"symbol": "20MICRONS", "series": "BE"}))
    (change,) = listing_changes(ISIN, first, amended, "r2", 20, 21)
    assert (change["op"], change["changed"], change["before"]["series"], change["after"]["series"]) == (
        "AMENDED",
        ["series"],
        "EQ",
        "BE",
    )

    two = merge_event(amended, event("bse", "r3", {"name": "20 Microns"}))
    assert [c["op"] + ":" + c["source"] for c in listing_changes(ISIN, amended, two, "r3", 30, 31)] == ["LISTED:bse"]
    gone = remove_source(two, "nse", 40)
    (delisted,) = listing_changes(ISIN, two, gone, "r4", 40, 41)
    assert (delisted["op"], delisted["source"], delisted["after"]) == ("DELISTED", "nse", None)
    assert listing_changes(ISIN, gone, None, "r5", 50, 51)[0]["op"] == "DELISTED"


def test_a_new_run_with_the_same_attributes_is_no_change() -> None:
    first = merge_event(None, event("nse", "r1", {"symbol": "A"}))
    again = merge_event(first, event("nse", "r2", {"symbol": "A"}, at=2_000))
    assert listing_changes(ISIN, first, again, "r2", 20, 21) == []


def test_ids_are_the_same_for_the_same_fact_whenever_it_is_applied() -> None:
    first = merge_event(None, event("nse", "r1", {"symbol": "A"}))
    one = listing_changes(ISIN, None, first, "r1", 10, 11)[0]
    again = listing_changes(ISIN, None, first, "r1", 10, 99)[0]  # applied again later, after a crash
    assert one["change_id"] == again["change_id"] == change_id(ISIN, "nse", "r1", "LISTED")
    other = listing_changes(ISIN, None, first, "r2", 10, 11)[0]
    assert other["change_id"] != one["change_id"]


def test_backfill_is_dated_at_first_seen_and_encodes() -> None:
    record = merge_event(None, event("nse", "r1", {"symbol": "A"}, at=5_000))
    (change,) = backfill_changes(record, 9_000)
    assert (change["op"], change["slot"], change["recorded_at"], change["backfilled"]) == ("LISTED", 5_000, 9_000, True)
    assert backfill_changes(record, 10_000)[0]["change_id"] == change["change_id"]
    serde = make_serde(None)
    decoded = serde.decode(serde.encode("isin.changes", LISTING_CHANGE, change)).record
    assert decoded["op"] == "LISTED" and decoded["after"] == {"symbol": "A"} and decoded["backfilled"] is True
