"""A downstream consumer with confluent-kafka: the current set, then every change as it comes.

    python examples/consume_confluent.py --bootstrap HOST:PORT [--topic isin.current] [--group G]
        [--from-beginning] [--idle-exit SECONDS]

Prints one JSON line per record: {"isin": ..., "record": {...}} or {"isin": ..., "record": null}
for a tombstone. With --from-beginning it reads the compacted topic from its start (the whole
current set; apply records and tombstones last-wins); with --idle-exit it stops after that many
seconds without a record (for a bootstrap, or a test), else it follows until Ctrl-C. Offsets
are committed after each batch is printed (at least once).
"""

from __future__ import annotations

import json
import sys
import time

from confluent_kafka import Consumer
from current_records import CurrentRecords, arguments  # type: ignore[import-not-found]


def main() -> int:
    args = arguments(__doc__.splitlines()[0], "example-confluent")
    decoder = CurrentRecords()
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest" if args.from_beginning else "latest",
            "enable.auto.commit": False,
            # The same partitioner the pipeline uses (murmur2) matters to producers, not here; a
            # consumer needs only the lz4 codec, which librdkafka has built in.
            "session.timeout.ms": 6000,
            "fetch.queue.backoff.ms": 50,
        }
    )
    consumer.subscribe([args.topic])
    last = time.monotonic()
    try:
        while args.idle_exit is None or time.monotonic() - last < args.idle_exit:
            messages = consumer.consume(500, timeout=0.5)
            for msg in messages:
                if msg.error() is not None:
                    continue
                key = msg.key()
                isin = key.decode() if key is not None else None
                print(json.dumps({"isin": isin, "record": decoder.decode(msg.value())}, ensure_ascii=False))
            if messages:
                last = time.monotonic()
                sys.stdout.flush()
                consumer.commit(asynchronous=False)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
