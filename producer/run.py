"""One producer run: download, parse, validate, publish, mark the end of the run."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import PipelineError
from core.isin import InvalidIsin, RowError, validate_isin
from producer.download import Downloader
from producer.progress import RunProgress
from producer.publish import FencedError, Publisher, RunInterrupted
from producer.runs import RunInfo, RunLog, RunWriter, claim_lost, owner_id, run_key
from producer.schedule import slot_key
from producer.settings import ProducerSettings
from producer.sources import BadRow, Layout, ListReader, Row
from schemas import DEAD_LETTER, END_OF_RUN, Serde, content_hash
from schemas.fastpath import EventEncoder

logger = logging.getLogger(__name__)

RowProgress = Callable[[int], None]


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: ``20261122T071500Z-1a2b3c4d``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class RunSummary:
    """What one run did. Printed as one JSON line by ``isin-pipeline produce``."""

    run_id: str
    source: str
    slot: str = ""
    status: str = "running"
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    published: int = 0
    dead_lettered: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    rows_per_s: float = 0.0
    partitions: int = 0
    markers: bool = False
    layout: dict[str, Any] = field(default_factory=dict)
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    reason: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=False)


@dataclass
class RunContext:
    """Everything a run needs, built once by the entry point."""

    settings: ProducerSettings
    downloader: Downloader
    serde: Serde
    runs: RunLog
    writer: RunWriter
    progress: RunProgress | None = None
    should_stop: Callable[[], str | None] = lambda: None

    @property
    def raw_topic(self) -> str:
        return self.settings.topic_raw

    @property
    def dlq_topic(self) -> str:
        return self.settings.topic_dlq


BATCH = 2000


def publish_list(
    ctx: RunContext,
    publisher: Publisher,
    summary: RunSummary,
    path: Path,
    progress: RowProgress | None = None,
) -> None:
    """Parse ``path`` and publish every row; bad rows go to the dead-letter topic."""
    source = summary.source
    run_id = summary.run_id
    run_key = run_id.encode()
    raw_topic, dlq_topic = ctx.raw_topic, ctx.dlq_topic
    published_at = now_ms()
    encode_event = EventEncoder(ctx.serde, raw_topic, source, run_id, published_at)
    encode_dead = ctx.serde.encoder(dlq_topic, DEAD_LETTER)
    send_batch = publisher.send_batch
    invalid_by = summary.invalid_by_reason
    batch: list[dict[str, bytes]] = []
    rows = valid = invalid = 0

    def dead(line: int, raw: str, error: RowError, reason: str) -> None:
        record = {
            "source": source,
            "run_id": run_id,
            "line": line,
            "raw": raw,
            "reason": reason,
            "error": error.value,
            "recorded_at": published_at,
        }
        publisher.send(dlq_topic, run_key, encode_dead(record), [("run-id", run_key)])
        invalid_by[error.value] = invalid_by.get(error.value, 0) + 1

    try:
        with ListReader(path) as reader:
            layout: Layout | None = reader.layout
            assert layout is not None
            summary.layout = {
                "kind": layout.kind,
                "compression": layout.compression,
                "delimiter": layout.delimiter,
                "isin_column": layout.isin_header,
                "header_line": layout.header_line,
            }
            delimiter = layout.delimiter
            for item in reader.rows():
                rows += 1
                if type(item) is BadRow:
                    invalid += 1
                    dead(item.line, item.raw, item.error, item.reason)
                    continue
                assert type(item) is Row
                try:
                    isin = validate_isin(item.isin)
                except InvalidIsin as exc:
                    invalid += 1
                    dead(item.line, delimiter.join(item.raw), exc.error, exc.reason)
                    continue
                valid += 1
                attributes = item.attributes
                value = encode_event(isin, item.line, attributes, content_hash(source, attributes))
                batch.append({"key": isin.encode(), "value": value})
                if len(batch) >= BATCH:
                    send_batch(raw_topic, batch)
                    batch = []
                    if progress is not None:
                        progress(rows)
            if batch:
                send_batch(raw_topic, batch)
    finally:
        summary.rows, summary.valid, summary.invalid = rows, valid, invalid
    if progress is not None:
        progress(rows)


def send_markers(ctx: RunContext, publisher: Publisher, summary: RunSummary) -> None:
    """One EndOfRun per raw partition, after that partition's events were acknowledged."""
    encode = ctx.serde.encoder(ctx.raw_topic, END_OF_RUN)
    finished = now_ms()
    run_key = summary.run_id.encode()
    for partition, stats in sorted(publisher.partitions.items()):
        record = {
            "source": summary.source,
            "run_id": summary.run_id,
            "partition": partition,
            "events": stats.events,
            "first_offset": stats.first_offset,
            "last_offset": stats.last_offset,
            "run_valid": summary.valid,
            "finished_at": finished,
        }
        publisher.send(ctx.raw_topic, None, encode(record), [("run-id", run_key)], partition=partition)
    summary.markers = True


@dataclass(frozen=True)
class RunPlan:
    """One run to execute: what, as which source, for which slot, and how to claim the slot."""

    url: str
    source: str
    slot: datetime
    allow_shrink: bool = False
    force_publish: bool = False
    """Publish even if the list is unchanged since the last run (no conditional GET, no hash check)."""
    take_over: bool = False
    """A scheduler leader takes over a slot whose claim is not final (its previous leader died);
    a one-off ``produce`` stands down for a fresh claim of another process."""


def transactional_id(source: str, slot: datetime) -> str:
    digest = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()[:16]
    return f"isin-pipeline.{digest}.{slot_key(slot)}"


def fence_abandoned(ctx: RunContext, source: str, started_before_ms: int | None = None) -> list[RunInfo]:
    """Abort the transactions of runs that claimed a slot and never finished, and record them.

    A run killed mid-way leaves an open transaction; until it is aborted, read_committed
    consumers of its partitions stop at it (on Kafka for up to transaction.timeout.ms).
    Initialising a producer with the run's transactional id aborts it and fences the run if
    it is still alive. ``started_before_ms`` limits this to claims that old (None: all, for a
    new scheduler leader, whose predecessors' claims are all abandoned).
    """
    from confluent_kafka import KafkaException, Producer

    abandoned = [
        r
        for r in ctx.runs.refresh().history(source)
        if r.status == "RUNNING" and (started_before_ms is None or r.started_at < started_before_ms)
    ]
    for claim in abandoned:
        tid = transactional_id(source, claim.slot_at)
        producer = Producer({**ctx.settings.producer_config(), "transactional.id": tid})
        try:
            producer.init_transactions(30)
        except KafkaException as exc:
            logger.warning("could not fence the abandoned run %s: %s", claim.run_id, exc.args[0])
            continue
        finally:
            producer.flush(1)
        claim.status, claim.finished_at = "INTERRUPTED", now_ms()
        claim.reason = f"abandoned by {claim.owner}; its transaction was aborted by {owner_id()}"
        ctx.writer.write(claim)
        logger.warning(
            "run %s of slot %s was abandoned by %s: fenced and recorded", claim.run_id, claim.slot, claim.owner
        )
    return abandoned


def execute(ctx: RunContext, plan: RunPlan) -> RunSummary:
    """Run ``plan`` unless its slot is done or claimed. Raises PipelineError if the run failed."""
    started = time.monotonic()
    settings = ctx.settings
    summary = RunSummary(run_id=new_run_id(), source=plan.source, slot=slot_key(plan.slot))
    if not plan.take_over:
        fence_abandoned(ctx, plan.source, started_before_ms=now_ms() - int(settings.run_timeout_s * 1000))
    runs = ctx.runs.refresh()
    latest = runs.latest(plan.source, plan.slot)
    if latest is not None and latest.done:
        return _skip(summary, f"slot {summary.slot} is done: {latest.status.lower()} by run {latest.run_id}")
    now = now_ms()
    stale_ms = int(settings.run_timeout_s * 1000)
    if not plan.take_over and latest is not None and latest.status == "RUNNING" and latest.started_at > now - stale_ms:
        return _skip(summary, f"slot {summary.slot} is being run by {latest.owner} (run {latest.run_id})")

    me = RunInfo(plan.source, summary.slot, summary.run_id, "RUNNING", started_at=now, owner=owner_id())
    me.offset = ctx.writer.write(me)
    if not plan.take_over:
        winner = claim_lost(runs.refresh(), me, stale_ms, now)
        if winner is not None:
            return _skip(summary, f"slot {summary.slot} was claimed first by {winner.owner} (run {winner.run_id})")
    try:
        _publish(ctx, plan, summary, me)
    except FencedError as exc:
        logger.warning("run %s of %s stood down: %s", summary.run_id, plan.source, exc)
        return _skip(summary, f"another run of slot {summary.slot} took over: {exc}")
    except PipelineError as exc:
        summary.status = "interrupted" if isinstance(exc, RunInterrupted) else "failed"
        summary.reason = str(exc)
        exc.summary = summary
        _finish(me, summary, summary.status.upper())
        try:
            ctx.writer.write(me)
        except PipelineError as write_exc:
            logger.error("could not record run %s as %s: %s", me.run_id, me.status, write_exc)
        raise
    finally:
        summary.duration_s = round(time.monotonic() - started, 3)
        if summary.duration_s > 0:
            summary.rows_per_s = round(summary.rows / summary.duration_s, 1)
        logger.info(
            "run %s of %s for slot %s: %s, %d rows, %d valid, %d invalid, %.1fs",
            summary.run_id,
            summary.source,
            summary.slot,
            summary.status,
            summary.rows,
            summary.valid,
            summary.invalid,
            summary.duration_s,
        )
    return summary


def _skip(summary: RunSummary, reason: str) -> RunSummary:
    summary.status, summary.reason = "skipped", reason
    logger.info("%s: %s", summary.source, reason)
    return summary


def _finish(run: RunInfo, summary: RunSummary, status: str) -> None:
    run.status = status
    run.finished_at = now_ms()
    run.rows, run.valid, run.invalid, run.published = summary.rows, summary.valid, summary.invalid, summary.published
    run.bytes = summary.bytes
    run.reason = summary.reason


def _publish(ctx: RunContext, plan: RunPlan, summary: RunSummary, me: RunInfo) -> None:
    settings = ctx.settings
    runs = ctx.runs
    url_sha256 = hashlib.sha256(plan.url.encode()).hexdigest()
    me.url_sha256 = url_sha256
    previous = None if plan.force_publish else runs.validators(plan.source, url_sha256)
    baseline = runs.last_success(plan.source)
    download = ctx.downloader.fetch(plan.url, previous, ctx.progress.on_bytes if ctx.progress else None)
    try:
        summary.bytes = download.bytes
        me.etag = download.etag or (previous.etag if previous and download.not_modified else None)
        me.last_modified = download.last_modified or (previous.last_modified if previous else None)
        me.content_sha256 = download.sha256 or (previous.sha256 if previous else None)
        if download.unchanged_since(previous):
            summary.status, summary.reason = "unchanged", "the list is unchanged since the last run"
            _finish(me, summary, "UNCHANGED")
            ctx.writer.write(me)
            return
        assert download.path is not None
        publisher = Publisher(settings, should_stop=ctx.should_stop)
        try:
            summary.partitions = publisher.connect(transactional_id=transactional_id(plan.source, plan.slot))
            publish_list(ctx, publisher, summary, download.path, ctx.progress.on_rows if ctx.progress else None)
            publisher.flush("ISIN events and dead letters")
            summary.published = publisher.delivered
            summary.dead_lettered = publisher.dead_letters_delivered
            status = "SUCCEEDED"
            if (
                baseline is not None
                and not plan.allow_shrink
                and summary.valid < settings.shrink_threshold * baseline.valid
            ):
                status = "SUSPICIOUS"
                summary.reason = (
                    f"{summary.valid} valid rows, under {settings.shrink_threshold:.0%} of the {baseline.valid} of the "
                    f"last successful run {baseline.run_id}: published without deletions (--allow-shrink to accept)"
                )
            # The last fence: a run of this slot that completed meanwhile wins.
            done = [r for r in runs.refresh().for_slot(plan.source, plan.slot) if r.done and r.run_id != me.run_id]
            if done:
                raise FencedError(f"run {done[-1].run_id} completed slot {summary.slot} first")
            if status == "SUCCEEDED":
                send_markers(ctx, publisher, summary)
            _finish(me, summary, status)
            publisher.send(ctx.writer.topic, run_key(me.source, me.slot_at), ctx.writer.encode(me), partition=0)
            publisher.flush("end-of-run markers and the run record")
            publisher.commit()
            summary.status = status.lower()
        finally:
            publisher.close()
    finally:
        if download.path is not None:
            download.path.unlink(missing_ok=True)
