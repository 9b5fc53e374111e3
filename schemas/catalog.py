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


@cache
def all_schemas() -> Mapping[str, AvroSchema]:
    """Every schema of the project by full name."""
    return {s.name: s for s in (ISIN_EVENT, END_OF_RUN, CURRENT_RECORD, DEAD_LETTER, RUN_RECORD)}


def content_hash(source: str, attributes: Mapping[str, str]) -> str:
    """Digest of what a source says about an ISIN; run ids and timestamps are not content.

    Two listings with equal hashes are treated as equal: 64 bits make an accidental
    collision between two versions of the same ISIN's row vanishingly unlikely.
    """
    text = "\x1e".join([source, *(f"{k}\x1f{attributes[k]}" for k in sorted(attributes))])
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
