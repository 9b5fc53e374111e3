"""The XML reader (producer/reading/xmlfile.py) through ListFile, on the real N-PORT sample and on
XML made from real lists (no real list with the ISIN as element text was found: see PROVENANCE.txt)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest

from core.errors import ParseError
from core.isin import RowError, is_isin
from producer.reading import ColumnBy, ListFile, ReadHints
from producer.reading.model import MAX_ROW_BYTES
from tests.conftest import SHARED
from tests.unit.reading import csv_rows, read

FORMATS = SHARED / "data" / "formats"
NPORT = FORMATS / "sec_nport-p_dupree_20221231.xml"
NSDL = SHARED / "data" / "nsdl_india-isin_ISIN_20240831.csv"
NSE = SHARED / "data" / "nse_EQUITY_L.csv"


def valid_isins(values: list[str]) -> set[str]:
    return {v.strip() for v in values if is_isin(v)}


def write(tmp_path: Path, data: str | bytes, name: str = "list.xml") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def isins_of_nse() -> list[str]:
    return [r[" ISIN NUMBER"] for r in csv_rows(NSE)]


@pytest.mark.usefixtures("shared_data")
def test_sec_nport_real_file() -> None:
    raw = NPORT.read_bytes()
    expected = set(re.findall(rb'<isin value="([^"]*)"', raw))
    assert len(expected) == 55 and all(is_isin(i.decode()) for i in expected)
    first_line = raw.split(b"\n").index(b"      <invstOrSec>") + 1  # the file starts with a newline

    lf, rows, bad = read(NPORT)

    assert lf.detected.format == "xml"
    assert lf.detected.details["record"] == "edgarSubmission/formData/invstOrSecs/invstOrSec"
    assert lf.detected.details["isin_path"] == "identifiers/isin/@value"
    assert lf.column_by is ColumnBy.NAMED
    assert lf.end_proven and not lf.unterminated
    assert not bad and len(rows) == 55
    assert {r.isin for r in rows} == {i.decode() for i in expected}
    first = rows[0]
    assert first.line == first_line and first.where == "invstOrSec 1"
    assert first.attributes["cusip"] == "49151FGH7"
    assert first.attributes["identifiers_other_value"] == "49151FGH"
    assert "isin" not in " ".join(first.attributes)  # the ISIN is not repeated as an attribute
    assert "identifiers/isin/@value=US49151FGH73" in first.raw


@pytest.mark.usefixtures("shared_data")
def test_element_text_with_namespace_made_from_nsdl(tmp_path: Path) -> None:
    # No real XML list with <ISIN>…</ISIN> exists in the shared data: the NSDL list (CSV) is
    # turned into element-text XML with a default namespace and a prefixed one.
    rows = csv_rows(NSDL)
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<Export xmlns="urn:nsdl:isin" xmlns:x="urn:x">\n<Header>']
    parts.append("<Created>2024-08-31</Created></Header>\n<x:Securities>\n")
    for r in rows:
        fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in r.items())
        parts.append(f"<x:Security>{fields}</x:Security>\n")
    parts.append("</x:Securities></Export>\n")
    path = write(tmp_path, "".join(parts))
    expected = valid_isins([r["ISIN"] for r in rows])
    assert len(expected) == 15460

    lf, got, bad = read(path)

    assert lf.detected.details == {"record": "Export/Securities/Security", "isin_path": "ISIN", "records": 15460}
    assert lf.column_by is ColumnBy.HEADER
    assert not bad and len(got) == 15460
    assert {r.isin for r in got} == expected
    assert got[0].attributes == {k.lower(): v for k, v in rows[0].items() if k != "ISIN" and v}
    assert got[0].line == 5 and got[-1].line == 15464


@pytest.mark.usefixtures("shared_data")
def test_row_attribute_style_made_from_nse(tmp_path: Path) -> None:
    rows = csv_rows(NSE)
    lines = [f"<row ISIN={quoteattr(r[' ISIN NUMBER'])} SYMBOL={quoteattr(r['SYMBOL'])}/>" for r in rows]
    path = write(tmp_path, "<rows>\n" + "\n".join(lines) + "\n</rows>")
    expected = valid_isins(isins_of_nse())

    lf, got, bad = read(path)

    assert lf.detected.details["record"] == "rows/row"
    assert lf.detected.details["isin_path"] == "@ISIN"
    assert lf.column_by is ColumnBy.HEADER
    assert not bad and len(got) == len(rows) == 2387
    assert {r.isin for r in got} == expected
    assert got[0].attributes == {"symbol": rows[0]["SYMBOL"]}


@pytest.mark.usefixtures("shared_data")
def test_firds_like_id_is_found_by_content_only(tmp_path: Path) -> None:
    isins = isins_of_nse()[:300]
    ns = "urn:iso:std:iso:20022:tech:xsd:auth.017.001.02"
    body = "".join(
        f"<RefData><FinInstrmGnlAttrbts><Id>{i}</Id><FullNm>Share {n}</FullNm></FinInstrmGnlAttrbts>"
        f"<Issr>335800XXXXXXXXXXXX{n:02d}</Issr></RefData>\n"
        for n, i in enumerate(isins)
    )
    doc = f'<BizData xmlns="urn:bah"><Pyld><Document xmlns="{ns}"><FinInstrmRptgRefDataRpt>\n{body}'
    path = write(tmp_path, doc + "</FinInstrmRptgRefDataRpt></Document></Pyld></BizData>")

    lf, got, _bad = read(path)

    assert lf.detected.details["record"] == "BizData/Pyld/Document/FinInstrmRptgRefDataRpt/RefData"
    assert lf.detected.details["isin_path"] == "FinInstrmGnlAttrbts/Id"
    assert lf.column_by is ColumnBy.CONTENT
    assert [r.isin for r in got] == isins


def test_bom_and_leading_whitespace_are_skipped(tmp_path: Path) -> None:
    doc = b'\xef\xbb\xbf\n\n<?xml version="1.0" encoding="UTF-8"?>\n<l>\n<i isin="US0378331005"/>\n</l>\n'
    lf, got, _bad = read(write(tmp_path, doc))
    assert [(r.line, r.isin) for r in got] == [(5, "US0378331005")]
    assert lf.column_by is ColumnBy.HEADER


@pytest.mark.usefixtures("shared_data")
def test_record_without_the_isin_field_is_a_row_with_an_empty_isin(tmp_path: Path) -> None:
    isins = isins_of_nse()[:10]
    items = [f"<item><isin>{i}</isin><name>n{k}</name></item>" for k, i in enumerate(isins)]
    items.insert(3, "<item><name>no isin</name></item>")
    _lf, got, _bad = read(write(tmp_path, "<list>" + "".join(items) + "</list>"))
    assert len(got) == 11
    assert got[3].isin == "" and got[3].attributes == {"name": "no isin"}


def ambiguous_doc(tmp_path: Path, own: str) -> Path:
    isins = isins_of_nse()
    pairs = itertools.pairwise(isins[:201])
    items = [f"<sec><{own}>{a}</{own}><underlying_isin>{b}</underlying_isin></sec>" for a, b in pairs]
    return write(tmp_path, "<list>" + "\n".join(items) + "</list>")


@pytest.mark.usefixtures("shared_data")
def test_two_isin_fields_are_ambiguous_and_a_hint_decides(tmp_path: Path) -> None:
    path = ambiguous_doc(tmp_path, "isin_code")
    with pytest.raises(ParseError, match=r"'isin_code' and 'underlying_isin'.*--column"):
        read(path)

    lf, got, _bad = read(path, ReadHints(column="underlying_isin"))
    assert lf.column_by is ColumnBy.CONFIGURED
    assert lf.detected.details["isin_path"] == "underlying_isin"
    assert got[0].isin == isins_of_nse()[1]
    assert got[0].attributes == {"isin_code": isins_of_nse()[0]}

    lf, got, _bad = read(path, ReadHints(column="list/sec/isin_code"))
    assert lf.column_by is ColumnBy.CONFIGURED and got[0].isin == isins_of_nse()[0]


@pytest.mark.usefixtures("shared_data")
def test_a_field_named_exactly_isin_wins_over_an_underlying_isin(tmp_path: Path) -> None:
    lf, got, _bad = read(ambiguous_doc(tmp_path, "ISIN"))
    assert lf.column_by is ColumnBy.HEADER and lf.detected.details["isin_path"] == "ISIN"
    assert got[0].isin == isins_of_nse()[0]


@pytest.mark.usefixtures("shared_data")
def test_hint_naming_a_missing_field_fails(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"--column 'nosuch'"):
        read(ambiguous_doc(tmp_path, "isin_code"), ReadHints(column="nosuch"))


@pytest.mark.usefixtures("shared_data")
def test_hint_naming_the_element_of_an_attribute(tmp_path: Path) -> None:
    lf, got, _bad = read(NPORT, ReadHints(column="isin"))
    assert lf.column_by is ColumnBy.CONFIGURED
    assert lf.detected.details["isin_path"] == "identifiers/isin/@value" and len(got) == 55


@pytest.mark.usefixtures("shared_data")
def test_truncated_xml_fails(tmp_path: Path) -> None:
    raw = NPORT.read_bytes()
    path = write(tmp_path, raw[: len(raw) // 2])
    with pytest.raises(ParseError, match=r"broken XML at line \d+.*cut short"):
        read(path)


@pytest.mark.usefixtures("shared_data")
def test_truncated_xml_beyond_the_sample_fails_while_reading(tmp_path: Path) -> None:
    isins = isins_of_nse()
    rows = "".join(f'<row ISIN="{isins[n % len(isins)]}" n="{n}" pad="{"x" * 100}"/>\n' for n in range(30_000))
    path = write(tmp_path, "<rows>\n" + rows)  # no closing tag: a download cut short
    with ListFile(path) as lf:
        seen = 0
        with pytest.raises(ParseError, match=r"line 30002.*after row 30000.*cut short"):
            for _item in lf.rows():
                seen += 1
        assert seen == 30_000 and not lf.end_proven


def test_syntax_error_midway_fails_with_its_line(tmp_path: Path) -> None:
    doc = '<l>\n<i isin="US0378331005"/>\n<i isin="US0378331005"></j>\n</l>'
    with pytest.raises(ParseError, match=r"broken XML at line 3.*mismatch"):
        read(write(tmp_path, doc))


def test_not_xml_at_all_fails(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="broken XML"):
        read(write(tmp_path, "<<< this is not a list >>>\nUS0378331005\n"))


def test_no_isin_anywhere_fails_saying_what_was_looked_at(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"no field holds valid ISINs in the first \d+ bytes of the XML"):
        read(write(tmp_path, "<l><i code='X1'/><i code='X2'/></l>"))


def test_billion_laughs_is_never_expanded(tmp_path: Path) -> None:
    """libxml2 refuses the amplification outright: the run fails saying why, and reads nothing."""
    entities = '<!ENTITY a0 "lol">' + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    doc = f'<?xml version="1.0"?>\n<!DOCTYPE l [{entities}]>\n<l><i isin="US0378331005">&a9;</i></l>'
    with pytest.raises(ParseError, match=r"broken XML.*amplification.*entity-expansion bomb"):
        read(write(tmp_path, doc))


def test_external_entities_are_not_resolved(tmp_path: Path) -> None:
    """The record is read, and the external entity stays unresolved: its text is not there."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    doc = f'<!DOCTYPE l [<!ENTITY x SYSTEM "file://{secret}">]>\n<l><i isin="US0378331005"><n>&x;</n></i></l>'
    _lf, got, bad = read(write(tmp_path, doc))
    assert [r.isin for r in got] == ["US0378331005"] and bad == []
    assert "TOP-SECRET" not in repr([r.attributes for r in got])


@pytest.mark.usefixtures("shared_data")
def test_record_over_the_size_limit_is_one_bad_row(tmp_path: Path) -> None:
    isins = isins_of_nse()[:5]
    rows = [f'<row ISIN="{i}"><note>short</note></row>' for i in isins]
    rows[2] = f'<row ISIN="{isins[2]}"><note>{"x" * (MAX_ROW_BYTES + 10)}</note></row>'
    _lf, got, bad = read(write(tmp_path, "<rows>\n" + "\n".join(rows) + "\n</rows>"))
    assert [r.isin for r in got] == isins[:2] + isins[3:]
    assert len(bad) == 1 and bad[0].error is RowError.MALFORMED_ROW and bad[0].line == 4
    assert isins[2] in bad[0].raw and len(bad[0].raw) < 5000
