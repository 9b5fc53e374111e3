"""Where the stream app relies on Faust's and aiokafka's internals: only in this package, pinned by tests.

Faust's per-event machinery, not Kafka, is the ceiling of a worker (see the README's
Performance section), so the worker's consumer hands the raw topic's records to the dedup loop
a fetch at a time (``BatchingConsumer``), writes the table's RocksDB directly
(``partition_db``), and checks end offsets against a fetch. Each private member used says
below what it relies on; ``tests/unit/test_faust_contract.py`` checks that the installed
Faust and aiokafka still have it (it exists, its signature, the behaviour relied on), so that
an upgrade fails a test rather than a production run. Faust is pinned below 0.16: 0.15.3 is
the newest release, and it passes those tests.

What the batching consumer keeps from Faust: group membership, Faust's partition assignor
(which co-partitions the raw topic with the table's changelog), table recovery and standbys,
offset commits, rebalance flow control and the web server. What it changes: records of the
topics registered in ``app.batch_handlers`` are handed, as fetched, one list per partition, to
an async handler; offsets are committed through Faust's commit loop, only up to what a handler
has returned from. Every other topic (Faust's own, the changelog during recovery) goes through
Faust's usual path.
"""

from stream_app.faust.app import BatchingApp
from stream_app.faust.assignor import RestartStickyAssignor
from stream_app.faust.consumer import BatchingConsumer, ReadCommittedConsumerThread
from stream_app.faust.patches import forbid_auto_create_topics
from stream_app.faust.recovery import standby_applied, standby_caught_up, standby_progress
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
    "standby_progress",
    "table_offsets",
]
