"""The steps of one run after its claim: download, read and send, judge the read, complete.

``run_steps`` calls them in order. Each takes what it needs and fills the summary; the last
one (``complete``) puts the end-of-run markers and the final run record in the run's
transaction and commits it, so the events, the markers and the record exist together or not
at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

from core.failpoints import failpoint
from producer.context import RunContext, RunPlan, RunSummary
from producer.download import Download, Validators
from producer.fencing import transactional_id
from producer.parallel import workers_wanted
from producer.publish import FencedError, Publisher
from producer.publishing import MAX_KEPT, ListRun, ReadResult, Topics, publish_list, send_markers
from producer.runs import RunInfo, now_ms, run_key
from producer.safety import Baseline, ReadFacts, doubts

logger = logging.getLogger(__name__)


def run_steps(
    ctx: RunContext, plan: RunPlan, summary: RunSummary, me: RunInfo, stop_heartbeat: Callable[[], None]
) -> None:
    """Download, then (unless unchanged) read and send, judge, complete."""
    url_sha256 = hashlib.sha256(plan.url.encode()).hexdigest()
    me.url_sha256 = url_sha256
    previous = None if plan.force_publish else ctx.runs.validators(plan.source, url_sha256)
    last = ctx.runs.last_success(plan.source)  # the baseline is the success before this run began
    download = fetch(ctx, plan, summary, me, previous)
    try:
        if download.unchanged_since(previous):
            summary.status, summary.reason = "unchanged", "the list is unchanged since the last run"
            stop_heartbeat()
            finish(me, summary, "UNCHANGED")
            ctx.writer.write(me)
            return
        failpoint("run.downloaded")
        assert download.path is not None
        publisher = Publisher(ctx.settings, should_stop=ctx.should_stop)
        try:
            summary.partitions = publisher.connect(transactional_id=transactional_id(plan.source, plan.slot))
            read = read_and_send(ctx, plan, summary, publisher, download.path)
            status = judge(plan, summary, read, download.framing, last)
            complete(ctx, plan, summary, me, publisher, read, status, stop_heartbeat)
        finally:
            summary.transactions = publisher.chunks
            summary.longest_transaction_s = publisher.longest_transaction_s
            publisher.close()
    finally:
        if download.path is not None:
            download.path.unlink(missing_ok=True)


def fetch(ctx: RunContext, plan: RunPlan, summary: RunSummary, me: RunInfo, previous: Validators | None) -> Download:
    """The list, downloaded (or not modified since ``previous``); its validators on ``me``."""
    progress = ctx.progress
    download = ctx.downloader.fetch(plan.url, previous, progress.on_bytes if progress else None, plan.deadline_s)
    summary.bytes = download.bytes
    summary.framing = download.framing
    me.etag = download.etag or (previous.etag if previous and download.not_modified else None)
    me.last_modified = download.last_modified or (previous.last_modified if previous else None)
    me.content_sha256 = download.sha256 or (previous.sha256 if previous else None)
    return download


def read_and_send(ctx: RunContext, plan: RunPlan, summary: RunSummary, publisher: Publisher, path: Path) -> ReadResult:
    """Every row read: valid ISINs sent as events, the rest as dead letters, all acknowledged."""
    settings = ctx.settings
    progress = ctx.progress
    read = ReadResult()
    try:
        publish_list(
            path,
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
                columnar=settings.producer_columnar,
                slot_ms=int(plan.slot.timestamp() * 1000),
            ),
            read,
            progress.on_rows if progress else None,
        )
    finally:
        take(summary, read)
    publisher.flush("ISIN events and dead letters")
    failpoint("run.published")
    summary.published = publisher.delivered
    summary.dead_lettered = publisher.dead_letters_delivered
    return read


def judge(plan: RunPlan, summary: RunSummary, read: ReadResult, framing: str, last: RunInfo | None) -> str:
    """``SUCCEEDED`` if the read is beyond doubt, else ``SUSPICIOUS`` with the doubts said."""
    facts = ReadFacts(
        rows=read.rows,
        valid=read.valid,
        invalid=read.invalid,
        unreadable=read.unreadable,
        distinct=read.distinct,
        column=read.column,
        column_by=read.column_by,
        framing=framing,
        end_proven=read.end_proven,
        last_line_bad=read.last_line_bad,
        kept_overflow=len(read.kept) >= MAX_KEPT,
    )
    baseline = (
        None
        if last is None
        else Baseline(last.run_id, last.rows, last.invalid, last.distinct or last.valid, last.isin_column)
    )
    summary.doubts = doubts(facts, baseline, plan.policy)
    if baseline is not None:
        summary.shrink = {
            "last_run": baseline.run_id,
            "distinct_then": baseline.distinct,
            "distinct_now": read.distinct,
            "deletions_at_least": max(0, baseline.distinct - read.distinct),
            "allowed": plan.allow_shrink,
        }
    if summary.doubts:
        summary.reason = "published without deletions: " + "; ".join(summary.doubts)
        return "SUSPICIOUS"
    return "SUCCEEDED"


def complete(
    ctx: RunContext,
    plan: RunPlan,
    summary: RunSummary,
    me: RunInfo,
    publisher: Publisher,
    read: ReadResult,
    status: str,
    stop_heartbeat: Callable[[], None],
) -> None:
    """The last fence, the markers (a read beyond doubt only), the final record, the commit."""
    done = [r for r in ctx.runs.refresh().for_slot(plan.source, plan.slot) if r.done and r.run_id != me.run_id]
    if done:
        raise FencedError(f"run {done[-1].run_id} completed slot {summary.slot} first")
    if status == "SUCCEEDED":
        slot_ms = int(plan.slot.timestamp() * 1000)
        send_markers(
            ctx.serde, ctx.settings.topic_raw, publisher, plan.source, summary.run_id, read.valid, read.kept, slot_ms
        )
        summary.markers = True
    stop_heartbeat()  # no renewal may follow the final record
    finish(me, summary, status)
    publisher.send(ctx.writer.topic, run_key(me.source, me.slot_at), ctx.writer.encode(me), partition=0)
    publisher.flush("end-of-run markers and the run record")
    failpoint("run.before_commit")
    publisher.commit()
    summary.status = status.lower()


def finish(run: RunInfo, summary: RunSummary, status: str) -> None:
    """The run record's final fields, from the summary."""
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


def take(summary: RunSummary, read: ReadResult) -> None:
    summary.rows, summary.valid, summary.invalid = read.rows, read.valid, read.invalid
    summary.unreadable, summary.distinct = read.unreadable, read.distinct
    summary.layout = read.layout
    summary.invalid_by_reason = read.invalid_by_reason
    summary.unknown_prefixes = read.unknown_prefixes
    summary.kept = len(read.kept)
