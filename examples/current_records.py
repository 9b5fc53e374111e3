"""Decoding isin-pipeline's current records without isin-pipeline: fastavro and the .avsc file.

Shared by the two example consumers. A value is a CurrentRecord in one of two wire formats:

- Avro single-object encoding (no Schema Registry): ``C3 01``, the schema's 8-byte CRC-64-AVRO
  fingerprint (little-endian), then the Avro body;
- the Confluent wire format (with a Schema Registry): ``00``, a 4-byte schema id, the body.

A null value is a tombstone: the ISIN left every list.
"""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "avro" / "current_record.avsc"


class CurrentRecords:
    """Decodes the values of one of the pipeline's schemas (by default CurrentRecord)."""

    def __init__(self, schema_file: Path = SCHEMA_FILE) -> None:
        raw = json.loads(schema_file.read_text(encoding="utf-8"))
        self.schema = parse_schema(raw)
        self.fingerprint = bytes.fromhex(fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO"))

    def decode(self, value: bytes | None) -> dict[str, Any] | None:
        """The record as JSON-ready data (the pipeline's JSON form), or None for a tombstone."""
        if value is None:
            return None
        if value[:2] == b"\xc3\x01":
            if value[2:10] != self.fingerprint:
                raise ValueError(f"written with another schema (fingerprint {value[2:10].hex()})")
            body = value[10:]
        elif value[:1] == b"\x00":
            body = value[5:]  # the registry's schema id; this example assumes the same schema
        else:
            raise ValueError("not a CurrentRecord in a known wire format")
        record = schemaless_reader(io.BytesIO(body), self.schema)
        assert isinstance(record, dict)
        return _json(record)


def _json(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: _plain(v) for k, v in record.items() if k != "listing_hashes"}
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def arguments(description: str, group: str, topic: str = "isin.current") -> argparse.Namespace:
    """The example consumers' command line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", default=topic)
    parser.add_argument("--group", default=group)
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--idle-exit", type=float)
    return parser.parse_args()
