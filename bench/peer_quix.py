"""The peer: the same dedup written with Quix Streams, for `make bench`.

Runs in its own virtualenv (.venv-peer: Quix Streams pins older confluent-kafka and pydantic
than this project). It reads the raw topic the producer wrote, decodes every IsinEvent
(single-object Avro, with fastavro), keeps each ISIN's content hash in Quix's RocksDB state,
and writes the event to its output topic when the hash changed: the straightforward way to
write this dedup with Quix. End-of-run markers are skipped (no deletes: the peer does a
little less work than isin-pipeline on day 2). It stops itself after ``--expect`` events and
prints one JSON line: events, changes, and the seconds from its first to its last event.

    .venv-peer/bin/python bench/peer_quix.py --bootstrap H:P --topic T --output O --expect N --state-dir D
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import fastavro
from quixstreams import Application

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "avro" / "isin_event.avsc"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", default="quix-peer")
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()

    schema = fastavro.parse_schema(json.loads(SCHEMA.read_text()))
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        use_changelog_topics=False,  # the embedded broker's ListOffsets breaks changelog recovery
        auto_create_topics=True,
        consumer_extra_config={
            "isolation.level": "read_committed",
            "fetch.queue.backoff.ms": 50,
            # the session the project's own consumers use on the embedded broker (KAFKA_NOTES):
            # with the defaults (45 s), each day's group join waits out the last day's member
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
        },
    )
    raw = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")
    out = app.topic(args.output, key_serializer="bytes", value_serializer="bytes")
    counts = {"events": 0, "changes": 0}
    clock = {"first": 0.0, "last": 0.0}

    def dedup(value: bytes, key: bytes, timestamp: int, headers: object, state: object) -> list[bytes]:
        now = time.monotonic()
        if not clock["first"]:
            clock["first"] = now
        event = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema, None)
        counts["events"] += 1
        clock["last"] = now
        changed = state.get(key) != event["content_hash"]  # type: ignore[attr-defined]
        if changed:
            state.set(key, event["content_hash"])  # type: ignore[attr-defined]
            counts["changes"] += 1
        if counts["events"] >= args.expect:
            app.stop()
        return [value] if changed else []

    sdf = app.dataframe(raw)
    sdf = sdf.filter(lambda value, key, timestamp, headers: key is not None, metadata=True)  # skip end-of-run markers
    sdf = sdf.apply(dedup, stateful=True, metadata=True, expand=True)
    sdf.to_topic(out)
    app.run()
    span = clock["last"] - clock["first"]
    print(json.dumps({**counts, "seconds": round(span, 3)}), flush=True)
    return 0 if counts["events"] >= args.expect else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
