"""The golden view in the worker, without a broker: records built with it, the identifier
index's records sent with them (and exact through changes, deletions and a changed sources
file), the index store, and the conflict report."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.golden import GoldenConfig
from stream_app.conflicts import ConflictReport, pairs
from stream_app.dedup import Dedup
from stream_app.golden import Golden, lookup_keys
from stream_app.identifier_index import IdentifierIndex, index_key, index_partition
from tests.unit.test_dedup import AAPL, SERDE, SIE, Harness

LEI_A, LEI_B = "HWUPKR0MPOU8FGXBT394", "5493000IBP32UQZ0KL24"  # Apple's; another valid LEI


def golden_harness(tmp_path: Path, config: GoldenConfig | None = None) -> Harness:
    h = Harness(tmp_path)
    h.seen.on_assigned([0])
    golden = Golden(config or GoldenConfig(order=("x", "y")), 6)
    h.dedup = Dedup(SERDE, h.store, h.output, h.seen, h.reindex, "current", golden=golden)
    return h


def index_state(h: Harness) -> dict[tuple[int, bytes], bytes | None]:
    """The identifier topic's latest value per (partition, key), as a compacted topic keeps it."""
    state: dict[tuple[int, bytes], bytes | None] = {}
    for partition, key, value in h.output.index_records:
        state[(partition, key)] = value
    return {k: v for k, v in state.items() if v is not None}


def expected_index(h: Harness, *isins: bytes) -> dict[tuple[int, bytes], bytes | None]:
    out: dict[tuple[int, bytes], bytes | None] = {}
    for isin in isins:
        record = h.current(isin)
        for field, value in lookup_keys(record):
            out[(index_partition(field, value, 6), index_key(field, value, isin.decode()))] = isin
    return out


def test_records_carry_the_golden_view_and_the_index_follows_every_change(tmp_path: Path) -> None:
    h = golden_harness(tmp_path)
    first = h.next_offset
    h.feed(
        h.event(AAPL, "x", {"name": "Apple Inc.", "lei": LEI_A, "symbol": "AAPL"}, run="x1"),
        h.event(AAPL, "y", {"company_name": "APPLE INC", "lei": LEI_B}, run="y1"),
        h.event(SIE, "x", {"name": "Siemens AG", "symbol": "SIE"}, run="x1"),
    )
    h.feed(h.marker("x", "x1", first, 2))
    apple = h.current(AAPL)
    assert apple is not None
    assert apple["golden"]["name"] == {"value": "Apple Inc.", "source": "x"}  # x before y: file order
    assert apple["golden"]["lei"] == {"value": LEI_A, "source": "x"}
    assert apple["identifiers"]["cusip"] == {"value": "037833100", "sources": ["derived"]}
    assert [c["field"] for c in apple["conflicts"]] == ["lei"]  # the names agree but for case and punctuation
    assert index_state(h) == expected_index(h, AAPL, SIE)
    assert (index_partition("lei", LEI_B, 6), index_key("lei", LEI_B, "US0378331005")) in index_state(h)

    # y stops giving an LEI: its LEI leaves the index, x's stays; SIE is delisted by x's next run
    first = h.next_offset
    h.feed(h.event(AAPL, "y", {"company_name": "APPLE INC"}, run="y2"))
    h.feed(h.marker("y", "y2", first, 1))
    first = h.next_offset
    h.feed(h.event(AAPL, "x", {"name": "Apple Inc.", "lei": LEI_A, "symbol": "AAPL"}, run="x2"))
    h.feed(h.marker("x", "x2", first, 1))
    assert h.current(SIE) is None
    assert index_state(h) == expected_index(h, AAPL)
    assert not any(b"SIE" in key or b"DE0007236101" in key for (_, key) in index_state(h))
    assert h.current(AAPL)["conflicts"] == []  # type: ignore[index]


def test_a_changed_sources_file_rebuilds_the_records_and_moves_the_index(tmp_path: Path) -> None:
    h = golden_harness(tmp_path)
    h.feed(
        h.event(AAPL, "x", {"name": "Apple Inc.", "code": "AAPL"}, run="x1"),
        h.event(AAPL, "y", {"company_name": "Apple", "symbol": "APC"}, run="y1"),
    )
    assert h.current(AAPL)["golden"]["ticker"] == {"value": "APC", "source": "y"}  # type: ignore[index]
    before = index_state(h)
    # the new file maps x's "code" column to ticker and puts y first for names
    config = GoldenConfig(order=("x", "y"), fields={"x": {"ticker": "code"}}, precedence={"name": ("y", "*")})
    # a new worker process on the same state: the partition was built here under the old file
    h.dedup = Dedup(SERDE, h.store, h.output, h.seen, h.reindex, "current", golden=Golden(config, 6))
    h.feed(h.event(SIE, "x", {"name": "Siemens AG"}, run="x2"))
    apple = h.current(AAPL)
    assert apple is not None and apple["change"] == "CHANGED"
    assert apple["golden"]["ticker"] == {"value": "AAPL", "source": "x"}
    assert apple["golden"]["name"] == {"value": "Apple", "source": "y"}
    assert index_state(h) == expected_index(h, AAPL, SIE)
    assert index_state(h) != before
    # once rebuilt under this file, a restart with it rebuilds nothing
    sent = len(h.output.sent)
    h.dedup = Dedup(SERDE, h.store, h.output, h.seen, h.reindex, "current", golden=Golden(config, 6))
    h.feed(h.event(SIE, "x", {"name": "Siemens AG"}, run="x2"))  # the same event: nothing to write
    assert len(h.output.sent) == sent


def test_the_index_store_applies_puts_and_tombstones_and_scans_one_identifier(tmp_path: Path) -> None:
    index = IdentifierIndex(tmp_path / "index.rdb")
    p = index_partition("ticker", "A", 6)
    records = [
        (index_key("ticker", "A", "US0378331005"), b"US0378331005", 0),
        (index_key("ticker", "A|B", "DE0007236101"), b"DE0007236101", 1),  # a longer value, same start
        (index_key("ticker", "A", "CH0038863350"), b"CH0038863350", 2),
        (index_key("ticker", "A", "US0378331005"), None, 3),
    ]
    assert index.apply(p, records) == 4
    assert index.isins(p, "ticker", "A") == ["CH0038863350"]
    assert index.offset(p) == 3
    assert index.apply(p, records) == 0  # delivered again: nothing applied twice
    index.close()


def test_the_conflict_report_counts_pairs_and_pages_by_isin(tmp_path: Path) -> None:
    h = golden_harness(tmp_path)
    h.feed(
        h.event(AAPL, "x", {"name": "Apple Inc.", "lei": LEI_A}, run="x1"),
        h.event(AAPL, "y", {"name": "Apple Computer", "lei": LEI_B}, run="y1"),
        h.event(SIE, "x", {"name": "Siemens"}, run="x1"),
        h.event(SIE, "y", {"name": "SIEMENS"}, run="y1"),
    )
    report = ConflictReport(h.store, SERDE)
    report.refresh([0])
    assert report.counts([0]) == {("name", "x", "y"): 1, ("lei", "x", "y"): 1}
    assert [i for i, _ in report.page([0], "lei", None, "", 10)] == ["US0378331005"]
    assert report.page([0], None, "z", "", 10) == []
    assert report.page([0], None, None, "US0378331005", 10) == []
    assert list(pairs([{"field": "name", "values": {"x": "Apple", "y": "APPLE", "z": "Pear"}}])) == [
        ("name", "x", "z"),
        ("name", "y", "z"),
    ]


def test_a_worker_given_a_bad_sources_file_stops_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from isin_pipeline.cli import main

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never reached
    bad = tmp_path / "sources.toml"
    bad.write_text('[sources.a]\nurl = "https://x/a"\nevery = "1h"\nfields = { nmae = "X" }\n')
    assert main(["stream", "--sources", str(bad), "--state-dir", str(tmp_path / "state")]) == 2
    assert "sources.a.fields.nmae: unknown field" in capsys.readouterr().err
