"""Read a downloaded list and publish it: valid ISINs as events, everything else as dead letters."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ParseError
from core.isin import InvalidIsin, RowError, validate_isin
from core.kafka import partition_for
from producer.distinct import DistinctCounter
from producer.publish import Publisher
from producer.reading import BadRow, ListFile, ReadHints, Row
from producer.reading.model import DEAD_LETTER_RAW_CHARS, shorten
from schemas import DEAD_LETTER, END_OF_RUN, Serde, content_hash
from schemas.fastpath import EventEncoder

BATCH = 2000
MAX_KEPT = 100_000
_ISIN_LIKE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[A-Za-z0-9]{9}[0-9](?![A-Za-z0-9])")

RowProgress = Callable[[int], None]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ReadResult:
    """What reading and publishing one list found."""

    rows: int = 0
    valid: int = 0
    invalid: int = 0
    unreadable: int = 0
    distinct: int = 0
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    layout: dict[str, Any] = field(default_factory=dict)
    column: str = ""
    column_by: Any = None
    end_proven: bool = False
    last_line_bad: bool = False
    kept: set[str] = field(default_factory=set)
    """Valid ISINs seen in rows that could not be read: the stream app must not delete them."""


def isins_in(text: str) -> set[str]:
    """The valid ISINs in a row's text (a row that could not be read may still show its ISIN)."""
    found = set()
    for match in _ISIN_LIKE.finditer(text):
        try:
            found.add(validate_isin(match.group()))
        except InvalidIsin:
            continue
    return found


@dataclass(frozen=True)
class Topics:
    raw: str
    dlq: str


def publish_list(
    path: Path,
    *,
    serde: Serde,
    topics: Topics,
    publisher: Publisher,
    source: str,
    run_id: str,
    hints: ReadHints,
    max_bytes: int,
    spool_dir: str | None,
    result: ReadResult,
    progress: RowProgress | None = None,
) -> None:
    """Parse ``path`` and publish every row; ``result`` holds the counts even if this raises."""
    run_key = run_id.encode()
    published_at = now_ms()
    encode_event = EventEncoder(serde, topics.raw, source, run_id, published_at)
    encode_dead = serde.encoder(topics.dlq, DEAD_LETTER)
    send_batch = publisher.send_batch
    invalid_by = result.invalid_by_reason
    batch: list[dict[str, bytes]] = []
    isins: list[str] = []
    rows = valid = invalid = unreadable = 0
    last_bad = False
    distinct = DistinctCounter(spool_dir)

    def dead(line: int, raw: str, error: RowError, reason: str, where: str) -> None:
        record = {
            "source": source,
            "run_id": run_id,
            "line": line,
            "raw": shorten(raw, DEAD_LETTER_RAW_CHARS),
            "reason": reason,
            "error": error.value,
            "recorded_at": published_at,
            "position": where or None,
        }
        publisher.send(topics.dlq, run_key, encode_dead(record), [("run-id", run_key)])
        invalid_by[error.value] = invalid_by.get(error.value, 0) + 1

    try:
        with ListFile(path, hints, max_bytes=max_bytes, spool_dir=spool_dir) as reader:
            result.layout = reader.detected.as_dict()
            result.column = reader.detected.column_identity
            result.column_by = reader.column_by
            joiner = str(result.layout.get("delimiter", ","))
            for item in reader.rows():
                rows += 1
                if type(item) is BadRow:
                    unreadable += 1
                    last_bad = True
                    dead(item.line, item.raw, item.error, item.reason, item.where)
                    if len(result.kept) < MAX_KEPT:
                        result.kept |= isins_in(item.raw)
                    continue
                assert type(item) is Row
                try:
                    isin = validate_isin(item.isin)
                except InvalidIsin as exc:
                    invalid += 1
                    last_bad = True
                    dead(item.line, joiner.join(item.raw), exc.error, exc.reason, item.where)
                    continue
                last_bad = False
                valid += 1
                attributes = item.attributes
                value = encode_event(isin, item.line, attributes, content_hash(source, attributes))
                batch.append({"key": isin.encode(), "value": value})
                isins.append(isin)
                if len(batch) >= BATCH:
                    send_batch(topics.raw, batch)
                    distinct.add_many(isins)
                    batch, isins = [], []
                    if progress is not None:
                        progress(rows)
            if batch:
                send_batch(topics.raw, batch)
                distinct.add_many(isins)
            result.layout = reader.detected.as_dict()
            result.end_proven = reader.end_proven
            result.last_line_bad = reader.unterminated and last_bad
        result.distinct = distinct.count()
    finally:
        distinct.close()
        result.rows, result.valid, result.invalid, result.unreadable = rows, valid, invalid, unreadable
    if progress is not None:
        progress(rows)
    if valid == 0:
        raise ParseError(
            f"no valid ISIN in {rows} rows (ISIN column {result.column!r}): a run never succeeds with none; "
            "the dead-letter topic has every row and why"
        )


def send_markers(
    serde: Serde,
    raw_topic: str,
    publisher: Publisher,
    source: str,
    run_id: str,
    run_valid: int,
    kept: set[str],
) -> None:
    """One EndOfRun per raw partition, after that partition's events were acknowledged."""
    encode = serde.encoder(raw_topic, END_OF_RUN)
    finished = now_ms()
    run_key = run_id.encode()
    count = len(publisher.partitions)
    kept_in: dict[int, list[str]] = {}
    for isin in sorted(kept):
        kept_in.setdefault(partition_for(isin.encode(), count), []).append(isin)
    for partition, stats in sorted(publisher.partitions.items()):
        record = {
            "source": source,
            "run_id": run_id,
            "partition": partition,
            "events": stats.events,
            "first_offset": stats.first_offset,
            "last_offset": stats.last_offset,
            "run_valid": run_valid,
            "finished_at": finished,
            "kept": kept_in.get(partition, []),
        }
        publisher.send(raw_topic, None, encode(record), [("run-id", run_key)], partition=partition)
