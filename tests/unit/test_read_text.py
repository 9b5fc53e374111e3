"""The list reader: every real layout we have, and the ways a file can be broken."""

from __future__ import annotations

import gzip
import io
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from core.errors import ParseError
from core.isin import InvalidIsin, RowError, validate_isin
from producer.reading import BadRow, ColumnBy, ListFile, ReadHints, Row, normalise_header


def read_all(path: Path) -> tuple[ListFile, list[Row | BadRow]]:
    with ListFile(path) as reader:
        rows = list(reader.rows())
    return reader, rows


def count(rows: list[Row | BadRow]) -> Counter[str]:
    c: Counter[str] = Counter()
    for row in rows:
        if isinstance(row, BadRow):
            c["bad"] += 1
            continue
        try:
            validate_isin(row.isin)
            c["valid"] += 1
        except InvalidIsin:
            c["invalid"] += 1
    return c


# (file, data rows, valid, invalid, ISIN header, delimiter, header line, some attribute names)
REAL_FILES = [
    ("nse_EQUITY_L.csv", 2387, 2387, 0, "ISIN NUMBER", ",", 1, {"symbol", "name_of_company", "face_value"}),
    ("bse_Equity.csv", 4926, 4924, 2, "ISIN No", ",", 1, {"security_code", "issuer_name", "group"}),
    ("xetra_t7-xetr-allTradableInstruments_20190418.csv", 2577, 2577, 0, "ISIN", ";", 3, {"wkn", "mnemonic"}),
    ("nsdl_india-isin_ISIN_20240831.csv", 15460, 15460, 0, "ISIN", ",", 1, {"description", "issuer", "type", "status"}),
]


@pytest.mark.parametrize(("name", "rows", "valid", "invalid", "header", "delimiter", "line", "attrs"), REAL_FILES)
def test_real_lists_parse_with_exact_counts(
    shared_data: Path,
    name: str,
    rows: int,
    valid: int,
    invalid: int,
    header: str,
    delimiter: str,
    line: int,
    attrs: set[str],
) -> None:
    reader, got = read_all(shared_data / name)
    assert reader.detected.column_identity == header
    assert reader.detected.details["delimiter"] == delimiter
    assert reader.detected.details["header_row"] == line
    assert len(got) == rows
    c = count(got)
    assert (c["valid"], c["invalid"], c["bad"]) == (valid, invalid, 0)
    names = {n for row in got if isinstance(row, Row) for n in row.attributes}
    assert attrs <= names


def test_bse_placeholders_and_padding(shared_data: Path) -> None:
    _, rows = read_all(shared_data / "bse_Equity.csv")
    placeholders = []
    for row in rows:
        assert isinstance(row, Row)
        try:
            validate_isin(row.isin)
        except InvalidIsin as exc:
            placeholders.append((row.isin.strip(), exc.error))
    assert sorted(placeholders) == [("-", RowError.INVALID_FORMAT), ("NA", RowError.INVALID_LENGTH)]
    first = rows[0]
    assert isinstance(first, Row)
    # "A " is padded in the file; attributes are stripped. The 5 trailing empty fields are ignored.
    assert first.attributes["group"] == "A"
    assert first.line == 2


def test_xetra_line_numbers_count_the_preamble(shared_data: Path) -> None:
    _, rows = read_all(shared_data / "xetra_t7-xetr-allTradableInstruments_20190418.csv")
    first = rows[0]
    assert isinstance(first, Row)
    assert first.line == 4
    assert first.isin == "AT00000FACC2"
    assert rows[-1].line == 2580


def test_zip_and_gzip_of_a_real_list(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "nse_EQUITY_L.csv"
    zipped = tmp_path / "list.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(src, arcname="EQUITY_L.csv")
    gzipped = tmp_path / "list.csv.gz"
    gzipped.write_bytes(gzip.compress(src.read_bytes()))
    for path, compression in ((zipped, "zip"), (gzipped, "gzip")):
        reader, rows = read_all(path)
        assert reader.detected.container == compression
        assert count(rows)["valid"] == 2387


def write(tmp_path: Path, text: str | bytes, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_delimiters_quotes_and_line_ends(tmp_path: Path) -> None:
    # Synthetic rows; the ISINs are well-known valid ones (Apple, Siemens, Nestle).
    cases = {
        "comma-crlf": 'Name,ISIN\r\n"Apple, Inc.",US0378331005\r\nSiemens,DE0007236101\r\n',
        "semicolon": "Name;ISIN Code\nApple;US0378331005\nSiemens;DE0007236101\n",
        "tab": "Name\tisin\nApple\tUS0378331005\nSiemens\tDE0007236101\n",
        "pipe": "Name|ISIN\nApple|US0378331005\nSiemens|DE0007236101",
    }
    for label, text in cases.items():
        _reader, rows = read_all(write(tmp_path, text, f"{label}.csv"))
        assert [r.isin for r in rows if isinstance(r, Row)] == ["US0378331005", "DE0007236101"], label
        assert rows[0].attributes == {"name": "Apple, Inc." if label == "comma-crlf" else "Apple"}, label


def test_quoted_field_with_newline_keeps_physical_line_numbers(tmp_path: Path) -> None:
    text = 'Name,ISIN\n"two\nlines",US0378331005\nNestle,CH0038863350\n'
    _, rows = read_all(write(tmp_path, text))
    assert [(r.line, r.isin) for r in rows if isinstance(r, Row)] == [(3, "US0378331005"), (4, "CH0038863350")]


def test_plain_list_and_blank_lines(tmp_path: Path) -> None:
    reader, rows = read_all(write(tmp_path, "US0378331005\n\nDE0007236101\n  CH0038863350  \nnot-an-isin\n"))
    assert reader.detected.format == "lines"
    assert [(r.line, r.isin) for r in rows if isinstance(r, Row)] == [
        (1, "US0378331005"),
        (3, "DE0007236101"),
        (4, "CH0038863350"),
        (5, "not-an-isin"),
    ]


def test_isin_column_choice_prefers_exact_name(tmp_path: Path) -> None:
    reader, rows = read_all(write(tmp_path, "Underlying ISIN,ISIN\nDE0007236101,US0378331005\n"))
    assert reader.detected.column_identity == "ISIN"
    assert isinstance(rows[0], Row)
    assert rows[0].isin == "US0378331005"
    assert rows[0].attributes == {"underlying_isin": "DE0007236101"}


def test_malformed_rows_become_bad_rows(tmp_path: Path) -> None:
    text = "A,B,ISIN\nx,y,US0378331005\nshort\nx,y,DE0007236101,surprise\nx,y,CH0038863350,,\n"
    _, rows = read_all(write(tmp_path, text))
    kinds = [(r.line, type(r).__name__) for r in rows]
    assert kinds == [(2, "Row"), (3, "BadRow"), (4, "BadRow"), (5, "Row")]
    bad = [r for r in rows if isinstance(r, BadRow)]
    assert all(r.error is RowError.MALFORMED_ROW for r in bad)
    assert "field 3" in bad[0].reason
    assert "header has 3" in bad[1].reason
    assert bad[1].raw == "x,y,DE0007236101,surprise"


def test_header_names_are_normalised_and_unique(tmp_path: Path) -> None:
    assert normalise_header(" NAME OF COMPANY", 0) == "name_of_company"
    assert normalise_header("Face Value (INR)", 0) == "face_value_inr"
    assert normalise_header("", 4) == "column_5"
    _, rows = read_all(write(tmp_path, "Name,name,ISIN\na,b,US0378331005\n"))
    assert isinstance(rows[0], Row)
    assert rows[0].attributes == {"name": "a", "name_2": "b"}


def test_bom_and_latin1(tmp_path: Path) -> None:
    _, rows = read_all(write(tmp_path, b"\xef\xbb\xbfISIN,Name\nUS0378331005,Caf\xc3\xa9\n", "bom.csv"))
    assert isinstance(rows[0], Row) and rows[0].attributes == {"name": "Café"}
    reader, rows = read_all(write(tmp_path, b"ISIN,Name\nUS0378331005,Caf\xe9\n", "latin1.csv"))
    # A single-byte Western encoding: cp1252 and latin-1 agree on every byte of this file.
    assert reader.detected.encoding in ("cp1252", "latin-1", "iso8859-1")
    assert isinstance(rows[0], Row) and rows[0].attributes == {"name": "Café"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (b"\x00\x01\x02binary", "not text"),
        (b"<!DOCTYPE html><html><body>Service unavailable</body></html>\n", "no header with an ISIN column"),
        (b"PK\x03\x04 this is not really a zip", "broken zip"),
    ],
)
def test_unreadable_files_fail_clearly(tmp_path: Path, content: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message), ListFile(write(tmp_path, content, "bad.bin")):
        pass


def test_zip_with_two_files_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.csv", "ISIN\nUS0378331005\n")
        z.writestr("b.csv", "ISIN\nDE0007236101\n")
    with pytest.raises(ParseError, match="exactly one file"), ListFile(path):
        pass


def test_a_zip_inside_a_gzip_is_refused_and_leaves_no_temp_file(shared_data: Path, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(shared_data / "nse_EQUITY_L.csv", arcname="list.csv")
    path = write(tmp_path, gzip.compress(buf.getvalue()), "list.zip.gz")
    spool = tmp_path / "spool"
    spool.mkdir()
    with pytest.raises(ParseError, match="a zip inside"), ListFile(path, spool_dir=str(spool)):
        pass
    assert list(spool.iterdir()) == []  # the outer unpacked zip and the inner list, both removed


def test_a_packed_list_is_unpacked_once_into_the_spool_directory(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "nse_EQUITY_L.csv"
    path = write(tmp_path, gzip.compress(src.read_bytes()), "list.csv.gz")
    spool = tmp_path / "spool"
    spool.mkdir()
    with ListFile(path, spool_dir=str(spool)) as reader:
        (unpacked,) = spool.iterdir()
        assert unpacked.read_bytes() == src.read_bytes()
        assert sum(1 for _ in reader.rows()) == 2387
    assert list(spool.iterdir()) == []


def test_truncated_gzip_fails_while_reading(shared_data: Path, tmp_path: Path) -> None:
    data = gzip.compress((shared_data / "nsdl_india-isin_ISIN_20240831.csv").read_bytes())
    path = write(tmp_path, data[: len(data) // 2], "cut.csv.gz")
    with pytest.raises(ParseError, match="truncated"), ListFile(path) as reader:
        for _ in reader.rows():
            pass


def test_corrupt_zip_member_fails_while_reading(shared_data: Path, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(shared_data / "nsdl_india-isin_ISIN_20240831.csv", arcname="ISIN.csv")
    data = bytearray(buf.getvalue())
    data[len(data) // 2] ^= 0xFF  # flip one byte inside the deflate stream
    path = write(tmp_path, bytes(data), "flipped.zip")
    with pytest.raises(ParseError), ListFile(path) as reader:
        for _ in reader.rows():
            pass


def test_missing_file_is_a_parse_error(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="cannot open"), ListFile(tmp_path / "nope.csv"):
        pass


# -- ingest safety: one bad row is one dead letter, decoding never guesses -----------------


def nse_lines(shared_data: Path) -> list[str]:
    return (shared_data / "nse_EQUITY_L.csv").read_text(encoding="utf-8").splitlines(keepends=True)


def test_a_stray_quote_is_one_bad_row_and_reading_resumes(shared_data: Path, tmp_path: Path) -> None:
    lines = nse_lines(shared_data)
    # a real row (line 101) with an unmatched quote opening its company name
    fields = lines[100].split(",")
    fields[1] = '"' + fields[1]
    lines[100] = ",".join(fields)
    _reader, rows = read_all(write(tmp_path, "".join(lines)))
    bad = [r for r in rows if isinstance(r, BadRow)]
    assert [(b.line, b.error) for b in bad] == [(101, RowError.MALFORMED_ROW)]
    assert "unmatched quote" in bad[0].reason
    good = [r for r in rows if isinstance(r, Row)]
    assert len(good) == 2387 - 1
    assert [r.line for r in good][98:100] == [100, 102]  # the row after it is read on its own line


def test_a_quoted_field_over_two_lines_is_one_row_when_it_fits(tmp_path: Path) -> None:
    text = 'Name,ISIN,Status\n"Apple\nInc.",US0378331005,ACTIVE\nSiemens,DE0007236101,ACTIVE\n'
    _, rows = read_all(write(tmp_path, text))
    assert [(r.line, r.isin, r.attributes) for r in rows if isinstance(r, Row)] == [
        (3, "US0378331005", {"name": "Apple\nInc.", "status": "ACTIVE"}),
        (4, "DE0007236101", {"name": "Siemens", "status": "ACTIVE"}),
    ]


def test_an_overlong_line_is_one_bad_row(shared_data: Path, tmp_path: Path) -> None:
    lines = nse_lines(shared_data)
    fields = lines[9].rstrip("\n").split(",")
    fields[1] = "X" * (2 * 1024 * 1024)  # a 2 MB company name
    lines[9] = ",".join(fields) + "\n"
    _, rows = read_all(write(tmp_path, "".join(lines)))
    bad = [r for r in rows if isinstance(r, BadRow)]
    assert [(b.line, b.error) for b in bad] == [(10, RowError.MALFORMED_ROW)]
    assert "longer than" in bad[0].reason and len(bad[0].raw) < 1000
    assert len([r for r in rows if isinstance(r, Row)]) == 2386


def test_a_late_cp1252_quote_is_decoded_not_replaced(shared_data: Path, tmp_path: Path) -> None:
    # The real BSE list re-encoded to cp1252 (it has curly quotes, dashes and a no-break space):
    # no real legacy-encoded list was found, so a real list is converted.
    text = (shared_data / "bse_Equity.csv").read_text(encoding="utf-8")
    reader, rows = read_all(write(tmp_path, text.encode("cp1252"), "bse-cp1252.csv"))
    assert reader.detected.encoding == "cp1252"
    _, originals = read_all(shared_data / "bse_Equity.csv")
    assert [(r.isin, r.attributes) for r in rows if isinstance(r, Row)] == [
        (r.isin, r.attributes) for r in originals if isinstance(r, Row)
    ]
    assert not any(
        "\x80" <= ch <= "\x9f" for r in rows if isinstance(r, Row) for v in r.attributes.values() for ch in v
    )


def test_cp1251_with_semicolons(shared_data: Path, tmp_path: Path) -> None:
    # The real Xetra list (';', two preamble lines) re-encoded to cp1251 with a Cyrillic issuer
    # name put into the last row: no real cp1251 list was found, so a real list is converted.
    lines = (shared_data / "xetra_t7-xetr-allTradableInstruments_20190418.csv").read_text().splitlines()
    cells = lines[-1].split(";")
    cells[2] = "Газпром ПАО"
    lines[-1] = ";".join(cells)
    reader, rows = read_all(write(tmp_path, ("\n".join(lines) + "\n").encode("cp1251"), "xetra-cp1251.csv"))
    assert reader.detected.encoding == "cp1251" and reader.detected.details["header_row"] == 3
    good = [r for r in rows if isinstance(r, Row)]
    assert len(good) == 2577 and good[-1].attributes["instrument"] == "Газпром ПАО"


def test_bytes_that_do_not_decode_fail_with_their_line(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / "nse_EQUITY_L.csv").read_bytes().replace(b"20MICRONS", b"20MICR\xffNS")
    with (
        pytest.raises(ParseError, match=r"line 2 does not decode"),
        ListFile(write(tmp_path, data), ReadHints(encoding="utf-8")),
    ):
        pass


def test_two_isin_columns_fail_naming_both_and_a_hint_chooses(shared_data: Path) -> None:
    amfi = shared_data / "formats" / "amfi_NAVAll_2025.txt"
    with pytest.raises(ParseError, match=r"'ISIN Div Payout/ ISIN Growth' \(column 2\) and 'ISIN Div Reinvestment'"):
        read_all(amfi)
    with ListFile(amfi, ReadHints(column="ISIN Div Reinvestment")) as reader:
        rows = list(reader.rows())
    assert reader.detected.weakest is ColumnBy.CONFIGURED
    assert reader.detected.details["section_lines"] > 1000  # fund-house and category headings
    assert not [r for r in rows if isinstance(r, BadRow)]


def test_the_isin_column_is_chosen_by_content_not_by_letters(tmp_path: Path) -> None:
    # "Advertising" contains the letters i-s-i-n; the ISINs are in "Code".
    reader, _rows = read_all(write(tmp_path, "Advertising,Code\nyes,US0378331005\nno,DE0007236101\n"))
    assert reader.detected.column_identity == "Code" and reader.detected.weakest is ColumnBy.CONTENT
    # only an underlying ISIN column left: read, but named as such, so a run can compare it
    reader, _ = read_all(write(tmp_path, "Name,Underlying ISIN\nx,US0378331005\ny,DE0007236101\n", "u.csv"))
    assert reader.detected.column_identity == "Underlying ISIN" and reader.detected.weakest is ColumnBy.NAMED


def test_fixed_width_cp949_records(shared_data: Path) -> None:
    reader, rows = read_all(shared_data / "formats" / "kis_konex_code.mst")
    assert reader.detected.format == "fixed" and reader.detected.encoding == "cp949"
    assert reader.detected.details["isin_at"] == "10:21"
    good = [r for r in rows if isinstance(r, Row)]
    assert len({r.isin for r in good}) == 119
    first = good[0]
    assert first.attributes["field_1"] == "012210" and "삼미금속" in first.attributes["field_2"]


def test_a_page_with_isin_in_its_text_is_not_a_list(tmp_path: Path) -> None:
    page = b"<html><head><title>Login</title></head><body><p>Download the ISIN, LEI and more</p></body></html>"
    with pytest.raises(ParseError, match="no header with an ISIN column"), ListFile(write(tmp_path, page, "x.csv")):
        pass
