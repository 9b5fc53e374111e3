"""Build and compare CurrentRecord values: what the table holds and the compacted topic carries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from schemas.fastpath import leading_strings
from schemas.serde import jsonable

Record = dict[str, Any]


def listing_hashes(value: bytes) -> bytes:
    """The ``listing_hashes`` field (the first of a CurrentRecord), read without decoding the record."""
    return leading_strings(value, 1)[0]


def epoch_ms(value: datetime | int) -> int:
    """A decoded timestamp-millis (a datetime) or an int, as epoch milliseconds."""
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else int(value)


def merge_event(old: Record | None, event: Mapping[str, Any]) -> Record:
    """The record after ``event`` (an IsinEvent) is applied to ``old`` (or to nothing).

    A source's listing is replaced by a newer run's row. A second row of the *same* run (a list
    that has the ISIN twice: a workbook whose sheets overlap, a line per trading currency) is
    added to it instead: its content hash joins the listing's (space-separated), its attributes
    fill the ones the first row did not have. So the listing holds every row of the run, and
    the next identical run finds each row's hash and writes nothing.
    """
    source = event["source"]
    at = epoch_ms(event["published_at"])
    listings: list[Record] = list(old["listings"]) if old else []
    first_seen = at
    attributes = dict(event["attributes"])
    digest = event["content_hash"]
    for i, listing in enumerate(listings):
        if listing["source"] == source:
            first_seen = epoch_ms(listing["first_seen_at"])
            if listing["run_id"] == event["run_id"] and digest not in listing["content_hash"].split():
                attributes = {**attributes, **listing["attributes"]}
                digest = f"{listing['content_hash']} {digest}"
            del listings[i]
            break
    listings.append(
        {
            "source": source,
            "attributes": attributes,
            "content_hash": digest,
            "run_id": event["run_id"],
            "first_seen_at": first_seen,
            "changed_at": at,
        }
    )
    listings.sort(key=lambda item: item["source"])
    return _record(event["isin"], event["country_code"], listings, "NEW" if old is None else "CHANGED", at)


def remove_source(old: Record, source: str, at_ms: int) -> Record | None:
    """``old`` without ``source``'s listing; None when no source lists the ISIN any more."""
    listings = [item for item in old["listings"] if item["source"] != source]
    if not listings:
        return None
    return _record(old["isin"], old["country_code"], listings, "CHANGED", at_ms)


def _record(isin: str, country: str, listings: list[Record], change: str, at_ms: int) -> Record:
    return {
        "listing_hashes": " ".join(item["content_hash"] for item in listings),
        "isin": isin,
        "country_code": country,
        "listings": listings,
        "change": change,
        "updated_at": at_ms,
    }


def record_json(record: Mapping[str, Any]) -> dict[str, Any]:
    """The one JSON form of a current record: the HTTP API, ``snapshot`` and ``tail`` all use it.

    Timestamps as ISO-8601 UTC strings, the hash index (``listing_hashes``) left out; its JSON
    Schema is ``schemas/current_record.schema.json``.
    """
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == "listing_hashes":
            continue
        out[key] = jsonable(value)
    return out
