"""The golden record's words: its canonical fields, and the column names that mean them.

Every list names its columns its own way (NSE's ``NAME OF COMPANY``, the LSE's ``Instrument
Name``, Xetra's ``instrument``); the reader keeps them as attributes under their normalised
header names (``producer/reading/model.py: normalise_header``: lower-case, every run of other
characters one ``_``). To compare listings of one ISIN across sources, each attribute that
clearly *is* one of the canonical fields is mapped to it here, by name alone.

The table is deliberately conservative: a name is mapped only where it means the field in every
real list that uses it. Where one spelling means different things in different lists (GLEIF's
``type`` is the JSON:API resource type ``isins``, NSDL's ``Type`` a security type), it is left
out, and a source that wants it says so in its own ``fields`` table of the sources file
(``config.py``), which wins over this table. The real lists named below are those of
``../shared/data`` and ``../shared/data/formats`` (see their PROVENANCE.txt).
"""

from __future__ import annotations

FIELDS = (
    "name",
    "issuer_name",
    "lei",
    "cfi",
    "figi",
    "ticker",
    "mic",
    "currency",
    "security_type",
    "maturity_date",
    "cusip",
    "sedol",
)
"""The canonical fields, in the order a golden record and its conflicts list them. ``cusip`` and
``sedol`` are there so that a list's own CUSIP or SEDOL column can be compared with the one
derived from the ISIN (``identifiers.derived_identifiers``)."""

IDENTIFIER_FIELDS = ("cusip", "sedol", "lei", "figi")
"""The fields a golden record's ``identifiers`` member reports, with every source that agrees."""

LOOKUP_FIELDS = ("lei", "cusip", "sedol", "figi", "ticker")
"""The fields a secondary index keyed by identifier holds, for every source's value."""

HEADER_SYNONYMS: dict[str, str] = {
    # --- the real lists, by file ---
    # nse_EQUITY_L.csv: SYMBOL, NAME OF COMPANY (SERIES is a trading series EQ/BE/BZ, not a type)
    "symbol": "ticker",
    "name_of_company": "name",
    # bse_Equity.csv: Issuer Name, Security Id, Security Name. Its "Instrument" column holds the
    # type ("Equity"), but the name maps to ``name`` for Xetra (below); Security Name comes first
    # in BSE's attribute order, so it is the one used. Status (Active) is not a security type.
    "issuer_name": "issuer_name",  # also lse_Instrument_list_20201031.xlsx "Issuer Name"
    "security_id": "ticker",
    "security_name": "name",
    # lse_Instrument_list_20201031.xlsx: TIDM, Instrument Name, Trading Currency, Maturity Date,
    # MiFIR Identifier Code (SHRS, BOND, ETFS, ...: the MiFIR instrument classification)
    "tidm": "ticker",
    "instrument_name": "name",
    "trading_currency": "currency",
    "maturity_date": "maturity_date",
    "mifir_identifier_code": "security_type",
    # xetra_t7-xetr-allTradableInstruments_20190418.csv: instrument (the instrument's name),
    # Mnemonic, MIC Code (XETR), Instrument Type (CS, ETF, ETC, ETN). Not mapped: Primary Market
    # MIC Code (another venue's), Settlement Currency (settlement, not trading).
    "instrument": "name",
    "mnemonic": "ticker",
    "mic_code": "mic",
    "instrument_type": "security_type",
    # dbag_Listed-companies_20210801.xlsx: Trading Symbol, Company (as NSE's NAME OF COMPANY)
    "trading_symbol": "ticker",
    "company": "name",
    # nsdl_india-isin_ISIN_20240831.csv: Description, Issuer (Type is left out: see the docstring)
    "description": "name",
    "issuer": "issuer_name",
    # gpw_archiwum-notowan_akcje_20220210.xls (Polish headers): Nazwa (name), Waluta (currency)
    "nazwa": "name",
    "waluta": "currency",
    # amfi_NAVAll_2025.txt: Scheme Name (Scheme Code is AMFI's number, not a ticker)
    "scheme_name": "name",
    # sec_nport-p_dupree_20221231.xml (N-PORT holdings): <name>, <lei>, <title>, <cusip>, <curCd>,
    # <debtSec><maturityDt>. N-PORT's <name> is the *issuer's* name and <title> the issue's; as
    # <name> comes first it is the name here: an N-PORT source that wants them apart sets
    # ``fields = { issuer_name = "name", name = "title" }``. <identifiers><ticker> is not a
    # ticker in this file (an issuer abbreviation, KYSFAC), so identifiers_ticker_value is left out.
    "name": "name",
    "title": "name",
    "lei": "lei",
    "cusip": "cusip",
    "curcd": "currency",
    "debtsec_maturitydt": "maturity_date",
    # gleif_isins_851WYGNLUQLFZBSYGB56_20250515.json: data[*].attributes.lei (the reader joins a
    # nested path with "_")
    "attributes_lei": "lei",
    # kis_konex_code.mst has no header (field_1, field_2, ...): nothing maps by name.
    # --- generic spellings ---
    "lei_code": "lei",
    "legal_entity_identifier": "lei",
    "cfi": "cfi",
    "cfi_code": "cfi",
    "figi": "figi",
    "figi_code": "figi",
    "ticker": "ticker",
    "ticker_symbol": "ticker",
    "mic": "mic",
    "currency": "currency",
    "ccy": "currency",
    "currency_code": "currency",
    "security_type": "security_type",
    "security_type_code": "security_type",
    "asset_type": "security_type",
    "maturity": "maturity_date",
    "maturity_dt": "maturity_date",
    "cusip_code": "cusip",
    "cusip_number": "cusip",
    "sedol": "sedol",
    "sedol_code": "sedol",
    "company_name": "name",
    "security_description": "name",
    "short_name": "name",
    "legal_name": "issuer_name",
    "legalname": "issuer_name",  # GLEIF LEI records: attributes.entity.legalName
    "entity_legalname": "issuer_name",
}
"""Normalised attribute name -> canonical field."""

_NESTED_PREFIXES = ("attributes_", "attributes.")
"""A JSON:API resource keeps its fields under ``attributes`` (GLEIF's API does)."""


def field_for(attribute_name: str) -> str | None:
    """The canonical field an attribute's name means, or None.

    The name itself, then the name without a JSON:API ``attributes`` prefix, then the last
    component of a dotted name (``attributes.entity.legalname`` -> ``legalname``). The project's
    reader joins nested names with ``_`` (GLEIF's ``attributes.lei`` arrives as
    ``attributes_lei``), so the dotted rule serves names written by other producers.
    """
    found = HEADER_SYNONYMS.get(attribute_name)
    if found is not None:
        return found
    for prefix in _NESTED_PREFIXES:
        if attribute_name.startswith(prefix):
            found = HEADER_SYNONYMS.get(attribute_name[len(prefix) :])
            if found is not None:
                return found
    if "." in attribute_name:
        return HEADER_SYNONYMS.get(attribute_name.rsplit(".", 1)[1])
    return None
