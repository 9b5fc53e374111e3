"""rebuild's comparison: a partition rebuilt on disk and the compacted topic's partition on disk,
walked in key order side by side, differences out, in memory that does not grow with them."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

from rocksdict import Options, Rdict

from ops.rebuild import _differences, compare_partition
from schemas import CURRENT_RECORD, make_serde
from stream_app.records import merge_event
from stream_app.store import RdictTableStore, iter_items, write_changes

SERDE = make_serde(None)


def record(isin: str, name: str, source: str = "nse") -> bytes:
    event: dict[str, Any] = {
        "content_hash": f"{source}-{name}",
        "run_id": "r",
        "isin": isin,
        "country_code": isin[:2],
        "source": source,
        "line": 1,
        "attributes": {"name": name},
        "published_at": 0,
    }
    return SERDE.encode("current", CURRENT_RECORD, merge_event(None, event))


def on_disk(path: Path, items: dict[bytes, bytes]) -> Rdict:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    db = Rdict(str(path), opts)
    write_changes(db, dict(items))
    return db


def test_the_differences_of_two_sorted_partitions() -> None:
    a, b, c, d = b"DE0007236101", b"IN0000000001", b"INE144J01027", b"US0378331005"
    rebuilt = [
        (a, record(a.decode(), "Siemens")),
        (c, record(c.decode(), "20 Microns")),
        (d, record(d.decode(), "Apple")),
    ]
    current = [
        (b, record(b.decode(), "gone")),
        (c, record(c.decode(), "20 Microns old")),
        (d, record(d.decode(), "Apple")),
    ]
    got = list(_differences(SERDE, iter(rebuilt), iter(current)))
    assert got == [(a, rebuilt[0][1]), (b, None), (c, rebuilt[1][1])]  # missing, to delete, changed
    assert list(_differences(SERDE, iter(rebuilt), iter(rebuilt))) == []
    assert list(_differences(SERDE, iter([]), iter(current))) == [(k, None) for k, _ in current]


def test_one_partition_compared_over_two_stores_on_disk(tmp_path: Path) -> None:
    """The rebuilt partition in an RdictTableStore (as the replay leaves it), the compacted
    topic's partition in an Rdict (as it is read, last wins): one partition's differences,
    sent to that partition as they are found, and counted."""
    store = RdictTableStore(tmp_path / "table")
    same, changed, missing, extra = b"INE002A01018", b"INE009A01021", b"INE040A01034", b"INE062A01020"
    store.apply(
        3,
        {k: record(k.decode(), name) for k, name in ((same, "a"), (changed, "new"), (missing, "m"))},
        None,
    )
    current = on_disk(
        tmp_path / "current.rdb",
        {
            same: record(same.decode(), "a"),
            changed: record(changed.decode(), "old"),
            extra: record(extra.decode(), "x"),
        },
    )
    sent: list[tuple[int, bytes, bytes | None]] = []
    try:
        result = compare_partition(
            SERDE, 3, store.items(3), iter_items(current), lambda p, k, v: sent.append((p, k, v))
        )
        assert (result.partition, result.isins, result.changed, result.removed) == (3, 3, 2, 1)
        assert [(p, k, v is None) for p, k, v in sent] == [(3, changed, False), (3, missing, False), (3, extra, True)]
        dry = compare_partition(SERDE, 3, store.items(3), iter_items(current), None)  # a dry run: counts only
        assert (dry.isins, dry.changed, dry.removed) == (3, 2, 1)
    finally:
        store.close()
        current.close()


def test_comparing_a_partition_holds_no_more_memory_for_ten_times_the_records(tmp_path: Path) -> None:
    """The peak of Python memory while comparing is the same for 2,000 and 20,000 ISINs: no
    dict of the table, only the two stores' iterators (RocksDB's own memory is bounded by its
    block cache and memtables, not by the data)."""

    def peak(n: int) -> int:
        value = record("INE002A01018", "same")
        keys = [f"IN{i:010d}".encode() for i in range(n)]
        store = RdictTableStore(tmp_path / f"table-{n}")
        store.apply(0, dict.fromkeys(keys, value), None)
        current = on_disk(tmp_path / f"current-{n}.rdb", {k: value for k in keys[1:]})  # one missing
        del keys
        try:
            tracemalloc.start()
            result = compare_partition(SERDE, 0, store.items(0), iter_items(current), lambda p, k, v: None)
            _, top = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        finally:
            store.close()
            current.close()
        assert (result.isins, result.changed, result.removed) == (n, 1, 0)
        return top

    small, large = peak(2_000), peak(20_000)
    assert large < small + 64 * 1024, (small, large)


def test_the_index_entries_of_rebuilt_records_by_index_partition_and_their_differences(tmp_path: Path) -> None:
    """The identifier index's repair: entries computed from the rebuilt records as the workers
    write them (a derived CUSIP, the listing's ticker), compared with a damaged topic view."""
    from core.golden.config import GoldenConfig
    from ops.rebuild_index import ExpectedIndex, index_differences, index_entries
    from stream_app.golden import Golden
    from stream_app.identifier_index import index_partition

    golden = Golden(GoldenConfig(), 6)
    records = {}
    for isin, symbol in (("US0378331005", "AAPL"), ("US5949181045", "MSFT"), ("INE002A01018", "RELIANCE")):
        event = {
            "content_hash": symbol,
            "run_id": "r",
            "isin": isin,
            "country_code": isin[:2],
            "source": "nse",
            "line": 1,
            "attributes": {"symbol": symbol},
            "published_at": 0,
        }
        built = golden.apply(merge_event(None, event))
        assert built is not None
        records[isin.encode()] = SERDE.encode("current", CURRENT_RECORD, built)
    expected = ExpectedIndex(tmp_path / "expected.rdb", golden, SERDE)
    try:
        expected.add(sorted(records.items()))
        by_partition = {p: list(expected.partition(p)) for p in range(6)}
        entries = sorted(key for part in by_partition.values() for key, _ in part)
        assert entries == sorted(
            [
                b"cusip=037833100|US0378331005",
                b"cusip=594918104|US5949181045",
                b"ticker=AAPL|US0378331005",
                b"ticker=MSFT|US5949181045",
                b"ticker=RELIANCE|INE002A01018",
            ]
        )
        assert expected.entries == 5
        for partition, part in by_partition.items():  # each entry in its identifier's partition
            for key, isin in part:
                field, _, rest = key.partition(b"=")
                value, _, of = rest.rpartition(b"|")
                assert of == isin
                assert index_partition(field.decode(), value.decode(), 6) == partition
        # the topic's view of one partition: one entry lost, one wrong value, one stray, one right
        part = max(by_partition.values(), key=len)
        assert part, "some partition holds an entry"
        topic = on_disk(tmp_path / "topic.rdb", {})
        write_changes(topic, {part[0][0]: b"XX0000000000", b"ticker=GONE|US0000000000": b"US0000000000"})
        write_changes(topic, {b"not-an-index-key": b"ignored"})
        try:
            diffs = list(index_differences(iter(part), index_entries(topic)))
        finally:
            topic.close()
        assert diffs == sorted(
            [(part[0][0], part[0][1]), (b"ticker=GONE|US0000000000", None), *part[1:]], key=lambda d: d[0]
        )
        assert list(index_differences(iter(part), iter(part))) == []
    finally:
        expected.close()
