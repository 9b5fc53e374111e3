"""Encode and decode the project's Avro records in either wire format.

Writing picks one format: the Confluent wire format through confluent-kafka's
``AvroSerializer`` when a Schema Registry client is given, else Avro single-object
encoding. Reading always accepts both, so a topic written before a registry was
introduced stays readable.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas.catalog import END_OF_RUN, ISIN_EVENT, AvroSchema, all_schemas, earlier_versions

logger = logging.getLogger(__name__)

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = 0

Encoder = Callable[[Mapping[str, Any]], bytes]

#: Topics that carry more than one record type get TopicRecordNameStrategy subjects
#: (``<topic>-<record name>``); every other schema uses TopicNameStrategy (``<topic>-value``).
MULTI_TYPE_SCHEMAS = frozenset({ISIN_EVENT.name, END_OF_RUN.name})


class SerializationError(Exception):
    """A record could not be encoded, or bytes could not be decoded, as Avro."""


@dataclass(frozen=True)
class Decoded:
    schema: AvroSchema
    record: dict[str, Any]


class Serde:
    """Avro serde for the project's schemas. Thread-safe; cheap to share."""

    def __init__(self, registry: Any | None = None) -> None:
        """``registry`` is a ``confluent_kafka.schema_registry.SchemaRegistryClient`` or None."""
        self._registry = registry
        self._by_fingerprint = {s.fingerprint: s for s in all_schemas().values()}
        self._earlier = {fp: (current, old.parsed) for fp, (old, current) in earlier_versions().items()}
        self._by_id: dict[int, tuple[AvroSchema, Any, bytes]] = {}
        self._lock = threading.Lock()

    @property
    def wire_format(self) -> str:
        return "confluent" if self._registry is not None else "single-object"

    # -- encoding -----------------------------------------------------------------

    def encoder(self, topic: str, schema: AvroSchema) -> Encoder:
        """A function that encodes records of ``schema`` for ``topic``; build once, call often."""
        if self._registry is not None:
            return self._confluent_encoder(topic, schema)
        prefix = SINGLE_OBJECT_MARKER + schema.fingerprint
        parsed = schema.parsed

        def encode(record: Mapping[str, Any]) -> bytes:
            buf = io.BytesIO()
            buf.write(prefix)
            try:
                schemaless_writer(buf, parsed, record)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise SerializationError(f"cannot encode {schema.name}: {exc}") from exc
            return buf.getvalue()

        return encode

    def encode(self, topic: str, schema: AvroSchema, record: Mapping[str, Any]) -> bytes:
        return self.encoder(topic, schema)(record)

    def _confluent_encoder(self, topic: str, schema: AvroSchema) -> Encoder:
        from confluent_kafka.schema_registry import (
            topic_record_subject_name_strategy,
            topic_subject_name_strategy,
        )
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        strategy = (
            topic_record_subject_name_strategy if schema.name in MULTI_TYPE_SCHEMAS else topic_subject_name_strategy
        )
        serializer = AvroSerializer(
            self._registry,
            schema.text,
            conf={"auto.register.schemas": True, "subject.name.strategy": strategy},
        )
        ctx = SerializationContext(topic, MessageField.VALUE)

        def encode(record: Mapping[str, Any]) -> bytes:
            try:
                data = serializer(record, ctx)
            except Exception as exc:  # the registry client raises many types
                raise SerializationError(f"cannot encode {schema.name} for {topic}: {exc}") from exc
            if data is None:
                raise SerializationError(f"cannot encode {schema.name}: serializer returned None")
            return bytes(data)

        return encode

    # -- decoding -----------------------------------------------------------------

    def schema_of(self, data: bytes) -> AvroSchema:
        """The schema ``data`` was written with, read from its header only."""
        return self._writer(data)[0]

    def decode(self, data: bytes) -> Decoded:
        schema, writer, body_at = self._writer(data)
        reader = None if writer is schema.parsed else schema.parsed
        try:
            record = schemaless_reader(io.BytesIO(data[body_at:]), writer, reader)
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ...
            raise SerializationError(f"corrupt {schema.name} body: {exc}") from exc
        if not isinstance(record, dict):
            raise SerializationError(f"{schema.name} did not decode to a record")
        return Decoded(schema, record)

    def _writer(self, data: bytes) -> tuple[AvroSchema, Any, int]:
        """(reader schema, writer schema, offset of the body)."""
        if data[:2] == SINGLE_OBJECT_MARKER and len(data) >= 10:
            fp = bytes(data[2:10])
            schema = self._by_fingerprint.get(fp)
            if schema is None and fp in self._earlier:
                current, writer = self._earlier[fp]
                return current, writer, 10
            if schema is None:
                raise SerializationError(
                    f"unknown Avro schema fingerprint {bytes(data[2:10]).hex()}: "
                    "not a schema of this isin-pipeline version"
                )
            return schema, schema.parsed, 10
        if data[:1] == bytes([CONFLUENT_MAGIC]) and len(data) >= 5:
            schema_id = int.from_bytes(data[1:5], "big")
            schema, writer, _ = self._by_registry_id(schema_id)
            return schema, writer, 5
        head = bytes(data[:4]).hex() if data else "empty"
        raise SerializationError(
            f"not Avro in a known wire format (first bytes {head}); expected single-object "
            "encoding (c301...) or the Confluent wire format (00 + schema id)"
        )

    def writes_exactly(self, data: bytes, schema: AvroSchema) -> bool:
        """Whether ``data`` was written with exactly ``schema`` (the same parsing canonical
        form), so that its body can be read field by field in ``schema``'s order."""
        if data[:2] == SINGLE_OBJECT_MARKER:
            return bytes(data[2:10]) == schema.fingerprint
        if data[:1] == bytes([CONFLUENT_MAGIC]) and len(data) >= 5:
            try:
                _, writer, written = self._by_registry_id(int.from_bytes(data[1:5], "big"))
            except SerializationError:
                return False
            # the parsing canonical form leaves out logical types: a registered schema with the
            # same fields but a plain long where ours has a timestamp is another schema here
            return bool(written == schema.fingerprint and writer == schema.parsed)
        return False

    def _by_registry_id(self, schema_id: int) -> tuple[AvroSchema, Any, bytes]:
        """(reader schema, parsed writer schema, the writer's fingerprint) of a registry id."""
        with self._lock:
            hit = self._by_id.get(schema_id)
        if hit is not None:
            return hit
        if self._registry is None:
            raise SerializationError(
                f"record is in the Confluent wire format (schema id {schema_id}) "
                "but no SCHEMA_REGISTRY_URL is configured"
            )
        try:
            text = self._registry.get_schema(schema_id).schema_str
        except Exception as exc:
            raise SerializationError(f"cannot fetch schema id {schema_id}: {exc}") from exc
        raw = json.loads(text)
        writer = parse_schema(raw)
        name = writer["name"] if isinstance(writer, dict) else str(writer)
        known = all_schemas().get(name)
        # Resolve against our reader schema when we know the record, else read as written.
        written = AvroSchema.from_text(text)
        schema = known if known is not None else written
        entry = (schema, writer, written.fingerprint)
        with self._lock:
            self._by_id[schema_id] = entry
        return entry


def jsonable(value: Any) -> Any:
    """A decoded record as JSON-ready data: timestamps become ISO-8601 UTC strings."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def make_serde(registry_conf: Mapping[str, Any] | None) -> Serde:
    """Build the project's serde. With a registry config (``{"url": ...}``), the Confluent
    wire format is written; without one, Avro single-object encoding."""
    if not registry_conf or not registry_conf.get("url"):
        return Serde(None)
    from confluent_kafka.schema_registry import SchemaRegistryClient

    # new_client understands mock:// URLs (an in-memory registry), used by unit tests.
    return Serde(SchemaRegistryClient.new_client(dict(registry_conf)))
