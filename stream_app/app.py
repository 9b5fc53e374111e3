"""The Faust app, built from settings. Nothing happens at import time.

``create_app(settings)`` is what ``isin-pipeline stream`` runs. For Faust's own command
line (``faust -A stream_app.app worker``) the module-level ``app`` is created on first
access from the environment.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from faust.types import TP

from schemas import make_serde
from stream_app.conflicts import ConflictReport
from stream_app.context import StreamContext
from stream_app.dedup import Dedup
from stream_app.faust import (
    BatchingApp,
    RestartStickyAssignor,
    forbid_auto_create_topics,
    standby_applied,
    standby_partitions,
    standby_progress,
    table_offsets,
    table_ready,
)
from stream_app.feed_process import FeedProcess, wait_for_feed_process
from stream_app.golden import Golden
from stream_app.metrics import StreamMetrics
from stream_app.output import OutputWriter
from stream_app.reindex import RawRangeReader
from stream_app.seen import SeenIndex
from stream_app.settings import StreamSettings
from stream_app.store import FaustTableStore

logger = logging.getLogger(__name__)


def create_app(settings: StreamSettings, check_state: bool = True) -> BatchingApp:
    from stream_app import web

    forbid_auto_create_topics()
    servers = [f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")]
    app = BatchingApp(
        settings.app_id,
        broker=servers,
        broker_credentials=settings.faust_credentials(),
        store="rocksdb://",
        datadir=str(settings.state_dir),
        web_enabled=True,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        canonical_url=settings.advertised_url,
        web_in_thread=False,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_max_poll_interval=settings.max_poll_interval_s,
        broker_max_poll_records=settings.max_poll_records,
        broker_commit_interval=settings.commit_interval_s,
        broker_commit_every=50_000,
        consumer_max_fetch_size=settings.fetch_max_bytes,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=settings.standby_replicas,
        PartitionAssignor=RestartStickyAssignor,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=False,  # topics come from `isin-pipeline topics create`, never from Faust
        producer_acks=-1,
    )
    if settings.verify_end_offsets:
        app.end_offset_check_conf = settings.confluent_config()
    partitions = settings.topic_partitions
    raw = app.topic(
        settings.topic_raw,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=False,
    )
    changelog = app.topic(
        settings.topic_current,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        compacting=True,
        deleting=False,
        internal=True,
    )
    table = app.Table(
        settings.table_name,
        key_type=bytes,
        value_type=bytes,
        partitions=partitions,
        changelog_topic=changelog,
        options=settings.table_options(),
        help="Current record of every ISIN, keyed by ISIN; changelog = the current-records topic.",
    )
    serde = make_serde(settings.schema_registry_config())
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if check_state:
        wait_for_feed_process(settings)  # one of an earlier start has stopped: its stores are free
        _rebuild_if_ahead(settings, table)
    store = FaustTableStore(table, table_offsets(table, list(range(partitions))))
    output = OutputWriter(
        settings.output_producer_config(),
        settings.topic_current,
        settings.output_flush_timeout_s,
        dlq_topic=settings.topic_dlq,
        changes_topic=settings.topic_changes,
        identifiers_topic=settings.topic_identifiers,
    )
    golden = Golden.load(settings.sources_file, partitions)
    seen = SeenIndex(settings.state_dir / f"{settings.app_id}-seen.rdb")
    reindex = RawRangeReader(settings.confluent_config(), settings.topic_raw)

    async def changes_empty(partition: int) -> bool:
        """Whether the change topic has nothing in ``partition`` (a table that predates it is backfilled)."""
        from core.kafka.offsets import end_offsets

        topic = settings.topic_changes
        loop = asyncio.get_running_loop()
        ends = await loop.run_in_executor(None, end_offsets, settings.confluent_config(), [(topic, partition)])
        return ends[(topic, partition)] == 0

    dedup = Dedup(
        serde,
        store,
        output,
        seen,
        reindex,
        settings.topic_current,
        settings.topic_dlq,
        settings.topic_changes,
        changes_empty=changes_empty,
        golden=golden,
        digest=settings.table_digest,
    )
    metrics = StreamMetrics()
    feeds = FeedProcess(settings)  # the history and the identifier index, fed outside the dedup loop's GIL
    ctx = StreamContext(
        settings,
        serde,
        table,
        store,
        dedup,
        output,
        seen,
        metrics,
        history=feeds.history,
        index=feeds.index,
        golden=golden,
        conflicts=ConflictReport(store, serde),
    )
    app.isin = ctx

    async def handle(tp: TP, records: list[Any]) -> None:
        await dedup.process(tp.partition, records)

    app.batch_topic(raw, handle)

    async def standby(tp: TP, records: list[Any]) -> bool:
        """A standby copy's changelog batch, written to RocksDB in one write batch with its offset."""
        is_standby, seen = standby_progress(app, tp)
        if not is_standby:
            return False
        changes = {r.key: r.value for r in records if seen is None or r.offset > seen}
        if changes:
            last = records[-1].offset
            store.apply(tp.partition, changes, last)
            standby_applied(app, tp, last)
        return True

    app.standby_topic(changelog, standby)

    @app.task  # type: ignore[misc]
    async def start_feeds() -> None:
        """The feed process opens its stores (replaying their write-ahead logs) while the worker
        joins the group, not while it works through its first fetch."""
        feeds.start()

    @app.on_partitions_assigned.connect  # type: ignore[misc]
    async def on_assigned(app_: Any, assigned: set[TP], **kwargs: Any) -> None:
        dedup.forget_digests()  # the recovery that follows writes the stores outside the dedup loop
        seen.on_assigned(tp.partition for tp in assigned if tp.topic == settings.topic_raw)
        active = {tp.partition for tp in assigned if tp.topic == settings.topic_raw}
        # the history of standby partitions too, when they answer: a caught-up standby's history
        # is as current as the owner's (both read the change topic, a fetch behind the owner's writes)
        standby = standby_partitions(app)
        logger.info("partitions assigned: active %s, standby %s", sorted(active), sorted(standby))
        kept = active | (standby if settings.query_standbys else set())
        feeds.assign(kept)
        feeds.start()

    @app.timer(interval=settings.conflict_scan_s)  # type: ignore[misc]
    async def count_conflicts() -> None:
        """Bring the conflict counts up to date with the partitions that changed (a read of each)."""
        if not table_ready(app):
            return
        mine = sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == settings.topic_current)
        assert ctx.conflicts is not None
        await asyncio.get_running_loop().run_in_executor(None, ctx.conflicts.refresh_quiet, mine)

    @app.on_before_shutdown.connect  # type: ignore[misc]
    def on_shutdown(app_: Any, **kwargs: Any) -> None:
        output.close()
        feeds.stop()

    web.register(app, ctx)
    return app


def _rebuild_if_ahead(settings: StreamSettings, table: Any) -> None:
    """Before anything opens the local state: drop it if it is ahead of the broker."""
    from core.kafka.offsets import end_offsets

    partitions = list(range(settings.topic_partitions))
    applied = table_offsets(table, partitions)
    if not applied:
        return
    topic = settings.topic_current
    ends = end_offsets(settings.confluent_config(), [(topic, p) for p in partitions])
    wipe_if_ahead(settings.state_dir, applied, {p: ends[(topic, p)] for p in partitions}, topic)


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


_lazy: dict[str, BatchingApp] = {}


def __getattr__(name: str) -> Any:
    """``stream_app.app.app`` for ``faust -A stream_app.app worker``: built on first access."""
    if name == "app":
        if "app" not in _lazy:
            _lazy["app"] = create_app(StreamSettings())
        return _lazy["app"]
    raise AttributeError(name)
