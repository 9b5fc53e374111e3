"""JSON lists: an array of objects, an API envelope holding one, or JSON Lines, read in bounded memory.

Layouts, told apart by content: a top-level array (``[{…}, …]``, records ``[*]``); an envelope
(GLEIF's ``{"meta": …, "data": [{…}]}``, records ``data[*]``, at any depth); JSON Lines (one
object a line: each line a record); a single object (one record). An array of strings
(``{"isins": ["DE…", …]}``) holds one-field records.

Detection, on at most ``SAMPLE_BYTES``, as for XML (``xmlfile.py``): a survey of ``ijson``
events counts the values at each key path and the valid ISINs among them; a key path whose
values are mostly ISINs is a candidate, and its record is the highest array element above it
that occurs as often as the object holding it (or the top-level value). Then the first
``SAMPLE_RECORDS`` records are flattened into key paths relative to the record
(``attributes.isin``) and the ISIN field is chosen by ``choose_field`` (the rule of ``columns.py``).
Records under differently named keys at the same depth (``{"securities": {"data": […]},
"marketdata": {"data": […]}}``) are record sets (``recordsets.py``): each is read with its own
ISIN field, or skipped and listed, like a workbook's sheets.

Reading: documents stream through ``ijson.parse`` (the yajl2_c backend) and each record is
built as flat key paths, never as a whole tree, so a record over ``MAX_ROW_BYTES`` is cut off and
dead-lettered, and memory holds one record. Nesting deeper than ``MAX_DEPTH`` is an error
(yajl has no limit; small reads keep its cost bounded). A document read to its end without an
error is complete (``end_proven``). JSON Lines are read a line at a time: a line that is not a
JSON object is one dead letter, and a last line without a line end is reported (``unterminated``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import ijson

from core.errors import ParseError
from core.isin import RowError
from producer.reading.container import Payload
from producer.reading.jsonscan import (
    SAMPLE_BYTES,
    Survey,
    broken,
    display,
    flatten,
    is_array,
    is_lines,
    line_record,
    rank,
    records,
)
from producer.reading.lines import LineChunks
from producer.reading.model import MAX_ROW_BYTES, BadRow, ColumnBy, Item, ReadHints, shorten
from producer.reading.records import FieldSample, Pairs, Stream, choose_field, oversized, pick_record, record_row
from producer.reading.recordsets import SAMPLE_RECORDS, RecordSet, SetKey, SetPlan

_Record = tuple[int, Pairs, int]
"""(record number, fields, about its size)."""


class JsonReader:
    format = "json"

    def __init__(self, payload: Payload, hints: ReadHints) -> None:
        self._payload = payload
        self.end_proven = False
        self.unterminated = False
        self._lines = is_lines(payload.head)
        self._arrays: set[str] = set()
        if self._lines:
            self._record = ""
        else:
            survey = Survey(payload)
            self._arrays = survey.arrays
            self._record = pick_record(
                survey.isins, survey.filled, hints.column, rank, survey.pattern_of, survey.label, survey.looked_at
            )
            steps = self._record.split(".")
            if (
                steps[-2:] == ["item", "item"]
                and is_array(steps[:-1], self._arrays)
                and is_array(steps[:-2], self._arrays)
            ):
                raise ParseError(
                    f"the ISINs are in arrays of values ({survey.label(self._record)}), a table without keys: "
                    "this reader reads objects (or lists of ISINs); convert the list to objects or CSV"
                )
        self._pattern = self._record.split(".")
        self._no_sets: SetKey = ("",) * len(self._pattern)
        samples = {self._no_sets: self._line_sample(payload)} if self._lines else self._document_samples(payload)

        def choose(sample: FieldSample, rs: RecordSet) -> tuple[str, ColumnBy]:
            where = "of each line" if self._lines else f"of {rs.path or '(top level)'}"
            return choose_field(
                sample,
                hints.column,
                where,
                lambda p: self._field_label(rs.steps, p) or rs.path,
                lambda h, p: rank(h, p, rs.plain),
            )

        self._plan = SetPlan(self._record, ".", choose, self._display, self._identity, self._field_label)
        layout = "json lines" if self._lines else {"item": "array", "": "object"}.get(self._record, "envelope")
        self.details: dict[str, Any] = self._plan.details
        self.details.update({"layout": layout, "record": self._display(self._pattern)})
        self._plan.decide(samples or {self._key(self._record): FieldSample()})
        self.columns = self._plan.columns

    def _display(self, steps: Sequence[str]) -> str:
        return display([s for s in steps if s], self._arrays)

    def _field_label(self, steps: Sequence[str], path: str) -> str:
        """A field's key path relative to its record, for humans (``tags[*]``); "" for the record's own value."""
        if not path:
            return ""
        base = [s for s in steps if s]
        return display([*base, *path.split(".")], self._arrays)[len(display(base, self._arrays)) :].lstrip(".")

    def _identity(self, steps: Sequence[str], field: str) -> str:
        record, label = self._display(steps), self._field_label(steps, field)
        return f"{record}.{label}" if record and label else record or label

    def _key(self, prefix: str) -> SetKey:
        if "*" not in self._pattern:
            return self._no_sets
        steps = prefix.split(".")
        if len(steps) != len(self._pattern):  # a key with a dot in it
            return self._no_sets
        return tuple(s if p == "*" else "" for p, s in zip(self._pattern, steps, strict=True))

    @staticmethod
    def _line_sample(payload: Payload) -> FieldSample:
        sample = FieldSample()
        with payload.open() as stream:
            data = stream.read(SAMPLE_BYTES)
            lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
            if stream.read(1):
                lines.pop()  # a partial line
        for line in [ln for ln in lines if ln.strip()][:SAMPLE_RECORDS]:
            pairs: Pairs = []
            try:
                flatten(line_record(line), "", pairs)
            except (ValueError, RecursionError):
                continue
            sample.add(pairs)
        return sample

    def _document_samples(self, payload: Payload) -> dict[SetKey, FieldSample]:
        """The first records of each record set in the first ``SAMPLE_BYTES``."""
        samples: dict[SetKey, FieldSample] = {}
        with Stream(payload.open(), strip=b"") as src:
            try:
                for prefix, pairs, _size in records(src, self._record, {"roots": 0}):
                    sample = samples.setdefault(self._key(prefix), FieldSample())
                    if sample.records < SAMPLE_RECORDS:
                        sample.add(pairs)
                    elif "*" not in self._pattern:
                        break  # a single set: its sample is complete
                    if src.count > SAMPLE_BYTES:
                        break
            except (ijson.JSONError, UnicodeDecodeError) as exc:
                raise broken(exc, src, "") from None
        return samples

    def rows(self) -> Iterator[Item]:
        yield from self._line_rows() if self._lines else self._document_rows()

    def _document_rows(self) -> Iterator[Item]:
        names: dict[str, str] = {}
        state = {"roots": 0}
        keep = {rs.field for rs in self._plan.sets if rs.field is not None}
        n = 0

        def emit(rs: RecordSet, record: _Record) -> Item:
            number, pairs, size = record
            assert rs.field is not None
            where = f"record {rs.records} of {rs.path}" if rs.path else f"record {rs.records}"
            if size > MAX_ROW_BYTES:
                reason = f"the record is over {MAX_ROW_BYTES} bytes"
                return BadRow(number, oversized(pairs, rs.field), RowError.MALFORMED_ROW, reason, where)
            return record_row(number, pairs, rs.field, where, names)

        with Stream(self._payload.open(), strip=b"") as src:

            def found() -> Iterator[tuple[SetKey, _Record]]:
                nonlocal n
                for prefix, pairs, size in records(src, self._record, state, keep):
                    n += 1
                    yield self._key(prefix), (n, pairs, size)

            try:
                yield from self._plan.items(found(), lambda r: (r[1], r[2]), emit)
            except (ijson.JSONError, UnicodeDecodeError) as exc:
                raise broken(exc, src, f", after record {n}") from None
        self.details["records"] = sum(rs.records for rs in self._plan.sets if rs.field is not None)
        if state["roots"] > 1:
            self.details["layout"] = "json lines"  # objects one after another: nothing proves the last
        self.end_proven = state["roots"] == 1

    def _line_rows(self) -> Iterator[Item]:
        names: dict[str, str] = {}
        field = self._plan.sets[0].field or ""
        n = 0
        with self._payload.open() as stream:
            chunks = LineChunks(stream, b"\n")
            for first, lines in chunks:
                for number, line in enumerate(lines, start=first):
                    if not line.strip():
                        continue
                    n += 1
                    pairs: Pairs = []
                    try:
                        flatten(line_record(line.removeprefix(b"\xef\xbb\xbf")), "", pairs)
                    except (ValueError, RecursionError) as exc:
                        text = shorten(line.decode("utf-8", "replace"))
                        yield BadRow(number, text, RowError.MALFORMED_ROW, str(exc), f"line {number}")
                        continue
                    yield record_row(number, pairs, field, f"line {number}", names)
                for long in chunks.overlong:
                    reason = f"the line is longer than {MAX_ROW_BYTES} bytes"
                    yield BadRow(
                        long.line, shorten(long.describe()), RowError.MALFORMED_ROW, reason, f"line {long.line}"
                    )
                chunks.overlong.clear()
            self.unterminated = chunks.unterminated
        self.details["records"] = n


def open_json(payload: Payload, hints: ReadHints) -> JsonReader:
    """Detect the layout, the record and the ISIN key path of a JSON list (see the module's docstring)."""
    return JsonReader(payload, hints)
