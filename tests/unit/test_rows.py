"""One row loop: the run's process and the parallel reader's ranges give the same events and the
same dead letters, field by field, for the same file."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer import parallel
from producer.reading import ListFile, ReadHints
from producer.reading.lines import Overlong
from producer.reading.model import MAX_ROW_BYTES
from producer.rows import RowCounts, run_rows
from schemas import make_serde
from schemas.fastpath import EventEncoder

SOURCE, RUN, AT = "nse", "20261206T000000Z-0000abcd", 1_796_000_000_000


class ListSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []
        self.dead_letters: list[tuple[int, str, str, str, str]] = []
        self.unread: list[str] = []

    def event(self, isin: str, value: bytes) -> None:
        self.events.append((isin, value))

    def dead(self, line: int, raw: str, error: str, reason: str, where: str) -> None:
        self.dead_letters.append((line, raw, error, reason, where))

    def unreadable(self, raw: str) -> None:
        self.unread.append(raw)


@pytest.fixture
def hostile_nse(shared_data: Path, tmp_path: Path) -> Path:
    """The real NSE list with its quotes taken out (the parallel reader's kind of file), an
    over-long line whose ISIN sits past its first 200 characters, and an invalid ISIN."""
    lines = (shared_data / "nse_EQUITY_L.csv").read_text(encoding="utf-8").replace('"', "").splitlines()
    lines.insert(40, "X" * 300 + ",INE144J01027," + "y" * (MAX_ROW_BYTES + 10))
    lines.insert(80, "BAD,Bad Name,EQ,06-OCT-2008,5,1,INE144J01028,5")
    path = tmp_path / "nse.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_sequential_and_parallel_paths_give_the_same_events_and_dead_letters(hostile_nse: Path) -> None:
    serde = make_serde(None)
    encode = EventEncoder(serde, "raw", SOURCE, RUN, AT)
    with ListFile(hostile_nse, ReadHints()) as reader:
        sequential, counts = ListSink(), RowCounts()
        run_rows(reader.rows(), encode, SOURCE, ",", sequential, counts)
        table = reader.text_table()
    assert table is not None
    ranges = parallel.plan(hostile_nse, table.reader.layout.header_line, 2)
    assert ranges is not None and len(ranges) > 1
    got = [
        parallel.read_range(
            parallel.Job(
                str(hostile_nse),
                start,
                end,
                first,
                i == len(ranges) - 1,
                "utf-8",
                ",",
                table.reader.layout,
                table.reader.sections,
                encode.header,
                SOURCE,
                RUN,
                AT,
            )
        )
        for i, (start, end, first) in enumerate(ranges)
    ]
    events = [
        (batch["key"].decode(), batch["value"])
        for part in got
        for chunk, _ in parallel.events(part, 500)
        for batch in chunk
    ]
    assert events == sequential.events and len(events) == counts.valid
    assert [d for part in got for d in part.dead] == sequential.dead_letters
    assert [r for part in got for r in part.raw_bad] == sequential.unread
    assert sum(part.counts.rows for part in got) == counts.rows
    # the dead letters are the ones expected, whole
    (overlong, invalid) = sequential.dead_letters
    assert overlong[0] == 41 and overlong[2] == "MALFORMED_ROW" and "INE144J01027" in overlong[1]
    assert invalid[0] == 81 and invalid[1].startswith("BAD,Bad Name") and invalid[2] == "INVALID_CHECK_DIGIT"


def test_an_overlong_line_keeps_the_isins_beyond_its_head() -> None:
    row = Overlong.of(7, "x" * 500 + " US0378331005 " + "y" * 10).bad_row()
    assert row.line == 7 and "US0378331005" in row.raw and row.raw.startswith("x" * 200)
