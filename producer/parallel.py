"""Reading, validating and encoding a large delimited list on every core.

A run has one transactional producer (its transactions are the run's chunks), so publishing
stays in the run's process; the rest of a row's cost (splitting, validating with python-stdnum's
rules, hashing, encoding the Avro event) is spread over worker processes, each taking byte ranges
of the unpacked file, cut at line ends. A plain range is read as columns (``producer.columnar``),
any other by the row loop. Results come back in file order, at most ``WINDOW_PER_WORKER`` ranges
per worker ahead of publishing, so memory stays bounded at any file size, and every event keeps
its place in its partition.

Only where a range can be cut anywhere a line ends, which is most big lists (GLEIF's): delimited
text with no quote character at all (a quoted field may hold a line end), no bare carriage
return, in UTF-8 or a single-byte encoding (a line end byte is never inside a character).
Anything else is read by the one sequential reader.
"""

from __future__ import annotations

import codecs
import logging
import multiprocessing
import os
from array import array
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from producer.distinct import BUCKETS
from producer.reading import BadRow, Row
from producer.reading.columns import TableLayout
from producer.reading.container import GZIP_MAGIC, ZIP_MAGICS
from producer.reading.delimited import RowShape
from producer.reading.lines import Overlong
from producer.reading.model import MAX_ROW_BYTES
from producer.rows import RowCounts, run_rows
from schemas.fastpath import EventEncoder

logger = logging.getLogger(__name__)

RANGE_BYTES = 1024 * 1024
_ONE_BYTE_LINE_ENDS = ("utf-8", "ascii", "latin-1", "iso8859", "cp125", "koi8", "mac-")


@dataclass(frozen=True)
class Table:
    """A delimited table as the sequential reader found it, and where its bytes are."""

    path: Path
    """A file that holds the unpacked bytes (the download itself when it was not packed)."""
    encoding: str
    delimiter: str
    layout: TableLayout
    sections: bool


@dataclass(frozen=True)
class Job:
    path: str
    start: int
    end: int
    first_line: int
    last: bool
    encoding: str
    delimiter: str
    layout: TableLayout
    sections: bool
    header: bytes
    source: str
    run_id: str
    published_at: int
    slot_ms: int | None = None
    columnar: bool = True
    """Read a plain range as columns (``producer.columnar``); the row loop reads any other."""


@dataclass
class RangeResult:
    """One byte range read: its events in file order, its dead letters, its counts."""

    keys: bytes = b""
    """The events' keys: valid ISINs, 12 bytes each, one after the other."""
    values: bytes = b""
    """The events' encoded values, one after the other."""
    lengths: bytes = b""
    """The length of each value, an ``array("I")``'s bytes: compact to send between processes."""
    dead: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    """(line, raw, error, reason, where) of each row not published, as the row loop gave them."""
    counts: RowCounts = field(default_factory=RowCounts)
    buckets: list[bytes] = field(default_factory=list)
    """The valid ISINs as ``producer.distinct`` packs them, one array's bytes per bucket."""
    raw_bad: list[str] = field(default_factory=list)
    """The text of unreadable rows, for the ISINs they hold (kept from deletion)."""
    section_lines: int = 0
    unterminated: bool = False
    columnar: bool = False
    """Read as columns (``producer.columnar``), not by the row loop."""


class _RangeSink:
    """A worker's sink of the row loop: the range's events packed for the trip back."""

    def __init__(self, out: RangeResult) -> None:
        self.out = out
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.lengths = array("I")
        self.buckets = [array("Q") for _ in range(BUCKETS)]

    def event(self, isin: str, value: bytes) -> None:
        self.keys.append(isin.encode())
        self.values.append(value)
        self.lengths.append(len(value))
        number = int(isin[:11], 36)
        self.buckets[number & (BUCKETS - 1)].append(number)

    def dead(self, line: int, raw: str, error: str, reason: str, where: str) -> None:
        self.out.dead.append((line, raw, error, reason, where))

    def unreadable(self, raw: str) -> None:
        self.out.raw_bad.append(raw)

    def pack(self) -> None:
        out = self.out
        out.keys, out.values, out.lengths = b"".join(self.keys), b"".join(self.values), self.lengths.tobytes()
        out.buckets = [b.tobytes() for b in self.buckets]


def eligible(table: Table) -> bool:
    """A table whose bytes can be cut at any line end, as far as its encoding goes."""
    return codecs.lookup(table.encoding).name.startswith(_ONE_BYTE_LINE_ENDS)


def workers_wanted(setting: int | None) -> int:
    return setting if setting and setting > 0 else max(1, os.cpu_count() or 1)


def plan(path: Path, header_line: int, workers: int) -> list[tuple[int, int, int]] | None:
    """Byte ranges after the header, cut at line ends, as (start, end, first line number): about
    ``RANGE_BYTES`` each, at least four per worker; None when a range cannot be cut at any line
    end (a quote character, a bare carriage return)."""
    size = path.stat().st_size
    range_bytes = max(16 * 1024, min(RANGE_BYTES, size // (4 * workers)))
    ranges: list[tuple[int, int, int]] = []
    with open(path, "rb") as f:
        line, start = 1, 0
        while line <= header_line:  # the header and any lines above it are not rows
            start += len(f.readline())
            line += 1
        while start < size:
            f.seek(start + range_bytes)
            end = min(size, start + range_bytes + len(f.readline()))
            f.seek(start)
            data = f.read(end - start)
            if b'"' in data or data.count(b"\r") != data.count(b"\r\n"):
                return None
            ranges.append((start, end, line))
            line += data.count(b"\n")
            start = end
    return ranges


def read_range(job: Job) -> RangeResult:
    """Worker: the rows of one byte range, as columns when it is plain, else through the row loop
    (no Kafka here)."""
    out = RangeResult()
    with open(job.path, "rb") as f:
        f.seek(job.start)
        data = f.read(job.end - job.start)
    if job.columnar:
        from producer.columnar import read_plain  # pyarrow and numpy: in the range processes only

        if read_plain(job, data, out):
            out.columnar = True
            return out
    text = data.decode(job.encoding)  # the whole file was checked to decode before
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif job.last:
        out.unterminated = True
    shape = RowShape(job.layout, job.delimiter, job.sections)
    encode = EventEncoder(None, "", job.source, job.run_id, job.published_at, header=job.header, slot_ms=job.slot_ms)
    sink = _RangeSink(out)
    run_rows(_items(lines, job, shape), encode, job.source, job.delimiter, sink, out.counts)
    sink.pack()
    out.section_lines = shape.section_lines
    return out


def _items(lines: list[str], job: Job, shape: RowShape) -> Iterator[Row | BadRow]:
    """The rows of a range's lines, as the sequential reader gives them."""
    delimiter = job.delimiter
    for number, line in enumerate(lines, start=job.first_line):
        if len(line) > MAX_ROW_BYTES:
            yield Overlong.of(number, line).bad_row()
            continue
        item = shape(number, line.split(delimiter))
        if item is not None:
            yield item


WINDOW_PER_WORKER = 2


def events(result: RangeResult, batch: int) -> Iterator[tuple[list[dict[str, bytes]], bytes]]:
    """A range's events as ``produce_batch`` takes them, ``batch`` at a time, each batch with its
    keys one after the other."""
    keys, values = result.keys, result.values
    lengths = array("I")
    lengths.frombytes(result.lengths)
    at = 0
    for first in range(0, len(lengths), batch):
        out = []
        last = min(first + batch, len(lengths))
        for i in range(first, last):
            end = at + lengths[i]
            out.append({"key": keys[12 * i : 12 * i + 12], "value": values[at:end]})
            at = end
        yield out, keys[12 * first : 12 * last]


def warm(columnar: bool) -> None:
    """A range process's imports, before its first range: pyarrow and numpy take about 0.4 s."""
    if columnar:
        import producer.columnar  # noqa: F401


class RangePool:
    """The range processes: one per worker, started (and their imports done) as soon as the
    pool is made, so that a run can start them while its list is unpacked and detected."""

    def __init__(self, workers: int, columnar: bool) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with librdkafka threads
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        # a task each while none is idle: the pool starts a process per task, up to ``workers``
        self._warming = [self._pool.submit(warm, columnar) for _ in range(workers)]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def results_in_order(self, jobs: list[Job]) -> Iterator[RangeResult]:
        """The ranges' results in file order, with at most ``WINDOW_PER_WORKER`` per worker in flight."""
        for warming in self._warming:
            warming.result()  # a process that cannot import fails here, not on a range
        pool, window = self._pool, WINDOW_PER_WORKER * self.workers
        pending: list[Future[RangeResult]] = []
        queued = iter(jobs)
        for job in queued:
            pending.append(pool.submit(read_range, job))
            if len(pending) >= window:
                break
        while pending:
            result = pending.pop(0).result()
            nxt = next(queued, None)
            if nxt is not None:
                pending.append(pool.submit(read_range, nxt))
            yield result


def worth_warming(path: Path, min_bytes: int) -> bool:
    """Whether a download may well be read in ranges, before it is unpacked and detected: as
    large as ``min_bytes``, or packed (gzip, zip) and an eighth of it (lists pack 2 to 10 times)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        packed = f.read(4).startswith((GZIP_MAGIC, *ZIP_MAGICS))
    return size >= (min_bytes // 8 if packed else min_bytes)
