"""Records of XML and JSON lists: a record's leaf values as fields, and the ISIN field among them.

Shared by ``xmlfile.py`` and ``jsonfile.py``. ``choose_field`` applies the rule of
``columns.py`` to fields named by record-relative paths.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from math import ceil
from typing import BinaryIO

from core.errors import ParseError
from core.isin import is_isin
from producer.reading.columns import MIN_ISINS, QUALIFY, dense, mostly_isins
from producer.reading.model import (
    ColumnBy,
    Row,
    names_isin,
    normalise_header,
    shorten,
)

RIVAL = 2
"""ISINs another kind of record must hold to make the choice of the record ambiguous."""
_BOM = b"\xef\xbb\xbf"
_LABEL_STEPS = re.compile(r"/@|/|\.|\[\*\]\.?")


Pairs = list[tuple[str, str]]
"""A record's leaf values: (record-relative path, text), in document order."""


class Stream:
    """A list's bytes for a parser: a UTF-8 BOM and leading whitespace skipped, bytes counted."""

    def __init__(self, raw: BinaryIO, strip: bytes = b" \t\r\n") -> None:
        self._raw = raw
        self._strip = strip
        self._started = False
        self.count = 0
        self.lines = 0
        """Line ends skipped before the document: add them to the parser's line numbers."""

    def read(self, size: int = -1) -> bytes:
        while True:
            data = self._raw.read(size if size >= 0 else 1024 * 1024)  # never the whole file at once
            first = self.count == 0
            self.count += len(data)
            if self._started or not data:
                return data
            if first and data.startswith(_BOM):
                data = data[3:]
            kept = data.lstrip(self._strip)
            self.lines += data.count(b"\n", 0, len(data) - len(kept))
            if kept:
                self._started = True
                return kept

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Ambiguous(ParseError):
    """Several fields hold ISINs and none is the ISIN field by its name: the run must not guess."""


class FieldSample:
    """Sampled records: per field path, in how many records it is present, holds a value (not
    blank) and holds a valid ISIN."""

    def __init__(self) -> None:
        self.records = 0
        self.present: Counter[str] = Counter()
        self.filled: Counter[str] = Counter()
        self.isins: Counter[str] = Counter()

    def add(self, pairs: Pairs) -> None:
        self.records += 1
        seen: set[str] = set()
        for path, value in pairs:
            if path not in seen:
                seen.add(path)
                self.present[path] += 1
                if value.strip():
                    self.filled[path] += 1
                    if is_isin(value):
                        self.isins[path] += 1

    def update(self, other: FieldSample) -> None:
        self.records += other.records
        self.present.update(other.present)
        self.filled.update(other.filled)
        self.isins.update(other.isins)

    def qualifies(self, path: str) -> bool:
        return mostly_isins(self.isins[path], self.filled[path], self.records)


def choose_field(
    sample: FieldSample,
    hint: str | None,
    where: str,
    label: Callable[[str], str],
    rank: Callable[[str, str], int],
) -> tuple[str, ColumnBy]:
    """The ISIN field of sampled records, by the rule of ``columns.py``: the hinted field; the
    qualifying field whose own name is exactly ``isin`` (the shallowest one); the only qualifying
    field; the only one present with ISINs in most records, the others sparse. A field qualifies
    by ``mostly_isins``: records without it or with it blank do not count against it. ``label``
    gives a field's path for humans (``identifiers/isin/@value``, ``data[*].isin``),
    ``rank`` how well ``--column`` names a field (0: not at all, 1: best)."""
    n = sample.records
    if hint is not None:
        ranked = [(r, p) for p in sample.present if (r := rank(hint, p))]
        top = min((r for r, _ in ranked), default=0)
        best = [p for r, p in ranked if r == top]
        holding = [p for p in best if sample.isins[p]]
        if not best:
            raise ParseError(f"--column {hint!r}: no such field in the first {n} records {where}; {_fields(sample)}")
        if not holding:
            raise ParseError(f"--column {hint!r}: {_quote(best)} holds no valid ISIN in the first {n} records {where}")
        if len(holding) > 1:
            raise Ambiguous(f"--column {hint!r} names {_quote(holding)} {where}: give the field's path")
        return holding[0], ColumnBy.CONFIGURED
    qualified = [p for p in sample.present if sample.qualifies(p)]
    if not qualified:
        raise ParseError(
            f"no field holds valid ISINs in most of the first {n} records {where} (of those with a value in it, "
            f"and {min(MIN_ISINS, ceil(QUALIFY * n))} at least); {_fields(sample)}"
        )
    steps = {p: [s for s in _LABEL_STEPS.split(label(p)) if s] or [""] for p in qualified}
    exact = [p for p in qualified if normalise_header(steps[p][-1], 0) == "isin"]
    if exact:
        depth = min(len(steps[p]) for p in exact)
        exact = [p for p in exact if len(steps[p]) == depth]
    if len(exact) == 1:
        return exact[0], ColumnBy.HEADER
    full = [p for p in qualified if dense(sample.isins[p], n)]
    if len(qualified) == 1 or len(full) == 1:
        field = qualified[0] if len(qualified) == 1 else full[0]
        if names_isin(normalise_header(label(field), 0)):
            return field, ColumnBy.NAMED
        return field, ColumnBy.ONLY if len(sample.present) == 1 else ColumnBy.CONTENT
    raise Ambiguous(
        f"{len(qualified)} fields hold ISINs {where}: {_quote(qualified)}; choose the list's own ISIN field "
        "with --column PATH (or the source's 'column' setting)"
    )


def _quote(paths: Sequence[str]) -> str:
    return " and ".join(repr(p) for p in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


def _fields(sample: FieldSample) -> str:
    holding = ", ".join(f"{p!r} ({n} of {sample.records})" for p, n in sample.isins.most_common(5))
    shown = ", ".join(repr(p) for p in list(sample.present)[:12])
    return f"fields with some ISINs: {holding}" if holding else f"the fields are {shown or 'none'}"


def pick_record(
    isins: Counter[str],
    values: Counter[str],
    hint: str | None,
    rank: Callable[[str, str], int],
    record_of: Callable[[str], str],
    label: Callable[[str], str],
    looked_at: str,
) -> str:
    """The record of a survey's candidate fields (those ``--column`` names best, else those whose
    non-empty values, counted in ``values``, are mostly ISINs): the one with the most ISINs, if no
    other kind of record has some. ``record_of`` may name record sets by a pattern
    (``document/*/rows/row``): they are one kind of record."""
    if hint is not None:
        ranks = {k: r for k in isins if isins[k] and (r := rank(hint, k))}
        top = min(ranks.values(), default=0)
        found = {k: isins[k] for k, r in ranks.items() if r == top}
        if not found:
            raise ParseError(f"--column {hint!r}: no field of that name holds ISINs in {looked_at}")
    else:
        found = {k: n for k, n in isins.items() if n and n >= QUALIFY * values[k]}
        if not found:
            seen = ", ".join(repr(label(k)) for k, _ in values.most_common(5)) or "none"
            raise ParseError(f"no field holds valid ISINs in {looked_at}; the most frequent fields are {seen}")
    records: Counter[str] = Counter()
    for key, n in found.items():
        record = record_of(key)
        records[record] = max(records[record], n)
    (record, _), *others = records.most_common()
    rivals = [r for r, n in others if n >= RIVAL]
    if rivals:
        shown = _quote([label(r) for r in [record, *rivals]])
        raise ParseError(
            f"ISINs are in {len(rivals) + 1} kinds of records: {shown}; choose the field with --column PATH"
        )
    return record


def record_row(line: int, pairs: Pairs, isin_path: str, where: str, names: dict[str, str]) -> Row:
    """A record's Row: the ISIN field's value, every other non-empty leaf as a snake_case attribute."""
    isin = ""
    found = False
    attributes: dict[str, str] = {}
    for path, value in pairs:
        if path == isin_path and not found:
            isin, found = value.strip(), True
            continue
        text = value.strip()
        if not text:
            continue
        name = names.get(path)
        if name is None:
            name = normalise_header(path, 0)
            if len(names) < 10_000:
                names[path] = name
        if name in attributes:
            name = next(f"{name}_{i}" for i in range(2, len(attributes) + 3) if f"{name}_{i}" not in attributes)
        attributes[name] = text
    return Row(line, isin, attributes, [f"{p}={v}" for p, v in pairs], where)


def oversized(pairs: Pairs, isin_path: str) -> str:
    """A dead letter's text for a record over the size limit: its ISIN first, then its first fields."""
    isin = next((v.strip() for p, v in pairs if p == isin_path), "")
    return shorten(", ".join([f"{isin_path}={isin}", *(f"{p}={shorten(v, 200)}" for p, v in pairs[:20])]))
