"""Find a table's header row and its ISIN column by what the cells hold, not by a header's letters.

Used by every tabular format (delimited text, spreadsheets, HTML tables) on a sample of the
first rows of a table:

1. The *data start* is the first row from which a column holds valid ISINs in most of the
   following rows that have a value in it; a column *qualifies* if most of its non-empty values
   from there on are valid ISINs (``mostly_isins``: blank cells do not count against it, but it
   needs ``MIN_ISINS`` of them, or, in a small table, ISINs in half its rows).
2. The *header* is the nearest row above the data start that has a value in that column (rows
   above it are title rows). A file whose first row is already data has no header.
3. The ISIN column is, in this order: the configured one (``--column``); the qualifying column
   whose header is exactly ``ISIN``; the only qualifying column; the only one with ISINs in most
   of all its rows, when the others are sparse (as before blank cells stopped counting). Two
   qualifying columns otherwise is an error that names both: an ISIN and an underlying ISIN look
   the same to a reader, and picking the wrong one would delete the list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import ParseError
from core.isin import is_isin
from producer.reading.model import ColumnBy, ColumnChoice, names_isin, normalise_header, unique_names

QUALIFY = 0.5
"""A column qualifies when at least this share of its non-empty values after the data start are ISINs."""
MIN_ISINS = 20
"""ISINs a column needs to qualify, however few of its cells are filled (a small table needs
ISINs in ``QUALIFY`` of its rows instead): a handful of ISINs in a mostly empty column (a note,
a "replaced by" column) is not a list."""
WINDOW = 20
"""Rows looked at to decide that a valid ISIN starts the data (and is not a stray value)."""
HEADER_LOOKBACK = 20

SampleRow = tuple[int, Sequence[str]]
"""(1-based line or row number, the row's cells)."""


@dataclass(frozen=True)
class TableLayout:
    header_line: int
    """1-based line or row of the header; 0 if the table has none."""
    header: tuple[str, ...]
    names: tuple[str, ...]
    """Attribute names: the header normalised to snake_case, made unique."""
    column: ColumnChoice
    isin_col: int
    width: int
    """The usual number of fields of a data row."""

    @property
    def header_width(self) -> int:
        """Fields of the header up to its last named one (0 without a header)."""
        named = [i for i, h in enumerate(self.header) if h]
        return named[-1] + 1 if named else 0

    @property
    def isin_header(self) -> str:
        return self.header[self.isin_col] if self.header_line else f"column {self.isin_col + 1}"


def mostly_isins(valid: int, filled: int, records: int) -> bool:
    """The judgement of every format on a column or a field: most of its non-empty values are
    valid ISINs (blank cells, absent fields do not count against it), and they are not a handful:
    at least ``MIN_ISINS``, or ISINs in ``QUALIFY`` of the ``records`` of a small table."""
    return valid > 0 and valid >= QUALIFY * filled and valid >= min(MIN_ISINS, QUALIFY * records)


def dense(valid: int, records: int) -> bool:
    """ISINs in most of all the records, blank ones included: the rule before blanks stopped counting."""
    return valid > 0 and valid >= QUALIFY * records


def _blank(cells: Sequence[str]) -> bool:
    return not any(c.strip() for c in cells)


def _valid_at(rows: Sequence[SampleRow], col: int) -> list[bool | None]:
    """Per row: True if the cell is a valid ISIN, False if it holds something else, None if the
    row has no such cell or the cell is empty."""
    out: list[bool | None] = []
    for _line, cells in rows:
        if len(cells) <= col or not cells[col].strip():
            out.append(None)
        else:
            out.append(is_isin(cells[col]))
    return out


def _data_start(flags: list[bool | None]) -> int | None:
    """The first row with a valid ISIN after which most rows (that have a value in the column)
    have one too."""
    for i, flag in enumerate(flags):
        if not flag:
            continue
        window = [f for f in flags[i : i + WINDOW] if f is not None]
        if sum(window) * 2 >= len(window):
            return i
    return None


class _Counts:
    """Per column, from a data start on: valid ISINs, non-empty cells, and records."""

    def __init__(self, rows: Sequence[SampleRow], flags: dict[int, list[bool | None]]) -> None:
        self._flags = flags
        self._lengths = [0 if _blank(cells) else len(cells) for _line, cells in rows]

    def qualifies(self, col: int, start: int) -> bool:
        """``mostly_isins``, the records being every non-blank row (a row whose trailing empty
        cells were dropped leaves the column blank)."""
        seen = [f for f in self._flags[col][start:] if f is not None]
        return mostly_isins(sum(seen), len(seen), sum(1 for n in self._lengths[start:] if n))

    def dense(self, col: int, start: int) -> bool:
        """ISINs in most rows that have the column, as columns qualified before blanks stopped counting."""
        records = sum(1 for n in self._lengths[start:] if n > col)
        return dense(sum(1 for f in self._flags[col][start:] if f), records)


def detect_table(
    rows: Sequence[SampleRow],
    *,
    column: str | None = None,
    header_line: int | None = None,
    table: str = "",
) -> TableLayout:
    """The header and the ISIN column of a table, from a sample of its first rows."""
    where = f" of {table}" if table else ""
    nonblank = [(line, cells) for line, cells in rows if not _blank(cells)]
    if not nonblank:
        raise ParseError(f"the table{where} is empty")
    width_max = max(len(cells) for _, cells in nonblank)
    flags = {c: _valid_at(rows, c) for c in range(width_max)}
    counts = _Counts(rows, flags)

    header_at: int | None = None  # index into rows
    if header_line is not None:
        if header_line > 0:
            found = [i for i, (line, _) in enumerate(rows) if line == header_line]
            if not found:
                raise ParseError(f"--header-row {header_line}: the table{where} has no row {header_line}")
            header_at = found[0]
        data_from = header_at + 1 if header_at is not None else 0
        starts = {c: data_from for c in flags}
        qualified = [c for c in flags if counts.qualifies(c, data_from)]
    else:
        starts = {c: s for c, f in flags.items() if (s := _data_start(f)) is not None}
        qualified = [c for c, s in starts.items() if counts.qualifies(c, s)]
        data_from = min((starts[c] for c in qualified), default=0)
    dense_cols = [c for c in qualified if counts.dense(c, starts[c])]

    def names_for(at: int | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if at is None:
            return (), tuple(f"column_{i + 1}" for i in range(width_max))
        raw = [c.strip() for c in rows[at][1]]
        raw += [""] * (width_max - len(raw))
        return tuple(raw), tuple(unique_names([normalise_header(n, i) for i, n in enumerate(raw)]))

    if column is not None:
        if header_line is None:
            header_at = _header_for_hint(rows, column, flags)
        header, names = names_for(header_at)
        col = _resolve_hint(column, header, names, width_max, where)
        if not any(flags.get(col, [])):
            raise ParseError(f"--column {column!r}: column {col + 1}{where} holds no valid ISIN in its first rows")
        choice = ColumnChoice(_identity(header, col, table), ColumnBy.CONFIGURED, col)
    else:
        if not qualified:
            raise ParseError(
                f"no header with an ISIN column and no column of ISINs in the first {len(rows)} rows{where}; "
                f"the first row is {_show(nonblank[0][1])}"
            )
        if header_line is None:
            header_at = _header_above(rows, data_from, min(qualified, key=lambda c: starts[c]))
        header, names = names_for(header_at)
        col, by = _choose(qualified, dense_cols, header, names, width_max, where)
        choice = ColumnChoice(_identity(header, col, table), by, col)
    widths = Counter(
        len(cells) for _, cells in rows[(header_at + 1 if header_at is not None else 0) :] if len(cells) > 1
    )
    width = widths.most_common(1)[0][0] if widths else width_max
    return TableLayout(
        header_line=rows[header_at][0] if header_at is not None else 0,
        header=header,
        names=names,
        column=choice,
        isin_col=col,
        width=max(width, col + 1),
    )


def _header_above(rows: Sequence[SampleRow], data_from: int, col: int | None) -> int | None:
    """The nearest row above the data start that has a value in the ISIN column."""
    for i in range(data_from - 1, max(-1, data_from - 1 - HEADER_LOOKBACK), -1):
        cells = rows[i][1]
        if _blank(cells):
            continue
        if col is None or (len(cells) > col and cells[col].strip()):
            return i
    return None


def _header_for_hint(rows: Sequence[SampleRow], column: str, flags: dict[int, list[bool | None]]) -> int | None:
    """The header row for a hinted column: the first row holding that name; for an index, the
    nearest row above the column's first ISIN that has a value in it."""
    wanted = column.strip().lower()
    norm = normalise_header(column, 0)
    for i, (_line, cells) in enumerate(rows):
        if any(c.strip().lower() == wanted or normalise_header(c, 0) == norm for c in cells if c.strip()):
            return i
    if wanted.isdigit() and int(wanted) - 1 in flags:
        col = int(wanted) - 1
        first = next((i for i, f in enumerate(flags[col]) if f), None)
        return _header_above(rows, first, col) if first is not None else None
    return None


def _resolve_hint(column: str, header: tuple[str, ...], names: tuple[str, ...], width: int, where: str) -> int:
    wanted = column.strip()
    for i, text in enumerate(header):
        if text.lower() == wanted.lower():
            return i
    norm = normalise_header(wanted, 0)
    if norm in names:
        return names.index(norm)
    if wanted.isdigit() and 1 <= int(wanted) <= width:
        return int(wanted) - 1
    shown = ", ".join(repr(h) for h in header if h) or f"{width} unnamed columns"
    raise ParseError(f"--column {column!r}: no such column{where}; the columns are {shown}")


def _choose(
    qualified: list[int], dense_cols: list[int], header: tuple[str, ...], names: tuple[str, ...], width: int, where: str
) -> tuple[int, ColumnBy]:
    exact = [c for c in qualified if names and c < len(names) and names[c] == "isin"]
    if exact:
        return exact[0], ColumnBy.HEADER
    if len(qualified) == 1 or len(dense_cols) == 1:
        col = qualified[0] if len(qualified) == 1 else dense_cols[0]
        if names and col < len(names) and header and header[col] and names_isin(names[col]):
            return col, ColumnBy.NAMED
        return col, ColumnBy.ONLY if width == 1 else ColumnBy.CONTENT
    described = " and ".join(
        f"{header[c]!r} (column {c + 1})" if header and c < len(header) and header[c] else f"column {c + 1}"
        for c in qualified
    )
    raise ParseError(
        f"{len(qualified)} columns{where} hold ISINs: {described}; choose the list's own ISIN column with "
        "--column NAME or --column INDEX (or the source's 'column' setting)"
    )


def _identity(header: tuple[str, ...], col: int, table: str) -> str:
    name = header[col] if header and col < len(header) and header[col] else f"column {col + 1}"
    return f"{table}!{name}" if table else name


def _show(cells: Sequence[str], limit: int = 120) -> str:
    text = repr([c for c in cells][:12])
    return text if len(text) <= limit else text[: limit - 1] + "…"
