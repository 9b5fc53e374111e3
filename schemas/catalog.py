"""The project's Avro schemas, loaded once from the ``.avsc`` files next to this module."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form


@dataclass(frozen=True)
class AvroSchema:
    """One record schema: its full name, JSON text, parsed form and fingerprint."""

    name: str
    text: str = field(repr=False)
    parsed: Any = field(repr=False, compare=False)
    fingerprint: bytes = field(repr=False)
    """CRC-64-AVRO fingerprint of the parsing canonical form, little-endian (8 bytes)."""

    @classmethod
    def from_text(cls, text: str) -> AvroSchema:
        raw = json.loads(text)
        parsed = parse_schema(raw)
        canonical = to_parsing_canonical_form(raw)
        # fastavro returns the 64-bit Rabin fingerprint as hex of its little-endian bytes,
        # which is exactly the byte order the single-object encoding wants.
        fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        name = parsed["name"] if isinstance(parsed, dict) else str(parsed)
        return cls(name=name, text=text, parsed=parsed, fingerprint=fp)


def _load(filename: str) -> AvroSchema:
    text = resources.files("schemas").joinpath("avro", filename).read_text(encoding="utf-8")
    return AvroSchema.from_text(text)


ISIN_EVENT = _load("isin_event.avsc")
END_OF_RUN = _load("end_of_run.avsc")
CURRENT_RECORD = _load("current_record.avsc")
DEAD_LETTER = _load("dead_letter.avsc")
RUN_RECORD = _load("run_record.avsc")
LISTING_CHANGE = _load("listing_change.avsc")


@cache
def all_schemas() -> Mapping[str, AvroSchema]:
    """Every schema of the project by full name."""
    return {s.name: s for s in (ISIN_EVENT, END_OF_RUN, CURRENT_RECORD, DEAD_LETTER, RUN_RECORD, LISTING_CHANGE)}


@cache
def earlier_versions() -> Mapping[bytes, tuple[AvroSchema, AvroSchema]]:
    """Schemas this version no longer writes but still reads: {fingerprint: (old, current)}.

    Records written before a schema gained a field (with a default) keep their old
    fingerprint in the single-object encoding; they are decoded with the old schema as the
    writer's and the current one as the reader's (Avro schema resolution), so that a runs
    topic written by the previous version stays readable after an upgrade.
    """
    out: dict[bytes, tuple[AvroSchema, AvroSchema]] = {}
    for entry in resources.files("schemas").joinpath("avro", "history").iterdir():
        if not entry.name.endswith(".avsc"):
            continue
        old = AvroSchema.from_text(entry.read_text(encoding="utf-8"))
        current = all_schemas().get(old.name)
        if current is not None and old.fingerprint != current.fingerprint:
            out[old.fingerprint] = (old, current)
    return out


def content_hash(source: str, attributes: Mapping[str, str]) -> str:
    """Digest of what a source says about an ISIN; run ids and timestamps are not content.

    Two listings with equal hashes are treated as equal: 64 bits make an accidental
    collision between two versions of the same ISIN's row vanishingly unlikely.
    """
    parts = [source]
    for k in sorted(attributes):
        parts.append(k + "\x1f" + attributes[k])
    return hashlib.blake2b("\x1e".join(parts).encode(), digest_size=8).hexdigest()
