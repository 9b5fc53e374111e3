"""Avro schemas of isin-pipeline and the serde that every side imports.

The ``.avsc`` files in ``schemas/avro`` are the contract between the producer, the stream
app and downstream consumers:

- ``IsinEvent``: one ISIN seen in one run (raw events topic, key = ISIN);
- ``EndOfRun``: the per-partition end-of-run marker (raw events topic);
- ``CurrentRecord``: the current state of an ISIN (compacted current-records topic);
- ``DeadLetter``: a row that could not be published (dead-letter topic);
- ``RunRecord``: one producer run (runs topic);
- ``ListingChange``: one change of one source's listing of one ISIN (change topic).

Two wire formats are written and both are always read:

- Avro single-object encoding (``C3 01`` + 8-byte CRC-64-AVRO fingerprint + body) when no
  Schema Registry is configured;
- the Confluent wire format (``00`` + 4-byte schema id + body) when one is.
"""

from schemas.catalog import (
    CURRENT_RECORD,
    DEAD_LETTER,
    END_OF_RUN,
    ISIN_EVENT,
    LISTING_CHANGE,
    RUN_RECORD,
    AvroSchema,
    all_schemas,
    content_hash,
)
from schemas.serde import Decoded, Serde, SerializationError, jsonable, make_serde

__all__ = [
    "CURRENT_RECORD",
    "DEAD_LETTER",
    "END_OF_RUN",
    "ISIN_EVENT",
    "LISTING_CHANGE",
    "RUN_RECORD",
    "AvroSchema",
    "Decoded",
    "Serde",
    "SerializationError",
    "all_schemas",
    "content_hash",
    "jsonable",
    "make_serde",
]
