"""A stored CurrentRecord read straight into its JSON form (schemas/fastcurrent.py) is what the
serde's decode and records.record_json make of it, in both wire formats, and anything else is
left to the serde."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import pytest
from fastavro import schemaless_writer

from schemas import CURRENT_RECORD, make_serde
from schemas.catalog import AvroSchema
from schemas.fastcurrent import CurrentJson
from schemas.fastpath import avro_string, zigzag_varint
from stream_app.records import record_json
from tests.unit.test_fastrecords import random_current
from tests.unit.test_serde import previous_version_record


def _json(value: Any) -> str:  # what the HTTP view writes (Faust's json.dumps, compact)
    return json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize("registry", [None, {"url": "mock://fastcurrent"}])
def test_the_reader_gives_what_decode_and_record_json_give(registry: dict[str, str] | None) -> None:
    serde = make_serde(registry)
    read = CurrentJson(serde)
    rng = random.Random(2026)
    encode = serde.encoder("c", CURRENT_RECORD)
    for _ in range(800):
        raw = encode(random_current(rng))
        expected = record_json(serde.decode(raw).record)
        got = read(raw)
        assert got == expected
        assert _json(got) == _json(expected)  # the same text: the same key order


def _blocked(items: list[bytes]) -> bytes:
    """One array or map block written with its byte size (a negative count), then the end."""
    body = b"".join(items)
    return zigzag_varint(-len(items)) + zigzag_varint(len(body)) + body + b"\x00"


def test_blocks_written_with_their_sizes_are_read_as_fastavro_reads_them() -> None:
    """Avro lets a writer give each array and map block its size in bytes (a negative count);
    fastavro never writes one, other writers may."""
    serde = make_serde(None)
    s = avro_string
    listing = (
        s("src")
        + _blocked([s("Name") + s("Åland €"), s("Type") + s("BOND")])
        + s("h1")
        + s("run-1")
        + zigzag_varint(1_795_000_000_123)
        + zigzag_varint(-1)
        + _blocked([s("name") + s("Åland €")])
    )
    body = (
        s("h1")
        + s("FI0009000681")
        + s("FI")
        + _blocked([listing])
        + zigzag_varint(1)  # CHANGED
        + zigzag_varint(1_795_000_000_124)
        + _blocked([s("name") + s("Åland €") + s("src")])
        + _blocked([s("lei") + s("7437003B5WFBOIEFY714") + _blocked([s("src"), s("other")])])
        + _blocked([s("name") + _blocked([s("src") + s("a"), s("other") + s("b")])])
    )
    head = serde.encode("c", CURRENT_RECORD, random_current(random.Random(1)))[:10]
    raw = head + body
    expected = record_json(serde.decode(raw).record)
    assert expected["listings"][0]["changed_at"] == "1969-12-31T23:59:59.999Z"
    assert CurrentJson(serde)(raw) == expected


def test_what_the_reader_does_not_take_goes_to_the_serde() -> None:
    serde = make_serde(None)
    read = CurrentJson(serde)
    raw = serde.encode("c", CURRENT_RECORD, random_current(random.Random(3)))
    assert read(raw) is not None
    assert read(raw[:-1]) is None  # truncated
    assert read(raw + b"\x00") is None  # a byte after the record
    assert read(b"not avro") is None
    record = {**random_current(random.Random(4)), "change": "NEW"}
    good = serde.encode("c", CURRENT_RECORD, record)
    assert read(good) is not None
    assert read(_with_change(serde, record, 2)) is None  # ChangeKind has no third symbol
    named = serde.encode("c", CURRENT_RECORD, {**record, "isin": "XX0000000000"})
    not_utf8 = named.replace(b"XX0000000000", b"\xff" * 12)
    assert read(not_utf8) is None


def _with_change(serde: Any, record: dict[str, Any], index: int) -> bytes:
    """The record as the serde writes it, but with ChangeKind's index ``index``."""
    parsed = json.loads(CURRENT_RECORD.text)
    for field in parsed["fields"]:
        if field["name"] == "change":
            field["type"] = "int"  # the same bytes as an enum index
    loose = AvroSchema.from_text(json.dumps(parsed))
    buf = io.BytesIO()
    schemaless_writer(buf, loose.parsed, {**record, "change": index})
    return serde.encode("c", CURRENT_RECORD, record)[:10] + buf.getvalue()


def test_a_timestamp_out_of_datetimes_range_goes_to_the_serde() -> None:
    serde = make_serde(None)
    record = {**random_current(random.Random(6)), "updated_at": 2**62}
    raw = serde.encode("c", CURRENT_RECORD, record)
    assert CurrentJson(serde)(raw) is None


def test_the_workers_json_form_is_read_straight_or_decoded_alike() -> None:
    """StreamContext.record_json, which the HTTP API answers with: a record of this version and
    one of the previous version (read by the serde) both in ``records.record_json``'s form."""
    from stream_app.context import StreamContext

    serde = make_serde(None)
    ctx = StreamContext(None, serde, None, None, None, None, None, None)  # type: ignore[arg-type]
    current = serde.encode("c", CURRENT_RECORD, random_current(random.Random(12)))
    assert ctx.record_json(current) == record_json(serde.decode(current).record)
    previous = previous_version_record()
    assert CurrentJson(serde)(previous) is None
    assert ctx.record_json(previous) == record_json(serde.decode(previous).record)
    assert ctx.record_json(previous)["golden"] == {}  # the default Avro resolution fills in


def test_remembered_timestamps_are_forgotten_in_bulk_and_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import schemas.fastcurrent as fastcurrent

    monkeypatch.setattr(fastcurrent, "_STAMPS_KEPT", 3)
    monkeypatch.setattr(fastcurrent, "_STAMPS", {})
    serde = make_serde(None)
    read = CurrentJson(serde)
    rng = random.Random(11)
    for _ in range(50):
        raw = serde.encode("c", CURRENT_RECORD, random_current(rng))
        assert read(raw) == record_json(serde.decode(raw).record)
        assert len(fastcurrent._STAMPS) <= 3


def test_a_registered_schema_that_differs_only_in_a_logical_type_goes_to_the_serde() -> None:
    """The parsing canonical form leaves out logical types: another writer's schema with a plain
    long for ``updated_at`` has our fingerprint, and its records are the serde's to read."""
    import struct

    from confluent_kafka.schema_registry import Schema

    serde = make_serde({"url": "mock://fastcurrent-logical"})
    parsed = json.loads(CURRENT_RECORD.text)
    for field in parsed["fields"]:
        if field["name"] == "updated_at":
            field["type"] = "long"
    loose = AvroSchema.from_text(json.dumps(parsed))
    assert loose.fingerprint == CURRENT_RECORD.fingerprint
    schema_id = serde._registry.register_schema("other-value", Schema(loose.text, "AVRO"))
    body = io.BytesIO()
    schemaless_writer(body, loose.parsed, {**random_current(random.Random(2)), "updated_at": 1_795_000_000_123})
    raw = b"\x00" + struct.pack(">I", schema_id) + body.getvalue()
    assert CurrentJson(serde)(raw) is None
    assert record_json(serde.decode(raw).record)["updated_at"] == 1_795_000_000_123
