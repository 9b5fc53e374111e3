"""Read a downloaded ISIN list, whatever its layout, one row at a time in constant memory.

What is understood:

- plain text, gzip, or a zip holding one file (as GLEIF ships its ISIN-to-LEI file);
- comma, semicolon, tab or pipe delimiters, quoted or not, CRLF or LF line ends;
- preamble lines before the header (Xetra has two);
- the ISIN column, found by a header whose name contains "ISIN" (an exact "ISIN" wins);
- or, with no such header, a plain one-ISIN-per-line list.

Every other column becomes an attribute, its header normalised to ``snake_case``.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import logging
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, TypeVar

from core.errors import ParseError
from core.isin import RowError

logger = logging.getLogger(__name__)
T = TypeVar("T")

DELIMITERS = (",", ";", "\t", "|")
HEADER_SEARCH_LINES = 50
SNIFF_BYTES = 64 * 1024
ISIN_SHAPE = re.compile(r"^\s*[A-Za-z]{2}[A-Za-z0-9]{9}[0-9]\s*$")
_NON_WORD = re.compile(r"[^0-9a-z]+")

# A row is at most this long; longer "rows" are binary junk or a missing line end.
csv.field_size_limit(1024 * 1024)


@dataclass(frozen=True, slots=True)
class Row:
    """A row with an ISIN column value (not yet validated) and its other columns."""

    line: int
    isin: str
    attributes: dict[str, str]
    raw: list[str]


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that cannot be read as a list entry."""

    line: int
    raw: str
    error: RowError
    reason: str


@dataclass(frozen=True)
class Layout:
    """What the reader found out about the file."""

    kind: Literal["delimited", "plain"]
    compression: Literal["none", "gzip", "zip"]
    encoding: str
    delimiter: str = ","
    header: tuple[str, ...] = ()
    header_line: int = 0
    isin_column: int = 0
    attribute_columns: tuple[tuple[int, str], ...] = field(default=())
    member: str | None = None

    @property
    def isin_header(self) -> str:
        return self.header[self.isin_column] if self.header else "(one ISIN per line)"


def normalise_header(name: str, index: int) -> str:
    """``" NAME OF COMPANY"`` -> ``name_of_company``; empty names become ``column_<n>``."""
    norm = _NON_WORD.sub("_", name.strip().lower()).strip("_")
    return norm or f"column_{index + 1}"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        n = seen.get(name, 0) + 1
        seen[name] = n
        out.append(name if n == 1 else f"{name}_{n}")
    return out


def _pick_isin_column(names: list[str]) -> int | None:
    """Index of the ISIN column among normalised names: exact, then prefix, then substring."""
    for test in (
        lambda n: n == "isin",
        lambda n: n.startswith("isin"),
        lambda n: "isin" in n,
    ):
        for i, name in enumerate(names):
            if test(name):
                return i
    return None


class ListReader:
    """Open with a context manager; ``layout`` is known on entry, then iterate ``rows()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._closers: list[IO[bytes] | IO[str] | zipfile.ZipFile] = []
        self._text: IO[str] | None = None
        self._head: list[str] = []
        self.layout: Layout | None = None

    # -- opening ----------------------------------------------------------------------

    def __enter__(self) -> ListReader:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        while self._closers:
            # Closing after a failure: the first error is the one that matters.
            with contextlib.suppress(Exception):
                self._closers.pop().close()

    def _open(self) -> None:
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ParseError(f"cannot open downloaded file {self.path}: {exc.strerror}") from exc
        self._closers.append(raw)
        magic = raw.read(4)
        raw.seek(0)
        compression: Literal["none", "gzip", "zip"] = "none"
        member: str | None = None
        stream: Any = raw
        if magic.startswith(b"PK\x03\x04") or magic.startswith(b"PK\x05\x06"):
            compression = "zip"
            stream, member = self._open_zip(raw)
        elif magic.startswith(b"\x1f\x8b"):
            compression = "gzip"
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
            self._closers.append(stream)
        buffered = io.BufferedReader(stream, buffer_size=1024 * 1024)
        self._closers.append(buffered)
        sample = _guard(lambda: buffered.peek(SNIFF_BYTES)[:SNIFF_BYTES])
        if not sample.strip():
            raise ParseError("the downloaded list is empty")
        if b"\x00" in sample:
            raise ParseError("the downloaded list is not text (it has NUL bytes); expected CSV, text, gzip or zip")
        encoding = _guess_encoding(sample)
        self._text = io.TextIOWrapper(buffered, encoding=encoding, errors="replace", newline="")
        self._closers.append(self._text)
        self.layout = self._detect_layout(compression, encoding, member)
        logger.info(
            "list layout: %s, %s, encoding %s, delimiter %r, ISIN column %r, header on line %d",
            self.layout.kind,
            compression if member is None else f"zip member {member}",
            encoding,
            self.layout.delimiter,
            self.layout.isin_header,
            self.layout.header_line,
        )

    def _open_zip(self, raw: IO[bytes]) -> tuple[IO[bytes], str]:
        try:
            archive = zipfile.ZipFile(raw)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ParseError(f"broken zip: {exc}") from exc
        self._closers.append(archive)
        files = [i for i in archive.infolist() if not i.is_dir()]
        if len(files) != 1:
            names = ", ".join(i.filename for i in files[:5]) or "none"
            raise ParseError(f"a zip must hold exactly one file, this one holds {len(files)}: {names}")
        info = files[0]
        try:
            stream = archive.open(info)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
            raise ParseError(f"broken zip: cannot open {info.filename}: {exc}") from exc
        self._closers.append(stream)
        return stream, info.filename

    def _detect_layout(self, compression: Literal["none", "gzip", "zip"], encoding: str, member: str | None) -> Layout:
        assert self._text is not None
        head: list[str] = []
        for _ in range(HEADER_SEARCH_LINES):
            line = _guard(self._text.readline)
            if not line:
                break
            head.append(line)
        self._head = head
        for index, line in enumerate(head):
            found = _header_in(line)
            if found is None:
                continue
            delimiter, fields = found
            names = _unique([normalise_header(f, i) for i, f in enumerate(fields)])
            isin_col = _pick_isin_column(names)
            assert isin_col is not None
            attrs = tuple((i, n) for i, n in enumerate(names) if i != isin_col)
            self._head = head[index + 1 :]
            return Layout(
                kind="delimited",
                compression=compression,
                encoding=encoding,
                delimiter=delimiter,
                header=tuple(f.strip() for f in fields),
                header_line=index + 1,
                isin_column=isin_col,
                attribute_columns=attrs,
                member=member,
            )
        sample = [ln for ln in head if ln.strip()]
        if sample and sum(1 for ln in sample if ISIN_SHAPE.match(ln)) * 2 >= len(sample):
            return Layout(kind="plain", compression=compression, encoding=encoding, member=member)
        first = sample[0].strip()[:80] if sample else ""
        raise ParseError(
            f"no header with an ISIN column in the first {HEADER_SEARCH_LINES} lines, and not a "
            f"one-ISIN-per-line list; the first line is {first!r}"
        )

    # -- reading ----------------------------------------------------------------------

    def rows(self) -> Iterator[Row | BadRow]:
        """Rows in file order. Blank lines are skipped; unreadable rows come as BadRow."""
        if self.layout is None or self._text is None:
            raise RuntimeError("ListReader.rows() outside its context manager")
        lines = chain(self._head, self._guarded_lines())
        if self.layout.kind == "plain":
            return self._plain_rows(lines)
        return self._delimited_rows(lines, self.layout)

    def _guarded_lines(self) -> Iterator[str]:
        assert self._text is not None
        text = self._text
        while True:
            chunk = _guard(lambda: text.readlines(1 << 20))
            if not chunk:
                return
            yield from chunk

    @staticmethod
    def _plain_rows(lines: Iterator[str]) -> Iterator[Row | BadRow]:
        for number, line in enumerate(lines, start=1):
            value = line.strip()
            if value:
                yield Row(number, value, {}, [value])

    @staticmethod
    def _delimited_rows(lines: Iterator[str], layout: Layout) -> Iterator[Row | BadRow]:
        delimiter = layout.delimiter
        reader = csv.reader(lines, delimiter=delimiter, strict=False)
        first_line = layout.header_line
        isin_col = layout.isin_column
        attr_cols = layout.attribute_columns
        ncols = len(layout.header)
        isin_name = layout.header[isin_col]
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield BadRow(first_line + reader.line_num, "", RowError.MALFORMED_ROW, f"unreadable row: {exc}")
                continue
            line = first_line + reader.line_num
            n = len(row)
            if n == 0 or (n == 1 and not row[0].strip()):
                continue
            if n <= isin_col:
                yield BadRow(
                    line,
                    delimiter.join(row),
                    RowError.MALFORMED_ROW,
                    f"row has {n} fields; the ISIN column {isin_name!r} is field {isin_col + 1}",
                )
                continue
            if n > ncols and any(f.strip() for f in row[ncols:]):
                yield BadRow(
                    line,
                    delimiter.join(row),
                    RowError.MALFORMED_ROW,
                    f"row has {n} non-empty fields but the header has {ncols}",
                )
                continue
            attributes = {name: v for i, name in attr_cols if i < n and (v := row[i].strip())}
            yield Row(line, row[isin_col], attributes, row)


def _guard(read: Callable[[], T]) -> T:
    """Run a read, turning decompression and I/O failures into ParseError."""
    try:
        return read()
    except (zipfile.BadZipFile, zlib.error, EOFError, gzip.BadGzipFile) as exc:
        raise ParseError(f"broken or truncated compressed file: {exc}") from exc
    except OSError as exc:
        raise ParseError(f"cannot read the downloaded list: {exc}") from exc


def _header_in(line: str) -> tuple[str, list[str]] | None:
    """(delimiter, fields) if ``line`` is a header with an ISIN column, else None."""
    best: tuple[str, list[str]] | None = None
    for delimiter in DELIMITERS:
        if delimiter not in line and delimiter != ",":
            continue
        try:
            fields = next(csv.reader([line], delimiter=delimiter))
        except (csv.Error, StopIteration):
            continue
        names = [normalise_header(f, i) for i, f in enumerate(fields)]
        if _pick_isin_column(names) is None:
            continue
        if len(fields) == 1 and names[0] != "isin":
            continue
        if best is None or len(fields) > len(best[1]):
            best = (delimiter, fields)
    return best


def _guess_encoding(sample: bytes) -> str:
    """UTF-8 (with or without BOM) when the sample decodes as UTF-8, else Latin-1."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(sample, final=False)
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8-sig"
