"""The golden record (core/golden/): derived and recognised identifiers, clean values, the sources
file's golden keys, precedence, and the view of one ISIN over its listings. No broker, no files."""

from __future__ import annotations

from pathlib import Path

import pytest
from stdnum import figi as stdnum_figi
from stdnum import isin as stdnum_isin

from core.errors import ConfigError
from core.golden import (
    FIELDS,
    GoldenConfig,
    canonical_fields,
    clean,
    derived_identifiers,
    field_for,
    golden_view,
    lookup_keys,
    mapped_attributes,
    normalise,
    problems,
    recognise,
)

COMMERZBANK_LEI = "851WYGNLUQLFZBSYGB56"
APPLE_LEI = "HWUPKR0MPOU8FGXBT394"
MICROSOFT_LEI = "INR2EJN1ERAN0W5ZP974"
APPLE_FIGI = "BBG000B9XRY4"


def with_check_digit(body: str) -> str:
    """A valid ISIN of an 11-character body (stdnum computes the ISIN's own check digit)."""
    return body + stdnum_isin.calc_check_digit(body)


def listing(source: str, **attributes: str) -> dict[str, object]:
    return {"source": source, "attributes": attributes}


# --- identifiers ---------------------------------------------------------------------------


def test_a_us_or_canadian_isin_wraps_its_cusip() -> None:
    assert derived_identifiers("US0378331005") == {"cusip": "037833100"}  # Apple
    assert derived_identifiers("CA0679011084") == {"cusip": "067901108"}  # Barrick Gold


def test_a_british_or_irish_isin_wraps_its_sedol_after_00() -> None:
    assert derived_identifiers("GB0002634946") == {"sedol": "0263494"}  # BAE Systems
    assert derived_identifiers("GB00B03MLX29") == {"sedol": "B03MLX2"}  # Shell (new-style SEDOL)
    assert derived_identifiers("IE00B4BNMY34") == {"sedol": "B4BNMY3"}  # Accenture


def test_a_national_part_failing_its_own_check_is_not_derived() -> None:
    bad_cusip = with_check_digit("US037833101")  # a valid ISIN; 037833101 fails the CUSIP check
    assert stdnum_isin.is_valid(bad_cusip)
    assert derived_identifiers(bad_cusip) == {}
    bad_sedol = with_check_digit("GB000263495")  # 0263495 fails the SEDOL check
    assert derived_identifiers(bad_sedol) == {}


def test_other_countries_isins_give_nothing() -> None:
    assert derived_identifiers("DE0007164600") == {}  # SAP: a WKN inside, not a field
    assert derived_identifiers("INE001A01036") == {}
    assert derived_identifiers("") == {}


def test_recognise_identifiers_by_their_own_check_rule() -> None:
    assert recognise(COMMERZBANK_LEI) == "lei"
    assert recognise(APPLE_FIGI) == "figi"
    assert recognise("ESVUFR") == "cfi"  # equity, shares, voting, free, fully paid, registered
    assert recognise(APPLE_FIGI.lower()) == "figi"  # the cheap filter before stdnum takes either case


def test_the_cusip_inside_an_isin_is_checked_as_stdnum_checks_it() -> None:
    import random

    from stdnum import cusip as stdnum_cusip

    from core.golden.identifiers import _cusip_inside

    rng = random.Random(9)
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    bodies = ["03783310", *("".join(rng.choice(alphabet) for _ in range(8)) for _ in range(2000))]
    values = [b + stdnum_cusip.calc_check_digit(b) for b in bodies] + [b + rng.choice(alphabet) for b in bodies]
    values += ["037833100", "03783310a", "0378331O0", "037833 00", "0378331000", "03783310", "é37833100"]
    for value in values:
        assert _cusip_inside(value) == stdnum_cusip.is_valid(value), value
    assert sum(map(_cusip_inside, values)) > 2000


def test_recognise_filters_figis_as_stdnum_would() -> None:
    """The third-character filter before stdnum's FIGI check refuses only what stdnum refuses."""
    import random

    rng = random.Random(20)
    alphabet = "0123456789BCDFGHJKLMNPQRSTVWXYZ"
    bodies = [APPLE_FIGI[:11], *("".join(rng.choice(alphabet) for _ in range(11)) for _ in range(3000))]
    values = [body + stdnum_figi.calc_check_digit(body) for body in bodies]
    for value in values:
        expected = "figi" if stdnum_figi.is_valid(value) and not stdnum_isin.is_valid(value) else None
        assert recognise(value) == expected, value
    assert sum(recognise(v) == "figi" for v in values) > 0


def test_recognise_refuses_what_is_not_an_identifier() -> None:
    assert recognise("US0378331005") is None  # an ISIN is twelve characters, as a FIGI is
    both = "CNG000000037"  # passes the FIGI check and is an ISIN: it stays an ISIN
    assert stdnum_figi.is_valid(both) and stdnum_isin.is_valid(both)
    assert recognise(both) is None
    assert recognise("INE001A01036") is None
    assert recognise("RELIANCE") is None
    assert recognise("EQUITY") is None  # six upper-case letters, but no CFI code
    assert recognise("esvufr") is None  # a CFI code is written upper-case
    assert recognise("ABCDEFGHIJKLMNOPQRST") is None  # twenty characters, failing the LEI check
    assert recognise("851WYGNLUQLFZBSYGB57") is None  # the LEI with a wrong check digit
    assert recognise("BBG000B9XRY5") is None
    assert recognise("") is None


def test_clean_codes_upper_case_without_spaces_and_checked() -> None:
    assert clean("lei", " 851wygnluqlfzbsygb56 ") == COMMERZBANK_LEI
    assert clean("cusip", "037 833 100") == "037833100"
    assert clean("sedol", "b03mlx2") == "B03MLX2"
    assert clean("currency", " usd") == "USD"
    assert clean("mic", "x etr") == "XETR"
    assert clean("lei", "N/A") is None  # N-PORT's placeholder: not an LEI
    assert clean("cusip", "037833101") is None
    assert clean("figi", "BBG000B9XRY5") is None
    assert clean("cfi", "EQUITY") is None


def test_clean_text_collapses_whitespace() -> None:
    assert clean("name", "  ABB   India\u00a0Ltd ") == "ABB India Ltd"
    assert clean("ticker", " ABB ") == "ABB"
    assert clean("name", "   ") is None
    assert clean("currency", "") is None


def test_normalise_ignores_case_punctuation_and_spacing_of_names_only() -> None:
    assert normalise("name", "ABB India Ltd.") == normalise("name", "abb  india ltd") == "abb india ltd"
    # as BSE writes it, with a curly apostrophe
    assert normalise("issuer_name", "Kwality Wall\u2019s (India) Limited") == "kwality walls india limited"
    assert normalise("name", "ABB India Ltd") != normalise("name", "ABB India Limited")
    assert normalise("security_type", "Equity  Shares") == normalise("security_type", "EQUITY SHARES")
    assert normalise("ticker", "M&M") != normalise("ticker", "MM")  # punctuation counts outside names
    assert normalise("lei", COMMERZBANK_LEI) == COMMERZBANK_LEI


def test_field_for_names_and_nested_names() -> None:
    assert field_for("name_of_company") == "name"
    assert field_for("attributes_lei") == "lei"  # GLEIF's data[*].attributes.lei
    assert field_for("attributes.entity.legalname") == "issuer_name"
    assert field_for("status") is None
    assert field_for("type") is None  # GLEIF's JSON:API resource type, NSDL's security type


# --- configuration -------------------------------------------------------------------------


def sources(**tables: dict[str, object]) -> dict[str, object]:
    return {"sources": {name: {"url": f"https://example.org/{name}.csv", **t} for name, t in tables.items()}}


def test_a_sources_file_without_golden_keys_is_file_order() -> None:
    config = GoldenConfig.from_sources(sources(nse={}, bse={}))
    assert config.order == ("nse", "bse") and dict(config.fields) == {} and dict(config.precedence) == {}
    assert config.rank("name", "nse") < config.rank("name", "bse")


def test_the_golden_keys_are_read(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        "[sources.nse]\n"
        'url = "https://example.org/EQUITY_L.csv"\n'
        'fields = { name = "NAME OF COMPANY", ticker = "SYMBOL" }\n'
        "[sources.gleif]\n"
        'url = "https://example.org/gleif.zip"\n'
        "[precedence]\n"
        'lei = ["gleif", "*"]\n',
        encoding="utf-8",
    )
    config = GoldenConfig.load(path)
    assert config.order == ("nse", "gleif")
    assert config.fields == {"nse": {"name": "NAME OF COMPANY", "ticker": "SYMBOL"}}
    assert config.precedence == {"lei": ("gleif", "*")}
    assert config.overrides("nse") == (("name_of_company", "name"), ("symbol", "ticker"))


def test_every_problem_is_reported_at_once_each_naming_its_key() -> None:
    data = sources(
        nse={"fields": {"nmae": "NAME OF COMPANY", "ticker": 3, "lei": " "}},
        bse={"fields": "Security Name"},
    )
    data["precedence"] = {
        "lei": ["nosuch", "nse", "nse", "*", "*", 7],
        "name": ["derived"],
        "colour": ["nse"],
        "cusip": "nse",
        "figi": [],
    }
    expected = [
        "sources.nse.fields.nmae: unknown field; one of " + ", ".join(FIELDS),
        "sources.nse.fields.ticker: expected the column's name (a string), not 3",
        "sources.nse.fields.lei: empty: give the column's name as the list writes it",
        'sources.bse.fields: expected a table of field = "column", e.g. { name = "NAME OF COMPANY" }',
        "precedence.lei: 'nosuch' is not a source of this file",
        "precedence.lei: 'nse' twice",
        "precedence.lei: '*' twice",
        "precedence.lei: 7 is not a source name (a string)",
        "precedence.name: 'derived' gives only cusip and sedol",
        "precedence.colour: unknown field; one of " + ", ".join(FIELDS),
        'precedence.cusip: expected a list of source names, e.g. ["gleif", "*"], not \'nse\'',
        "precedence.figi: empty: name sources, or leave the field out for the file's order",
    ]
    assert problems(data) == expected
    with pytest.raises(ConfigError) as raised:
        GoldenConfig.from_sources(data)
    assert str(raised.value) == "\n".join(expected)


def test_derived_is_a_reserved_source_name_and_precedence_must_be_a_table() -> None:
    data = sources(derived={})
    data["precedence"] = ["lei"]
    assert problems(data) == [
        "sources.derived: 'derived' is reserved in [precedence]: give the source another name",
        'precedence: expected a table, [precedence] with field = ["source", "*"]',
    ]


def test_load_refuses_a_file_that_is_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text("[sources.nse\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"sources\.toml: not a valid TOML file"):
        GoldenConfig.load(path)
    with pytest.raises(ConfigError, match="cannot read the sources file"):
        GoldenConfig.load(tmp_path / "missing.toml")


def test_precedence_defaults_to_file_order_with_unknown_sources_last_alphabetically() -> None:
    config = GoldenConfig(order=("nse", "bse", "lse"))
    ranked = sorted(["zeta", "lse", "alpha", "bse", "nse"], key=lambda s: config.rank("name", s))
    assert ranked == ["nse", "bse", "lse", "alpha", "zeta"]


def test_a_field_precedence_list_with_star_for_the_rest_in_file_order() -> None:
    config = GoldenConfig(order=("nse", "bse", "lse", "gleif"), precedence={"lei": ("gleif", "*", "nse")})
    ranked = sorted(["nse", "other", "lse", "bse", "gleif"], key=lambda s: config.rank("lei", s))
    assert ranked == ["gleif", "bse", "lse", "nse", "other"]
    # without "*", unnamed sources of the file follow the named ones, in file order
    config = GoldenConfig(order=("nse", "bse", "lse"), precedence={"name": ("lse",)})
    ranked = sorted(["other", "bse", "nse", "lse"], key=lambda s: config.rank("name", s))
    assert ranked == ["lse", "nse", "bse", "other"]


def test_derived_comes_first_for_cusip_and_sedol_unless_placed() -> None:
    config = GoldenConfig(order=("nport",), precedence={"sedol": ("lse", "*")})
    assert config.rank("cusip", "derived") < config.rank("cusip", "nport")
    assert config.rank("sedol", "derived") < config.rank("sedol", "lse")
    placed = GoldenConfig(order=("nport",), precedence={"cusip": ("nport", "derived")})
    assert placed.rank("cusip", "nport") < placed.rank("cusip", "derived")


# --- the view ------------------------------------------------------------------------------


def test_canonical_fields_configured_columns_then_names_then_content() -> None:
    config = GoldenConfig(order=("x",), fields={"x": {"issuer_name": "Name", "name": "Title of Issue"}})
    attributes = {
        "name": "KENTUCKY ST PPTY & BLDGS COMMN",
        "title_of_issue": "KY KYSFAC 5 08/01/2028",
        "lei": "N/A",  # fails the LEI check: skipped, so the code column below may give it
        "code": f" {APPLE_LEI} ",
        "classification": "DBFTFR",
        "status": "ACTIVE",
    }
    assert canonical_fields("x", attributes, config) == {
        "issuer_name": "KENTUCKY ST PPTY & BLDGS COMMN",
        "name": "KY KYSFAC 5 08/01/2028",
        "lei": APPLE_LEI,
        "cfi": "DBFTFR",
    }
    # without the configuration, <name> is the name, and of two names the first one wins
    assert canonical_fields("y", attributes, config)["name"] == "KENTUCKY ST PPTY & BLDGS COMMN"
    assert "issuer_name" not in canonical_fields("y", attributes, config)
    assert mapped_attributes("y", list(attributes), config) == {"name": "name", "lei": "lei"}


def test_two_sources_differing_only_in_case_and_punctuation_do_not_conflict() -> None:
    config = GoldenConfig(order=("nse", "bse"))
    view = golden_view(
        "INE117A01022",
        [
            listing("bse", security_name="abb india ltd", security_id="ABB", lei=MICROSOFT_LEI),
            listing("nse", name_of_company="ABB India Ltd.", symbol="ABB", lei=APPLE_LEI),
        ],
        config,
    )
    assert view.golden == {
        "name": {"value": "ABB India Ltd.", "source": "nse"},
        "lei": {"value": APPLE_LEI, "source": "nse"},
        "ticker": {"value": "ABB", "source": "nse"},
    }
    assert view.conflicts == [{"field": "lei", "values": {"nse": APPLE_LEI, "bse": MICROSOFT_LEI}}]
    assert view.identifiers == {"lei": {"value": APPLE_LEI, "sources": ["nse"]}}


def test_a_field_precedence_overrides_the_file_order() -> None:
    config = GoldenConfig(order=("nse", "bse"), precedence={"lei": ("bse", "*")})
    listings = [
        listing("nse", name_of_company="ABB", lei=APPLE_LEI),
        listing("bse", security_name="ABB Ltd", lei=MICROSOFT_LEI),
    ]
    view = golden_view("INE117A01022", listings, config)
    assert view.golden["lei"] == {"value": MICROSOFT_LEI, "source": "bse"}
    assert view.golden["name"] == {"value": "ABB", "source": "nse"}
    assert view.conflicts == [
        {"field": "name", "values": {"nse": "ABB", "bse": "ABB Ltd"}},
        {"field": "lei", "values": {"bse": MICROSOFT_LEI, "nse": APPLE_LEI}},
    ]


def test_a_source_agreeing_with_the_derived_cusip_is_listed_with_it() -> None:
    config = GoldenConfig(order=("y", "x"))  # sources are listed sorted, not in precedence order
    view = golden_view(
        "US0378331005",
        [listing("x", cusip="037833100", figi=APPLE_FIGI), listing("y", cusip_number="037833100")],
        config,
    )
    assert view.golden["cusip"] == {"value": "037833100", "source": "derived"}
    assert view.identifiers == {
        "cusip": {"value": "037833100", "sources": ["derived", "x", "y"]},
        "figi": {"value": APPLE_FIGI, "sources": ["x"]},
    }
    assert view.conflicts == []


def test_a_cusip_column_disagreeing_with_the_isin_is_a_conflict() -> None:
    other = "594918104"  # Microsoft's CUSIP, valid on its own
    view = golden_view("US0378331005", [listing("x", cusip=other)], GoldenConfig(order=("x",)))
    assert view.golden["cusip"] == {"value": "037833100", "source": "derived"}
    assert view.identifiers["cusip"] == {"value": "037833100", "sources": ["derived"]}
    assert view.conflicts == [{"field": "cusip", "values": {"derived": "037833100", "x": other}}]
    assert view.as_dict()["conflicts"] == view.conflicts


def test_lookup_keys_hold_every_sources_identifiers_not_only_the_golden_ones() -> None:
    listings = [
        listing("x", cusip="594918104", lei=APPLE_LEI, symbol="AAPL", name="Apple Inc."),
        listing("y", lei=MICROSOFT_LEI, ticker="AAPL"),
    ]
    assert lookup_keys("US0378331005", listings, GoldenConfig(order=("x", "y"))) == {
        ("cusip", "037833100"),
        ("cusip", "594918104"),
        ("lei", APPLE_LEI),
        ("lei", MICROSOFT_LEI),
        ("ticker", "AAPL"),
    }


def test_a_record_without_listings_has_only_what_the_isin_carries() -> None:
    view = golden_view("GB0002634946", [], GoldenConfig())
    assert view.golden == {"sedol": {"value": "0263494", "source": "derived"}}
    assert view.identifiers == {"sedol": {"value": "0263494", "sources": ["derived"]}}
    assert golden_view("DE0007164600", [], GoldenConfig()).as_dict() == {
        "golden": {},
        "identifiers": {},
        "conflicts": [],
    }
