"""Avro serde: single-object encoding, the Confluent wire format (mock registry), errors."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import (
    CURRENT_RECORD,
    DEAD_LETTER,
    END_OF_RUN,
    ISIN_EVENT,
    RUN_RECORD,
    AvroSchema,
    SerializationError,
    content_hash,
    make_serde,
)
from stream_app.records import listing_hashes, merge_event

EVENT: dict[str, Any] = {
    "isin": "US0378331005",
    "country_code": "US",
    "source": "https://example.invalid/list.csv",
    "run_id": "20261122T071500Z-1a2b3c4d",
    "line": 2,
    "attributes": {"name": "Apple Inc."},
    "content_hash": content_hash("https://example.invalid/list.csv", {"name": "Apple Inc."}),
    "published_at": 1_795_000_000_000,
}


def test_fingerprint_matches_the_avro_specification_test_vector() -> None:
    # Avro's share/test/data/schema-tests.txt: parsing fingerprint of "int" is 8247732601305521295.
    schema = AvroSchema.from_text('"int"')
    assert int.from_bytes(schema.fingerprint, "little") == 8247732601305521295


def test_single_object_encoding_round_trip() -> None:
    serde = make_serde(None)
    data = serde.encode("t", ISIN_EVENT, EVENT)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == ISIN_EVENT.fingerprint
    decoded = serde.decode(data)
    assert decoded.schema is ISIN_EVENT
    assert decoded.record["attributes"] == EVENT["attributes"]
    assert decoded.record["published_at"].timestamp() * 1000 == EVENT["published_at"]


def test_every_schema_has_its_own_fingerprint() -> None:
    schemas = [ISIN_EVENT, END_OF_RUN, CURRENT_RECORD, DEAD_LETTER, RUN_RECORD]
    assert len({s.fingerprint for s in schemas}) == len(schemas)


def test_confluent_wire_format_through_a_registry() -> None:
    serde = make_serde({"url": "mock://serde-test"})
    data = serde.encode("isin.events", ISIN_EVENT, EVENT)
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    assert schema_id > 0
    assert serde.decode(data).record["isin"] == "US0378331005"
    # The raw topic carries two record types: TopicRecordNameStrategy subjects.
    serde.encode(
        "isin.events",
        END_OF_RUN,
        {
            "source": "s",
            "run_id": "r",
            "partition": 0,
            "events": 0,
            "first_offset": -1,
            "last_offset": -1,
            "run_valid": 0,
            "finished_at": 0,
        },
    )
    subjects = set(serde._registry.get_subjects())  # type: ignore[union-attr]
    assert {"isin.events-io.isinpipeline.v1.IsinEvent", "isin.events-io.isinpipeline.v1.EndOfRun"} <= subjects


def test_a_registry_serde_still_reads_single_object_records() -> None:
    plain = make_serde(None).encode("t", ISIN_EVENT, EVENT)
    assert make_serde({"url": "mock://serde-test-2"}).decode(plain).record["isin"] == "US0378331005"


def test_confluent_records_without_a_registry_fail_clearly() -> None:
    data = make_serde({"url": "mock://serde-test-3"}).encode("t", ISIN_EVENT, EVENT)
    with pytest.raises(SerializationError, match="no SCHEMA_REGISTRY_URL"):
        make_serde(None).decode(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not Avro"),
        (b'{"isin": "US0378331005"}', "not Avro"),
        (b"\xc3\x01" + b"\x00" * 8 + b"body", "unknown Avro schema fingerprint"),
    ],
)
def test_undecodable_bytes(data: bytes, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        make_serde(None).decode(data)


def test_truncated_body_is_a_serialization_error() -> None:
    data = make_serde(None).encode("t", ISIN_EVENT, EVENT)
    with pytest.raises(SerializationError, match="corrupt"):
        make_serde(None).decode(data[:20])


def test_encoding_a_wrong_record_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError):
        make_serde(None).encode("t", ISIN_EVENT, {**EVENT, "line": "two"})


@pytest.mark.parametrize("registry", [None, {"url": "mock://serde-test-4"}])
def test_listing_hashes_is_read_without_decoding(registry: dict[str, str] | None) -> None:
    serde = make_serde(registry)
    record = merge_event(None, EVENT)
    other = {**EVENT, "source": "b", "content_hash": content_hash("b", {}), "attributes": {}}
    record = merge_event(serde.decode(serde.encode("c", CURRENT_RECORD, record)).record, other)
    value = serde.encode("c", CURRENT_RECORD, record)
    assert listing_hashes(value) == " ".join(item["content_hash"] for item in record["listings"]).encode()


def test_content_hash_ignores_attribute_order_but_not_values() -> None:
    a = content_hash("s", {"x": "1", "y": "2"})
    assert a == content_hash("s", {"y": "2", "x": "1"})
    assert a != content_hash("s", {"x": "1", "y": "3"})
    assert a != content_hash("t", {"x": "1", "y": "2"})
    assert len(a) == 16


def test_the_downstream_guide_lists_the_fingerprints_of_this_version() -> None:
    from schemas.catalog import all_schemas
    from tests.conftest import REPO

    guide = (REPO / "docs" / "downstream.md").read_text()
    for schema in all_schemas().values():
        assert f"| `{schema.name}` | `{schema.fingerprint.hex()}` |" in guide, schema.name


def previous_version_record() -> bytes:
    """A CurrentRecord as the previous version wrote it (before the golden view's fields), in the
    single-object encoding."""
    import io as _io

    from fastavro import schemaless_writer

    from schemas.catalog import AvroSchema
    from tests.conftest import REPO

    old = AvroSchema.from_text((REPO / "schemas/avro/history/current_record.v1.avsc").read_text())
    record = {
        "listing_hashes": "a",
        "isin": "US0378331005",
        "country_code": "US",
        "listings": [
            {
                "source": "s",
                "attributes": {"n": "v"},
                "content_hash": "a",
                "run_id": "r",
                "first_seen_at": 1,
                "changed_at": 2,
            }
        ],
        "change": "NEW",
        "updated_at": 2,
    }
    body = _io.BytesIO()
    schemaless_writer(body, old.parsed, record)
    return b"\xc3\x01" + old.fingerprint + body.getvalue()


def test_a_current_record_written_before_the_golden_view_reads_with_its_defaults() -> None:
    """A table written by the previous version (fingerprint 3072ee3d5b8ec329) stays readable:
    Avro schema resolution fills the golden view's fields with their defaults."""
    value = previous_version_record()
    assert value[2:10].hex() == "3072ee3d5b8ec329"
    decoded = make_serde(None).decode(value)
    assert decoded.schema.name == "io.isinpipeline.v1.CurrentRecord"
    got = decoded.record
    assert (got["golden"], got["identifiers"], got["conflicts"]) == ({}, {}, [])
    assert got["listings"][0]["fields"] == {} and got["listings"][0]["attributes"] == {"n": "v"}
