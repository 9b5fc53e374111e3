"""A downstream mirror kept from the change topic: every listing of every ISIN, with no tombstone trap.

    python examples/mirror_from_changes.py --bootstrap HOST:PORT [--topic isin.changes]
        [--group G] [--from-beginning] [--idle-exit SECONDS]

Applies each ListingChange to an in-memory mirror {isin: {source: attributes}}: the ``after`` of
a listing's latest change, or nothing after ``DELISTED``. A change seen twice (the same
``change_id``, after a worker crash) is applied once more with the same result. With
--idle-exit it stops after that many seconds without a record and prints the mirror, one JSON
line per ISIN ({"isin": ..., "listings": {source: attributes}}), in ISIN order. Needs nothing of
isin-pipeline but its .avsc file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from current_records import CurrentRecords, arguments  # type: ignore[import-not-found]

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "avro" / "listing_change.avsc"


def apply(mirror: dict[str, dict[str, dict[str, str]]], change: dict[str, Any]) -> None:
    listings = mirror.setdefault(change["isin"], {})
    if change["op"] == "DELISTED":
        listings.pop(change["source"], None)
    else:
        listings[change["source"]] = dict(change["after"] or {})
    if not listings:
        del mirror[change["isin"]]


def main() -> int:
    args = arguments(__doc__.splitlines()[0], "example-mirror", topic="isin.changes")
    decoder = CurrentRecords(SCHEMA_FILE)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest" if args.from_beginning else "latest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "fetch.queue.backoff.ms": 50,
        }
    )
    assigned: list[Any] = []
    consumer.subscribe([args.topic], on_assign=lambda _c, parts: assigned.extend(parts))
    mirror: dict[str, dict[str, dict[str, str]]] = {}
    last = time.monotonic()
    try:
        # idle time counts once the group gave this consumer its partitions
        while args.idle_exit is None or not assigned or time.monotonic() - last < args.idle_exit:
            messages = consumer.consume(500, timeout=0.5)
            for msg in messages:
                if msg.error() is None and msg.value() is not None:
                    apply(mirror, decoder.decode(msg.value()))
            if messages or not assigned:
                last = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    for isin in sorted(mirror):
        print(json.dumps({"isin": isin, "listings": mirror[isin]}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
