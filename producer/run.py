"""One producer run: claim the slot, download, read, publish, judge the read, mark the end.

Whatever goes wrong, a run that claimed its slot ends with exactly one final record in the
runs topic (``SUCCEEDED``, ``UNCHANGED``, ``SUSPICIOUS``, ``FAILED`` or ``INTERRUPTED``), and
the command prints exactly one JSON summary: never a ``RUNNING`` claim left behind by an error,
never a bare traceback. A bug is recorded as ``FAILED`` with its type and message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import PipelineError
from core.failpoints import failpoint
from producer.download import Downloader
from producer.heartbeat import Heartbeat
from producer.parallel import workers_wanted
from producer.progress import RunProgress
from producer.publish import FencedError, Publisher, RunInterrupted
from producer.publishing import MAX_KEPT, ListRun, ReadResult, Topics, now_ms, publish_list, send_markers
from producer.reading import ReadHints
from producer.runs import RunInfo, RunLog, RunWriter, claim_lost, owner_id, run_key
from producer.safety import Baseline, ReadFacts, SafetyPolicy, doubts
from producer.schedule import slot_key
from producer.settings import ProducerSettings
from schemas import Serde

logger = logging.getLogger(__name__)


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: ``20261122T071500Z-1a2b3c4d``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


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
    unreadable: int = 0
    distinct: int = 0
    published: int = 0
    dead_lettered: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    rows_per_s: float = 0.0
    partitions: int = 0
    markers: bool = False
    """End-of-run markers were published: the stream app deletes what the list no longer has."""
    framing: str = ""
    layout: dict[str, Any] = field(default_factory=dict)
    """What the reader detected: format, encoding, sheets, header row, ISIN column and how."""
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    unknown_prefixes: dict[str, int] = field(default_factory=dict)
    """Valid ISINs published whose prefix python-stdnum does not know (``QQ`` …), by prefix."""
    doubts: list[str] = field(default_factory=list)
    """Why a suspicious run published no deletions."""
    kept: int = 0
    """Valid ISINs seen in rows that could not be read: not deleted, whatever the run."""
    shrink: dict[str, Any] | None = None
    """Against the last successful run: distinct ISINs then and now (deletions to expect)."""
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


@dataclass(frozen=True)
class RunPlan:
    """One run to execute: what, as which source, for which slot, and how to claim the slot."""

    url: str
    source: str
    slot: datetime
    force_publish: bool = False
    """Publish even if the list is unchanged since the last run (no conditional GET, no hash check)."""
    take_over: bool = False
    """A scheduler leader takes over a slot whose claim is not final (its previous leader died);
    a one-off ``produce`` stands down for a fresh claim of another process."""
    hints: ReadHints = field(default_factory=ReadHints)
    policy: SafetyPolicy = field(default_factory=SafetyPolicy)
    deadline_s: float | None = None
    """The whole download's deadline (default: the settings' ``http_deadline_s``)."""

    @property
    def allow_shrink(self) -> bool:
        return self.policy.allow_shrink


def transactional_id(source: str, slot: datetime) -> str:
    digest = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()[:16]
    return f"isin-pipeline.{digest}.{slot_key(slot)}"


def fence_abandoned(ctx: RunContext, source: str, only_expired: bool = True) -> list[RunInfo]:
    """Abort the transactions of runs that claimed a slot and never finished, and record them.

    A run killed mid-way leaves an open transaction; until it is aborted, read_committed
    consumers of its partitions stop at it (on Kafka for up to transaction.timeout.ms).
    Initialising a producer with the run's transactional id aborts it and fences the run if
    it is still alive. ``only_expired``: only claims past their deadline (a new scheduler
    leader fences all of its predecessors' claims).
    """
    from confluent_kafka import KafkaException, Producer

    now = now_ms()
    default_ms, heartbeat_ms = _timeouts_ms(ctx)
    claims = [r for r in ctx.runs.refresh().history(source) if r.status == "RUNNING"]
    dead = [r for r in claims if not only_expired or r.abandoned(now, default_ms, heartbeat_ms)]
    # A slot's runs share one transactional id: fencing a dead claim while another claim of the
    # same slot is alive would abort the live run. The dead one waits for the live one to end.
    alive_slots = {r.slot for r in claims if r not in dead}
    abandoned = [r for r in dead if r.slot not in alive_slots]
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
        if ctx.runs.refresh().last_of(claim.run_id) is not claim:
            continue  # it finished while we fenced: its final record stands
        claim.status, claim.finished_at = "INTERRUPTED", now_ms()
        if claim.expired(now, default_ms):
            silent = "its deadline passed"
        elif claim.abandoned(now, default_ms, heartbeat_ms):
            silent = "its heartbeat stopped"
        else:
            silent = "its source was taken over"
        claim.reason = f"abandoned by {claim.owner} ({silent}); its transaction was aborted by {owner_id()}"
        ctx.writer.write(claim)
        logger.warning(
            "run %s of slot %s was abandoned by %s: fenced and recorded", claim.run_id, claim.slot, claim.owner
        )
    return abandoned


def _timeouts_ms(ctx: RunContext) -> tuple[int, int]:
    """(a run's upper bound, the silence after which its claim is abandoned), in ms."""
    return int(ctx.settings.run_timeout_s * 1000), int(ctx.settings.run_heartbeat_timeout_s * 1000)


def watch_claims(ctx: RunContext, source: str, slot: datetime) -> None:
    """Return once every RUNNING claim of the slot is known alive or dead.

    A claim seen for the first time is watched on this process's own clock: it is alive as soon
    as a new heartbeat arrives, dead (abandoned) after ``RUN_HEARTBEAT_TIMEOUT_S`` of silence.
    So the retry of a killed run starts within that time, and no clocks need agree.
    """
    default_ms, heartbeat_ms = _timeouts_ms(ctx)
    first = {r.run_id: r.heartbeat_at for r in ctx.runs.refresh().slot_runs(source, slot) if r.status == "RUNNING"}
    watched = {run_id for run_id, beat in first.items() if beat is not None}
    deadline = time.monotonic() + ctx.settings.run_heartbeat_timeout_s + ctx.settings.run_heartbeat_s
    while watched and time.monotonic() < deadline and not ctx.should_stop():
        for run_id in list(watched):
            run = ctx.runs.last_of(run_id)
            beating = run is not None and (run.heartbeat_at or 0) > (first[run_id] or 0)
            if run is None or run.status != "RUNNING" or beating or run.abandoned(now_ms(), default_ms, heartbeat_ms):
                watched.discard(run_id)
        if watched:
            time.sleep(min(0.2, ctx.settings.run_heartbeat_s / 4))
            ctx.runs.refresh()


def execute(ctx: RunContext, plan: RunPlan) -> RunSummary:
    """Run ``plan`` unless its slot is done or claimed. Raises PipelineError if the run failed."""
    started = time.monotonic()
    settings = ctx.settings
    summary = RunSummary(run_id=new_run_id(), source=plan.source, slot=slot_key(plan.slot))
    default_ms, heartbeat_ms = _timeouts_ms(ctx)
    if not plan.take_over:
        watch_claims(ctx, plan.source, plan.slot)
        fence_abandoned(ctx, plan.source)
    runs = ctx.runs.refresh()
    done = runs.done_run(plan.source, plan.slot)
    if done is not None:
        return _skip(summary, f"slot {summary.slot} is done: {done.status.lower()} by run {done.run_id}")
    now = now_ms()
    live = [
        r
        for r in runs.slot_runs(plan.source, plan.slot)
        if r.status == "RUNNING" and not r.abandoned(now, default_ms, heartbeat_ms)
    ]
    if not plan.take_over and live:
        return _skip(summary, f"slot {summary.slot} is being run by {live[0].owner} (run {live[0].run_id})")

    me = RunInfo(
        plan.source,
        summary.slot,
        summary.run_id,
        "RUNNING",
        started_at=now,
        owner=owner_id(),
        deadline_at=now + default_ms,
        heartbeat_at=now,
    )
    me.offset = ctx.writer.write(me)
    if not plan.take_over:
        winner = claim_lost(runs.refresh(), me, default_ms, now, heartbeat_ms)
        if winner is not None:
            summary = _skip(summary, f"slot {summary.slot} was claimed first by {winner.owner} (run {winner.run_id})")
            _finish(me, summary, "INTERRUPTED")  # a stood-down claim is closed, not left to expire
            ctx.writer.write(me)
            return summary
    heartbeat = Heartbeat(RunWriter(settings, ctx.serde), me, settings.run_heartbeat_s).start()
    try:
        _publish(ctx, plan, summary, me, heartbeat.stop)
    except FencedError as exc:
        logger.warning("run %s of %s stood down: %s", summary.run_id, plan.source, exc)
        return _skip(summary, f"another run of slot {summary.slot} took over: {exc}")
    except (PipelineError, Exception, KeyboardInterrupt) as exc:
        error = exc if isinstance(exc, PipelineError) else _internal(exc)
        summary.status = "interrupted" if isinstance(exc, RunInterrupted | KeyboardInterrupt) else "failed"
        summary.reason = str(error)
        error.summary = summary
        heartbeat.stop()
        _finish(me, summary, summary.status.upper())
        try:
            ctx.writer.write(me)
        except Exception as write_exc:
            logger.error("could not record run %s as %s: %s", me.run_id, me.status, write_exc)
        if error is exc:
            raise
        raise error from exc
    finally:
        heartbeat.stop()
        summary.duration_s = round(time.monotonic() - started, 3)
        if summary.duration_s > 0:
            summary.rows_per_s = round(summary.rows / summary.duration_s, 1)
        logger.info(
            "run %s of %s for slot %s: %s, %d rows, %d valid (%d distinct), %d invalid, %d unreadable, %.1fs",
            summary.run_id,
            summary.source,
            summary.slot,
            summary.status,
            summary.rows,
            summary.valid,
            summary.distinct,
            summary.invalid,
            summary.unreadable,
            summary.duration_s,
        )
    return summary


def _internal(exc: BaseException) -> PipelineError:
    if isinstance(exc, KeyboardInterrupt):
        return RunInterrupted("interrupted")
    logger.exception("run failed on an internal error")
    return PipelineError(f"internal error: {type(exc).__name__}: {exc}")


def _skip(summary: RunSummary, reason: str) -> RunSummary:
    summary.status, summary.reason = "skipped", reason
    logger.info("%s: %s", summary.source, reason)
    return summary


def _finish(run: RunInfo, summary: RunSummary, status: str, read: ReadResult | None = None) -> None:
    run.status = status
    run.finished_at = now_ms()
    run.rows, run.valid, run.invalid, run.published = summary.rows, summary.valid, summary.invalid, summary.published
    run.distinct, run.unreadable = summary.distinct, summary.unreadable
    run.bytes = summary.bytes
    run.reason = summary.reason
    run.doubts = list(summary.doubts)
    if summary.layout:
        run.layout = json.dumps(summary.layout, sort_keys=True)
        run.isin_column = summary.layout.get("isin_column")
        run.column_by = summary.layout.get("column_by")


def _baseline(last: RunInfo | None) -> Baseline | None:
    if last is None:
        return None
    return Baseline(last.run_id, last.rows, last.invalid, last.distinct or last.valid, last.isin_column)


def _publish(
    ctx: RunContext, plan: RunPlan, summary: RunSummary, me: RunInfo, stop_heartbeat: Callable[[], None]
) -> None:
    settings = ctx.settings
    runs = ctx.runs
    url_sha256 = hashlib.sha256(plan.url.encode()).hexdigest()
    me.url_sha256 = url_sha256
    previous = None if plan.force_publish else runs.validators(plan.source, url_sha256)
    last = runs.last_success(plan.source)
    progress = ctx.progress
    download = ctx.downloader.fetch(plan.url, previous, progress.on_bytes if progress else None, plan.deadline_s)
    try:
        summary.bytes = download.bytes
        summary.framing = download.framing
        me.etag = download.etag or (previous.etag if previous and download.not_modified else None)
        me.last_modified = download.last_modified or (previous.last_modified if previous else None)
        me.content_sha256 = download.sha256 or (previous.sha256 if previous else None)
        if download.unchanged_since(previous):
            summary.status, summary.reason = "unchanged", "the list is unchanged since the last run"
            stop_heartbeat()
            _finish(me, summary, "UNCHANGED")
            ctx.writer.write(me)
            return
        failpoint("run.downloaded")
        assert download.path is not None
        publisher = Publisher(settings, should_stop=ctx.should_stop)
        read = ReadResult()
        try:
            summary.partitions = publisher.connect(transactional_id=transactional_id(plan.source, plan.slot))
            try:
                publish_list(
                    download.path,
                    ListRun(
                        serde=ctx.serde,
                        topics=Topics(settings.topic_raw, settings.topic_dlq),
                        publisher=publisher,
                        source=plan.source,
                        run_id=summary.run_id,
                        hints=plan.hints,
                        max_bytes=settings.unpacked_max_bytes,
                        spool_dir=settings.spool_dir,
                        workers=workers_wanted(settings.producer_workers),
                        parallel_min_bytes=settings.producer_parallel_min_bytes,
                    ),
                    read,
                    progress.on_rows if progress else None,
                )
            finally:
                _take(summary, read)
            publisher.flush("ISIN events and dead letters")
            failpoint("run.published")
            summary.published = publisher.delivered
            summary.dead_lettered = publisher.dead_letters_delivered
            facts = ReadFacts(
                rows=read.rows,
                valid=read.valid,
                invalid=read.invalid,
                unreadable=read.unreadable,
                distinct=read.distinct,
                column=read.column,
                column_by=read.column_by,
                framing=download.framing,
                end_proven=read.end_proven,
                last_line_bad=read.last_line_bad,
                kept_overflow=len(read.kept) >= MAX_KEPT,
            )
            baseline = _baseline(last)
            summary.doubts = doubts(facts, baseline, plan.policy)
            if baseline is not None:
                summary.shrink = {
                    "last_run": baseline.run_id,
                    "distinct_then": baseline.distinct,
                    "distinct_now": read.distinct,
                    "deletions_at_least": max(0, baseline.distinct - read.distinct),
                    "allowed": plan.allow_shrink,
                }
            status = "SUSPICIOUS" if summary.doubts else "SUCCEEDED"
            if summary.doubts:
                summary.reason = "published without deletions: " + "; ".join(summary.doubts)
            # The last fence: a run of this slot that completed meanwhile wins.
            done = [r for r in runs.refresh().for_slot(plan.source, plan.slot) if r.done and r.run_id != me.run_id]
            if done:
                raise FencedError(f"run {done[-1].run_id} completed slot {summary.slot} first")
            if status == "SUCCEEDED":
                send_markers(
                    ctx.serde, settings.topic_raw, publisher, plan.source, summary.run_id, read.valid, read.kept
                )
                summary.markers = True
            stop_heartbeat()  # no renewal may follow the final record
            _finish(me, summary, status)
            publisher.send(ctx.writer.topic, run_key(me.source, me.slot_at), ctx.writer.encode(me), partition=0)
            publisher.flush("end-of-run markers and the run record")
            failpoint("run.before_commit")
            publisher.commit()
            summary.status = status.lower()
        finally:
            publisher.close()
    finally:
        if download.path is not None:
            download.path.unlink(missing_ok=True)


def _take(summary: RunSummary, read: ReadResult) -> None:
    summary.rows, summary.valid, summary.invalid = read.rows, read.valid, read.invalid
    summary.unreadable, summary.distinct = read.unreadable, read.distinct
    summary.layout = read.layout
    summary.invalid_by_reason = read.invalid_by_reason
    summary.unknown_prefixes = read.unknown_prefixes
    summary.kept = len(read.kept)
