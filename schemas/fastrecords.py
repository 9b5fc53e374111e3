"""The stream worker's per-event Avro, in Python: reading IsinEvents, writing CurrentRecords and
ListingChanges.

With the golden view and the change topic on, every new or changed ISIN costs the worker one
fastavro decode (its IsinEvent) and two fastavro encodes (its CurrentRecord and its
ListingChange): 12.7, 14.5 and 11.0 µs on this machine, a third of the day-1 event
(``docs/performance.md``). Most of that is fastavro's per-value dispatch on the schema, which
these three fixed schemas do not need: ``read_event`` and the two writers here do the same work
in about 3, 9 and 4 µs.

fastavro stays the reference:

- the writers return what ``Serde.encoder`` returns, byte for byte: the same header (taken from
  the serde's own first encoding, so a Schema Registry id is registered as before) and the same
  body (``tests/unit/test_fastrecords.py`` compares them on generated records). A value of a type
  they do not expect (a naive datetime, a None where a map goes, a missing field) sends the
  record to the serde's encoder, which writes it or raises its ``SerializationError``;
- ``read_event`` reads only events written in exactly this version's IsinEvent schema and
  returns None for anything else (another version, a truncated or malformed body, a string that
  is not UTF-8): the caller then decodes with the serde, which resolves or rejects it. Its
  timestamps are epoch milliseconds (ints), not datetimes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from schemas.catalog import CURRENT_RECORD, LISTING_CHANGE, AvroSchema
from schemas.fastpath import ExactEvents, _varint, header_length, zigzag_varint
from schemas.serde import Serde

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHANGE_KIND = {"NEW": b"\x00", "CHANGED": b"\x02"}
_CHANGE_OP = {"LISTED": b"\x00", "AMENDED": b"\x02", "DELISTED": b"\x04"}
_EMPTY: dict[str, Any] = {}
_NONE: list[Any] = []


class _Unexpected(Exception):
    """A value the hand-written encoding does not take: the serde's encoder decides."""


def _long(n: int) -> bytes:
    if type(n) is not int:
        raise _Unexpected(n)
    return zigzag_varint(n)  # small values from its table


_STAMPS: dict[int, bytes] = {}
"""Encoded timestamps: a run's events share one ``published_at`` and a batch's records one time."""


def _millis(value: Any) -> bytes:
    """A timestamp-millis: an int, or an aware datetime converted as fastavro converts it."""
    if type(value) is not int:
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise _Unexpected(value)
        delta = value - _EPOCH
        value = (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000
    encoded = _STAMPS.get(value)
    if encoded is None:
        if len(_STAMPS) >= 4096:
            _STAMPS.clear()
        encoded = _STAMPS[value] = zigzag_varint(value)
    return encoded


ENCODED_MAX = 16384
_ENCODED: dict[str, bytes] = {}
"""Strings encoded lately. A record repeats its values (an LEI is an attribute, a field, a golden
value and an identifier; every listing names its source and run), and names repeat across
records: 28 strings of a GLEIF record take 13 encodings."""


def _str(text: str, out: list[bytes]) -> None:
    encoded = _ENCODED.get(text)
    if encoded is None:
        if type(text) is not str:
            raise _Unexpected(text)
        if len(_ENCODED) >= ENCODED_MAX:
            _ENCODED.clear()
        raw = text.encode()
        encoded = _ENCODED[text] = zigzag_varint(len(raw)) + raw
    out.append(encoded)


def _map(values: Mapping[str, str], out: list[bytes]) -> None:
    if len(values):  # len: a None raises, as it does in fastavro
        out.append(_long(len(values)))
        for name, text in values.items():
            _str(name, out)
            _str(text, out)
    out.append(b"\x00")


def _strings(items: list[str], out: list[bytes]) -> None:
    if len(items):
        out.append(_long(len(items)))
        for text in items:  # source names, field names
            _str(text, out)
    out.append(b"\x00")


def _current_record(r: Mapping[str, Any], out: list[bytes]) -> None:
    _str(r["listing_hashes"], out)
    _str(r["isin"], out)
    _str(r["country_code"], out)
    listings = r["listings"]
    if len(listings):
        out.append(_long(len(listings)))
        for listing in listings:
            _str(listing["source"], out)
            _map(listing["attributes"], out)
            _str(listing["content_hash"], out)
            _str(listing["run_id"], out)
            out.append(_millis(listing["first_seen_at"]))
            out.append(_millis(listing["changed_at"]))
            _map(listing.get("fields", _EMPTY), out)
    out.append(b"\x00")
    out.append(_CHANGE_KIND[r["change"]])
    out.append(_millis(r["updated_at"]))
    golden_tail(r.get("golden", _EMPTY), r.get("identifiers", _EMPTY), r.get("conflicts", _NONE), out)


def golden_tail(
    golden: Mapping[str, Any], identifiers: Mapping[str, Any], conflicts: list[Any], out: list[bytes]
) -> None:
    """A CurrentRecord's last three fields: its golden view (``core.golden.GoldenView``'s members)."""
    if len(golden):
        out.append(_long(len(golden)))
        for name, chosen in golden.items():
            _str(name, out)
            _str(chosen["value"], out)
            _str(chosen["source"], out)
    out.append(b"\x00")
    if len(identifiers):
        out.append(_long(len(identifiers)))
        for name, given in identifiers.items():
            _str(name, out)
            _str(given["value"], out)
            _strings(given["sources"], out)
    out.append(b"\x00")
    if len(conflicts):
        out.append(_long(len(conflicts)))
        for conflict in conflicts:
            _str(conflict["field"], out)
            _map(conflict["values"], out)
    out.append(b"\x00")


def _optional_map(values: Mapping[str, str] | None, out: list[bytes]) -> None:
    if values is None:
        out.append(b"\x00")
    else:
        out.append(b"\x02")
        _map(values, out)


def _listing_change(c: Mapping[str, Any], out: list[bytes]) -> None:
    _str(c["change_id"], out)
    out.append(_CHANGE_OP[c["op"]])
    _str(c["isin"], out)
    _str(c["source"], out)
    _str(c["run_id"], out)
    out.append(_millis(c["slot"]))
    out.append(_millis(c["recorded_at"]))
    _optional_map(c.get("before"), out)
    _optional_map(c.get("after"), out)
    _strings(c.get("changed", _NONE), out)
    backfilled = c.get("backfilled", False)
    if backfilled is True:
        out.append(b"\x01")
    elif backfilled is False:
        out.append(b"\x00")
    else:
        raise _Unexpected(backfilled)


_BODIES: dict[str, Callable[[Mapping[str, Any], list[bytes]], None]] = {
    CURRENT_RECORD.name: _current_record,
    LISTING_CHANGE.name: _listing_change,
}


def fast_encoder(serde: Serde, topic: str, schema: AvroSchema) -> Callable[[Mapping[str, Any]], bytes]:
    """``serde.encoder(topic, schema)``, written by hand for CurrentRecord and ListingChange (the
    serde's own encoder for any other schema)."""
    slow = serde.encoder(topic, schema)
    body = _BODIES.get(schema.name)
    if body is None:
        return slow
    head: list[bytes] = []

    def encode(record: Mapping[str, Any]) -> bytes:
        if not head:  # the serde's first encoding gives the header (and registers the schema)
            encoded = slow(record)
            head.append(encoded[: header_length(encoded)])
            return encoded
        out = [head[0]]
        try:
            body(record, out)
        except (_Unexpected, KeyError, TypeError, AttributeError, IndexError, ValueError):
            return slow(record)
        return b"".join(out)

    return encode


def _string(v: bytes, i: int) -> tuple[str, int]:
    byte = v[i]
    if byte < 0x80 and not byte & 1:  # a one-byte, non-negative length
        end = i + 1 + (byte >> 1)
        i += 1
    else:
        n, i = _varint(v, i)
        if n < 0:
            raise IndexError("negative string length")
        end = i + n
    if end > len(v):
        raise IndexError("string past the end")
    return v[i:end].decode(), end


class EventReader:
    """``reader(value)``: an IsinEvent as a dict (timestamps in epoch ms), or None when the value
    is not an IsinEvent of exactly this version, well-formed (then decode it with the serde)."""

    def __init__(self, serde: Serde) -> None:
        self._events = ExactEvents(serde)

    def __call__(self, value: bytes) -> dict[str, Any] | None:
        body = self._events.body_at(value)
        if body is None:
            return None
        try:
            return _read_event(value, body)
        except (IndexError, UnicodeDecodeError):
            return None


def _read_event(v: bytes, i: int) -> dict[str, Any] | None:
    # IsinEvent: content_hash, run_id, isin, country_code, source, line, attributes, published_at, slot
    content_hash, i = _string(v, i)
    run_id, i = _string(v, i)
    isin, i = _string(v, i)
    country, i = _string(v, i)
    source, i = _string(v, i)
    line, i = _varint(v, i)
    attributes: dict[str, str] = {}
    while True:  # map blocks until a zero count
        count, i = _varint(v, i)
        if count == 0:
            break
        if count < 0:  # a block with its size in bytes before its entries
            count = -count
            _, i = _varint(v, i)
        for _ in range(count):
            name, i = _string(v, i)
            attributes[name], i = _string(v, i)
    published_at, i = _varint(v, i)
    branch, i = _varint(v, i)  # slot: null, or a timestamp-millis
    slot: int | None = None
    if branch == 1:
        slot, i = _varint(v, i)
    elif branch != 0:
        return None
    if i != len(v):
        return None
    return {
        "content_hash": content_hash,
        "run_id": run_id,
        "isin": isin,
        "country_code": country,
        "source": source,
        "line": line,
        "attributes": attributes,
        "published_at": published_at,
        "slot": slot,
    }
