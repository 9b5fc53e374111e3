"""A plain range read as columns gives the row loop's output byte for byte, and any range that is
not plain is left to the row loop."""

from __future__ import annotations

import dataclasses
import random
import string
from pathlib import Path

import numpy as np
import pytest

from core.isin import _fast_valid
from producer import columnar, parallel
from producer.reading import ListFile, ReadHints
from producer.reading.columns import TableLayout
from producer.reading.model import MAX_ROW_BYTES
from schemas import make_serde
from schemas.fastpath import EventEncoder

SOURCE, RUN, AT = "gleif", "20261207T000000Z-0000abcd", 1_796_000_000_000
ALNUM = string.digits + string.ascii_uppercase
FIELDS = ("keys", "values", "lengths", "dead", "buckets", "raw_bad", "section_lines", "unterminated", "counts")


def check_digit(body: str) -> str:
    digits = "".join(str(ALNUM.index(c)) for c in body)
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def make_isin(rng: random.Random, prefix: str | None = None) -> str:
    body = (prefix or rng.choice(["US", "XS", "DE", "GB", "JP"])) + "".join(rng.choices(ALNUM, k=9))
    return body + check_digit(body)


def both(job: parallel.Job) -> tuple[parallel.RangeResult, parallel.RangeResult]:
    """The range read with the columnar path allowed, and by the row loop only."""
    return parallel.read_range(job), parallel.read_range(dataclasses.replace(job, columnar=False))


def assert_same(got: parallel.RangeResult, rows: parallel.RangeResult) -> None:
    for name in FIELDS:
        assert getattr(got, name) == getattr(rows, name), name
    assert not rows.columnar


def header() -> bytes:
    return EventEncoder(make_serde(None), "raw", SOURCE, RUN, AT).header


def job_for(path: Path, layout: TableLayout, delimiter: str = ",", *, last: bool = True, **kw: object) -> parallel.Job:
    start = len(path.read_bytes().split(b"\n", 1)[0]) + 1 if layout.header_line else 0
    fields = dict(
        path=str(path),
        start=start,
        end=path.stat().st_size,
        first_line=2 if layout.header_line else 1,
        last=last,
        encoding="utf-8",
        delimiter=delimiter,
        layout=layout,
        sections=False,
        header=header(),
        source=SOURCE,
        run_id=RUN,
        published_at=AT,
        slot_ms=1_796_000_000_000,
    )
    fields.update(kw)
    return parallel.Job(**fields)  # type: ignore[arg-type]


GLEIF = TableLayout(1, ("LEI", "ISIN", "NOTE"), ("lei", "isin", "note"), None, 1, 3)  # type: ignore[arg-type]


def gleif_lines(rng: random.Random, n: int) -> list[str]:
    lines = []
    for _ in range(n):
        lei = "".join(rng.choices(ALNUM, k=20))
        note = rng.choice(["", "", "fund", "Aktie Ä", "株式", "x" * 70])  # empty, non-ASCII, a two-byte length
        lines.append(f"{lei},{make_isin(rng)},{note}")
    return lines


@pytest.mark.parametrize("slot", [None, 1_796_000_000_000])
def test_a_plain_range_is_read_as_columns_exactly(tmp_path: Path, slot: int | None) -> None:
    rng = random.Random(7)
    lines = [*gleif_lines(rng, 3000), f"{'A' * 20},{make_isin(rng, 'QQ')},", f",{make_isin(rng, 'EU')},"]
    path = tmp_path / "gleif.csv"
    path.write_text("LEI,ISIN,NOTE\n" + "\n".join(lines) + "\n", encoding="utf-8")
    # line numbers past 8191 and 1,048,575 take two and three bytes more
    for first in (2, 9000, 2_000_000):
        got, rows = both(job_for(path, GLEIF, first_line=first, slot_ms=slot))
        assert got.columnar and rows.counts.valid == 3002
        assert_same(got, rows)
    assert rows.counts.unknown_prefixes == {"QQ": 1}


@pytest.mark.parametrize(
    ("change", "plain"),
    [
        (lambda ls: ls.__setitem__(5, ls[5].lower()), False),  # a lower-case ISIN: valid, upper-cased by stdnum
        (
            lambda ls: ls.__setitem__(5, ls[5][:11] + str(int(ls[5][11]) ^ 1) + ls[5][12:]),
            False,
        ),  # a wrong check digit: a dead letter
        (lambda ls: ls.__setitem__(5, ls[5] + " "), False),  # a value to strip
        (lambda ls: ls.__setitem__(5, ls[5] + "\u00a0"), False),  # a non-breaking space to strip
        (lambda ls: ls.__setitem__(5, "\u2003" + ls[5]), False),  # an em space to strip
        (lambda ls: ls.insert(5, ""), False),  # a blank line, skipped by the row loop
        (lambda ls: ls.__setitem__(5, ls[5] + ","), False),  # one field more (empty): still valid
        (lambda ls: ls.__setitem__(5, ls[5] + ",x"), False),  # one field more: a malformed row
        (lambda ls: ls.__setitem__(5, ls[5].rsplit(",", 1)[0]), False),  # one field less
        (lambda ls: ls.__setitem__(5, ls[5] + "y" * MAX_ROW_BYTES), False),  # an over-long line
        (lambda ls: ls.__setitem__(5, ls[5].replace(",", ",,", 1)), False),  # the ISIN moves a column
        (lambda ls: ls.__setitem__(5, ls[5] + "\t"), False),
        (lambda ls: None, True),
    ],
)
def test_a_range_that_is_not_plain_is_left_to_the_row_loop(tmp_path: Path, change: object, plain: bool) -> None:
    rng = random.Random(11)
    lines = [f"{make_isin(rng)},{rng.randrange(10**6)},note {i}" for i in range(200)]
    change(lines)  # type: ignore[operator]
    layout = TableLayout(1, ("ISIN", "LEI", "NOTE"), ("isin", "lei", "note"), None, 0, 3)  # type: ignore[arg-type]
    path = tmp_path / "list.csv"
    path.write_text("ISIN,LEI,NOTE\n" + "\n".join(lines) + "\n", encoding="utf-8")
    got, rows = both(job_for(path, layout))
    assert got.columnar is plain
    assert_same(got, rows)


def test_line_ends_and_the_last_line(tmp_path: Path) -> None:
    rng = random.Random(3)
    lines = gleif_lines(rng, 100)
    path = tmp_path / "crlf.csv"
    path.write_bytes(("LEI,ISIN,NOTE\r\n" + "\r\n".join(lines)).encode())  # CRLF, the last line unterminated
    got, rows = both(job_for(path, GLEIF))
    assert got.columnar and got.unterminated and rows.counts.valid == 100
    assert_same(got, rows)
    # a range that is not the last one must end at a line end: else the row loop reads it
    got, rows = both(job_for(path, GLEIF, last=False))
    assert not got.columnar
    assert_same(got, rows)


def test_one_column_no_header_and_other_encodings(tmp_path: Path) -> None:
    rng = random.Random(5)
    isins = [make_isin(rng) for _ in range(500)]
    path = tmp_path / "isins.txt"
    path.write_text("\n".join(isins) + "\n", encoding="utf-8")
    bare = TableLayout(0, (), ("isin",), None, 0, 1)  # type: ignore[arg-type]
    got, rows = both(job_for(path, bare))
    assert got.columnar and len(got.keys) == 12 * 500
    assert_same(got, rows)
    got, rows = both(job_for(path, bare, encoding="latin-1"))
    assert not got.columnar
    assert_same(got, rows)


def real_ranges(path: Path, tmp_path: Path) -> list[parallel.Job]:
    """The parallel reader's ranges of a real list, with its quotes taken out (as the hostile
    fixture of test_rows does): the ranges are small so that each list has several."""
    text = path.read_bytes().replace(b'"', b"")
    plain = tmp_path / path.name
    plain.write_bytes(text)
    with ListFile(plain, ReadHints()) as reader:
        table = reader.text_table()
        assert table is not None
        delimited, encoding = table.reader, table.encoding.name
    ranges = parallel.plan(plain, delimited.layout.header_line, 8)
    assert ranges is not None and len(ranges) > 1
    return [
        parallel.Job(
            str(plain),
            start,
            end,
            first,
            i == len(ranges) - 1,
            encoding,
            delimited.delimiter,
            delimited.layout,
            delimited.sections,
            header(),
            SOURCE,
            RUN,
            AT,
        )
        for i, (start, end, first) in enumerate(ranges)
    ]


@pytest.mark.parametrize(
    ("name", "as_columns"),
    [
        ("nse_EQUITY_L.csv", "all"),  # plain
        ("bse_Equity.csv", "none"),  # "A " in the Group column: every range has values to strip
        ("nsdl_india-isin_ISIN_20240831.csv", "some"),
        ("xetra_t7-xetr-allTradableInstruments_20190418.csv", "all"),  # `;`, preamble lines above the header
    ],
)
def test_the_real_lists_give_the_row_loops_output(
    shared_data: Path, tmp_path: Path, name: str, as_columns: str
) -> None:
    jobs = real_ranges(shared_data / name, tmp_path)
    results = [both(job) for job in jobs]
    for got, rows in results:
        assert_same(got, rows)
    read = sum(got.columnar for got, _ in results)
    expected = {"all": read == len(jobs), "none": read == 0, "some": 0 < read < len(jobs)}
    assert expected[as_columns], (read, len(jobs))


def test_the_check_digit_agrees_with_the_row_loop_on_near_misses() -> None:
    rng = random.Random(13)
    texts = []
    for _ in range(20_000):
        isin = list(make_isin(rng))
        for _ in range(rng.choice([0, 1, 1, 2])):
            isin[rng.randrange(12)] = rng.choice(ALNUM + "a-* \u00c4")
        texts.append("".join(isin))
    texts = [t for t in texts if len(t.encode()) == 12]
    grid = np.frombuffer("".join(texts).encode(), dtype=np.uint8).reshape(-1, 12)
    got = columnar.valid_isins(grid).tolist()
    assert got == [_fast_valid(t) for t in texts]
    assert 1000 < sum(got) < len(texts) - 1000  # both kinds are there


def test_the_whitespace_pattern_holds_every_character_strip_removes() -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    spaces = [c for c in map(chr, range(0x110000)) if c.isspace()]
    assert max(map(ord, spaces)) < columnar.SPACES_BELOW
    assert len(spaces) > 20
    values = [f"a{c}" for c in spaces] + [f"{c}a" for c in spaces] + [f"a{c}a" for c in spaces]
    values += ["a", "\ufeffa", "a\u200b", ""]  # a BOM and a zero-width space: not stripped by str.strip()
    matched = pc.match_substring_regex(pa.array(values), columnar._edge_space()).to_pylist()
    assert matched == [v != v.strip() for v in values]
    assert sum(matched) == 2 * len(spaces)


def test_empty_fields_past_the_header_on_every_line_and_a_byte_order_mark(tmp_path: Path) -> None:
    rng = random.Random(17)
    lines = [f"{make_isin(rng)},name {i},," for i in range(300)]  # two empty fields past the header
    path = tmp_path / "trailing.csv"
    path.write_text("ISIN,NAME\n" + "\n".join(lines) + "\n", encoding="utf-8")
    layout = TableLayout(1, ("ISIN", "NAME"), ("isin", "name"), None, 0, 2)  # type: ignore[arg-type]
    got, rows = both(job_for(path, layout))
    assert got.columnar and rows.counts.valid == 300 and not rows.dead
    assert_same(got, rows)
    # a range that starts with a UTF-8 byte order mark: the row loop keeps it in the first field
    # (a dead letter here), pyarrow's reader would drop it
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(line[:-2] for line in lines).encode() + b"\n")
    bare = TableLayout(0, (), ("isin", "name"), None, 0, 2)  # type: ignore[arg-type]
    got, rows = both(job_for(bom, bare))
    assert not got.columnar and rows.counts.invalid == 1 and rows.dead[0][0] == 1
    assert_same(got, rows)
