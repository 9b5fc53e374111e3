"""One producer run: download, parse, validate, publish, mark the end of the run."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from isin_pipeline.errors import PipelineError
from producer.download import Download, Downloader, Validators
from producer.publish import Publisher
from producer.sources import BadRow, Layout, ListReader, Row
from producer.validate import InvalidIsin, RowError, validate_isin
from schemas import DEAD_LETTER, END_OF_RUN, ISIN_EVENT, Serde, content_hash

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
    """Everything one run needs, built by the entry point."""

    publisher: Publisher
    downloader: Downloader
    serde: Serde
    raw_topic: str
    dlq_topic: str


def publish_list(
    ctx: RunContext,
    summary: RunSummary,
    path: Path,
    progress: RowProgress | None = None,
) -> None:
    """Parse ``path`` and publish every row; bad rows go to the dead-letter topic."""
    publisher = ctx.publisher
    encode_event = ctx.serde.encoder(ctx.raw_topic, ISIN_EVENT)
    encode_dead = ctx.serde.encoder(ctx.dlq_topic, DEAD_LETTER)
    source = summary.source
    run_id = summary.run_id
    run_key = run_id.encode()
    raw_topic, dlq_topic = ctx.raw_topic, ctx.dlq_topic
    send = publisher.send
    invalid_by = summary.invalid_by_reason
    published_at = now_ms()
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
        send(dlq_topic, run_key, encode_dead(record), [("run-id", run_key)])
        invalid_by[error.value] = invalid_by.get(error.value, 0) + 1

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
            digest = content_hash(source, attributes)
            value = encode_event(
                {
                    "isin": isin,
                    "country_code": isin[:2],
                    "source": source,
                    "run_id": run_id,
                    "line": item.line,
                    "attributes": attributes,
                    "content_hash": digest,
                    "published_at": published_at,
                }
            )
            send(raw_topic, isin.encode(), value, [("content-hash", digest.encode()), ("run-id", run_key)])
            if progress is not None and not rows % 10_000:
                progress(rows)
    summary.rows, summary.valid, summary.invalid = rows, valid, invalid
    if progress is not None:
        progress(rows)


def send_markers(ctx: RunContext, summary: RunSummary) -> None:
    """One EndOfRun per raw partition, after that partition's events were acknowledged."""
    encode = ctx.serde.encoder(ctx.raw_topic, END_OF_RUN)
    finished = now_ms()
    run_key = summary.run_id.encode()
    for partition, stats in sorted(ctx.publisher.partitions.items()):
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
        ctx.publisher.send(ctx.raw_topic, None, encode(record), [("run-id", run_key)], partition=partition)
    ctx.publisher.flush("end-of-run markers")
    summary.markers = True


def run_once(
    ctx: RunContext,
    url: str,
    source: str,
    *,
    previous: Validators | None = None,
    send_end_markers: bool = True,
    on_download: Callable[[Download], None] | None = None,
    progress: RowProgress | None = None,
) -> RunSummary:
    """Download ``url`` and publish it as ``source``. Raises PipelineError if it cannot complete."""
    started = time.monotonic()
    summary = RunSummary(run_id=new_run_id(), source=source)
    summary.partitions = len(ctx.publisher.partitions)
    download = ctx.downloader.fetch(url, previous)
    try:
        summary.bytes = download.bytes
        if on_download is not None:
            on_download(download)
        if download.path is None:
            summary.status = "unchanged"
            return summary
        publish_list(ctx, summary, download.path, progress)
        ctx.publisher.flush("ISIN events and dead letters")
        summary.published = ctx.publisher.delivered
        summary.dead_lettered = ctx.publisher.dead_letters_delivered
        if send_end_markers:
            send_markers(ctx, summary)
        summary.status = "succeeded"
        return summary
    except PipelineError:
        summary.status = "failed"
        raise
    finally:
        if download.path is not None:
            download.path.unlink(missing_ok=True)
        summary.duration_s = round(time.monotonic() - started, 3)
        if summary.duration_s > 0:
            summary.rows_per_s = round(summary.rows / summary.duration_s, 1)
        logger.info(
            "run %s of %s: %s, %d rows, %d valid, %d invalid, %.1fs",
            summary.run_id,
            summary.source,
            summary.status,
            summary.rows,
            summary.valid,
            summary.invalid,
            summary.duration_s,
        )
