"""Read a downloaded list and publish it: valid ISINs as events, everything else as dead letters."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ParseError
from core.isin import InvalidIsin, validate_isin
from core.kafka import partition_for
from core.kafka.partitions import partitions_of
from producer.distinct import DistinctCounter
from producer.publish import Publisher
from producer.reading import ListFile, ReadHints
from producer.reading.model import DEAD_LETTER_RAW_CHARS, shorten
from producer.rows import RowCounts, run_rows
from producer.runs import now_ms
from schemas import DEAD_LETTER, END_OF_RUN, Serde
from schemas.fastpath import EventEncoder

if TYPE_CHECKING:
    from producer.parallel import RangePool

logger = logging.getLogger(__name__)

BATCH = 2000
ISIN_BYTES = 12
"""An event's key: a valid ISIN, twelve ASCII characters."""
MAX_KEPT = 100_000
_ISIN_LIKE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[A-Za-z0-9]{9}[0-9](?![A-Za-z0-9])")

RowProgress = Callable[[int], None]


@dataclass
class ReadResult:
    """What reading and publishing one list found."""

    rows: int = 0
    valid: int = 0
    invalid: int = 0
    unreadable: int = 0
    distinct: int = 0
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    unknown_prefixes: dict[str, int] = field(default_factory=dict)
    """Valid rows whose ISIN has a prefix python-stdnum does not know (``QQ`` …), by prefix."""
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


@dataclass(frozen=True)
class ListRun:
    """Who a list is published for, and how."""

    serde: Serde
    topics: Topics
    publisher: Publisher
    source: str
    run_id: str
    hints: ReadHints
    max_bytes: int
    spool_dir: str | None
    workers: int = 1
    parallel_min_bytes: int = 16 * 1024 * 1024
    """Smaller lists are read in the run's process: starting workers costs more than it saves."""
    columnar: bool = True
    """Plain ranges are read as columns (``producer.columnar``)."""
    slot_ms: int | None = None
    """The run's slot (valid time), carried by every event and marker."""


class _Publishing:
    """The state of one list being published: the event encoder, dead letters, distinct ISINs."""

    def __init__(self, run: ListRun, result: ReadResult) -> None:
        self.run = run
        self.result = result
        self.published_at = now_ms()
        self.encode_event = EventEncoder(
            run.serde, run.topics.raw, run.source, run.run_id, self.published_at, slot_ms=run.slot_ms
        )
        self._encode_dead = run.serde.encoder(run.topics.dlq, DEAD_LETTER)
        self._run_key = run.run_id.encode()
        self.distinct = DistinctCounter(run.spool_dir)

    def dead(self, line: int, raw: str, error: str, reason: str, where: str = "") -> None:
        record = {
            "source": self.run.source,
            "run_id": self.run.run_id,
            "line": line,
            "raw": shorten(raw, DEAD_LETTER_RAW_CHARS),
            "reason": reason,
            "error": error,
            "recorded_at": self.published_at,
            "position": where or None,
        }
        self.run.publisher.send(
            self.run.topics.dlq, self._run_key, self._encode_dead(record), [("run-id", self._run_key)]
        )
        by = self.result.invalid_by_reason
        by[error] = by.get(error, 0) + 1

    def keep(self, raw: str) -> None:
        """The valid ISINs in a row that could not be read: the stream app must not delete them."""
        if len(self.result.kept) < MAX_KEPT:
            self.result.kept |= isins_in(raw)


def publish_list(path: Path, run: ListRun, result: ReadResult, progress: RowProgress | None = None) -> None:
    """Parse ``path`` and publish every row; ``result`` holds the counts even if this raises."""
    state = _Publishing(run, result)
    pool = _early_pool(path, run)
    try:
        with ListFile(path, run.hints, max_bytes=run.max_bytes, spool_dir=run.spool_dir) as reader:
            result.layout = reader.detected.as_dict()
            result.column = reader.detected.column_identity
            result.column_by = reader.column_by
            if run.workers < 2 or not _publish_in_parallel(state, reader, progress, pool):
                if pool is not None:
                    pool.close()  # not read in ranges after all
                _publish_rows(state, reader, progress)
            result.layout = reader.detected.as_dict()
            result.end_proven = reader.end_proven
        result.distinct = state.distinct.count()
    finally:
        state.distinct.close()
        if pool is not None:
            pool.close()
    if result.unknown_prefixes:
        logger.warning(
            "%s: %d valid ISINs have a prefix that is not a country or agency code python-stdnum knows (%s); "
            "published as listed",
            run.source,
            sum(result.unknown_prefixes.values()),
            ", ".join(f"{prefix}: {n}" for prefix, n in sorted(result.unknown_prefixes.items())),
        )
    if progress is not None:
        progress(result.rows)
    if result.valid == 0:
        raise ParseError(
            f"no valid ISIN in {result.rows} rows (ISIN column {result.column!r}): a run never succeeds with none; "
            "the dead-letter topic has every row and why"
        )


def send_in_partitions(publisher: Publisher, messages: list[dict[str, Any]], keys: bytes) -> None:
    """Queue events to their keys' partitions, each partition's in their order; ``keys``: the
    messages' keys one after the other."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for message, partition in zip(
        messages, partitions_of(keys, ISIN_BYTES, publisher.partition_count).tolist(), strict=True
    ):
        group = groups.get(partition)
        if group is None:
            group = groups[partition] = []
        group.append(message)
    for partition, group in sorted(groups.items()):
        publisher.send_events(partition, group)


class _BatchSink:
    """The run process's sink of the row loop: events in batches to the publisher."""

    def __init__(self, state: _Publishing) -> None:
        self.state = state
        self.batch: list[dict[str, bytes]] = []
        self.isins: list[str] = []
        self._publisher = state.run.publisher
        self._checkpoint = state.run.publisher.checkpoint
        self.dead = state.dead
        self.unreadable = state.keep

    def event(self, isin: str, value: bytes) -> None:
        self.batch.append({"key": isin.encode(), "value": value})
        self.isins.append(isin)
        if len(self.batch) >= BATCH:
            self.send()

    def send(self) -> None:
        if self.batch:
            send_in_partitions(self._publisher, self.batch, "".join(self.isins).encode())
            self.state.distinct.add_many(self.isins)
            self._checkpoint(len(self.batch))
            self.batch, self.isins = [], []


def _publish_rows(state: _Publishing, reader: ListFile, progress: RowProgress | None) -> None:
    """Row by row, in this process: every format."""
    run, result = state.run, state.result
    counts = RowCounts()
    sink = _BatchSink(state)
    joiner = str(result.layout.get("delimiter", ","))
    try:
        run_rows(reader.rows(), state.encode_event, run.source, joiner, sink, counts, progress, BATCH)
        sink.send()
        result.last_line_bad = reader.unterminated and counts.last_bad
    finally:
        _add_counts(result, counts)


def _add_counts(result: ReadResult, counts: RowCounts) -> None:
    result.rows += counts.rows
    result.valid += counts.valid
    result.invalid += counts.invalid
    result.unreadable += counts.unreadable
    for prefix, n in counts.unknown_prefixes.items():
        result.unknown_prefixes[prefix] = result.unknown_prefixes.get(prefix, 0) + n


def _early_pool(path: Path, run: ListRun) -> RangePool | None:
    """The range processes, started before the list is unpacked and detected (their start and
    imports then overlap those) when it may well be read in ranges."""
    if run.workers < 2:
        return None
    from producer import parallel

    return (
        parallel.RangePool(run.workers, run.columnar) if parallel.worth_warming(path, run.parallel_min_bytes) else None
    )


def _publish_in_parallel(
    state: _Publishing, reader: ListFile, progress: RowProgress | None, pool: RangePool | None
) -> bool:
    """Read, validate and encode on every core; False if this list cannot be cut in ranges."""
    from producer import parallel

    table = reader.text_table()
    if table is None:
        return False
    details = reader.detected.details
    delimited, payload, encoding = table.reader, table.payload, table.encoding
    spec = parallel.Table(payload.path, encoding.name, delimited.delimiter, delimited.layout, delimited.sections)
    if not parallel.eligible(spec):
        return False
    run, result = state.run, state.result
    path = spec.path
    if path.stat().st_size < run.parallel_min_bytes:
        return False
    ranges = parallel.plan(path, delimited.layout.header_line, run.workers)
    if ranges is None:
        return False
    logger.info("reading %s in %d ranges on %d processes", run.source, len(ranges), run.workers)
    jobs = [
        parallel.Job(
            str(path),
            start,
            end,
            first,
            i == len(ranges) - 1,
            encoding.name,
            delimited.delimiter,
            delimited.layout,
            delimited.sections,
            state.encode_event.header,
            run.source,
            run.run_id,
            state.published_at,
            run.slot_ms,
            run.columnar,
        )
        for i, (start, end, first) in enumerate(ranges)
    ]
    sections = as_columns = 0
    last_bad = unterminated = False
    own = pool is None  # not started early (the download looked small): started now, closed here
    pool = parallel.RangePool(run.workers, run.columnar) if pool is None else pool
    try:
        for part in pool.results_in_order(jobs):
            _add_counts(result, part.counts)
            for line, raw, error, reason, where in part.dead:
                state.dead(line, raw, error, reason, where)
            for raw in part.raw_bad:
                state.keep(raw)
            for batch, keys in parallel.events(part, BATCH):
                send_in_partitions(run.publisher, batch, keys)
                run.publisher.checkpoint(len(batch))
            state.distinct.add_packed(part.buckets)
            sections += part.section_lines
            as_columns += part.columnar
            if part.counts.rows:
                last_bad = part.counts.last_bad
            unterminated = part.unterminated
            if progress is not None:
                progress(result.rows)
    finally:
        if own:
            pool.close()
    result.last_line_bad = unterminated and last_bad
    if sections:
        details["section_lines"] = sections
    details["processes"] = run.workers
    details["ranges"] = len(jobs)
    details["ranges_as_columns"] = as_columns
    return True


def send_markers(
    serde: Serde,
    raw_topic: str,
    publisher: Publisher,
    source: str,
    run_id: str,
    run_valid: int,
    kept: set[str],
    slot_ms: int | None = None,
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
            "slot": slot_ms,
        }
        publisher.send(raw_topic, None, encode(record), [("run-id", run_key)], partition=partition)
