"""The dedup loop's table reads: a segment's keys read a chunk ahead of the loop, on a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import stream_app.dedup_io
from stream_app.dedup_io import SegmentReads
from tests.unit.fakes import RawRecord
from tests.unit.test_dedup import Harness

WAIT_S = 10.0


def _records(*keys: bytes | None) -> list[RawRecord]:
    """Events keyed ``keys``; None is an end-of-run marker, b"" a record without a value."""
    out = []
    for offset, key in enumerate(keys):
        if key == b"":
            out.append(RawRecord(offset, b"X", None, []))
        else:
            out.append(RawRecord(offset, key, b"v" if key is not None else b"marker", []))
    return out


class Recording:
    """A table of one partition whose multi-gets are recorded with the thread that made them."""

    def __init__(self, table: dict[bytes, bytes]) -> None:
        self.table = table
        self.calls: list[tuple[list[bytes], str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.second = threading.Event()

    def __call__(self, keys: list[bytes]) -> list[bytes | None]:
        self.calls.append((list(keys), threading.current_thread().name))
        self.started.set()
        if len(self.calls) >= 2:
            self.second.set()
        assert self.gate.wait(WAIT_S)
        return [self.table.get(key) for key in keys]


def _run(coro_factory: Callable[[], object]) -> object:
    return asyncio.run(coro_factory())  # type: ignore[arg-type]


def test_chunks_cover_the_segment_up_to_its_marker_and_no_further() -> None:
    records = _records(b"A", b"B", b"", b"C", b"D", b"E", None, b"F")
    read = Recording({b"A": b"1", b"C": b"3"})
    executor = ThreadPoolExecutor(1, thread_name_prefix="table-reads")
    reads = SegmentReads(executor, chunk=2)

    async def walk() -> list[tuple[dict[bytes, bytes | None], int]]:
        reads.begin(read, records, 0)
        return [await reads.next() for _ in range(3)]

    got = _run(walk)
    assert got == [({b"A": b"1", b"B": None}, 2), ({b"C": b"3", b"D": None}, 5), ({b"E": None}, 6)]
    assert [keys for keys, _ in read.calls] == [[b"A", b"B"], [b"C", b"D"], [b"E"]]  # F is after the marker
    assert all(name.startswith("table-reads") for _, name in read.calls)
    with pytest.raises(AssertionError, match="read past the segment"):
        _run(reads.next)
    reads.begin(read, records, 7)  # the segment after the marker
    assert _run(reads.next) == ({b"F": None}, 8)
    executor.shutdown()


def test_the_next_chunk_is_read_while_the_loop_works_on_this_one() -> None:
    records = _records(b"A", b"B", b"C")
    read = Recording({})
    executor = ThreadPoolExecutor(1)
    reads = SegmentReads(executor, chunk=1)

    async def first() -> None:
        reads.begin(read, records, 0)
        assert await reads.next() == ({b"A": None}, 1)

    _run(first)
    assert read.second.wait(WAIT_S)  # without another next(): the second chunk is read meanwhile
    assert [keys for keys, _ in read.calls] == [[b"A"], [b"B"]]
    reads.close()
    executor.shutdown()


def test_close_waits_for_the_read_in_flight() -> None:
    records = _records(b"A")
    read = Recording({b"A": b"1"})
    read.gate.clear()
    executor = ThreadPoolExecutor(1)
    reads = SegmentReads(executor)
    reads.begin(read, records, 0)
    assert read.started.wait(WAIT_S)
    finished = threading.Event()
    release = threading.Timer(0.2, read.gate.set)
    release.start()

    def watch() -> None:
        reads.close()
        finished.set()

    closer = threading.Thread(target=watch)
    closer.start()
    assert not finished.wait(0.05)  # the read is held at the gate: close is still waiting
    assert finished.wait(WAIT_S)
    closer.join(WAIT_S)
    release.join(WAIT_S)
    executor.shutdown()


ISINS = [b"US0378331005", b"DE0007236101", b"CH0038863350", b"US5949181045", b"FR0000120271", b"NL0010273215"]


def test_a_batch_read_in_chunks_ends_as_its_records_applied_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of two keys over a batch where an ISIN comes back in a later chunk, changed, on
    both sides of an end-of-run marker: the same table, records and changes as when every record
    is a batch of its own (one read each)."""
    monkeypatch.setattr(stream_app.dedup_io, "READ_CHUNK", 2)
    harnesses = [
        Harness(tmp_path / "batch", changes_topic="changes"),
        Harness(tmp_path / "one", changes_topic="changes"),
    ]
    for h in harnesses:
        day1 = [h.event(isin, attrs={"name": "one"}, run="r1") for isin in ISINS]
        day1.append(h.marker("A", "r1", 0, len(ISINS)))
        h.feed(*day1)  # day 1 as one batch in both: every ISIN new
    batch, one = harnesses
    day2 = {id(h): _day2(h) for h in harnesses}
    batch.feed(*day2[id(batch)])
    for rec in day2[id(one)]:
        one.feed(rec)
    assert batch.store.data == one.store.data
    assert batch.output.sent == one.output.sent
    assert [(p, k) for p, k, _ in batch.output.changes] == [(p, k) for p, k, _ in one.output.changes]
    assert batch.dedup.stats.changed == one.dedup.stats.changed == 3
    assert batch.current(ISINS[0])["listings"][0]["attributes"] == {"name": "four"}  # type: ignore[index]
    assert batch.current(ISINS[5]) is None
    assert batch.current(ISINS[4]) is not None


def _day2(h: Harness) -> list[RawRecord]:
    first = h.next_offset
    return [
        h.event(ISINS[0], attrs={"name": "two"}, run="r2"),
        h.event(ISINS[1], attrs={"name": "one"}, run="r2"),
        h.event(ISINS[2], attrs={"name": "one"}, run="r2"),
        h.event(ISINS[0], attrs={"name": "three"}, run="r2"),  # back in the next chunk, changed again
        h.event(ISINS[3], attrs={"name": "one"}, run="r2"),
        h.marker("A", "r2", first, 5),  # ISINS[4] and [5] not listed: deleted
        h.event(ISINS[4], attrs={"name": "back"}, run="r3"),
        h.event(ISINS[0], attrs={"name": "four"}, run="r3"),
    ]
