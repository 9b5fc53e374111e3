"""A stored CurrentRecord read straight into its JSON form, for ``GET /isins/{isin}``.

A lookup used to decode the stored value with fastavro (about 27 µs for a record of the NSDL
list), turn the decoded record into its JSON form with ``records.record_json`` (14 µs: every
timestamp to an ISO-8601 string, ``listing_hashes`` dropped) and encode that (15 µs): a fifth of
the worker's time per lookup, the rest being aiohttp's and Faust's (docs/performance.md).
``CurrentJson`` reads the Avro body once, in the schema's field order, into that JSON form
directly, in about 16 µs; the HTTP view then encodes it as before (9 µs).

fastavro and ``record_json`` stay the reference: ``CurrentJson`` reads only records written in
exactly this version's CurrentRecord schema, and returns None for anything else (an earlier
version, a truncated or malformed body, a string that is not UTF-8, a timestamp out of
``datetime``'s range): the caller then decodes with the serde, which resolves or rejects it.
``tests/unit/test_fastcurrent.py`` compares the two on generated records in both wire formats.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.catalog import CURRENT_RECORD
from schemas.fastpath import ExactEvents, _after_string, _varint
from schemas.fastrecords import _string
from schemas.serde import Serde

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHANGE = ("NEW", "CHANGED")  # the ChangeKind enum's symbols, in order
_STAMPS: dict[int, str] = {}
_STAMPS_KEPT = 4096


class _Malformed(Exception):
    pass


class CurrentJson:
    """``reader(value)``: ``records.record_json`` of the CurrentRecord ``value``, or None when the
    value is not a well-formed CurrentRecord of exactly this version (then decode it with the
    serde)."""

    def __init__(self, serde: Serde) -> None:
        self._records = ExactEvents(serde, CURRENT_RECORD)

    def __call__(self, value: bytes) -> dict[str, Any] | None:
        body = self._records.body_at(value)
        if body is None:
            return None
        try:
            return _read_current(value, body)
        except (IndexError, UnicodeDecodeError, OverflowError, _Malformed):
            return None


def _stamp(v: bytes, i: int) -> tuple[str, int]:
    """A timestamp-millis as ``schemas.jsonable`` writes a decoded one.

    A table's timestamps are its runs' times, few and repeated, so their text is remembered (5 µs
    to write one, a third of a lookup's reading otherwise), up to ``_STAMPS_KEPT`` of them."""
    ms, i = _varint(v, i)
    text = _STAMPS.get(ms)
    if text is None:
        if len(_STAMPS) >= _STAMPS_KEPT:
            _STAMPS.clear()
        text = (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        _STAMPS[ms] = text
    return text, i


def _count(v: bytes, i: int) -> tuple[int, int]:
    """The item count of an array or map block (a negative count is followed by the block's size)."""
    count, i = _varint(v, i)
    if count < 0:
        count = -count
        _, i = _varint(v, i)
    return count, i


Read = Callable[[bytes, int], tuple[Any, int]]
"""Reads one value at an index: (the value, the index after it)."""


def _array(v: bytes, i: int, item: Read) -> tuple[list[Any], int]:
    """An Avro array: blocks of items until a zero count."""
    out: list[Any] = []
    count, i = _count(v, i)
    while count:
        for _ in range(count):
            value, i = item(v, i)
            out.append(value)
        count, i = _count(v, i)
    return out, i


def _map(v: bytes, i: int, item: Read = _string) -> tuple[dict[str, Any], int]:
    """An Avro map: blocks of (string key, item) until a zero count; a later key wins, as in fastavro."""
    out: dict[str, Any] = {}
    count, i = _count(v, i)
    while count:
        for _ in range(count):
            name, i = _string(v, i)
            out[name], i = item(v, i)
        count, i = _count(v, i)
    return out, i


def _listing(v: bytes, i: int) -> tuple[dict[str, Any], int]:
    # Listing: source, attributes, content_hash, run_id, first_seen_at, changed_at, fields
    source, i = _string(v, i)
    attributes, i = _map(v, i)
    content_hash, i = _string(v, i)
    run_id, i = _string(v, i)
    first_seen_at, i = _stamp(v, i)
    changed_at, i = _stamp(v, i)
    fields, i = _map(v, i)
    listing = {
        "source": source,
        "attributes": attributes,
        "content_hash": content_hash,
        "run_id": run_id,
        "first_seen_at": first_seen_at,
        "changed_at": changed_at,
        "fields": fields,
    }
    return listing, i


def _golden_value(v: bytes, i: int) -> tuple[dict[str, str], int]:
    value, i = _string(v, i)
    source, i = _string(v, i)
    return {"value": value, "source": source}, i


def _identifier(v: bytes, i: int) -> tuple[dict[str, Any], int]:
    value, i = _string(v, i)
    sources, i = _array(v, i, _string)
    return {"value": value, "sources": sources}, i


def _conflict(v: bytes, i: int) -> tuple[dict[str, Any], int]:
    field, i = _string(v, i)
    values, i = _map(v, i)
    return {"field": field, "values": values}, i


def _read_current(v: bytes, i: int) -> dict[str, Any]:
    # CurrentRecord: listing_hashes (left out of the JSON form), isin, country_code, listings,
    # change, updated_at, golden, identifiers, conflicts
    i = _after_string(v, i)
    isin, i = _string(v, i)
    country_code, i = _string(v, i)
    listings, i = _array(v, i, _listing)
    symbol, i = _varint(v, i)
    if not 0 <= symbol < len(_CHANGE):
        raise _Malformed
    updated_at, i = _stamp(v, i)
    golden, i = _map(v, i, _golden_value)
    identifiers, i = _map(v, i, _identifier)
    conflicts, i = _array(v, i, _conflict)
    if i != len(v):
        raise _Malformed
    return {
        "isin": isin,
        "country_code": country_code,
        "listings": listings,
        "change": _CHANGE[symbol],
        "updated_at": updated_at,
        "golden": golden,
        "identifiers": identifiers,
        "conflicts": conflicts,
    }
