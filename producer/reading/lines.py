"""Lines of a text or fixed-width file, a chunk at a time, in bounded memory."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, AnyStr, Generic

from core.isin import RowError
from producer.reading.model import MAX_ROW_BYTES, BadRow, shorten

CHUNK = 1024 * 1024
_ISIN_LIKE = r"[A-Za-z]{2}[A-Za-z0-9]{9}[0-9]"
_TOKEN_STR = re.compile(rf"(?<![A-Za-z0-9]){_ISIN_LIKE}(?![A-Za-z0-9])")
_TOKEN_BYTES = re.compile(rf"(?<![A-Za-z0-9]){_ISIN_LIKE}(?![A-Za-z0-9])".encode())


@dataclass
class Overlong:
    """A line over the limit: where it is, how it starts, and the ISIN-like tokens anywhere in it
    (so that the run can keep those ISINs from deletion although the row was not read)."""

    line: int
    head: str
    tokens: set[str] = field(default_factory=set)

    def describe(self) -> str:
        tokens = f" … ISIN-like values in the line: {' '.join(sorted(self.tokens)[:20])}" if self.tokens else " …"
        return self.head + tokens

    @classmethod
    def of(cls, line: int, text: str) -> Overlong:
        """A whole over-long line already in memory (the parallel reader's byte ranges)."""
        return cls(line, text[:200], set(_TOKEN_STR.findall(text)))

    def bad_row(self) -> BadRow:
        """The one dead letter of an over-long line, whichever reader met it."""
        return BadRow(
            self.line,
            shorten(self.describe()),
            RowError.MALFORMED_ROW,
            f"the line is longer than {MAX_ROW_BYTES} bytes",
        )


class LineChunks(Generic[AnyStr]):
    """Splits a stream (decoded text with universal newlines, or bytes) into lines without their
    line ends. A line longer than ``MAX_ROW_BYTES`` is never held whole: it is reported in
    ``overlong`` and left out (an empty line keeps the numbering)."""

    def __init__(self, stream: IO[AnyStr], newline: AnyStr) -> None:
        self._stream: IO[AnyStr] = stream
        self._nl: AnyStr = newline
        self._line = 0
        self.unterminated = False
        """The last line had no line end."""
        self.overlong: list[Overlong] = []
        """Lines over the limit, for the caller's dead letters."""

    def _note(self, line: int, piece: AnyStr, current: Overlong | None) -> Overlong:
        if current is None:
            head = piece[:200]
            current = Overlong(line, head if isinstance(head, str) else repr(head))
            self.overlong.append(current)
        if isinstance(piece, str):
            current.tokens.update(_TOKEN_STR.findall(piece))
        else:
            current.tokens.update(t.decode("ascii") for t in _TOKEN_BYTES.findall(piece))
        return current

    def __iter__(self) -> Iterator[tuple[int, list[AnyStr]]]:
        """(number of the chunk's first line, its lines)."""
        empty = self._nl[:0]
        carry = empty
        skipping: Overlong | None = None  # an overlong line whose end is still to come
        while True:
            data = self._stream.read(CHUNK)
            if not data:
                if carry and skipping is None:
                    self.unterminated = True
                    self._line += 1
                    yield self._line, [carry]
                return
            lines = (carry + data).split(self._nl)
            carry = lines.pop()
            if skipping is not None and lines:
                self._note(skipping.line, lines[0], skipping)
                lines[0] = empty  # the end of an overlong line
                skipping = None
            if len(carry) > MAX_ROW_BYTES or skipping is not None:
                line = skipping.line if skipping is not None else self._line + len(lines) + 1
                skipping = self._note(line, carry, skipping)
                carry = empty
            if lines and max(map(len, lines)) > MAX_ROW_BYTES:
                for i, text in enumerate(lines):
                    if len(text) > MAX_ROW_BYTES:
                        self._note(self._line + i + 1, text, None)
                        lines[i] = empty
            if lines:
                first = self._line + 1
                self._line += len(lines)
                yield first, lines
