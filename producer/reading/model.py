"""What every format reader gives the run: rows, bad rows, and what it detected."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from core.isin import RowError

FORMATS = ("csv", "lines", "fixed", "xlsx", "xls", "xlsb", "ods", "xml", "json", "html")
Format = Literal["csv", "lines", "fixed", "xlsx", "xls", "xlsb", "ods", "xml", "json", "html"]

MAX_ROW_BYTES = 1024 * 1024
"""A row (a line, a spreadsheet row, an XML or JSON record) longer than this is dead-lettered."""
DEAD_LETTER_RAW_CHARS = 4000
"""How much of a bad row's text a dead letter keeps (Kafka's default record limit is 1 MB)."""

_NON_WORD = re.compile(r"[^0-9a-z]+")


@dataclass(slots=True)
class Row:
    """A record with an ISIN value (not yet validated) and its other fields as attributes.

    Not frozen, though nothing changes one: a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``, 1.0 against 0.27 µs a row, and every row of every list
    makes one."""

    line: int
    """1-based line (text), row (spreadsheet) or record number (XML, JSON)."""
    isin: str
    attributes: dict[str, str]
    raw: Sequence[str]
    """The record's fields, for a dead letter if the ISIN is invalid."""
    where: str = ""
    """Where it is, for humans: ``sheet 'Shares' row 9``; empty when ``line`` says it all."""


@dataclass(frozen=True, slots=True)
class BadRow:
    """A record that cannot be read as a list entry: one dead letter."""

    line: int
    raw: str
    error: RowError
    reason: str
    where: str = ""


Item = Row | BadRow


class FormatReader(Protocol):
    """One format's reader, after detection: what it found, and its rows."""

    details: dict[str, Any]
    """What it detected beyond the format and encoding (delimiter, sheet, header row, path…),
    for the summary and the run record; it may add counts while ``rows()`` runs."""
    columns: list[ColumnChoice]
    """The ISIN column of each table it reads (one per sheet of a workbook)."""
    end_proven: bool
    """The format itself proves the list is whole (a closed XML root or JSON document, a
    workbook's directory): a download without a length cannot have been cut short unseen."""
    unterminated: bool
    """Text formats: the last line had no line end (with a last row that does not parse, a
    sign of a truncated download)."""

    def rows(self) -> Iterator[Item]: ...


class ColumnBy(StrEnum):
    """How the ISIN column was chosen, strongest first."""

    CONFIGURED = "configured"
    """A hint: ``--column``, ``--isin-at`` or the source's configuration."""
    HEADER = "header"
    """Its header is exactly ``ISIN``, and its values are ISINs."""
    NAMED = "named"
    """Its header names it (``ISIN No``, ``isin_code``, ``<isin value=…>``), its values are
    ISINs, and no other column's are."""
    ONLY = "only"
    """The file has one column, and its values are ISINs."""
    CONTENT = "content"
    """Only its values say it: no header names it (fixed width, ``<Id>``)."""

    @property
    def strong(self) -> bool:
        """Strong enough to publish deletions (with every other check passed)."""
        return self is not ColumnBy.CONTENT


@dataclass(frozen=True)
class ColumnChoice:
    """The ISIN column (or byte range, or XML/JSON path) and how it was chosen."""

    name: str
    """Stable identity, compared with the last run's: a header, a path, ``bytes 10-21``."""
    by: ColumnBy
    index: int | None = None


@dataclass(frozen=True)
class ReadHints:
    """Overrides of detection, from the command line or a source's configuration."""

    format: Format | None = None
    column: str | None = None
    """Header name or 1-based index (text, spreadsheets), element or attribute name (XML),
    key path (JSON)."""
    isin_at: tuple[int, int] | None = None
    """1-based, inclusive byte positions of the ISIN in a fixed-width record."""
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    header_row: int | None = None
    """1-based line or row of the header; 0: the file has no header."""

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Detected:
    """What a reader found out about the file, for the summary and the run record."""

    format: str
    container: str = "none"
    member: str | None = None
    encoding: str | None = None
    encoding_by: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    columns: list[ColumnChoice] = field(default_factory=list)
    """One per table (one per sheet of a workbook)."""

    @property
    def column_identity(self) -> str:
        """All ISIN columns, for comparing with the last run: ``ISIN`` or ``Shares!ISIN | Bonds!ISIN``."""
        return " | ".join(c.name for c in self.columns)

    @property
    def weakest(self) -> ColumnBy | None:
        order = list(ColumnBy)
        return max((c.by for c in self.columns), key=order.index, default=None)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, "container": self.container}
        if self.member:
            out["member"] = self.member
        if self.encoding:
            out["encoding"] = self.encoding
            out["encoding_by"] = self.encoding_by
        out.update(self.details)
        out["isin_column"] = self.column_identity
        out["column_by"] = self.weakest.value if self.weakest else None
        return out


def normalise_header(name: str, index: int) -> str:
    """``" NAME OF COMPANY"`` -> ``name_of_company``; empty names become ``column_<n>``."""
    norm = _NON_WORD.sub("_", name.strip().lower()).strip("_")
    return norm or f"column_{index + 1}"


def unique_names(names: list[str]) -> list[str]:
    """``name, name`` -> ``name, name_2``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        n = seen.get(name, 0) + 1
        seen[name] = n
        out.append(name if n == 1 else f"{name}_{n}")
    return out


def names_isin(normalised: str) -> bool:
    """Whether a normalised header names an ISIN column: a word of it starts with ``isin``
    (``isin``, ``isin_no``, ``isin_code``, ``isincode``), not merely contains the letters
    (``advertising``)."""
    return any(word.startswith("isin") for word in normalised.split("_"))


def shorten(text: str, limit: int = DEAD_LETTER_RAW_CHARS) -> str:
    """A bounded copy of a bad row's text for a dead letter or a message."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}… ({len(text)} characters in all)"
