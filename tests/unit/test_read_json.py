"""The JSON reader (producer/reading/jsonfile.py) through ListFile, on the real GLEIF API response
and on JSON made from real lists (a plain array, JSON Lines, nested envelopes)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import ParseError
from core.isin import RowError, is_isin
from producer.reading import ColumnBy, ListFile, ReadHints
from producer.reading.model import MAX_ROW_BYTES
from tests.conftest import SHARED
from tests.unit.reading import csv_rows, read

GLEIF = SHARED / "data" / "formats" / "gleif_isins_851WYGNLUQLFZBSYGB56_20250515.json"
NSDL = SHARED / "data" / "nsdl_india-isin_ISIN_20240831.csv"
NSE = SHARED / "data" / "nse_EQUITY_L.csv"


def write(tmp_path: Path, data: Any, name: str = "list.json") -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def nse_isins() -> list[str]:
    return [r[" ISIN NUMBER"] for r in csv_rows(NSE)]


@pytest.mark.usefixtures("shared_data")
def test_gleif_api_envelope_real_file() -> None:
    data = json.loads(GLEIF.read_bytes())
    expected = {d["attributes"]["isin"] for d in data["data"]}
    assert len(expected) == 15 and all(is_isin(i) for i in expected)
    assert sum(i.startswith("DE") for i in expected) == 14 and sum(i.startswith("US") for i in expected) == 1

    lf, rows, bad = read(GLEIF)

    assert lf.detected.format == "json"
    assert lf.detected.details["layout"] == "envelope"
    assert lf.detected.details["record"] == "data[*]"
    assert lf.detected.details["isin_path"] == "attributes.isin"
    assert lf.detected.column_identity == "data[*].attributes.isin"
    assert lf.column_by is ColumnBy.HEADER
    assert lf.end_proven and not lf.unterminated
    assert not bad and len(rows) == 15 and {r.isin for r in rows} == expected
    assert [r.line for r in rows] == list(range(1, 16))
    assert rows[11].where == "record 12 of data[*]"
    first = data["data"][0]
    assert rows[0].isin == first["attributes"]["isin"]
    assert rows[0].attributes == {"type": "isins", "id": first["id"], "attributes_lei": "851WYGNLUQLFZBSYGB56"}


@pytest.mark.usefixtures("shared_data")
def test_plain_array_made_from_nse(tmp_path: Path) -> None:
    rows = csv_rows(NSE)
    path = write(tmp_path, rows)  # keys as in the CSV header, e.g. " ISIN NUMBER"
    expected = {r[" ISIN NUMBER"] for r in rows if is_isin(r[" ISIN NUMBER"])}

    lf, got, bad = read(path)

    assert lf.detected.details["layout"] == "array" and lf.detected.details["record"] == "[*]"
    assert lf.detected.details["isin_path"] == " ISIN NUMBER"
    assert lf.column_by is ColumnBy.NAMED
    assert lf.end_proven
    assert not bad and len(got) == 2387 and {r.isin for r in got} == expected
    assert got[0].attributes["symbol"] == rows[0]["SYMBOL"]
    assert got[0].attributes["paid_up_value"] == rows[0][" PAID UP VALUE"]


@pytest.mark.usefixtures("shared_data")
def test_json_lines_made_from_nsdl(tmp_path: Path) -> None:
    rows = csv_rows(NSDL)
    path = write(tmp_path, "".join(json.dumps(r) + "\n" for r in rows), "list.jsonl")
    expected = {r["ISIN"] for r in rows if is_isin(r["ISIN"])}
    assert len(expected) == 15460

    lf, got, bad = read(path)

    assert lf.detected.details["layout"] == "json lines"
    assert lf.detected.details["isin_path"] == "ISIN"
    assert lf.column_by is ColumnBy.HEADER
    assert not lf.end_proven and not lf.unterminated  # JSON Lines cannot prove their end
    assert not bad and len(got) == 15460 and {r.isin for r in got} == expected
    assert got[0].line == 1 and got[0].where == "line 1"
    assert got[0].attributes == {k.lower(): v for k, v in rows[0].items() if k != "ISIN" and v}


@pytest.mark.usefixtures("shared_data")
def test_json_lines_bad_line_is_one_dead_letter_and_a_cut_last_line_is_unterminated(tmp_path: Path) -> None:
    isins = nse_isins()[:50]
    lines = [json.dumps({"isin": i, "n": k}) for k, i in enumerate(isins)]
    lines[20] = '{"isin": "' + isins[20] + '", "n": '  # broken in the middle
    text = "\n".join(lines)[:-8]  # and the last line cut short, with no line end
    lf, got, bad = read(write(tmp_path, text, "list.jsonl"))
    assert [b.line for b in bad] == [21, 50] and all(b.error is RowError.MALFORMED_ROW for b in bad)
    assert isins[20] in bad[0].raw
    assert len(got) == 48 and lf.unterminated


@pytest.mark.usefixtures("shared_data")
def test_nested_envelope_with_bom_and_typed_values(tmp_path: Path) -> None:
    isins = nse_isins()[:40]
    items = [{"isin": i, "price": 1.50, "lot": 10, "active": True, "note": None} for i in isins]
    text = '{"status": "ok", "result": {"count": 40, "items": ' + json.dumps(items) + "}}"
    text = text.replace("1.5,", "1.50,")  # as a publisher would write it
    lf, got, _bad = read(write(tmp_path, b"\xef\xbb\xbf" + text.encode()))
    assert lf.detected.details["record"] == "result.items[*]"
    assert lf.column_by is ColumnBy.HEADER and lf.end_proven
    assert [r.isin for r in got] == isins
    assert got[0].attributes == {"price": "1.50", "lot": "10", "active": "true"}


@pytest.mark.usefixtures("shared_data")
def test_array_of_isin_strings(tmp_path: Path) -> None:
    isins = nse_isins()[:100]
    lf, got, _bad = read(write(tmp_path, {"count": 100, "isins": isins}))
    assert lf.detected.details["record"] == "isins[*]"
    assert lf.column_by is ColumnBy.NAMED
    assert [r.isin for r in got] == isins


def ambiguous(tmp_path: Path, own: str) -> Path:
    isins = nse_isins()
    items = [{own: a, "underlying": {"underlying_isin": b}} for a, b in itertools.pairwise(isins[:201])]
    return write(tmp_path, {"data": items})


@pytest.mark.usefixtures("shared_data")
def test_two_isin_fields_are_ambiguous_and_a_hint_decides(tmp_path: Path) -> None:
    path = ambiguous(tmp_path, "isin_code")
    with pytest.raises(ParseError, match=r"'isin_code' and 'underlying.underlying_isin'.*--column"):
        read(path)

    lf, got, _bad = read(path, ReadHints(column="underlying.underlying_isin"))
    assert lf.column_by is ColumnBy.CONFIGURED
    assert lf.detected.column_identity == "data[*].underlying.underlying_isin"
    assert got[0].isin == nse_isins()[1] and got[0].attributes == {"isin_code": nse_isins()[0]}

    lf, got, _bad = read(path, ReadHints(column="data[*].isin_code"))
    assert lf.column_by is ColumnBy.CONFIGURED and got[0].isin == nse_isins()[0]


@pytest.mark.usefixtures("shared_data")
def test_a_key_named_exactly_isin_wins_over_an_underlying_isin(tmp_path: Path) -> None:
    lf, got, _bad = read(ambiguous(tmp_path, "isin"))
    assert lf.column_by is ColumnBy.HEADER and got[0].isin == nse_isins()[0]


@pytest.mark.usefixtures("shared_data")
def test_hint_naming_a_missing_key_fails(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"--column 'attributes.nosuch'"):
        read(ambiguous(tmp_path, "isin_code"), ReadHints(column="attributes.nosuch"))


@pytest.mark.usefixtures("shared_data")
def test_truncated_json_fails(tmp_path: Path) -> None:
    raw = GLEIF.read_bytes()
    with pytest.raises(ParseError, match=r"broken JSON.*cut short"):
        read(write(tmp_path, raw[: len(raw) - 40]))


@pytest.mark.usefixtures("shared_data")
def test_truncated_json_beyond_the_sample_fails_while_reading(tmp_path: Path) -> None:
    isins = nse_isins()
    items = [{"isin": isins[n % len(isins)], "n": n, "pad": "x" * 100} for n in range(20_000)]
    text = json.dumps({"data": items})
    path = write(tmp_path, text[: len(text) - 30])
    with ListFile(path) as lf:
        seen = 0
        with pytest.raises(ParseError, match=r"after record 19999.*cut short"):
            for _item in lf.rows():
                seen += 1
        assert seen == 19_999 and not lf.end_proven


def test_syntax_error_midway_fails(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"broken JSON in the first \d+ bytes.*"):
        read(write(tmp_path, '{"data": [{"isin": "US0378331005"},, {"isin": "US0378331005"}]}'))


def test_not_json_at_all_fails(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="broken JSON"):
        read(write(tmp_path, "{ this is not json\nUS0378331005\n"))


def test_no_isin_anywhere_fails_saying_what_was_looked_at(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"no field holds valid ISINs in the first \d+ bytes of the JSON.*'data\[\*\]"):
        read(write(tmp_path, {"data": ["a", "b"]}))


def test_hostile_nesting_fails_at_the_depth_limit(tmp_path: Path) -> None:
    """Refused by depth, not by running out of stack or time (no wall-clock bound needed: the
    error names the limit, which only the depth check raises)."""
    with pytest.raises(ParseError, match="nested deeper"):
        read(write(tmp_path, "[" * 200_000))


@pytest.mark.usefixtures("shared_data")
def test_record_over_the_size_limit_is_one_bad_row(tmp_path: Path) -> None:
    isins = nse_isins()[:5]
    items: list[dict[str, Any]] = [{"note": "short", "isin": i} for i in isins]
    items[2] = {"note": "x" * (MAX_ROW_BYTES + 10), "tags": ["y"] * 1000, "isin": isins[2]}
    _lf, got, bad = read(write(tmp_path, {"data": items}))
    assert [r.isin for r in got] == isins[:2] + isins[3:]
    assert len(bad) == 1 and bad[0].error is RowError.MALFORMED_ROW and bad[0].line == 3
    assert bad[0].raw.startswith(f"isin={isins[2]}") and len(bad[0].raw) < 5000
