"""The same downstream consumer with kafka-python (a pure-Python client): the topics are
lz4-compressed, so it needs the ``lz4`` package beside it (``pip install kafka-python lz4``).

    python examples/consume_kafka_python.py --bootstrap HOST:PORT [--topic isin.current]
        [--group G] [--from-beginning] [--idle-exit SECONDS]

Same output as consume_confluent.py: one JSON line per record, a null record for a tombstone.
"""

from __future__ import annotations

import json
import sys
import time

from current_records import CurrentRecords, arguments  # type: ignore[import-not-found]
from kafka import KafkaConsumer  # type: ignore[import-not-found]


def main() -> int:
    args = arguments(__doc__.splitlines()[0], "example-kafka-python")
    decoder = CurrentRecords()
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    last = time.monotonic()
    try:
        while args.idle_exit is None or time.monotonic() - last < args.idle_exit:
            batches = consumer.poll(timeout_ms=500)
            for records in batches.values():
                for msg in records:
                    isin = msg.key.decode() if msg.key is not None else None
                    print(json.dumps({"isin": isin, "record": decoder.decode(msg.value)}, ensure_ascii=False))
            if batches:
                last = time.monotonic()
                sys.stdout.flush()
                consumer.commit()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
