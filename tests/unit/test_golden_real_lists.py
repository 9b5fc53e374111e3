"""The golden record (core/golden/) on the real lists of ../shared/data, read by the project's
reader: what each list's columns map to, N-PORT's CUSIPs against its ISINs, GLEIF's LEI, and the
golden view of the ISINs NSE and BSE both list, checked against an expectation computed here
from the raw CSV columns."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import pytest
from python_calamine import CalamineWorkbook
from stdnum import lei as stdnum_lei

from core.golden import (
    GoldenConfig,
    attribute_name,
    canonical_fields,
    derived_identifiers,
    golden_view,
    mapped_attributes,
)
from producer.reading import ReadHints, Row
from producer.reading.model import normalise_header
from tests.conftest import SHARED
from tests.unit.reading import csv_rows, read

pytestmark = pytest.mark.usefixtures("shared_data")

DATA = SHARED / "data"
FORMATS = DATA / "formats"
NSE = DATA / "nse_EQUITY_L.csv"
BSE = DATA / "bse_Equity.csv"
NSDL = DATA / "nsdl_india-isin_ISIN_20240831.csv"
XETRA = DATA / "xetra_t7-xetr-allTradableInstruments_20190418.csv"
NPORT = FORMATS / "sec_nport-p_dupree_20221231.xml"
GLEIF = FORMATS / "gleif_isins_851WYGNLUQLFZBSYGB56_20250515.json"
AMFI = FORMATS / "amfi_NAVAll_2025.txt"
DBAG = FORMATS / "dbag_Listed-companies_20210801.xlsx"
LSE = FORMATS / "lse_Instrument_list_20201031.xlsx"
GPW = FORMATS / "gpw_archiwum-notowan_akcje_20220210.xls"
KONEX = FORMATS / "kis_konex_code.mst"

HINTS = {AMFI: ReadHints(column="ISIN Div Payout/ ISIN Growth")}  # it has two ISIN columns
NO_CONFIG = GoldenConfig()


@cache
def rows_of(path: Path) -> list[Row]:
    _, rows, bad = read(path, HINTS.get(path))
    assert not bad
    return rows


# --- what each real list maps to -----------------------------------------------------------

EXPECTED = {
    NSE: ({"symbol": "ticker", "name_of_company": "name"}, {"ticker", "name"}),
    BSE: (
        {"issuer_name": "issuer_name", "security_id": "ticker", "security_name": "name", "instrument": "name"},
        {"issuer_name", "ticker", "name"},
    ),
    NSDL: ({"description": "name", "issuer": "issuer_name"}, {"name", "issuer_name"}),
    XETRA: (
        {"instrument": "name", "mnemonic": "ticker", "mic_code": "mic", "instrument_type": "security_type"},
        {"name", "ticker", "mic", "security_type"},
    ),
    AMFI: ({"scheme_name": "name"}, {"name"}),
    DBAG: ({"trading_symbol": "ticker", "company": "name"}, {"ticker", "name"}),
    LSE: (
        {
            "tidm": "ticker",
            "issuer_name": "issuer_name",
            "instrument_name": "name",
            "mifir_identifier_code": "security_type",
            "trading_currency": "currency",
            "maturity_date": "maturity_date",
        },
        {"ticker", "issuer_name", "name", "security_type", "currency", "maturity_date"},
    ),
    GPW: ({"nazwa": "name", "waluta": "currency"}, {"name", "currency"}),
    NPORT: (
        {
            "name": "name",
            "lei": "lei",
            "title": "name",
            "cusip": "cusip",
            "curcd": "currency",
            "debtsec_maturitydt": "maturity_date",
        },
        {"name", "lei", "cusip", "currency", "maturity_date"},
    ),
    GLEIF: ({"attributes_lei": "lei"}, {"lei"}),
    KONEX: ({}, set()),  # no header: field_1, field_2, ...
}


def test_every_real_list_is_expected_here() -> None:
    on_disk = {p for p in [*DATA.iterdir(), *FORMATS.iterdir()] if p.is_file() and p.name != "PROVENANCE.txt"}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("path", list(EXPECTED), ids=lambda p: p.name)
def test_the_columns_each_real_list_maps(path: Path) -> None:
    expected_attributes, expected_fields = EXPECTED[path]
    attributes: dict[str, str] = {}
    fields: set[str] = set()
    for row in rows_of(path):
        attributes.update(mapped_attributes(path.stem, list(row.attributes), NO_CONFIG))
        found = canonical_fields(path.stem, row.attributes, NO_CONFIG)
        fields.update(found)
        # nothing a column's name does not give is found by content in these lists
        assert set(found) <= set(mapped_attributes(path.stem, list(row.attributes), NO_CONFIG).values())
    assert attributes == expected_attributes
    assert fields == expected_fields


# --- N-PORT: a CUSIP column beside the ISIN ------------------------------------------------


def test_nport_cusips_are_the_ones_inside_their_isins() -> None:
    raw = NPORT.read_text(encoding="ascii")
    cusip_elements = len(re.findall(r"<cusip>[^<]+</cusip>", raw))
    rows = rows_of(NPORT)
    north_american = [r for r in rows if r.isin[:2] in ("US", "CA") and "cusip" in r.attributes]
    agreeing = [r for r in north_american if derived_identifiers(r.isin).get("cusip") == r.attributes["cusip"]]
    assert len(north_american) == cusip_elements == len(rows) > 0
    assert len(agreeing) == len(north_american)
    for row in north_american:  # so the golden view has no cusip conflict, and two sources for it
        view = golden_view(row.isin, [{"source": "nport", "attributes": row.attributes}], NO_CONFIG)
        assert view.identifiers["cusip"] == {"value": row.attributes["cusip"], "sources": ["derived", "nport"]}
        assert view.conflicts == []


def test_nport_columns_map_to_lei_name_cusip_and_currency() -> None:
    raw = NPORT.read_text(encoding="ascii")
    real_leis = [v for v in re.findall(r"<lei>([^<]*)</lei>", raw) if stdnum_lei.is_valid(v)]
    assert 0 < len(real_leis) < len(rows_of(NPORT))  # the others are N/A
    seen_leis = []
    for row in rows_of(NPORT):
        found = canonical_fields("nport", row.attributes, NO_CONFIG)
        assert found["name"] == row.attributes["name"]
        assert found["cusip"] == row.attributes["cusip"]
        assert found["currency"] == row.attributes["curcd"] == "USD"
        assert found["maturity_date"] == row.attributes["debtsec_maturitydt"]
        if "lei" in found:
            assert found["lei"] == row.attributes["lei"]
            seen_leis.append(found["lei"])
        else:
            assert row.attributes["lei"] == "N/A"
    assert seen_leis == real_leis


def test_nport_issuer_and_title_apart_by_configuration() -> None:
    config = GoldenConfig.from_sources({"sources": {"nport": {"fields": {"issuer_name": "name", "name": "title"}}}})
    for row in rows_of(NPORT):
        found = canonical_fields("nport", row.attributes, config)
        assert found["issuer_name"] == row.attributes["name"] and found["name"] == row.attributes["title"]


# --- GLEIF: the LEI of every ISIN ----------------------------------------------------------


def test_gleif_rows_carry_the_lei_of_the_file() -> None:
    lei = GLEIF.stem.split("_")[2]
    assert stdnum_lei.is_valid(lei)
    rows = rows_of(GLEIF)
    assert len(rows) == len(json.loads(GLEIF.read_bytes())["data"]) > 0
    for row in rows:
        assert canonical_fields("gleif", row.attributes, NO_CONFIG) == {"lei": lei}
        view = golden_view(row.isin, [{"source": "gleif", "attributes": row.attributes}], NO_CONFIG)
        assert view.identifiers["lei"] == {"value": lei, "sources": ["gleif"]}


# --- NSE and BSE: one ISIN, two exchanges --------------------------------------------------


def loose(text: str) -> str:
    """The test's own name comparison: letters, digits and single spaces, lower-case."""
    kept = "".join(c for c in text.lower() if c.isalnum() or c.isspace())
    return " ".join(kept.split())


def test_nse_and_bse_golden_names_and_conflicts() -> None:
    nse_raw = {r[" ISIN NUMBER"].strip(): r for r in csv_rows(NSE)}
    bse_raw = {r["ISIN No"].strip(): r for r in csv_rows(BSE)}
    both = sorted(nse_raw.keys() & bse_raw.keys())
    assert len(both) > 2000
    expected: dict[str, list[dict[str, object]]] = {}
    for isin in both:
        n, b = nse_raw[isin], bse_raw[isin]
        conflicts: list[dict[str, object]] = []
        name_n, name_b = " ".join(n["NAME OF COMPANY"].split()), " ".join(b["Security Name"].split())
        if loose(name_n) != loose(name_b):
            conflicts.append({"field": "name", "values": {"nse": name_n, "bse": name_b}})
        ticker_n, ticker_b = n["SYMBOL"].strip(), b["Security Id"].strip()
        if ticker_n.lower() != ticker_b.lower():
            conflicts.append({"field": "ticker", "values": {"nse": ticker_n, "bse": ticker_b}})
        expected[isin] = conflicts

    nse = {r.isin: r.attributes for r in rows_of(NSE)}
    bse = {r.isin: r.attributes for r in rows_of(BSE)}
    config = GoldenConfig.from_sources({"sources": {"nse": {}, "bse": {}}})
    got: dict[str, list[dict[str, object]]] = {}
    for isin in both:
        listings = [{"source": "bse", "attributes": bse[isin]}, {"source": "nse", "attributes": nse[isin]}]
        view = golden_view(isin, listings, config)
        assert view.golden["name"] == {"value": " ".join(nse_raw[isin]["NAME OF COMPANY"].split()), "source": "nse"}
        assert view.golden["issuer_name"]["source"] == "bse"  # only BSE has one
        assert view.identifiers == {}  # Indian ISINs carry no CUSIP or SEDOL
        got[isin] = [dict(c) for c in view.conflicts]
    assert got == expected
    assert 0 < sum(1 for c in expected.values() if c) < len(both)  # some agree, some do not

    reversed_config = GoldenConfig.from_sources({"sources": {"bse": {}, "nse": {}}})
    isin = both[0]
    view = golden_view(
        isin, [{"source": "nse", "attributes": nse[isin]}, {"source": "bse", "attributes": bse[isin]}], reversed_config
    )
    assert view.golden["name"] == {"value": " ".join(bse_raw[isin]["Security Name"].split()), "source": "bse"}


def test_configured_columns_are_matched_as_the_reader_names_them() -> None:
    config = GoldenConfig.from_sources(
        {
            "sources": {
                "nse": {"fields": {"issuer_name": " NAME OF COMPANY", "ticker": "SYMBOL"}},
                "nsdl": {"fields": {"security_type": "Type"}},
                "xetra": {"fields": {"currency": "Settlement Currency"}},
            }
        }
    )
    for row in rows_of(NSE)[:50]:
        found = canonical_fields("nse", row.attributes, config)
        # the column is claimed by the configuration: the synonym table no longer makes it the name
        assert found["issuer_name"] == " ".join(row.attributes["name_of_company"].split())
        assert "name" not in found and found["ticker"] == row.attributes["symbol"]
    nsdl_types = {r["ISIN"]: r["Type"] for r in csv_rows(NSDL)}
    for row in rows_of(NSDL):
        assert canonical_fields("nsdl", row.attributes, config)["security_type"] == nsdl_types[row.isin]
    assert {canonical_fields("xetra", r.attributes, config)["currency"] for r in rows_of(XETRA)} >= {"EUR", "USD"}


# --- attribute_name (core) is the reader's normalise_header (producer) ---------------------


def real_headers() -> list[str]:
    headers = [h for path in (NSE, BSE, NSDL) for h in csv_rows(path)[0] if h is not None]  # None: BSE's extra cells
    headers += XETRA.read_text(encoding="utf-8").splitlines()[2].split(";")
    headers += AMFI.read_text(encoding="utf-8").splitlines()[0].split(";")
    for path, header_row in ((DBAG, 7), (LSE, 7), (GPW, 0)):
        book = CalamineWorkbook.from_path(str(path))
        for sheet in book.sheet_names:
            rows = book.get_sheet_by_name(sheet).to_python()
            if len(rows) > header_row:
                headers += [str(c) for c in rows[header_row]]
    root = ET.fromstring(NPORT.read_text(encoding="ascii").lstrip())  # noqa: S314

    def paths(el: ET.Element, prefix: str) -> list[str]:
        out = [f"{prefix}@{a}" for a in el.attrib]
        for child in el:
            name = prefix + child.tag.split("}")[-1]
            out += [name, *paths(child, name + "/")]
        return out

    headers += paths(root, "")

    def keys(value: object, prefix: str) -> list[str]:
        if isinstance(value, dict):
            return [k for key, v in value.items() for k in [prefix + key, *keys(v, prefix + key + ".")]]
        if isinstance(value, list):
            return [k for v in value for k in keys(v, prefix)]
        return []

    headers += keys(json.loads(GLEIF.read_bytes()), "")
    return headers


def test_attribute_name_is_the_readers_normalise_header() -> None:
    headers = real_headers()
    assert len(headers) > 300 and " ISIN NUMBER" in headers and "Kurs zamknięcia" in headers
    assert "data.attributes.lei" in headers and "invstOrSecs/invstOrSec/identifiers/isin/@value" in " ".join(headers)
    for index, header in enumerate([*headers, "", "  ", "--", "Obrót (zł)"]):
        assert attribute_name(header, index) == normalise_header(header, index), header
