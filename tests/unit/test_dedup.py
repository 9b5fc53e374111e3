"""The dedup loop, without a broker: changes, no-ops, end-of-run sweeps, re-reads, rejects."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from schemas import END_OF_RUN, ISIN_EVENT, content_hash, make_serde
from stream_app.dedup import Dedup
from stream_app.seen import SeenIndex
from tests.unit.fakes import DictTableStore, FakeReindex, ListOutput, RawRecord

SERDE = make_serde(None)
AAPL, SIE, NESN = b"US0378331005", b"DE0007236101", b"CH0038863350"


class Harness:
    def __init__(
        self, tmp_path: Path, reindex_answer: Iterable[bytes] | None = (), changes_topic: str | None = None
    ) -> None:
        self.store = DictTableStore()
        self.output = ListOutput()
        self.seen = SeenIndex(tmp_path / "seen.rdb")
        self.reindex = FakeReindex(reindex_answer)
        self.dedup = Dedup(
            SERDE, self.store, self.output, self.seen, self.reindex, "current", changes_topic=changes_topic
        )
        self.next_offset = 0

    def event(self, isin: bytes, source: str = "A", attrs: dict[str, str] | None = None, run: str = "r1") -> RawRecord:
        attrs = attrs if attrs is not None else {"name": "n"}
        digest = content_hash(source, attrs)
        value = SERDE.encode(
            "raw",
            ISIN_EVENT,
            {
                "isin": isin.decode(),
                "country_code": isin[:2].decode(),
                "source": source,
                "run_id": run,
                "line": 1,
                "attributes": attrs,
                "content_hash": digest,
                "published_at": 1_795_000_000_000,
            },
        )
        return self._rec(isin, value, [])

    def marker(self, source: str, run: str, first_offset: int, events: int, partition: int = 0) -> RawRecord:
        value = SERDE.encode(
            "raw",
            END_OF_RUN,
            {
                "source": source,
                "run_id": run,
                "partition": partition,
                "events": events,
                "first_offset": first_offset,
                "last_offset": -1,
                "run_valid": events,
                "finished_at": 1_795_000_100_000,
            },
        )
        return self._rec(None, value, [("run-id", run.encode())])

    def _rec(self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> RawRecord:
        rec = RawRecord(self.next_offset, key, value, headers)
        self.next_offset += 1
        return rec

    def feed(self, *records: RawRecord, partition: int = 0) -> None:
        asyncio.run(self.dedup.process(partition, list(records)))

    def current(self, key: bytes, partition: int = 0) -> dict[str, Any] | None:
        raw = self.store.get(partition, key)
        return None if raw is None else SERDE.decode(raw).record

    def emitted(self) -> list[tuple[bytes, str | None]]:
        """(key, change or None for a tombstone) for everything sent, in order."""
        return [(k, None if v is None else SERDE.decode(v).record["change"]) for _, k, v in self.output.sent]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path)
    harness.seen.on_assigned([0])
    return harness


def test_new_isins_are_emitted_and_stored(h: Harness) -> None:
    h.feed(h.event(AAPL), h.event(SIE))
    assert h.emitted() == [(AAPL, "NEW"), (SIE, "NEW")]
    record = h.current(AAPL)
    assert record is not None and record["listings"][0]["attributes"] == {"name": "n"}
    assert h.store.offsets[0] == 1  # the changelog offset is stored with the batch
    assert (h.dedup.stats.new, h.dedup.stats.events) == (2, 2)


def test_an_identical_rerun_emits_nothing(h: Harness) -> None:
    h.feed(h.event(AAPL), h.event(SIE))
    h.feed(h.event(AAPL, run="r2"), h.event(SIE, run="r2"))
    assert len(h.output.sent) == 2
    assert h.dedup.stats.unchanged == 2


def test_a_change_is_emitted_once_and_keeps_first_seen(h: Harness) -> None:
    h.feed(h.event(AAPL, attrs={"lei": "OLD"}))
    first = h.current(AAPL)
    h.feed(h.event(AAPL, attrs={"lei": "NEW"}, run="r2"), h.event(AAPL, attrs={"lei": "NEW"}, run="r2"))
    assert h.emitted() == [(AAPL, "NEW"), (AAPL, "CHANGED")]
    now = h.current(AAPL)
    assert first is not None and now is not None
    assert now["listings"][0]["attributes"] == {"lei": "NEW"}
    assert now["listings"][0]["first_seen_at"] == first["listings"][0]["first_seen_at"]
    assert now["listings"][0]["run_id"] == "r2"


def test_an_isin_on_two_rows_of_one_run_is_listed_once_and_does_not_churn(h: Harness) -> None:
    """A workbook whose sheets overlap, or a line per trading currency: two rows, one ISIN."""
    shares, etfs = {"sheet": "1.1 Shares", "name": "n"}, {"sheet": "1.0 All Equity", "currency": "GBP"}
    h.feed(h.event(AAPL, attrs=shares), h.event(AAPL, attrs=etfs))
    assert h.emitted() == [(AAPL, "NEW"), (AAPL, "CHANGED")]
    record = h.current(AAPL)
    assert record is not None and len(record["listings"]) == 1
    listing = record["listings"][0]
    assert listing["attributes"] == {**etfs, **shares}  # the first row's values win
    assert listing["content_hash"].split() == [content_hash("A", shares), content_hash("A", etfs)]
    # the next identical run finds both rows unchanged: nothing is written
    h.feed(h.event(AAPL, attrs=shares, run="r2"), h.event(AAPL, attrs=etfs, run="r2"))
    assert len(h.output.sent) == 2 and h.dedup.stats.unchanged == 2


def test_sweep_deletes_what_the_run_did_not_list_scoped_to_its_source(h: Harness) -> None:
    start = h.next_offset
    h.feed(h.event(AAPL, "A"), h.event(SIE, "A"), h.event(NESN, "A"), h.event(SIE, "B", run="b1"))
    h.feed(h.marker("A", "r1", start, 3))
    assert h.output.sent[-1][1] == SIE  # nothing swept yet: all three were in run r1
    sent_before = len(h.output.sent)
    start = h.next_offset
    # run r2 of A lists only AAPL: NESN goes (tombstone), SIE stays because B lists it
    h.feed(h.event(AAPL, "A", run="r2"), h.marker("A", "r2", start, 1))
    sweep = h.emitted()[sent_before:]
    assert sorted(sweep, key=lambda x: x[0]) == [(NESN, None), (SIE, "CHANGED")]
    assert h.current(NESN) is None
    sie = h.current(SIE)
    assert sie is not None and [item["source"] for item in sie["listings"]] == ["B"]
    assert h.current(AAPL) is not None
    assert h.dedup.stats.deleted == 1
    assert h.dedup.net_keys[0] == 2 == len(list(h.store.items(0)))  # 3 added, 1 deleted


def test_an_isin_that_comes_back_is_new_again(h: Harness) -> None:
    start = h.next_offset
    h.feed(h.event(AAPL), h.marker("A", "r1", start, 1))
    start = h.next_offset
    h.feed(h.marker("A", "r2", -1, 0))  # an empty run: everything of A goes
    assert h.current(AAPL) is None
    h.feed(h.event(AAPL, run="r3"))
    assert h.emitted() == [(AAPL, "NEW"), (AAPL, None), (AAPL, "NEW")]
    assert h.dedup.net_keys[0] == 1


def test_a_marker_for_a_run_that_started_before_our_epoch_rereads_the_raw_topic(tmp_path: Path) -> None:
    h = Harness(tmp_path, reindex_answer=[AAPL])
    h.seen.on_assigned([0])
    h.feed(h.event(AAPL), h.event(SIE))  # run r1 processed here: epoch starts at 0
    h.seen.on_assigned([0])  # a rebalance: the partition was elsewhere while offsets 2..9 went by
    h.next_offset = 10
    h.feed(h.event(AAPL, run="r2"))  # r2's first event was at offset 5, before our new epoch (10)
    h.feed(h.marker("A", "r2", 5, 2))
    assert h.reindex.calls == [(0, "r2", 5, 11)]
    assert h.current(SIE) is None  # not in r2's re-read keys: deleted
    assert h.current(AAPL) is not None
    assert h.dedup.stats.reindexed_runs == 1


def test_no_deletes_when_the_run_cannot_be_reread(tmp_path: Path) -> None:
    h = Harness(tmp_path, reindex_answer=None)
    h.seen.on_assigned([0])
    h.feed(h.event(AAPL), h.event(SIE))
    h.seen.on_assigned([0])
    h.next_offset = 10
    h.feed(h.marker("A", "r2", 5, 1))
    assert h.current(SIE) is not None and h.current(AAPL) is not None
    assert h.dedup.stats.sweeps_skipped == 1


def test_continuity_after_a_restart_needs_no_reread(h: Harness) -> None:
    start = h.next_offset
    h.feed(h.event(AAPL), h.event(SIE))
    h.seen.on_assigned([0])  # restart: resumes right after the last indexed offset
    h.feed(h.event(NESN), h.marker("A", "r1", start, 3))
    assert h.reindex.calls == []
    assert h.dedup.stats.deleted == 0


def test_records_delivered_again_after_a_restart_are_not_applied_twice(h: Harness) -> None:
    """A worker stopped after a sweep and before its offsets were committed: on restart Kafka
    delivers again from the last commit (at least once). The run's keys were dropped from the
    index with the sweep; a marker applied again would find every listing unseen."""
    h.feed(h.event(AAPL), h.event(SIE), h.event(NESN), h.marker("A", "r1", 0, 3))  # offsets 0-3
    h.feed(h.event(AAPL, run="r2"), h.event(SIE, run="r2"), h.marker("A", "r2", 4, 2))  # 4-6: NESN is gone
    assert h.current(NESN) is None and h.dedup.stats.deleted == 1
    sent = len(h.output.sent)

    h.seen.on_assigned([0])  # restart; the last commit was at offset 5
    h.next_offset = 5
    h.feed(h.event(SIE, run="r2"), h.marker("A", "r2", 4, 2))
    assert h.current(AAPL) is not None and h.current(SIE) is not None
    assert (h.dedup.stats.deleted, h.dedup.stats.redelivered) == (1, 2)

    h.seen.on_assigned([0])  # restart; nothing was ever committed: both runs come again
    h.next_offset = 0
    h.feed(h.event(AAPL), h.event(SIE), h.event(NESN), h.marker("A", "r1", 0, 3))
    h.feed(h.event(AAPL, run="r2"), h.event(SIE, run="r2"), h.marker("A", "r2", 4, 2))
    assert h.current(NESN) is None, "the source no longer lists it: a replayed r1 must not bring it back"
    assert len(h.output.sent) == sent, "nothing emitted for records the table held already"
    assert h.dedup.stats.redelivered == 2 + 7

    h.feed(h.event(NESN, run="r3"))  # offset 7: new records are applied again
    assert h.current(NESN) is not None and h.dedup.stats.new == 4


def test_bad_records_are_rejected_and_skipped(h: Harness) -> None:
    good = h.event(AAPL)
    wrong_key = h.event(SIE)
    wrong_key.key = NESN
    garbage = RawRecord(h.next_offset, SIE, b"not avro", [])
    h.feed(good, wrong_key, garbage)
    assert h.emitted() == [(AAPL, "NEW")]
    assert h.dedup.stats.rejected == 2


def test_every_change_of_a_listing_is_emitted_once_with_the_record(tmp_path: Path) -> None:
    """Day 1 lists two ISINs, day 2 amends one and drops the other, day 3 brings it back; a
    suspicious day (no marker) drops nothing; a redelivered batch emits the same ids again."""
    h = Harness(tmp_path, changes_topic="changes")

    def changes() -> list[tuple[str, str, str, str]]:
        out = []
        for _, key, value in h.output.changes:
            c = SERDE.decode(value).record
            assert c["isin"].encode() == key
            out.append((c["op"], c["isin"], c["run_id"], ",".join(c["changed"])))
        return out

    first = h.next_offset
    h.feed(h.event(AAPL, run="d1"), h.event(SIE, run="d1"))
    h.feed(h.marker("A", "d1", first, 2))
    assert changes() == [("LISTED", "US0378331005", "d1", "name"), ("LISTED", "DE0007236101", "d1", "name")]
    h.output.changes.clear()

    first = h.next_offset
    h.feed(h.event(AAPL, attrs={"name": "Apple"}, run="d2"))
    h.feed(h.marker("A", "d2", first, 1))
    assert changes() == [("AMENDED", "US0378331005", "d2", "name"), ("DELISTED", "DE0007236101", "d2", "name")]
    h.output.changes.clear()

    h.feed(h.event(AAPL, attrs={"name": "Apple"}, run="s3"))  # a suspicious run: no marker
    assert changes() == []

    first = h.next_offset
    h.feed(h.event(AAPL, attrs={"name": "Apple"}, run="d4"), h.event(SIE, run="d4"))
    h.feed(h.marker("A", "d4", first, 2))
    assert changes() == [("LISTED", "DE0007236101", "d4", "name")]
    # each change went out with its record, before the table was written (the same flush)
    assert len(h.output.sent) >= 5 and h.current(SIE) is not None


def test_a_table_that_predates_the_change_topic_is_backfilled_once(tmp_path: Path) -> None:
    """Listings already in the table get one backfilled LISTED each, dated at their first
    sighting, before the partition's first batch; a second batch, or a second worker start with
    the same seen index, backfills nothing again; a change topic with records needs none."""
    old = Harness(tmp_path / "old")
    old.feed(old.event(AAPL, run="d0"), old.event(SIE, run="d0"))
    asked: list[int] = []

    async def empty(partition: int) -> bool:
        asked.append(partition)
        return True

    h = Harness(tmp_path / "new", changes_topic="changes")
    h.store = old.store
    h.dedup = Dedup(
        SERDE, h.store, h.output, h.seen, h.reindex, "current", changes_topic="changes", changes_empty=empty
    )
    h.feed(h.event(NESN, run="d1"))
    got = [SERDE.decode(v).record for _, _, v in h.output.changes]
    backfilled = sorted(c["isin"] for c in got if c["backfilled"])
    assert backfilled == sorted([AAPL.decode(), SIE.decode()])
    assert all(c["op"] == "LISTED" and c["slot"].timestamp() == 1_795_000_000 for c in got if c["backfilled"])
    assert [c["isin"] for c in got if not c["backfilled"]] == [NESN.decode()]
    h.output.changes.clear()
    h.feed(h.event(NESN, attrs={"name": "Nestle"}, run="d2"))
    assert [SERDE.decode(v).record["op"] for _, _, v in h.output.changes] == ["AMENDED"]
    assert asked == [0]
    # a restart with the same seen index: already checked, not asked again
    restarted = Dedup(
        SERDE, h.store, h.output, h.seen, h.reindex, "current", changes_topic="changes", changes_empty=empty
    )
    h.output.changes.clear()
    asyncio.run(restarted.process(0, [h.event(NESN, attrs={"name": "Nestle"}, run="d3")]))
    assert h.output.changes == [] and asked == [0]
