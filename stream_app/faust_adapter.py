"""Where the stream app relies on Faust's and aiokafka's internals: here, and pinned by tests.

Each function says what it relies on; ``tests/unit/test_faust_contract.py`` checks that the
installed versions still have it, so that an upgrade fails a test, not a production run.
"""

from __future__ import annotations

import functools
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def forbid_auto_create_topics() -> None:
    """Make every aiokafka metadata request say ``allow_auto_topic_creation=false``.

    Relies on: ``aiokafka.client`` building its requests with the module-level name
    ``MetadataRequest`` (``MetadataRequest(topics)``, client.py), whose ``build()`` sends True
    when the flag is not given. aiokafka 0.14 has no setting for it, and Faust none either, so
    without this a worker that meets a missing topic (an embedded broker restarted empty)
    would create it with the broker's default partition count and no configs.
    """
    import aiokafka.client
    from aiokafka.protocol.metadata import MetadataRequest

    current = aiokafka.client.MetadataRequest
    if isinstance(current, functools.partial):
        return
    aiokafka.client.MetadataRequest = functools.partial(  # type: ignore[misc]
        MetadataRequest, allow_auto_topic_creation=False
    )


def table_offsets(table: Any, partitions: list[int]) -> dict[int, int]:
    """The changelog offset each local table partition has applied, read from its RocksDB.

    Relies on: ``faust.stores.rocksdb.Store.partition_path(partition)`` and ``offset_key``
    (the key under which Faust, and our dedup loop, keep the changelog offset of a partition).
    """
    from rocksdict import AccessType, Options, Rdict

    store = table.data
    out: dict[int, int] = {}
    for partition in partitions:
        path = Path(store.partition_path(partition))
        if not path.exists():
            continue
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            raw = db.get(store.offset_key)
        finally:
            db.close()
        if raw is not None:
            out[partition] = int(raw)
    return out


def wipe_if_ahead(state_dir: Path, applied: Mapping[int, int], ends: Mapping[int, int], topic: str) -> bool:
    """Delete the local state if it holds changes the broker does not have; True if it did.

    That happens when the broker lost data (the embedded, memory-only broker restarted
    empty): Faust's recovery would stop with a ConsistencyError, and the table would hold
    records the compacted topic no longer has. The broker is the truth: rebuild from it.
    """
    ahead = {p: (off, ends.get(p, 0)) for p, off in applied.items() if off >= ends.get(p, 0)}
    if not ahead:
        return False
    shown = ", ".join(
        f"partition {p} at offset {off}, the broker ends at {end}" for p, (off, end) in sorted(ahead.items())
    )
    logger.warning(
        "local state in %s is ahead of the broker's %s (%s): the broker lost data (restarted empty?); "
        "deleting the local state and rebuilding the table from what the broker has",
        state_dir,
        topic,
        shown,
    )
    for child in state_dir.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    return True
