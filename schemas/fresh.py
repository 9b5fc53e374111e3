"""A new ISIN's CurrentRecord and ``LISTED`` change, written from its IsinEvent's bytes.

Most of a first day's work is ISINs the table has never held. Their record holds the event's
own fields, reordered, with one listing; their change is one ``LISTED`` with the event's
attributes. So most of both is bytes the event already has: ``read_event_parts`` cuts an event
into its fields once, keeping each field's encoded bytes beside the few decoded values the
worker needs (the golden view reads the attributes), and ``FreshWriter`` joins those bytes with
what the worker computed (the listing's canonical fields, the golden view, the change's id).

Byte for byte what ``stream_app.records.merge_event`` with the serde's encoding writes (and
``stream_app.changes.listing_changes``), which ``tests/unit/test_fresh.py`` checks on generated
events in both wire formats. Anything this does not read exactly (another schema version, a map
written in several blocks or with block sizes, a varint longer than it needs to be, a string that
is not UTF-8, a malformed body) gives None, and the caller takes the decoding path, which writes
it or rejects it with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.catalog import CURRENT_RECORD, LISTING_CHANGE, AvroSchema
from schemas.fastpath import ExactEvents, _varint, avro_string, header_length, zigzag_varint
from schemas.fastrecords import _map, _millis, _Unexpected, golden_tail
from schemas.serde import Serde


@dataclass(slots=True)
class EventParts:
    """An IsinEvent cut into its fields: ``*_bytes`` as encoded (length prefix included)."""

    digest_bytes: bytes
    run_id_bytes: bytes
    isin_bytes: bytes
    country_bytes: bytes
    source_bytes: bytes
    attributes_bytes: bytes
    published_bytes: bytes
    isin: str
    source: str
    run_id: str
    attributes: dict[str, str]
    published_ms: int
    slot_ms: int | None


def _long(v: bytes, i: int) -> tuple[int, int]:
    """An Avro ``long`` at ``i`` in its shortest form, as fastavro writes it: (value, index after
    it). A longer form (a last byte of zero after the first) is valid Avro, but copying it would
    not give the general path's bytes: IndexError, and the general path takes the event."""
    n, end = _varint(v, i)
    if end - i > 1 and v[end - 1] == 0:
        raise IndexError("a varint longer than it needs to be")
    return n, end


def _string(v: bytes, i: int) -> tuple[int, int]:
    """Where a string's text starts and ends."""
    byte = v[i]
    if byte < 0x80 and not byte & 1:  # a one-byte, non-negative length: every string under 64 bytes
        start = i + 1
        end = start + (byte >> 1)
    else:
        n, start = _long(v, i)
        if n < 0:
            raise IndexError("negative string length")
        end = start + n
    if end > len(v):
        raise IndexError("string past the end")
    return start, end


def read_event_parts(v: bytes, body: int) -> EventParts | None:
    """The fields of an IsinEvent whose body starts at ``body`` (``ExactEvents.body_at``), or None
    when it is not well-formed or its attributes are not one block as fastavro writes it."""
    try:
        return _cut(v, body)
    except (IndexError, UnicodeDecodeError):
        return None


def _cut(v: bytes, i: int) -> EventParts | None:
    # IsinEvent: content_hash, run_id, isin, country_code, source, line, attributes, published_at, slot
    # every string is decoded, even where only its bytes are copied: one that is not UTF-8 is
    # refused here, as the serde's decoding refuses it, and never reaches the table
    a = i
    s, i = _string(v, i)
    digest = v[a:i]
    v[s:i].decode()
    a = i
    s, i = _string(v, i)
    run_id = v[a:i]
    run_text = v[s:i].decode()
    a = i
    s, i = _string(v, i)
    isin = v[a:i]
    isin_text = v[s:i].decode()
    a = i
    s, i = _string(v, i)
    country = v[a:i]
    v[s:i].decode()
    a = i
    s, i = _string(v, i)
    source = v[a:i]
    source_text = v[s:i].decode()
    _, i = _varint(v, i)  # line
    a = i
    attributes: dict[str, str] = {}
    count, i = _long(v, i)
    if count < 0:
        return None  # a block with its size in bytes: fastavro writes none
    for _ in range(count):
        s, e = _string(v, i)
        t, i = _string(v, e)
        attributes[v[s:e].decode()] = v[t:i].decode()
    if count:
        if v[i] != 0:
            return None  # a second block
        i += 1
    attributes_bytes = v[a:i]
    if len(attributes) != count:
        return None  # a name twice: the serde's decoding keeps the last
    a = i
    published_ms, i = _long(v, i)
    published = v[a:i]
    branch, i = _varint(v, i)  # slot: null, or a timestamp-millis
    slot: int | None = None
    if branch == 1:
        slot, i = _varint(v, i)
    elif branch != 0:
        return None
    if i != len(v):
        return None
    return EventParts(
        digest,
        run_id,
        isin,
        country,
        source,
        attributes_bytes,
        published,
        isin_text,
        source_text,
        run_text,
        attributes,
        published_ms,
        slot,
    )


class FreshWriter:
    """Parts of an event -> its new ISIN's CurrentRecord and ``LISTED`` change, encoded."""

    def __init__(self, serde: Serde, current_topic: str, changes_topic: str | None) -> None:
        self._serde = serde
        self._current_topic = current_topic
        self._changes_topic = changes_topic
        self._events = ExactEvents(serde)
        self._heads: dict[str, bytes] = {}

    def parts(self, key: bytes, value: bytes) -> EventParts | None:
        """``value`` cut into its fields, or None when it is not an IsinEvent of exactly this
        version, well-formed, about ``key``."""
        body = self._events.body_at(value)
        if body is None:
            return None
        parts = read_event_parts(value, body)
        if parts is None or len(key) >= 64 or parts.isin_bytes[1:] != key:  # a one-byte length, then the key
            return None
        return parts

    def _head(self, topic: str, schema: AvroSchema, sample: Mapping[str, Any]) -> bytes:
        """The wire-format header of ``schema`` on ``topic``: from the serde's own first encoding,
        so a Schema Registry id is registered as the serde registers it."""
        head = self._heads.get(schema.name)
        if head is None:
            encoded = self._serde.encode(topic, schema, sample)
            head = self._heads[schema.name] = encoded[: header_length(encoded)]
        return head

    def record(
        self,
        p: EventParts,
        fields: Mapping[str, str] | None = None,
        golden: Mapping[str, Any] | None = None,
        identifiers: Mapping[str, Any] | None = None,
        conflicts: list[Any] | None = None,
    ) -> bytes | None:
        """The new ISIN's CurrentRecord: one listing, ``NEW``, updated at the event's
        ``published_at``, with the listing's canonical ``fields`` and the golden view when given."""
        out = [
            self._head(self._current_topic, CURRENT_RECORD, _RECORD_SAMPLE),
            p.digest_bytes,  # listing_hashes: the one listing's hash
            p.isin_bytes,
            p.country_bytes,
            b"\x02",  # one listing: source, attributes, content_hash, run_id, first_seen_at, changed_at, fields
            p.source_bytes,
            p.attributes_bytes,
            p.digest_bytes,
            p.run_id_bytes,
            p.published_bytes,
            p.published_bytes,
        ]
        try:
            _map(fields or {}, out)
            out += (b"\x00", b"\x00", p.published_bytes)  # the end of the listings, change NEW, updated_at
            golden_tail(golden or {}, identifiers or {}, conflicts or [], out)
        except (_Unexpected, KeyError, TypeError, AttributeError):
            return None
        return b"".join(out)

    def listed(self, p: EventParts, change_id: str, recorded_at_ms: int, changed: list[str]) -> bytes:
        """The new ISIN's ``LISTED`` change: dated by the event's slot (else its ``published_at``)
        and ``recorded_at_ms``, after = the event's attributes, ``changed`` = their names."""
        assert self._changes_topic is not None
        out = [
            self._head(self._changes_topic, LISTING_CHANGE, _CHANGE_SAMPLE),
            avro_string(change_id),
            b"\x00",  # LISTED
            p.isin_bytes,
            p.source_bytes,
            p.run_id_bytes,
            _millis(p.published_ms if p.slot_ms is None else p.slot_ms),  # encodings remembered: a run
            _millis(recorded_at_ms),  # has one slot, a batch a few clock readings
            b"\x00",  # before: null
            b"\x02",  # after: the map
            p.attributes_bytes,
        ]
        if changed:
            out.append(zigzag_varint(len(changed)))
            out += [avro_string(name) for name in changed]
        out += (b"\x00", b"\x00")  # the end of changed, backfilled false
        return b"".join(out)


_RECORD_SAMPLE: dict[str, Any] = {
    "listing_hashes": "",
    "isin": "",
    "country_code": "",
    "listings": [],
    "change": "NEW",
    "updated_at": 0,
}
_CHANGE_SAMPLE: dict[str, Any] = {
    "change_id": "",
    "op": "LISTED",
    "isin": "",
    "source": "",
    "run_id": "",
    "slot": 0,
    "recorded_at": 0,
    "before": None,
    "after": None,
    "changed": [],
    "backfilled": False,
}
