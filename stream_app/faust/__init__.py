"""Where the stream app relies on Faust's and aiokafka's internals: only in this package, pinned by tests.

Faust's per-event machinery, not Kafka, is the ceiling of a worker (docs/performance.md), so the
worker's consumer hands the raw topic's records to the dedup loop a fetch at a time
(``BatchingConsumer``), the dedup loop writes the table's RocksDB directly (``partition_db``),
and the high watermarks Faust reports are checked with a fetch (``end_offset_check_conf``).

- ``app``: ``BatchingApp`` (the app subclass, its transport, the typed ``StreamContext``)
- ``consumer``: ``BatchingConsumer`` (the fetch loop, rewritten from Faust's) and
  ``ReadCommittedConsumerThread`` (the raw topic read ``read_committed``)
- ``assignor``: ``RestartStickyAssignor``
- ``recovery``: what Faust's table recovery knows (ready, standby progress)
- ``rocksdb``: the table's RocksDB files (a partition's database, the offsets applied)
- ``patches``: the one process-wide patch of aiokafka (no topic auto-creation)

Where a private member is used, a comment says what it relies on;
``tests/unit/test_faust_contract.py`` checks them against the installed Faust and aiokafka (that
each exists, its signature, and where it can be shown without a broker, the behaviour relied on),
and pins the source of the Faust loop ours was rewritten from, so that an upgrade fails a test
rather than a production run. pyproject.toml pins both exactly (faust-streaming 0.15.3,
aiokafka 0.14.0). What Faust still earns us: docs/decisions/0001-what-faust-earns-us.md.
"""

from stream_app.faust.app import BatchingApp, stream_context
from stream_app.faust.assignor import RestartStickyAssignor
from stream_app.faust.consumer import BatchingConsumer, ReadCommittedConsumerThread
from stream_app.faust.patches import forbid_auto_create_topics
from stream_app.faust.recovery import (
    standby_applied,
    standby_caught_up,
    standby_partitions,
    standby_progress,
    table_ready,
)
from stream_app.faust.rocksdb import partition_db, table_offsets

__all__ = [
    "BatchingApp",
    "BatchingConsumer",
    "ReadCommittedConsumerThread",
    "RestartStickyAssignor",
    "forbid_auto_create_topics",
    "partition_db",
    "standby_applied",
    "standby_caught_up",
    "standby_partitions",
    "standby_progress",
    "stream_context",
    "table_offsets",
    "table_ready",
]
